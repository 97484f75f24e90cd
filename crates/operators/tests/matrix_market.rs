//! Matrix Market reader/writer: round trips (coordinate/array, real/integer/pattern,
//! general/symmetric, gzip), every error class with its line number, garbage input never
//! panics, and the committed real matrices in `data/matrices/`.

use gradmat_operators::csr::SymCsrMatrix;
use gradmat_operators::matrix_market::{
    read_matrix_market, read_matrix_market_from, write_matrix_market, write_matrix_market_to,
    Field, Format, MatrixMarketError, MatrixMarketFile, Symmetry,
};
use gradmat_operators::testing;
#[cfg(feature = "matrix-market")]
use gradmat_operators::Operator;
use gradmat_operators::ParamVjp;
use proptest::prelude::*;
use std::io::Write;
use std::path::PathBuf;

#[cfg(feature = "matrix-market")]
fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/matrices")
        .join(name)
}

fn read(text: &str) -> Result<MatrixMarketFile<f64>, MatrixMarketError> {
    read_matrix_market_from(text.as_bytes())
}

fn write_string(f: &MatrixMarketFile<f64>) -> String {
    let mut out = Vec::new();
    write_matrix_market_to(&mut out, f).unwrap();
    String::from_utf8(out).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradmat-mm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn coordinate_general_real_round_trip_keeps_order_and_bits() {
    let text = "%%MatrixMarket matrix coordinate real general\n% a comment\n%another\n\
                3 4 5\n3 4 0.1\n1 1 -2.5e-300\n2 3 1.0D+03\n1 1 7\n3 1 3.141592653589793\n";
    let f = read(text).unwrap();
    assert_eq!(f.header().format, Format::Coordinate);
    assert_eq!(f.header().field, Field::Real);
    assert_eq!(f.header().symmetry, Symmetry::General);
    assert_eq!((f.nrows(), f.ncols(), f.nnz()), (3, 4, 5));
    assert_eq!(
        f.comments(),
        &[" a comment".to_string(), "another".to_string()]
    );
    assert_eq!(f.rows(), &[2, 0, 1, 0, 2]);
    assert_eq!(f.cols(), &[3, 0, 2, 0, 0]);
    assert_eq!(
        bits(f.values()),
        bits(&[0.1, -2.5e-300, 1000.0, 7.0, std::f64::consts::PI])
    );
    let s = write_string(&f);
    assert!(s.starts_with("%%MatrixMarket matrix coordinate real general\n% a comment\n"));
    let g = read(&s).unwrap();
    assert_eq!(g, f);
    // to_csr sums the duplicate (1,1) entries; the map is indexed by file entry.
    let a = f.to_csr().unwrap();
    assert_eq!(a.nnz(), 4);
    let m = a.triplet_to_stored();
    assert_eq!(m[1], m[3]);
    assert!((a.get(0, 0).unwrap() - (7.0 - 2.5e-300)).abs() < 1e-15);
}

#[test]
fn integer_and_pattern_fields() {
    let f =
        read("%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 2 -7\n2 1 3\n").unwrap();
    assert_eq!(f.header().field, Field::Integer);
    assert_eq!(bits(f.values()), bits(&[-7.0, 3.0]));
    let s = write_string(&f);
    assert!(s.contains("1 2 -7\n"), "{s}");
    assert_eq!(read(&s).unwrap(), f);
    // Non-integer token in an integer file.
    let e = read("%%MatrixMarket matrix coordinate integer general\n2 2 1\n1 2 1.5\n").unwrap_err();
    assert!(
        matches!(e, MatrixMarketError::NotANumber { line: 3, .. }),
        "{e}"
    );

    let p =
        read("%%MatrixMarket matrix coordinate pattern symmetric\n3 3 3\n1 1\n3 1\n3 2\n").unwrap();
    assert_eq!(p.header().field, Field::Pattern);
    assert_eq!(bits(p.values()), bits(&[1.0; 3]));
    let s = write_string(&p);
    assert!(s.contains("\n3 1\n"));
    assert_eq!(read(&s).unwrap(), p);
    // with_values turns the field into real and keeps everything else.
    let q = p.with_values(&[0.5, -1.25, 2.0]).unwrap();
    assert_eq!(q.header().field, Field::Real);
    assert_eq!(q.header().symmetry, Symmetry::Symmetric);
    assert_eq!(q.rows(), p.rows());
    assert_eq!(q.cols(), p.cols());
    assert!(matches!(
        p.with_values(&[1.0]),
        Err(MatrixMarketError::InvalidArgument(_))
    ));
    assert!(matches!(
        p.with_values(&[1.0, f64::NAN, 1.0]),
        Err(MatrixMarketError::InvalidArgument(_))
    ));
}

#[test]
fn array_general_and_symmetric() {
    let f = read("%%MatrixMarket matrix array real general\n2 3\n1\n2\n3\n4\n5\n6\n").unwrap();
    assert_eq!(f.rows(), &[0, 1, 0, 1, 0, 1]);
    assert_eq!(f.cols(), &[0, 0, 1, 1, 2, 2]);
    let d = f.to_csr().unwrap().to_dense();
    assert_eq!(bits(d.as_slice()), bits(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    assert_eq!(read(&write_string(&f)).unwrap(), f);
    let built = MatrixMarketFile::new_array(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(built, f);

    let s = read("%%MatrixMarket matrix array real symmetric\n3 3\n1\n2\n3\n4\n5\n6\n").unwrap();
    assert_eq!(s.rows(), &[0, 1, 2, 1, 2, 2]);
    assert_eq!(s.cols(), &[0, 0, 0, 1, 1, 2]);
    let full = s.to_csr().unwrap().to_dense();
    assert_eq!(
        bits(full.as_slice()),
        bits(&[1.0, 2.0, 3.0, 2.0, 4.0, 5.0, 3.0, 5.0, 6.0])
    );
    let sym = s.to_sym_csr().unwrap();
    assert_eq!(sym.triplet_to_stored().len(), 6);
    assert_eq!(read(&write_string(&s)).unwrap(), s);
    let built =
        MatrixMarketFile::new_symmetric_array(3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(built, s);
    // Too few / too many values in array files.
    let e = read("%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n").unwrap_err();
    assert!(
        matches!(
            e,
            MatrixMarketError::TooFewEntries {
                line: 5,
                expected: 4,
                found: 3
            }
        ),
        "{e}"
    );
    let e = read("%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n3\n4\n").unwrap_err();
    assert!(
        matches!(
            e,
            MatrixMarketError::TooManyEntries {
                line: 6,
                expected: 3
            }
        ),
        "{e}"
    );
}

#[test]
fn symmetric_coordinate_to_sym_csr_maps_file_entries() {
    // Lower triangle with a duplicate (3,1) given twice; file order is not CSR order.
    let text = "%%MatrixMarket matrix coordinate real symmetric\n3 3 5\n3 1 1.0\n1 1 4\n2 1 -1\n3 1 0.5\n3 3 2\n";
    let f = read(text).unwrap();
    let s = f.to_sym_csr().unwrap();
    assert_eq!(s.nnz(), 4);
    assert_eq!(s.triplet_to_stored(), &[2, 0, 1, 2, 3]);
    // Gradient of ⟨u, A x⟩ per file entry, written back in file order with with_values.
    let (u, x) = ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]);
    let mut g = vec![0.0; s.num_params()];
    s.vjp_params(&u, &x, &mut g);
    let per_entry: Vec<f64> = s.triplet_to_stored().iter().map(|&p| g[p]).collect();
    // (3,1): u3 x1 + u1 x3 = 12 + 6; (1,1): 4; (2,1): 8 + 5; (3,3): 18.
    let want = [18.0, 4.0, 13.0, 18.0, 18.0];
    assert!(per_entry
        .iter()
        .zip(&want)
        .all(|(a, b)| (a - b).abs() < 1e-12));
    let out = f.with_values(&per_entry).unwrap();
    let back = read(&write_string(&out)).unwrap();
    assert_eq!(back.rows(), f.rows());
    assert_eq!(bits(back.values()), bits(&per_entry));
    // Upper-triangle symmetric files are accepted too; mixing triangles is an error (line 4).
    let up =
        read("%%MatrixMarket matrix coordinate real symmetric\n2 2 2\n1 2 3\n2 2 1\n").unwrap();
    let su = up.to_sym_csr().unwrap();
    assert_eq!(su.lower().col_idx(), &[0, 1]);
    let e =
        read("%%MatrixMarket matrix coordinate real symmetric\n3 3 2\n1 2 3\n3 1 1\n").unwrap_err();
    assert!(
        matches!(e, MatrixMarketError::InvalidEntry { line: 4, .. }),
        "{e}"
    );
    // A general file that is exactly symmetric converts with shared parameters.
    let g = read("%%MatrixMarket matrix coordinate real general\n2 2 3\n1 2 3\n2 1 3\n1 1 1\n")
        .unwrap();
    let sg = g.to_sym_csr().unwrap();
    assert_eq!(sg.triplet_to_stored(), &[1, 1, 0]);
    let ns = read("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 2 3\n").unwrap();
    assert!(matches!(
        ns.to_sym_csr(),
        Err(MatrixMarketError::Operator(_))
    ));
}

#[test]
fn from_csr_and_sym_csr_round_trip_through_files() {
    let s =
        SymCsrMatrix::<f64>::from_triplets(3, &[0, 1, 2, 2], &[0, 0, 1, 2], &[1.0, 0.1, -0.3, 2.0])
            .unwrap();
    let f = MatrixMarketFile::from_sym_csr(&s);
    let back = read(&write_string(&f)).unwrap().to_sym_csr().unwrap();
    assert_eq!(back.lower(), s.lower());
    let g = MatrixMarketFile::from_csr(s.full());
    let a = read(&write_string(&g)).unwrap().to_csr().unwrap();
    assert_eq!(a.values(), s.full().values());
    assert_eq!(a.col_idx(), s.full().col_idx());
    // f32 files write 9 significant digits and round-trip exactly.
    let f32file = MatrixMarketFile::<f32>::new_coordinate(
        2,
        2,
        Field::Real,
        Symmetry::General,
        vec![0, 1],
        vec![1, 0],
        vec![0.1f32, -3.4028235e38],
    )
    .unwrap();
    let mut out = Vec::new();
    write_matrix_market_to(&mut out, &f32file).unwrap();
    let back = read_matrix_market_from::<f32, _>(&out[..]).unwrap();
    assert_eq!(back, f32file);
    // Constructor validation.
    assert!(MatrixMarketFile::<f64>::new_coordinate(
        2,
        2,
        Field::Real,
        Symmetry::General,
        vec![2],
        vec![0],
        vec![1.0]
    )
    .is_err());
    assert!(MatrixMarketFile::<f64>::new_coordinate(
        2,
        3,
        Field::Real,
        Symmetry::Symmetric,
        vec![],
        vec![],
        vec![]
    )
    .is_err());
    assert!(MatrixMarketFile::<f64>::new_coordinate(
        2,
        2,
        Field::Pattern,
        Symmetry::General,
        vec![0],
        vec![0],
        vec![2.0]
    )
    .is_err());
}

#[test]
#[cfg(feature = "matrix-market")]
fn gzip_is_detected_by_magic_bytes_and_written_for_gz_paths() {
    let text = "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.5\n2 2 -2\n";
    let plain = read(text).unwrap();
    let gz = gzip(text.as_bytes());
    assert_eq!(read_matrix_market_from::<f64, _>(&gz[..]).unwrap(), plain);
    // A gzip file without the .gz extension, and a plain file with it.
    let p1 = tmp("no_extension.mtx");
    std::fs::write(&p1, &gz).unwrap();
    assert_eq!(read_matrix_market::<f64>(&p1).unwrap(), plain);
    let p2 = tmp("plain.mtx.gz");
    std::fs::write(&p2, text).unwrap();
    assert_eq!(read_matrix_market::<f64>(&p2).unwrap(), plain);
    // Writing to .gz compresses.
    let p3 = tmp("out.mtx.gz");
    write_matrix_market(&p3, &plain).unwrap();
    let raw = std::fs::read(&p3).unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b]);
    assert_eq!(read_matrix_market::<f64>(&p3).unwrap(), plain);
    let p4 = tmp("out.mtx");
    write_matrix_market(&p4, &plain).unwrap();
    assert!(std::fs::read_to_string(&p4)
        .unwrap()
        .starts_with("%%MatrixMarket"));
    // Truncated gzip stream.
    let e = read_matrix_market_from::<f64, _>(&gz[..gz.len() / 2]).unwrap_err();
    assert!(
        matches!(
            e,
            MatrixMarketError::Truncated { .. } | MatrixMarketError::TooFewEntries { .. }
        ),
        "{e}"
    );
    // Missing file: Io error with the path.
    let missing = tmp("does_not_exist.mtx");
    match read_matrix_market::<f64>(&missing).unwrap_err() {
        MatrixMarketError::Io { path, .. } => assert_eq!(path, missing),
        e => panic!("unexpected {e}"),
    }
    let _ = std::fs::remove_dir_all(p1.parent().unwrap());
}

/// Without the `matrix-market` feature gzip is a typed error, on input and output.
#[test]
#[cfg(not(feature = "matrix-market"))]
fn gzip_without_the_feature_is_a_typed_error() {
    let text = "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.5\n2 2 -2\n";
    let gz = gzip(text.as_bytes());
    let e = read_matrix_market_from::<f64, _>(&gz[..]).unwrap_err();
    assert!(matches!(e, MatrixMarketError::GzipUnsupported), "{e}");
    assert!(e.to_string().contains("matrix-market"), "{e}");
    let p = tmp("refused.mtx.gz");
    let e = write_matrix_market(&p, &read(text).unwrap()).unwrap_err();
    assert!(matches!(e, MatrixMarketError::GzipUnsupported), "{e}");
    assert!(!p.exists(), "no file is created for a refused .gz output");
    // Plain files still read and write.
    let q = tmp("plain.mtx");
    write_matrix_market(&q, &read(text).unwrap()).unwrap();
    assert_eq!(read_matrix_market::<f64>(&q).unwrap(), read(text).unwrap());
    let _ = std::fs::remove_dir_all(q.parent().unwrap());
}

/// Untrusted input is bounded (issue: a 3 GB line, 2·10⁸ comment lines or `/dev/zero` used to
/// exhaust memory): a line longer than `MAX_LINE_LEN` is `LineTooLong` with its number, however
/// long it is and wherever it is (header, comment, size or data line; with or without gzip); a
/// line of exactly `MAX_LINE_LEN` bytes is accepted; at most `MAX_COMMENT_LINES` comment lines
/// and `MAX_COMMENT_BYTES` of comment text are kept, the rest is read and dropped.
#[test]
fn long_lines_and_many_comments_are_bounded() {
    use gradmat_operators::matrix_market::{MAX_COMMENT_BYTES, MAX_COMMENT_LINES, MAX_LINE_LEN};
    let h = "%%MatrixMarket matrix coordinate real general\n";
    let long = |len: usize| "%".to_string() + &"x".repeat(len - 1);
    let too_long = |input: String, line: usize| {
        let e = read_matrix_market_from::<f64, _>(input.as_bytes()).unwrap_err();
        assert!(
            matches!(e, MatrixMarketError::LineTooLong { line: l, limit } if l == line && limit == MAX_LINE_LEN),
            "{e}"
        );
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        #[cfg(feature = "matrix-market")]
        {
            let e = read_matrix_market_from::<f64, _>(&gzip(input.as_bytes())[..]).unwrap_err();
            assert!(
                matches!(e, MatrixMarketError::LineTooLong { line: l, .. } if l == line),
                "{e}"
            );
        }
    };
    // Header line, comment line, size line, data line; with and without a line break.
    too_long("%%MatrixMarket".to_string() + &" ".repeat(MAX_LINE_LEN), 1);
    too_long(format!("{h}{}\n2 2 1\n1 1 1\n", long(MAX_LINE_LEN + 1)), 2);
    too_long(
        format!("{h}%c\n2 2 1{}\n1 1 1\n", " ".repeat(MAX_LINE_LEN)),
        3,
    );
    too_long(format!("{h}2 2 1\n1 1 {}", "1".repeat(MAX_LINE_LEN)), 3);
    // A stream of zero bytes (no line break at all), as from /dev/zero.
    let zeros = std::io::BufReader::new(std::io::Read::take(std::io::repeat(0), 1 << 40));
    let e = read_matrix_market_from::<f64, _>(zeros).unwrap_err();
    assert!(
        matches!(e, MatrixMarketError::LineTooLong { line: 1, .. }),
        "{e}"
    );
    // Exactly MAX_LINE_LEN bytes (plus \r\n) is fine.
    let f = read(&format!("{h}{}\r\n2 2 1\n1 1 1\n", long(MAX_LINE_LEN))).unwrap();
    assert_eq!(f.comments().len(), 1);
    assert_eq!(f.comments()[0].len(), MAX_LINE_LEN - 1);
    // Many comment lines: the first MAX_COMMENT_LINES are kept.
    let mut text = h.to_string();
    for i in 0..3 * MAX_COMMENT_LINES {
        text.push_str(&format!("% comment {i}\n"));
    }
    text.push_str("2 2 1\n% data comment\n1 1 1\n");
    let f = read(&text).unwrap();
    assert_eq!(f.comments().len(), MAX_COMMENT_LINES);
    assert_eq!(
        f.comments()[MAX_COMMENT_LINES - 1],
        format!(" comment {}", MAX_COMMENT_LINES - 1)
    );
    assert_eq!(f.nnz(), 1);
    // Long comment lines: at most MAX_COMMENT_BYTES of text kept, in order.
    let mut text = h.to_string();
    for _ in 0..4 {
        text.push_str(&long(MAX_COMMENT_BYTES / 3));
        text.push('\n');
    }
    text.push_str("%short\n2 2 0\n");
    let f = read(&text).unwrap();
    assert_eq!(
        f.comments().len(),
        3,
        "the fourth long comment and all later ones are dropped"
    );
    assert!(f.comments().iter().map(String::len).sum::<usize>() <= MAX_COMMENT_BYTES);
}

#[test]
fn every_error_class_reports_its_line() {
    use MatrixMarketError as E;
    let h = "%%MatrixMarket matrix coordinate real general\n";
    assert!(matches!(read("").unwrap_err(), E::Empty));
    assert!(matches!(
        read("hello\n").unwrap_err(),
        E::BadHeader { line: 1, .. }
    ));
    assert!(matches!(
        read("%%MatrixMarket matrix coordinate real\n").unwrap_err(),
        E::BadHeader { line: 1, .. }
    ));
    assert!(matches!(
        read("%%MatrixMarket matrix sparse real general\n").unwrap_err(),
        E::BadHeader { line: 1, .. }
    ));
    assert!(matches!(
        read("%%MatrixMarket matrix array pattern general\n").unwrap_err(),
        E::BadHeader { line: 1, .. }
    ));
    for unsupported in [
        "%%MatrixMarket matrix coordinate real skew-symmetric\n",
        "%%MatrixMarket matrix coordinate complex hermitian\n",
        "%%MatrixMarket matrix coordinate real hermitian\n",
        "%%MatrixMarket vector coordinate real general\n",
    ] {
        assert!(matches!(
            read(unsupported).unwrap_err(),
            E::Unsupported { line: 1, .. }
        ));
    }
    assert!(matches!(
        read(h).unwrap_err(),
        E::BadSizeLine { line: 2, .. }
    ));
    assert!(matches!(
        read(&format!("{h}%c\n2 2\n")).unwrap_err(),
        E::BadSizeLine { line: 3, .. }
    ));
    assert!(matches!(
        read(&format!("{h}2 x 1\n")).unwrap_err(),
        E::BadSizeLine { line: 2, .. }
    ));
    assert!(matches!(
        read(&format!("{h}2 -2 1\n")).unwrap_err(),
        E::BadSizeLine { line: 2, .. }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 1\n1 1\n")).unwrap_err(),
        E::WrongTokenCount {
            line: 3,
            expected: 3,
            found: 2
        }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 2\n1 1 1\n1 2 3 4\n")).unwrap_err(),
        E::WrongTokenCount {
            line: 4,
            expected: 3,
            found: 4
        }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 1\n1 1 abc\n")).unwrap_err(),
        E::NotANumber { line: 3, .. }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 1\n1 -1 2\n")).unwrap_err(),
        E::NotANumber { line: 3, .. }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 2\n1 1 1\n3 1 1\n")).unwrap_err(),
        E::IndexOutOfRange {
            line: 4,
            row: 3,
            col: 1,
            nrows: 2,
            ncols: 2
        }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 1\n0 1 1\n")).unwrap_err(),
        E::IndexOutOfRange {
            line: 3,
            row: 0,
            ..
        }
    ));
    for bad in ["nan", "inf", "-Infinity", "1e400"] {
        assert!(matches!(
            read(&format!("{h}2 2 1\n1 1 {bad}\n")).unwrap_err(),
            E::NonFinite { line: 3, .. }
        ));
    }
    // Overflows f32 only.
    assert!(matches!(
        read_matrix_market_from::<f32, _>(format!("{h}2 2 1\n1 1 1e39\n").as_bytes()).unwrap_err(),
        E::NonFinite { line: 3, .. }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 3\n1 1 1\n\n2 2 1\n")).unwrap_err(),
        E::TooFewEntries {
            line: 5,
            expected: 3,
            found: 2
        }
    ));
    assert!(matches!(
        read(&format!("{h}2 2 1\n1 1 1\n2 2 1\n")).unwrap_err(),
        E::TooManyEntries {
            line: 4,
            expected: 1
        }
    ));
    // Sizes: more entries than the matrix has, overflowing arrays, non-square symmetric.
    assert!(matches!(
        read(&format!("{h}2 2 5\n")).unwrap_err(),
        E::InvalidSize { line: 2, .. }
    ));
    assert!(matches!(
        read("%%MatrixMarket matrix array real general\n18446744073709551615 3\n").unwrap_err(),
        E::InvalidSize { line: 2, .. }
    ));
    assert!(matches!(
        read("%%MatrixMarket matrix coordinate real symmetric\n2 3 1\n").unwrap_err(),
        E::InvalidSize { line: 2, .. }
    ));
    // A huge declared size with few entries: no giant preallocation, just TooFewEntries.
    assert!(matches!(
        read(&format!(
            "{h}4000000000 4000000000 9000000000000000\n1 1 1\n"
        ))
        .unwrap_err(),
        E::TooFewEntries {
            line: 3,
            found: 1,
            ..
        }
    ));
    // Blank lines and CRLF endings are tolerated; the file still parses.
    let f =
        read("%%MatrixMarket matrix coordinate real general\r\n2 2 1\r\n\r\n2 1 5\r\n").unwrap();
    assert_eq!(f.rows(), &[1]);
    // Errors display with their line number.
    let msg = read(&format!("{h}2 2 1\n1 1 abc\n"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 3"), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes (with and without a valid header prefix) never panic.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), pick in 0u8..4) {
        let prefix: &[u8] = match pick {
            0 => b"",
            1 => b"%%MatrixMarket matrix coordinate real general\n",
            2 => b"%%MatrixMarket matrix array real symmetric\n3 3\n",
            _ => b"%%MatrixMarket matrix coordinate pattern symmetric\n4 4 3\n",
        };
        let mut input = prefix.to_vec();
        input.extend_from_slice(&bytes);
        let _ = read_matrix_market_from::<f64, _>(&input[..]);
        let _ = read_matrix_market_from::<f32, _>(&gzip(&input)[..]);
        if let Ok(f) = read_matrix_market_from::<f64, _>(&input[..]) {
            let _ = f.to_csr();
            let _ = f.to_sym_csr();
        }
    }

    /// Random coordinate files round-trip bit-exactly, entry order included.
    #[test]
    fn random_coordinate_round_trip(
        (m, n, r, c, v) in testing::strategies::sparse_triplets(1..=12, 1..=12, 0.3),
    ) {
        let f = MatrixMarketFile::new_coordinate(m, n, Field::Real, Symmetry::General, r, c, v).unwrap();
        let back = read(&write_string(&f)).unwrap();
        prop_assert_eq!(back, f);
    }
}

#[test]
#[cfg(feature = "matrix-market")]
fn reads_bcsstk14() {
    let f = read_matrix_market::<f64>(data("bcsstk14.mtx.gz")).unwrap();
    assert_eq!((f.nrows(), f.ncols(), f.nnz()), (1806, 1806, 32630));
    assert_eq!(f.header().symmetry, Symmetry::Symmetric);
    assert!(
        f.rows().iter().zip(f.cols()).all(|(r, c)| r >= c),
        "lower triangle"
    );
    let s = f.to_sym_csr().unwrap();
    assert_eq!(s.nnz(), 32630);
    // One parameter per file entry, in a bijection.
    let mut seen = vec![false; s.nnz()];
    for &p in s.triplet_to_stored() {
        assert!(!seen[p]);
        seen[p] = true;
    }
    // SPD: positive diagonal; the expanded CSR agrees with the symmetric operator.
    let mut d = vec![0.0; 1806];
    gradmat_operators::ColumnAccess::diagonal(&s, &mut d);
    assert!(d.iter().all(|&v| v > 0.0));
    let full = f.to_csr().unwrap();
    assert_eq!(full.nnz(), 2 * 32630 - 1806);
    let x = testing::random_vector::<f64>(1806, 1);
    let (mut y1, mut y2) = (vec![0.0; 1806], vec![0.0; 1806]);
    s.apply(&x, &mut y1);
    full.apply(&x, &mut y2);
    let scale = y2.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(y1
        .iter()
        .zip(&y2)
        .all(|(a, b)| (a - b).abs() <= 1e-13 * scale));
    testing::check_self_adjoint(&s, 2, 1e-13).unwrap();
    // Writing it back and reading again gives the identical file.
    let mut out = Vec::new();
    write_matrix_market_to(&mut out, &f).unwrap();
    assert_eq!(read_matrix_market_from::<f64, _>(&out[..]).unwrap(), f);
}

#[test]
#[cfg(feature = "matrix-market")]
fn reads_4elt_laplacian() {
    let f = read_matrix_market::<f64>(data("4elt_laplacian.mtx.gz")).unwrap();
    assert_eq!((f.nrows(), f.ncols(), f.nnz()), (15606, 15606, 61484));
    assert_eq!(f.header().symmetry, Symmetry::Symmetric);
    let s = f.to_sym_csr().unwrap();
    // Rows of a graph Laplacian sum to zero: A·1 = 0.
    let ones = vec![1.0; 15606];
    let mut y = vec![1.0; 15606];
    s.apply(&ones, &mut y);
    assert!(y.iter().all(|v| v.abs() < 1e-12), "row sums");
    // Positive semidefinite: xᵀ A x ≥ 0 for a random x; integral degrees on the diagonal.
    let x = testing::random_vector::<f64>(15606, 3);
    s.apply(&x, &mut y);
    let q: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
    assert!(q > 0.0);
    let mut d = vec![0.0; 15606];
    gradmat_operators::ColumnAccess::diagonal(&s, &mut d);
    assert!(d.iter().all(|&v| v >= 1.0 && v.fract().abs() < 1e-15));
    testing::check_adjoint(&f.to_csr().unwrap(), 4, 1e-14).unwrap();
}
