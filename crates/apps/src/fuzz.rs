//! Fuzz properties of this crate's readers (feature `fuzzing`; not part of the public API): the
//! GP's numeric CSV reader (`csv`), the IDX reader of the BNN pipeline (`idx`) and the vector
//! files of `gradmat quadform` (`vector`). See `docs/reliability.md`; the Matrix Market reader's
//! target is in `gradmat-operators`, with the reader. This crate's `tests/fuzz_corpus.rs` replays
//! the committed corpora and regressions.
//!
//! Every reader gets the bytes of a file whose name is `fuzz.<ext>` and must return either a
//! value that satisfies its invariants or a one-line error naming that file.

use gradmat_operators::fuzz::{Check, Outcome};
use std::path::Path;

/// This crate's fuzz targets, by name (the directories of `fuzz/corpus/` and the `[[bin]]`s of
/// `fuzz/Cargo.toml`), with their check functions.
pub const TARGETS: &[(&str, Check)] = &[
    ("csv", check_csv),
    ("idx", check_idx),
    ("vector", check_vector),
];

/// A typed error of a reader: one line, naming the file.
fn reader_error(msg: String, file: &str) -> Outcome {
    assert!(msg.starts_with(file), "error does not name the file: {msg}");
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    Outcome::Error(msg)
}

/// The GP's CSV reader on arbitrary bytes: no panic; a typed error, or a table whose shape
/// matches its values, all finite, with one name per column; a header is never a data row.
pub fn check_csv(data: &[u8]) -> Outcome {
    match crate::gp::csv::read_csv_from(data, std::path::Path::new("fuzz.csv")) {
        Ok(t) => {
            assert!(t.rows >= 1 && t.cols >= 1);
            assert_eq!(t.values.len(), t.rows * t.cols);
            assert_eq!(t.names.len(), t.cols);
            assert!(t.values.iter().all(|v| v.is_finite()));
            Outcome::Value
        }
        Err(e) => reader_error(e.to_string(), "fuzz.csv"),
    }
}

/// The IDX reader (`bnn::idx`, plain or gzipped bytes) on arbitrary bytes: no panic; a typed
/// error naming the file, or an array with at least one dimension whose data has exactly the
/// product of the dimensions bytes and which encodes back to exactly the (decompressed) input —
/// the format has one encoding per array, so anything else was accepted wrongly.
pub fn check_idx(data: &[u8]) -> Outcome {
    use crate::bnn::idx::idx_from_bytes;
    match idx_from_bytes(Path::new("fuzz.idx"), data.to_vec()) {
        Ok(a) => {
            assert!(
                !a.dims.is_empty() && a.dims.len() <= 255,
                "dims {:?}",
                a.dims
            );
            let count = a.dims.iter().try_fold(1usize, |p, d| p.checked_mul(*d));
            assert_eq!(
                count,
                Some(a.data.len()),
                "data length for dims {:?}",
                a.dims
            );
            let mut enc = vec![0u8, 0, 0x08, a.dims.len() as u8];
            for d in &a.dims {
                let d = u32::try_from(*d).expect("a dimension read from 4 bytes fits u32");
                enc.extend_from_slice(&d.to_be_bytes());
            }
            enc.extend_from_slice(&a.data);
            if data.starts_with(&[0x1f, 0x8b]) {
                let mut plain = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data), &mut plain)
                    .expect("the reader decompressed this stream");
                assert_eq!(
                    enc, plain,
                    "IDX re-encoding differs from the decompressed input"
                );
            } else {
                assert_eq!(enc, data, "IDX re-encoding differs from the input");
            }
            Outcome::Value
        }
        Err(e) => reader_error(e.to_string(), "fuzz.idx"),
    }
}

/// The vector reader of `gradmat quadform` (`cli::io`) on arbitrary bytes: no panic; a typed
/// error naming the file (and the line), or finite values, one per number line (lines that are
/// blank or start with `#` after blanks are skipped), that print in `%.17e` form and read back
/// bit for bit.
pub fn check_vector(data: &[u8]) -> Outcome {
    use crate::cli::io::{format_c_exp17, parse_vector, vector_from_bytes};
    match vector_from_bytes(Path::new("fuzz.txt"), data.to_vec()) {
        Ok(v) => {
            assert!(v.iter().all(|x| x.is_finite()), "non-finite value accepted");
            let text = std::str::from_utf8(data).expect("the reader accepted this text");
            let lines = text
                .lines()
                .map(str::trim)
                .filter(|t| !t.is_empty() && !t.starts_with('#'))
                .count();
            assert_eq!(v.len(), lines, "one value per number line");
            let written: String = v.iter().map(|x| format_c_exp17(*x) + "\n").collect();
            let back = parse_vector(&written).expect("reading back a written vector");
            assert_eq!(back.len(), v.len());
            assert!(
                back.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()),
                "vector round trip"
            );
            Outcome::Value
        }
        Err(e) => reader_error(format!("{e:#}"), "fuzz.txt"),
    }
}
