//! Fuzz properties (issue 7; see `docs/reliability.md`), shared by cargo-fuzz and the stable
//! corpus replay. (Kept in `gradmat-apps` so that the workspace keeps its five crates; the fuzz
//! crate depends on `gradmat-apps` by path.)
//!
//! Reliability checks of gradmat (issue 7; see `docs/reliability.md`): the fuzz properties and
//! the scale checks.
//!
//! **Fuzz properties.** The properties that gradmat's fuzz targets check, as plain functions of
//! a byte string, so that the same code runs in two places:
//!
//! * the cargo-fuzz targets in `fuzz/` (nightly, libFuzzer), each a one-line
//!   `fuzz_target!(|data| { check_xxx(data); })`;
//! * the stable corpus replay (`crates/apps/tests/corpus_replay.rs`), which feeds every file
//!   of `fuzz/corpus/<target>/` through the same function under `cargo test --workspace`.
//!
//! Each `check_*` function decodes its input, calls the library, and **panics** when a property
//! fails (that is what the fuzzer reports as a crash). The property is always: no panic and no
//! hang inside the library; either a typed error or finite results that satisfy the invariants
//! of the computation (decomposition identities, orthogonality where promised, round trips).
//! Each returns an [`Outcome`] so that the replay can report how many inputs reached a value
//! and how many a typed error.
//!
//! **Scale checks** (`examples/`): peak-memory runs of the kernel operator's block apply at
//! n = 100,000 (the Lanczos + adjoint run at N = 10⁶ is `gradmat-adjoint`'s `bench_krylov`
//! example).
//!
//! Sizes decoded from fuzz input are kept small (dimensions ≤ 8) so that one execution takes
//! microseconds; nothing here allocates more than a few kilobytes except the Matrix Market
//! reader, whose conversions are capped at [`MAX_CONVERT_DIM`].

pub mod bytes;
mod checks;
pub mod raw;

pub use checks::{
    check_arnoldi, check_csr_raw_parts, check_csv, check_dense_matfun, check_lanczos,
    check_matrix_market, Check, MAX_CONVERT_DIM, TARGETS,
};

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
