//! Stable replay of this crate's fuzz corpora (`matrix_market`, `csr_raw_parts`): every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same check function
//! the cargo-fuzz target calls (`gradmat_operators::fuzz`), so `cargo test -p gradmat-operators`
//! exercises the fuzz properties on a stable toolchain. A violated property fails the test with
//! the file's name.

use gradmat_operators::fuzz::{check_fuzz_manifest, replay_corpus, replay_regressions, TARGETS};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn corpus_replay() {
    replay_corpus(&fuzz_dir(), TARGETS);
}

#[test]
fn regressions_replay() {
    replay_regressions(&fuzz_dir(), TARGETS);
}

/// Every target has a `[[bin]]` in `fuzz/Cargo.toml` and a source file calling its check.
#[test]
fn fuzz_targets_match_checks() {
    check_fuzz_manifest(&fuzz_dir(), "gradmat_operators", TARGETS);
}
