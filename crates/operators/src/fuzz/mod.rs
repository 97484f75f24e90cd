//! Fuzz properties of this crate and the support every gradmat crate's fuzz module shares
//! (feature `fuzzing`; not part of the public API). See `docs/reliability.md`.
//!
//! The properties that gradmat's fuzz targets check live with the code they fuzz, as plain
//! functions of a byte string, so that the same code runs in two places:
//!
//! * the cargo-fuzz targets in `fuzz/` (nightly, libFuzzer), each a one-line
//!   `fuzz_target!(|data| { gradmat_<crate>::fuzz::check_<target>(data); })`;
//! * the stable corpus replay of the crate that owns the target (`tests/fuzz_corpus.rs` in each
//!   crate, through [`replay_corpus`] and [`replay_regressions`]), which feeds every file of
//!   `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through the same function under
//!   `cargo test -p <crate>` (and so under `cargo test --workspace`).
//!
//! Each `check_*` function decodes its input, calls the library, and **panics** when a property
//! fails (that is what the fuzzer reports as a crash). The property is always: no panic and no
//! hang inside the library; either a typed error or finite results that satisfy the invariants
//! of the computation (decomposition identities, orthogonality where promised, round trips).
//! Each returns an [`Outcome`] so that the replay can report how many inputs reached a value and
//! how many a typed error.
//!
//! This crate's targets ([`TARGETS`]): `matrix_market` ([`check_matrix_market`]) and
//! `csr_raw_parts` ([`check_csr_raw_parts`]). Shared by the other crates: the byte decoding
//! ([`bytes`]), the unchecked test operator ([`raw::RawMatrix`]), [`Outcome`] and the replay
//! helpers (which read the committed corpus files: test support, not I/O of the library).
//!
//! Sizes decoded from fuzz input are kept small (dimensions ≤ 8) so that one execution takes
//! microseconds; nothing here allocates more than a few kilobytes except the Matrix Market
//! reader, whose conversions are capped at [`MAX_CONVERT_DIM`].

pub mod bytes;
mod csr;
mod matrix_market;
pub mod raw;

pub use csr::check_csr_raw_parts;
pub use matrix_market::{check_matrix_market, MAX_CONVERT_DIM};

use std::path::{Path, PathBuf};

/// The stable replay tests of a crate's fuzz targets, for its `tests/fuzz_corpus.rs`:
/// `corpus_replay` and `regressions_replay` feed every file of `fuzz/corpus/<target>/` and
/// `fuzz/regressions/<target>/` (relative to the calling crate, two levels up) through the
/// targets' checks; with `manifest: "<crate_name>"` also `fuzz_targets_match_checks`, which
/// checks that every target has a `[[bin]]` in `fuzz/Cargo.toml` calling
/// `<crate_name>::fuzz::check_<target>(`.
#[macro_export]
macro_rules! fuzz_replay_tests {
    ($targets:expr) => {
        fn fuzz_dir() -> ::std::path::PathBuf {
            ::std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
        }

        #[test]
        fn corpus_replay() {
            $crate::fuzz::replay_corpus(&fuzz_dir(), $targets);
        }

        #[test]
        fn regressions_replay() {
            $crate::fuzz::replay_regressions(&fuzz_dir(), $targets);
        }
    };
    ($targets:expr, manifest: $krate:literal) => {
        $crate::fuzz_replay_tests!($targets);

        /// Every target has a `[[bin]]` in `fuzz/Cargo.toml` and a source file calling its check.
        #[test]
        fn fuzz_targets_match_checks() {
            $crate::fuzz::check_fuzz_manifest(&fuzz_dir(), $krate, $targets);
        }
    };
}

/// What one input led to (a property violation panics instead).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The library returned finite results that passed the invariant checks.
    Value,
    /// The library returned a typed error (its message).
    Error(String),
    /// The input was too short or otherwise not decodable into a call.
    Skipped,
}

/// A check function: decodes a fuzz input, runs the library, panics on a violated property.
pub type Check = fn(&[u8]) -> Outcome;

