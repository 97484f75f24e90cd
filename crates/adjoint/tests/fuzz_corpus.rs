//! Stable replay of this crate's fuzz corpora (`lanczos`, `arnoldi`: decomposition and adjoint):
//! every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! check function the cargo-fuzz target calls (`gradmat_adjoint::fuzz`), so
//! `cargo test -p gradmat-adjoint` exercises the fuzz properties on a stable toolchain. A
//! violated property fails the test with the file's name.

use gradmat_adjoint::fuzz::TARGETS;
use gradmat_operators::fuzz::{check_fuzz_manifest, replay_corpus, replay_regressions};
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
    check_fuzz_manifest(&fuzz_dir(), "gradmat_adjoint", TARGETS);
}
