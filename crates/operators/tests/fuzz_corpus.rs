//! Stable replay of this crate's fuzz corpora (`matrix_market`, `csr_raw_parts`): every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same check function
//! the cargo-fuzz target calls (`gradmat_operators::fuzz`), so `cargo test -p gradmat-operators`
//! exercises the fuzz properties on a stable toolchain. A violated property fails the test with
//! the file's name.

gradmat_operators::fuzz_replay_tests!(gradmat_operators::fuzz::TARGETS, manifest: "gradmat_operators");