/// This crate's fuzz targets, by name (the directories of `fuzz/corpus/` and the `[[bin]]`s of
/// `fuzz/Cargo.toml`), with their check functions.
pub const TARGETS: &[(&str, Check)] = &[
    ("matrix_market", check_matrix_market),
    ("csr_raw_parts", check_csr_raw_parts),
];

/// `Outcome::Error` with the error's message.
pub fn err(e: impl std::fmt::Display) -> Outcome {
    Outcome::Error(e.to_string())
}

/// Equal values (bit patterns, or both zero of either sign).
pub fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0)
}

/// Whether every entry is finite.
pub fn all_finite(x: &[f64]) -> bool {
    x.iter().all(|v| v.is_finite())
}

// ---------------------------------------------------------------------------------------------
// Stable corpus replay (the tests `tests/fuzz_corpus.rs` of each crate)
// ---------------------------------------------------------------------------------------------

/// Counts of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Files replayed.
    pub files: usize,
    /// Inputs that reached a value.
    pub values: usize,
    /// Inputs that reached a typed error.
    pub errors: usize,
    /// Inputs that were not decodable into a call.
    pub skipped: usize,
}

/// The regular files of `dir`, sorted (none when `dir` does not exist).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Feeds every file of `dir` through `check`; a violated property fails with the file's name.
pub fn replay_dir(target: &str, check: Check, dir: &Path) -> Replayed {
    let mut r = Replayed::default();
    for path in files(dir) {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        r.files += 1;
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(Outcome::Value) => r.values += 1,
            Ok(Outcome::Error(_)) => r.errors += 1,
            Ok(Outcome::Skipped) => r.skipped += 1,
            Err(_) => panic!("{target}: property violated on {}", path.display()),
        }
    }
    r
}

/// Replays `fuzz_dir/corpus/<target>/` for every target: each committed corpus has at least 5
/// files, and reaches both a value and a typed error (a corpus that never reaches one of them
/// exercises half the contract).
pub fn replay_corpus(fuzz_dir: &Path, targets: &[(&str, Check)]) {
    for (target, check) in targets {
        let dir = fuzz_dir.join("corpus").join(target);
        let r = replay_dir(target, *check, &dir);
        println!(
            "{target}: {} corpus files: {} values, {} typed errors, {} skipped",
            r.files, r.values, r.errors, r.skipped
        );
        assert!(
            r.files >= 5,
            "{target}: the committed corpus {} has only {} files",
            dir.display(),
            r.files
        );
        assert!(r.values > 0, "{target}: no corpus input reached a value");
        assert!(
            r.errors > 0,
            "{target}: no corpus input reached a typed error"
        );
    }
}

/// Replays the crash regressions `fuzz_dir/regressions/<target>/` for every target (each must
/// now pass its property).
pub fn replay_regressions(fuzz_dir: &Path, targets: &[(&str, Check)]) {
    for (target, check) in targets {
        let r = replay_dir(target, *check, &fuzz_dir.join("regressions").join(target));
        println!(
            "{target}: {} regressions: {} values, {} typed errors, {} skipped",
            r.files, r.values, r.errors, r.skipped
        );
    }
}

/// Every target has a `[[bin]]` in `fuzz_dir/Cargo.toml` and a source file
/// `fuzz_targets/<target>.rs` calling `<krate>::fuzz::check_<target>(`.
pub fn check_fuzz_manifest(fuzz_dir: &Path, krate: &str, targets: &[(&str, Check)]) {
    let manifest = std::fs::read_to_string(fuzz_dir.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", fuzz_dir.display()));
    for (target, _) in targets {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        let src = std::fs::read_to_string(fuzz_dir.join(format!("fuzz_targets/{target}.rs")))
            .unwrap_or_else(|_| panic!("fuzz/fuzz_targets/{target}.rs is missing"));
        assert!(
            src.contains(&format!("{krate}::fuzz::check_{target}(")),
            "fuzz/fuzz_targets/{target}.rs does not call {krate}::fuzz::check_{target}"
        );
    }
}
