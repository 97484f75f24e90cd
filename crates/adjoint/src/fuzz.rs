//! The `lanczos` and `arnoldi` fuzz properties: a Krylov decomposition and its adjoint
//! (feature `fuzzing`; not part of the public API). See `docs/reliability.md`.
//!
//! The decoding of a case and the properties of the decomposition are in `gradmat-krylov`
//! (`gradmat_krylov::fuzz::{lanczos_case, arnoldi_case}`), with the code they fuzz; the checks
//! here continue on the same input with arbitrary cotangents and check the adjoint. This
//! crate's `tests/fuzz_corpus.rs` replays the committed corpora and regressions of both targets.

use crate::{arnoldi_vjp, lanczos_vjp, AdjointParams, ArnoldiCotangent, LanczosCotangent};
use gradmat_krylov::fuzz::{arnoldi_case, lanczos_case, ArnoldiCase, LanczosCase};
use gradmat_operators::fuzz::bytes::Bytes;
use gradmat_operators::fuzz::{all_finite, err, Check, Outcome};
use gradmat_operators::Operator;

/// This crate's fuzz targets, by name (the directories of `fuzz/corpus/` and the `[[bin]]`s of
/// `fuzz/Cargo.toml`), with their check functions.
pub const TARGETS: &[(&str, Check)] = &[("lanczos", check_lanczos), ("arnoldi", check_arnoldi)];

/// Lanczos (three-term or fully reorthogonalised, optionally with the self-adjointness check)
/// and its adjoint on an arbitrary small matrix (dimension ≤ 8, optionally symmetrised, any
/// entries including NaN and ±∞), start vector, depth `0..=N+1` and cotangents.
///
/// Properties: no panic; on well-posed input (finite moderate data, nonzero start vector,
/// `1 ≤ K ≤ N`, symmetric matrix) the run succeeds; a result has the reported shapes, finite
/// entries, unit basis vectors, `x₀ = c·v`, and satisfies `A Q = Q T + r e_{K-1}ᵀ` to rounding
/// (three-term: for any matrix; reorthogonalised: for a symmetric one, where also `QᵀQ = I`);
/// with the check requested, a non-symmetric matrix is rejected or its asymmetry is within the
/// tolerance (all checked by [`lanczos_case`]); the adjoint returns finite `v̄` and `θ̄` or a
/// typed error.
pub fn check_lanczos(data: &[u8]) -> Outcome {
    let mut b = Bytes::new(data);
    let LanczosCase { a, dec } = match lanczos_case(&mut b) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let (n, kk) = (a.nrows(), dec.depth());
    // Adjoint with arbitrary cotangents.
    let abar = b.f64s(kk);
    let bbar = b.f64s(kk - 1);
    let cmode = b.u8();
    let qbar = b.f64s(if cmode & 1 != 0 { n * kk } else { 0 });
    let rbar = b.f64s(if cmode & 2 != 0 { n } else { 0 });
    let cbar = if cmode & 4 != 0 { b.f64() } else { 0.0 };
    let cot = LanczosCotangent {
        basis: (cmode & 1 != 0).then_some(&qbar[..]),
        diagonal: Some(&abar),
        off_diagonal: Some(&bbar),
        residual: (cmode & 2 != 0).then_some(&rbar[..]),
        inv_norm: cbar,
    };
    let mut grad = vec![0.0; n * n];
    match lanczos_vjp(&a, &dec, &cot, &AdjointParams::default(), &mut grad) {
        Ok(vbar) => {
            assert_eq!(vbar.len(), n);
            assert!(
                all_finite(&vbar),
                "lanczos_vjp returned non-finite v̄ {vbar:?}"
            );
            assert!(all_finite(&grad), "lanczos_vjp returned non-finite θ̄");
            Outcome::Value
        }
        Err(e) => err(e),
    }
}

/// Arnoldi (with or without reorthogonalisation) and its adjoint (with or without
/// re-projection) on an arbitrary small matrix, start vector, depth and cotangents.
///
/// Properties: no panic; on well-posed input the run succeeds; a result has the reported
/// shapes, finite entries, unit basis vectors, an upper Hessenberg `H`, and satisfies
/// `A Q = Q H + r e_{K-1}ᵀ` to rounding (and `QᵀQ = I` when reorthogonalised); the adjoint
/// returns finite `v̄` and `θ̄` or a typed error. (The decomposition's properties are checked by
/// [`arnoldi_case`].)
pub fn check_arnoldi(data: &[u8]) -> Outcome {
    let mut b = Bytes::new(data);
    let ArnoldiCase { a, dec } = match arnoldi_case(&mut b) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let (n, kk) = (a.nrows(), dec.depth());
    let cmode = b.u8();
    let hbar = b.f64s(kk * kk);
    let qbar = b.f64s(if cmode & 1 != 0 { n * kk } else { 0 });
    let rbar = b.f64s(if cmode & 2 != 0 { n } else { 0 });
    let cbar = if cmode & 4 != 0 { b.f64() } else { 0.0 };
    let cot = ArnoldiCotangent {
        basis: (cmode & 1 != 0).then_some(&qbar[..]),
        hessenberg: Some(&hbar),
        residual: (cmode & 2 != 0).then_some(&rbar[..]),
        inv_norm: cbar,
    };
    let params = AdjointParams {
        project: cmode & 8 == 0,
        ..AdjointParams::default()
    };
    let mut grad = vec![0.0; n * n];
    match arnoldi_vjp(&a, &dec, &cot, &params, &mut grad) {
        Ok(vbar) => {
            assert_eq!(vbar.len(), n);
            assert!(
                all_finite(&vbar),
                "arnoldi_vjp returned non-finite v̄ {vbar:?}"
            );
            assert!(all_finite(&grad), "arnoldi_vjp returned non-finite θ̄");
            Outcome::Value
        }
        Err(e) => err(e),
    }
}
