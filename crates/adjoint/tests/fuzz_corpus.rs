//! Stable replay of this crate's fuzz corpora (`lanczos`, `arnoldi`: decomposition and adjoint):
//! every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! check function the cargo-fuzz target calls (`gradmat_adjoint::fuzz`), so
//! `cargo test -p gradmat-adjoint` exercises the fuzz properties on a stable toolchain. A
//! violated property fails the test with the file's name.

gradmat_operators::fuzz_replay_tests!(gradmat_adjoint::fuzz::TARGETS, manifest: "gradmat_adjoint");
