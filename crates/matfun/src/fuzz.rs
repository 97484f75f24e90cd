//! The `dense_matfun` fuzz property: the dense matrix functions on arbitrary small matrices
//! (feature `fuzzing`; not part of the public API). See `docs/reliability.md`. This crate's
//! `tests/fuzz_corpus.rs` replays the committed corpus and regressions.

use crate::dense::{
    expm, expm_frechet, expm_pullback, expm_scaled, MatrixFunction, SymmetricEigen,
    SymmetricMatrixFunction,
};
use crate::MatfunError;
use gradmat_operators::fuzz::bytes::Bytes;
use gradmat_operators::fuzz::{all_finite, Check, Outcome};

/// This crate's fuzz targets, by name (the directories of `fuzz/corpus/` and the `[[bin]]`s of
/// `fuzz/Cargo.toml`), with their check functions.
pub const TARGETS: &[(&str, Check)] = &[("dense_matfun", check_dense_matfun)];

/// The dense matrix functions on arbitrary small matrices (dimension 0..=6, any entries):
/// the symmetric path for every built-in function with its reverse rules, and the Padé `exp`
/// with its Fréchet derivative, pullback and scaled form.
///
/// Properties: no panic; every `Ok` result is finite; `f(A)` from the symmetric path is
/// symmetric; for a symmetric matrix of moderate norm the Padé `exp` agrees with the
/// eigendecomposition's; and (added with the fix of the first finding) the eigendecomposition
/// of any finite, exactly symmetric matrix succeeds unless an eigenvalue overflows, with
/// ascending eigenvalues, orthonormal eigenvectors and `S diag(θ) Sᵀ = A` to `1e-10·max|A|`
/// ([`check_eigendecomposition`]).
pub fn check_dense_matfun(data: &[u8]) -> Outcome {
    let mut b = Bytes::new(data);
    let n = b.range(0, 6);
    let mode = b.u8();
    let fsel = b.u8();
    let param = b.f64();
    let f = match fsel % 8 {
        0 => MatrixFunction::Exp,
        1 => MatrixFunction::ScaledExp(param),
        2 => MatrixFunction::Log,
        3 => MatrixFunction::Sqrt,
        4 => MatrixFunction::InvSqrt,
        5 => MatrixFunction::Inv,
        6 => MatrixFunction::PowI((param as i32).clamp(-40, 40)),
        _ => MatrixFunction::Pow(param),
    };
    let len = if mode & 8 == 0 { n * n } else { b.range(0, 40) };
    let mut a = b.f64s(len);
    if mode & 1 == 0 && len == n * n {
        for j in 0..n {
            for i in 0..j {
                a[i + j * n] = a[j + i * n];
            }
        }
    }
    if mode & 1 == 0 && len == n * n && n > 0 && all_finite(&a) {
        check_eigendecomposition(n, &a);
    }
    let mbar = b.f64s(n * n);
    let rho = b.f64();
    let mut values = 0;
    let mut last_err = None;
    match SymmetricMatrixFunction::<f64>::new(f, n, &a) {
        Ok(m) => {
            values += 1;
            let val = m.value();
            assert!(all_finite(&val), "f(A) not finite: {val:?}");
            let scale = val.iter().fold(0.0f64, |s, x| s.max(x.abs()));
            for i in 0..n {
                for j in 0..n {
                    assert!(
                        (val[i + j * n] - val[j + i * n]).abs() <= 1e-12 * scale,
                        "f(A) not symmetric"
                    );
                }
            }
            assert!(m.quadratic_form().is_finite(), "e0ᵀf(A)e0 not finite");
            assert!(all_finite(&m.apply_e0()), "f(A)e0 not finite");
            if let Ok(g) = m.pullback(&mbar) {
                assert!(all_finite(&g), "pullback not finite");
            }
            if let Ok(g) = m.pullback_quadratic_form(rho) {
                assert!(all_finite(&g), "quadratic-form pullback not finite");
            }
            if let Ok(y) = m.apply(&mbar[..n]) {
                assert!(all_finite(&y), "f(A)v not finite");
            }
        }
        Err(e) => last_err = Some(e.to_string()),
    }
    match expm(n, &a) {
        Ok(e) => {
            values += 1;
            assert!(all_finite(&e), "expm not finite");
            let moderate = a.iter().all(|x| x.abs() <= 4.0);
            if moderate && a.len() == n * n && n > 0 && mode & 1 == 0 {
                let s = SymmetricMatrixFunction::<f64>::new(MatrixFunction::Exp, n, &a)
                    .expect("exp of a moderate symmetric matrix");
                let sv = s.value();
                let nrm = sv.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                for (p, q) in e.iter().zip(&sv) {
                    assert!(
                        (p - q).abs() <= 1e-10 * nrm,
                        "Padé exp {p} vs eigen exp {q}"
                    );
                }
            }
        }
        Err(e) => last_err = Some(e.to_string()),
    }
    if let Ok(l) = expm_frechet(n, &a, &mbar) {
        assert!(all_finite(&l), "Fréchet derivative not finite");
    }
    if let Ok(l) = expm_pullback(n, &a, &mbar) {
        assert!(all_finite(&l), "exp pullback not finite");
    }
    if let Ok(l) = expm_scaled(n, &a, param) {
        assert!(all_finite(&l), "exp(tA) not finite");
    }
    match (values, last_err) {
        (0, Some(e)) => Outcome::Error(e),
        _ => Outcome::Value,
    }
}

