//! The IDX loader: round trips (plain and gzipped), and every malformation is a typed error
//! naming the file.

use gradmat_apps::bnn::idx::{load_pair, load_split, read_idx, write_idx, IdxError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn scratch(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gradmat-bnn-idx-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 37 % 256) as u8).collect()
}

#[test]
fn round_trip_plain_and_gzip() {
    let dir = scratch("rt");
    for (gzip, name) in [(false, "a.idx"), (true, "a.idx.gz")] {
        let data = bytes(5 * 3 * 4);
        let p = dir.join(name);
        write_idx(&p, &[5, 3, 4], &data, gzip).unwrap();
        let back = read_idx(&p).unwrap();
        assert_eq!(back.dims, vec![5, 3, 4]);
        assert_eq!(back.data, data);
    }
    // 1-D (labels) too.
    let p = dir.join("l.idx");
    write_idx(&p, &[7], &[0, 1, 2, 3, 4, 5, 9], false).unwrap();
    assert_eq!(read_idx(&p).unwrap().data, vec![0, 1, 2, 3, 4, 5, 9]);
}

#[test]
fn truncated_files_are_rejected() {
    let dir = scratch("trunc");
    let p = dir.join("full.idx");
    write_idx(&p, &[4, 2, 2], &bytes(16), false).unwrap();
    let full = std::fs::read(&p).unwrap();
    // Cut in the data, in the header, and before the magic ends.
    for (cut, header) in [(full.len() - 1, false), (10, true), (2, false)] {
        let q = dir.join(format!("cut{cut}.idx"));
        std::fs::write(&q, &full[..cut]).unwrap();
        let e = read_idx(&q).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&q.display().to_string()), "{msg}");
        match (&e, cut) {
            (IdxError::BadMagic { .. }, 2) => {}
            (IdxError::Truncated { part, .. }, _) => {
                assert_eq!(*part, if header { "header" } else { "data" });
            }
            _ => panic!("unexpected error {e:?} for cut {cut}"),
        }
    }
    // A truncated gzip stream is an I/O error naming the file.
    let g = dir.join("full.idx.gz");
    write_idx(&g, &[4, 2, 2], &bytes(16), true).unwrap();
    let gz = std::fs::read(&g).unwrap();
    let q = dir.join("cut.idx.gz");
    std::fs::write(&q, &gz[..gz.len() - 6]).unwrap();
    let e = read_idx(&q).unwrap_err();
    assert!(e.to_string().contains("cut.idx.gz"), "{e}");
}

#[test]
fn wrong_magic_and_trailing_bytes_are_rejected() {
    let dir = scratch("magic");
    let p = dir.join("bad.idx");
    std::fs::write(&p, [0u8, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap(); // float type
    assert!(matches!(read_idx(&p), Err(IdxError::BadMagic { .. })));
    std::fs::write(&p, b"hello world").unwrap();
    assert!(matches!(read_idx(&p), Err(IdxError::BadMagic { .. })));
    let q = dir.join("trail.idx");
    std::fs::write(&q, [0u8, 0, 8, 1, 0, 0, 0, 2, 5, 6, 7]).unwrap();
    assert!(matches!(
        read_idx(&q),
        Err(IdxError::TrailingData { extra: 1, .. })
    ));
}

#[test]
fn pairs_are_checked() {
    let dir = scratch("pair");
    let (img, lab) = (dir.join("i.idx"), dir.join("l.idx"));
    write_idx(
        &img,
        &[3, 2, 2],
        &[0, 255, 51, 102, 0, 0, 0, 0, 1, 2, 3, 4],
        false,
    )
    .unwrap();
    write_idx(&lab, &[3], &[1, 0, 9], true).unwrap();
    let d = load_pair(&img, &lab).unwrap();
    assert_eq!(d.dim, 4);
    assert_eq!(d.labels, vec![1, 0, 9]);
    // Pixels scaled by 1/255: 51/255 = 0.2 exactly representable ratio up to rounding.
    assert!((d.images[2] - 0.2).abs() < 1e-15);
    assert!((d.images[1] - 1.0).abs() < 1e-15);
    // Count mismatch.
    write_idx(&lab, &[2], &[1, 0], false).unwrap();
    let e = load_pair(&img, &lab).unwrap_err();
    assert!(matches!(e, IdxError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("l.idx"));
    // Label out of range.
    write_idx(&lab, &[3], &[1, 10, 2], false).unwrap();
    let e = load_pair(&img, &lab).unwrap_err();
    assert!(
        matches!(
            e,
            IdxError::LabelOutOfRange {
                label: 10,
                index: 1,
                ..
            }
        ),
        "{e}"
    );
    // Wrong dimensionality of the image file.
    write_idx(&lab, &[3], &[1, 1, 2], false).unwrap();
    write_idx(&img, &[3, 4], &bytes(12), false).unwrap();
    assert!(matches!(load_pair(&img, &lab), Err(IdxError::Shape { .. })));
}

#[test]
fn splits_are_found_with_or_without_gz() {
    let dir = scratch("split");
    write_idx(
        &dir.join("train-images-idx3-ubyte.gz"),
        &[2, 1, 3],
        &bytes(6),
        true,
    )
    .unwrap();
    write_idx(&dir.join("train-labels-idx1-ubyte"), &[2], &[3, 4], false).unwrap();
    let d = load_split(&dir, "train").unwrap();
    assert_eq!((d.len(), d.dim), (2, 3));
    let e = load_split(&dir, "t10k").unwrap_err();
    assert!(matches!(e, IdxError::Missing { .. }));
    assert!(e.to_string().contains("t10k-images-idx3-ubyte"), "{e}");
    let e = load_split(&dir.join("nope"), "train").unwrap_err();
    assert!(e.to_string().contains("data directory not found"), "{e}");
}
