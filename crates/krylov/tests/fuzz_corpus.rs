//! Stable replay of the `lanczos` and `arnoldi` fuzz corpora through the forward half of their
//! properties (`gradmat_krylov::fuzz`): every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` is decoded as the fuzz target decodes it and the decomposition's
//! properties are checked, so `cargo test -p gradmat-krylov` checks them without the adjoint.
//! (The full targets, decomposition and adjoint, are replayed by gradmat-adjoint's
//! `tests/fuzz_corpus.rs`.)

use gradmat_krylov::fuzz::FORWARD_TARGETS;
use gradmat_operators::fuzz::{replay_corpus, replay_regressions};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

#[test]
fn corpus_replay_forward() {
    replay_corpus(&fuzz_dir(), FORWARD_TARGETS);
}

#[test]
fn regressions_replay_forward() {
    replay_regressions(&fuzz_dir(), FORWARD_TARGETS);
}
