//! Stable replay of this crate's fuzz corpus (`dense_matfun`): every file of
//! `fuzz/corpus/dense_matfun/` and `fuzz/regressions/dense_matfun/` goes through the same check
//! function the cargo-fuzz target calls (`gradmat_matfun::fuzz`), so
//! `cargo test -p gradmat-matfun` exercises the fuzz property on a stable toolchain. A violated
//! property fails the test with the file's name.

gradmat_operators::fuzz_replay_tests!(gradmat_matfun::fuzz::TARGETS, manifest: "gradmat_matfun");