/// The eigendecomposition of a finite, exactly symmetric `n×n` matrix (`n ≥ 1`): it succeeds
/// unless an eigenvalue overflows (`NonFiniteResult`, possible only when `n·max|A|` exceeds
/// `f64::MAX`); the eigenvalues are finite and ascending, `SᵀS = I` and `S diag(θ) Sᵀ = A` to
/// `1e-10` relative to `max|A|` (checked on `A/max|A|`, so nothing overflows). Before the fix,
/// matrices whose largest entry was subnormal failed and some near the underflow threshold
/// decomposed wrongly (see `SymmetricEigen`).
pub fn check_eigendecomposition(n: usize, a: &[f64]) {
    let amax = a.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let eig = match SymmetricEigen::new(n, a) {
        Ok(e) => e,
        Err(MatfunError::NonFiniteResult { .. }) => {
            assert!(
                amax > f64::MAX / n as f64,
                "eigenvalue overflow reported for max|A| = {amax:e}"
            );
            return;
        }
        Err(e) => panic!("eigendecomposition of a finite symmetric matrix failed: {e}"),
    };
    let (theta, s) = (eig.values(), eig.vectors());
    assert!(all_finite(theta), "non-finite eigenvalue {theta:?}");
    assert!(
        theta.windows(2).all(|w| w[0] <= w[1]),
        "eigenvalues not ascending: {theta:?}"
    );
    if amax == 0.0 {
        assert!(theta.iter().all(|t| *t == 0.0), "zero matrix: {theta:?}");
        return;
    }
    for i in 0..n {
        for j in 0..n {
            let qtq: f64 = (0..n).map(|l| s[(l, i)] * s[(l, j)]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!(
                (qtq - want).abs() <= 1e-10,
                "SᵀS − I = {:e} at ({i}, {j})",
                qtq - want
            );
            let rec: f64 = (0..n)
                .map(|l| s[(i, l)] * (theta[l] / amax) * s[(j, l)])
                .sum();
            let err = (rec - a[i + j * n] / amax).abs();
            // Eigenvalues in the subnormal range are exact only to the smallest subnormal
            // (2⁻¹⁰⁷⁴) absolutely: relative to max|A| that is a floor of n·2⁻¹⁰⁷⁴/max|A|.
            let floor = 4.0 * n as f64 * f64::from_bits(1) / amax;
            assert!(
                err <= 1e-10 + floor,
                "S diag(θ) Sᵀ − A = {err:e}·max|A| at ({i}, {j}); θ = {theta:?}"
            );
        }
    }
}
