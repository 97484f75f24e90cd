//! Stable replay of the `lanczos` and `arnoldi` fuzz corpora through the forward half of their
//! properties (`gradmat_krylov::fuzz`): every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` is decoded as the fuzz target decodes it and the decomposition's
//! properties are checked, so `cargo test -p gradmat-krylov` checks them without the adjoint.
//! (The full targets, decomposition and adjoint, are replayed by gradmat-adjoint's
//! `tests/fuzz_corpus.rs`.)

gradmat_operators::fuzz_replay_tests!(gradmat_krylov::fuzz::FORWARD_TARGETS);
