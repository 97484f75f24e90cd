//! Krylov matrix functions `f(A)v` and `vᵀf(A)v` (Lanczos and Arnoldi) and their gradients.
//!
//! # References and tolerances
//!
//! **Full depth** (`K = N`, or an invariant subspace met earlier): the Krylov approximations
//! are exact, so the values are compared with `f(A)` of the whole dense matrix (faer's
//! self-adjoint eigensolver through `dense::SymmetricMatrixFunction`, or the Padé `dense::expm`
//! for general `A`), and the gradients with the closed-form derivative of `f` applied to the
//! whole matrix: Daleckii–Krein `Ā = S(F∘(SᵀM̄S))Sᵀ` with `M̄ = vvᵀ` (quadratic form) or
//! `M̄ = w̄vᵀ` (`f(A)v`), mapped to the lower-triangle parameters (`Ā_ij + Ā_ji` off the
//! diagonal), `v̄ = (f(A) + f(A)ᵀ)v` or `f(A)ᵀw̄`; for general `A` and `exp(t·)`,
//! `Ā = t·L_exp(tAᵀ, M̄)` and `t̄ = ⟨M̄, A exp(tA)⟩`. With full reorthogonalisation the Krylov
//! results carry backward errors of order `N·eps·‖A‖` in `A`; through `f` these are amplified
//! by at most the condition number of `f` on the spectrum, which for the spectra drawn here
//! (`[1e-2, 1]`, `f` = log, exp, √, 1/√, 1/x, exp(0.7·)) is at most `‖A⁻¹‖·‖A‖ = 1e2` for the
//! value and `1e4` for the derivative of `1/x`. Tolerance: `1e-9` relative (in the max norm of
//! the compared vector), which leaves a factor ≥ 100 over `N·eps·1e4 ≈ 3e-11`. Measured worst
//! over the suite: printed with `--nocapture` (typically 1e-13..1e-11).
//!
//! **Partial depth:** the gradient of the approximation is compared with Richardson-extrapolated
//! central differences of the approximation itself, along random directions in `θ`, `v` and `t`
//! (step ladder as in `gradmat-adjoint`'s tests: the step is chosen by the FD values alone).
//! Tolerance `1e-6` relative to `max(|fd|, |adj|, ‖g‖‖d‖/√len)` (the FD reference's own
//! uncertainty is 1e-9..1e-12 on these smooth functionals).

use gradmat_krylov::arnoldi::Reorthogonalize;
use gradmat_matfun::dense::{
    expm_scaled, expm_scaled_pullback, MatrixFunction, SymmetricMatrixFunction,
};
use gradmat_matfun::krylov::{
    apply_arnoldi, apply_lanczos, quadform_arnoldi, quadform_lanczos, ArnoldiQuadForm,
    KrylovParams, LanczosQuadForm,
};
use gradmat_matfun::MatfunError;
use gradmat_operators::csr::SymCsrMatrix;
use gradmat_operators::dense::{DenseMatrix, SymmetricDense};
use gradmat_operators::testing::{matrix_with_spectrum, random_vector};
use gradmat_operators::{ParamVjp, SetParams};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOL_FULL: f64 = 1e-9;
const TOL_FD: f64 = 1e-6;

fn functions() -> Vec<MatrixFunction> {
    vec![
        MatrixFunction::Log,
        MatrixFunction::Exp,
        MatrixFunction::ScaledExp(0.7),
        MatrixFunction::Sqrt,
        MatrixFunction::InvSqrt,
        MatrixFunction::Inv,
    ]
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// `max|a − b| / max(max|b|, floor)`.
fn rel_vec(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    d / max_abs(b).max(1e-300)
}

fn matvec(n: usize, a: &[f64], x: &[f64]) -> Vec<f64> {
    (0..n)
        .map(|i| (0..n).map(|j| a[i + j * n] * x[j]).sum())
        .collect()
}

fn matvec_t(n: usize, a: &[f64], x: &[f64]) -> Vec<f64> {
    (0..n)
        .map(|j| (0..n).map(|i| a[i + j * n] * x[i]).sum())
        .collect()
}

/// Spectrum in `[1e-2, 1]`: log-uniform, or (kind 0) clustered on three values.
fn spectrum(n: usize, kind: u8, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut lam: Vec<f64> = (0..n)
        .map(|_| (-(100f64.ln()) * rng.random::<f64>()).exp())
        .collect();
    if kind == 0 {
        // Exactly repeated eigenvalues with well separated distinct values (factor 3): with
        // random distinct values two of them can nearly coincide, and then the Krylov gradient
        // is exact in exact arithmetic but its rounding error grows like eps/b² for the tiny
        // off-diagonal b, which no fixed tolerance covers.
        let d: Vec<f64> = [lam[0], 3.0 * lam[0], 9.0 * lam[0]][..n.min(3)].to_vec();
        for (i, l) in lam.iter_mut().enumerate() {
            *l = d[i % d.len()];
        }
    }
    lam
}

/// Lower-triangle parameters (SymmetricDense layout: column by column) of the full-matrix
/// cotangent `Ā`: `Ā_ii` on the diagonal, `Ā_ij + Ā_ji` off it.
fn lower_params_of(n: usize, abar: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * (n + 1) / 2);
    for j in 0..n {
        for i in j..n {
            out.push(if i == j {
                abar[i + j * n]
            } else {
                abar[i + j * n] + abar[j + i * n]
            });
        }
    }
    out
}

/// A symmetric CSR matrix holding the full dense `a` (lower triangle as triplets, row-major
/// order so that its CSR parameter order is row by row).
fn sym_csr(n: usize, a: &[f64]) -> SymCsrMatrix<f64> {
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        for j in 0..=i {
            r.push(i);
            c.push(j);
            v.push(a[i + j * n]);
        }
    }
    SymCsrMatrix::from_triplets(n, &r, &c, &v).unwrap()
}

/// Lower-triangle cotangent in the CSR (row-by-row) order.
fn csr_params_of(n: usize, abar: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..n {
        for j in 0..=i {
            out.push(if i == j {
                abar[i + j * n]
            } else {
                abar[i + j * n] + abar[j + i * n]
            });
        }
    }
    out
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn report(name: &str, err: f64, tol: f64) -> Result<(), TestCaseError> {
    if std::env::var_os("GRADMAT_VERBOSE").is_some() {
        eprintln!("{name}: {err:.3e}");
    }
    prop_assert!(err <= tol, "{name}: error {err:.3e} exceeds {tol:.1e}");
    Ok(())
}

proptest! {
    #![proptest_config(config(24))]

    /// Full depth, symmetric A (dense and CSR operators): values and gradients (θ̄, v̄, t̄) of
    /// vᵀf(A)v and f(A)v equal the dense closed forms for every function.
    #[test]
    fn full_depth_lanczos_matches_dense(n in 1usize..=10, kind in 0u8..3, seed in any::<u64>()) {
        let lam = spectrum(n, kind, seed);
        let a = matrix_with_spectrum(&lam, seed ^ 0x55);
        let sd = SymmetricDense::from_col_major(n, a.clone()).unwrap();
        let csr = sym_csr(n, &a);
        let v: Vec<f64> = random_vector(n, seed.wrapping_add(1));
        let wbar: Vec<f64> = random_vector(n, seed.wrapping_add(2));
        let p = KrylovParams::new(n);
        for f in functions() {
            let name = format!("{f:?} n={n} kind={kind}");
            let dense = SymmetricMatrixFunction::new(f.clone(), n, &a).unwrap();
            let fa_v = dense.apply(&v).unwrap();
            let rho = dot(&v, &fa_v);
            // Ā for M̄ = vvᵀ (pullback symmetrises M̄; vvᵀ is symmetric already).
            let vvt: Vec<f64> = (0..n * n).map(|p| v[p % n] * v[p / n]).collect();
            let abar_q = dense.pullback(&vvt).unwrap();
            let wvt: Vec<f64> = (0..n * n).map(|p| wbar[p % n] * v[p / n]).collect();
            // f(A)v with cotangent w̄: Ā = DK(sym(w̄vᵀ)) (symmetric parametrisation).
            let abar_w = dense.pullback(&wvt).unwrap();
            let fa_w = dense.apply(&wbar).unwrap();

            // Quadratic form on SymmetricDense.
            // The result type names the method (it was a run-time `Method::Lanczos` before).
            let qf: LanczosQuadForm<f64> = quadform_lanczos(&sd, &v, &f, &p).unwrap();
            report(&format!("quadform value {name}"), (qf.value() - rho).abs() / rho.abs().max(1e-300), TOL_FULL)?;
            let mut g = vec![0.0; sd.num_params()];
            let gr = qf.gradient(&sd, &mut g).unwrap();
            report(&format!("quadform θ̄ dense {name}"), rel_vec(&g, &lower_params_of(n, &abar_q)), TOL_FULL)?;
            let vbar_ref: Vec<f64> = fa_v.iter().map(|x| 2.0 * x).collect();
            report(&format!("quadform v̄ {name}"), rel_vec(&gr.v, &vbar_ref), TOL_FULL)?;
            if let MatrixFunction::ScaledExp(t) = f {
                // ∂/∂t vᵀexp(tA)v = vᵀ A exp(tA) v
                let tref = dot(&matvec(n, &a, &v), &fa_v);
                report(&format!("quadform t̄ {name}"), (gr.time.unwrap() - tref).abs() / tref.abs().max(1e-300), TOL_FULL)?;
                let _ = t;
            }

            // Quadratic form on SymCsrMatrix.
            let qf = quadform_lanczos(&csr, &v, &f, &p).unwrap();
            let mut g = vec![0.0; csr.num_params()];
            qf.gradient(&csr, &mut g).unwrap();
            report(&format!("quadform θ̄ csr {name}"), rel_vec(&g, &csr_params_of(n, &abar_q)), TOL_FULL)?;

            // f(A)v on SymmetricDense.
            let fv = apply_lanczos(&sd, &v, &f, &p).unwrap();
            report(&format!("apply value {name}"), rel_vec(fv.value(), &fa_v), TOL_FULL)?;
            if fv.depth() < n {
                // Breakdown (clustered spectra): the value is exact, but the gradient is that of
                // the depth-m approximation p(A)v, whose divided differences at eigenvalues
                // outside the Krylov space differ from f's (see the krylov module docs).
                continue;
            }
            let mut g = vec![0.0; sd.num_params()];
            let gr = fv.vjp(&sd, &wbar, &mut g).unwrap();
            report(&format!("apply θ̄ {name}"), rel_vec(&g, &lower_params_of(n, &abar_w)), TOL_FULL)?;
            report(&format!("apply v̄ {name}"), rel_vec(&gr.v, &fa_w), TOL_FULL)?;
            if let MatrixFunction::ScaledExp(_) = f {
                let tref = dot(&wbar, &matvec(n, &a, &fa_v));
                report(&format!("apply t̄ {name}"), (gr.time.unwrap() - tref).abs() / tref.abs().max(1e-300), TOL_FULL)?;
            }
            // f(A)v on CSR.
            let fv = apply_lanczos(&csr, &v, &f, &p).unwrap();
            let mut g = vec![0.0; csr.num_params()];
            fv.vjp(&csr, &wbar, &mut g).unwrap();
            report(&format!("apply θ̄ csr {name}"), rel_vec(&g, &csr_params_of(n, &abar_w)), TOL_FULL)?;
        }
    }

    /// Full depth, general A: vᵀexp(tA)v and exp(tA)v by Arnoldi equal the dense expm, with
    /// Ā = t·L_exp(tAᵀ, M̄), t̄ = ⟨M̄, A exp(tA)⟩ and v̄ from the dense formulas.
    #[test]
    fn full_depth_arnoldi_matches_dense(n in 1usize..=10, seed in any::<u64>(), t in -1.5f64..1.5) {
        let a: Vec<f64> = random_vector::<f64>(n * n, seed).iter().map(|x| x / (n as f64).sqrt()).collect();
        let op = DenseMatrix::from_col_major(n, n, a.clone()).unwrap();
        let v: Vec<f64> = random_vector(n, seed.wrapping_add(1));
        let wbar: Vec<f64> = random_vector(n, seed.wrapping_add(2));
        let e = expm_scaled(n, &a, t).unwrap();
        let ev = matvec(n, &e, &v);
        let p = KrylovParams::new(n);
        for f in [MatrixFunction::ScaledExp(t), MatrixFunction::Exp] {
            let tt = if let MatrixFunction::ScaledExp(_) = f { t } else { 1.0 };
            let e = expm_scaled(n, &a, tt).unwrap();
            let ev = matvec(n, &e, &v);
            let rho = dot(&v, &ev);
            let vvt: Vec<f64> = (0..n * n).map(|p| v[p % n] * v[p / n]).collect();
            let pb = expm_scaled_pullback(n, &a, tt, &vvt).unwrap();
            // The result type names the method (it was a run-time `Method::Arnoldi` before).
            let qf: ArnoldiQuadForm<f64> = quadform_arnoldi(&op, &v, &f, &p).unwrap();
            report("arnoldi quadform value", (qf.value() - rho).abs() / rho.abs().max(1e-300).max(dot(&v, &v) * 1e-3), TOL_FULL)?;
            let mut g = vec![0.0; op.num_params()];
            let gr = qf.gradient(&op, &mut g).unwrap();
            report("arnoldi quadform θ̄", rel_vec(&g, &pb.h), TOL_FULL)?;
            let vbar_ref: Vec<f64> = ev.iter().zip(matvec_t(n, &e, &v)).map(|(x, y)| x + y).collect();
            report("arnoldi quadform v̄", rel_vec(&gr.v, &vbar_ref), TOL_FULL)?;
            report("arnoldi quadform t̄", (gr.time.unwrap() - pb.t).abs() / pb.t.abs().max(max_abs(&pb.h)).max(1e-300), TOL_FULL)?;

            let fv = apply_arnoldi(&op, &v, &f, &p).unwrap();
            report("arnoldi apply value", rel_vec(fv.value(), &ev), TOL_FULL)?;
            let wvt: Vec<f64> = (0..n * n).map(|p| wbar[p % n] * v[p / n]).collect();
            let pb = expm_scaled_pullback(n, &a, tt, &wvt).unwrap();
            let mut g = vec![0.0; op.num_params()];
            let gr = fv.vjp(&op, &wbar, &mut g).unwrap();
            report("arnoldi apply θ̄", rel_vec(&g, &pb.h), TOL_FULL)?;
            report("arnoldi apply v̄", rel_vec(&gr.v, &matvec_t(n, &e, &wbar)), TOL_FULL)?;
            report("arnoldi apply t̄", (gr.time.unwrap() - pb.t).abs() / pb.t.abs().max(max_abs(&pb.h)).max(1e-300), TOL_FULL)?;
        }
        let _ = ev;
    }
}

// ---------------------------------------------------------------------------------------------
// Partial depth: finite differences of the approximation itself
// ---------------------------------------------------------------------------------------------

/// Richardson-extrapolated central differences on the ladder `h_max·3^{-i}`, `i = 0..8`,
/// returning the estimate where two successive steps agree best (the conformance kit's
/// [`gradmat_operators::testing::richardson_plateau`]).
fn central(f: &mut dyn FnMut(f64) -> f64, h_max: f64) -> f64 {
    gradmat_operators::testing::richardson_plateau(h_max, 3.0, 8, f)
}

fn fd_check(name: &str, fd: f64, adj: f64, scale: f64) -> Result<(), TestCaseError> {
    let err = (fd - adj).abs() / fd.abs().max(adj.abs()).max(scale).max(1e-300);
    report(name, err, TOL_FD)
}

fn axpy(x: &[f64], h: f64, d: &[f64]) -> Vec<f64> {
    x.iter().zip(d).map(|(a, b)| a + h * b).collect()
}

proptest! {
    #![proptest_config(config(16))]

    /// Partial depth Lanczos (with and without reorthogonalisation) on SymmetricDense and
    /// SymCsr: θ̄, v̄ and t̄ of vᵀf(A)v and of ⟨w̄, f(A)v⟩ against finite differences.
    #[test]
    fn partial_depth_lanczos_matches_fd(n in 6usize..=14, kfrac in 0.2f64..0.8, seed in any::<u64>(), reorth in any::<bool>()) {
        let lam = spectrum(n, 1, seed);
        let a = matrix_with_spectrum(&lam, seed ^ 0x77);
        let k = ((n as f64 * kfrac) as usize).max(2);
        // Without reorthogonalisation keep K small (orthogonality intact, see gradmat-adjoint).
        let (k, r) = if reorth { (k, Reorthogonalize::Full) } else { (k.min(4), Reorthogonalize::None) };
        let p = KrylovParams { reorthogonalize: r, ..KrylovParams::new(k) };
        let v: Vec<f64> = random_vector(n, seed.wrapping_add(1));
        let wbar: Vec<f64> = random_vector(n, seed.wrapping_add(2));
        let dv: Vec<f64> = random_vector(n, seed.wrapping_add(3));
        let sd = SymmetricDense::from_col_major(n, a.clone()).unwrap();
        let theta = sd.params_vec();
        let dth: Vec<f64> = random_vector(theta.len(), seed.wrapping_add(4));
        for f in [MatrixFunction::Log, MatrixFunction::ScaledExp(0.8), MatrixFunction::InvSqrt] {
            let name = format!("{f:?} n={n} k={k} {r:?}");
            let at = |th: &[f64]| SymmetricDense::from_lower(n, th).unwrap();
            // Quadratic form.
            let qf = quadform_lanczos(&sd, &v, &f, &p).unwrap();
            let mut g = vec![0.0; theta.len()];
            let gr = qf.gradient(&sd, &mut g).unwrap();
            let fd_th = central(&mut |h| quadform_lanczos(&at(&axpy(&theta, h, &dth)), &v, &f, &p).unwrap().value(), 1e-3);
            fd_check(&format!("partial quadform θ {name}"), fd_th, dot(&g, &dth), (dot(&g, &g) * dot(&dth, &dth) / g.len() as f64).sqrt())?;
            let fd_v = central(&mut |h| quadform_lanczos(&sd, &axpy(&v, h, &dv), &f, &p).unwrap().value(), 1e-3);
            fd_check(&format!("partial quadform v {name}"), fd_v, dot(&gr.v, &dv), (dot(&gr.v, &gr.v) * dot(&dv, &dv) / n as f64).sqrt())?;
            if let MatrixFunction::ScaledExp(t) = f {
                let fd_t = central(&mut |h| quadform_lanczos(&sd, &v, &MatrixFunction::ScaledExp(t + h), &p).unwrap().value(), 1e-3);
                fd_check(&format!("partial quadform t {name}"), fd_t, gr.time.unwrap(), 0.0)?;
            }
            // f(A)v contracted with w̄.
            let fv = apply_lanczos(&sd, &v, &f, &p).unwrap();
            let mut g = vec![0.0; theta.len()];
            let gr = fv.vjp(&sd, &wbar, &mut g).unwrap();
            let fd_th = central(&mut |h| dot(&wbar, apply_lanczos(&at(&axpy(&theta, h, &dth)), &v, &f, &p).unwrap().value()), 1e-3);
            fd_check(&format!("partial apply θ {name}"), fd_th, dot(&g, &dth), (dot(&g, &g) * dot(&dth, &dth) / g.len() as f64).sqrt())?;
            let fd_v = central(&mut |h| dot(&wbar, apply_lanczos(&sd, &axpy(&v, h, &dv), &f, &p).unwrap().value()), 1e-3);
            fd_check(&format!("partial apply v {name}"), fd_v, dot(&gr.v, &dv), (dot(&gr.v, &gr.v) * dot(&dv, &dv) / n as f64).sqrt())?;
            if let MatrixFunction::ScaledExp(t) = f {
                let fd_t = central(&mut |h| dot(&wbar, apply_lanczos(&sd, &v, &MatrixFunction::ScaledExp(t + h), &p).unwrap().value()), 1e-3);
                fd_check(&format!("partial apply t {name}"), fd_t, gr.time.unwrap(), 0.0)?;
            }
        }
        // Same on a symmetric CSR operator (log only).
        let csr = sym_csr(n, &a);
        let th_c = csr.params_vec();
        let d_c: Vec<f64> = random_vector(th_c.len(), seed.wrapping_add(5));
        let f = MatrixFunction::Log;
        let qf = quadform_lanczos(&csr, &v, &f, &p).unwrap();
        let mut g = vec![0.0; th_c.len()];
        qf.gradient(&csr, &mut g).unwrap();
        let fd = central(&mut |h| {
            let mut c = csr.clone();
            c.set_params(&axpy(&th_c, h, &d_c)).unwrap();
            quadform_lanczos(&c, &v, &f, &p).unwrap().value()
        }, 1e-3);
        fd_check("partial quadform θ csr", fd, dot(&g, &d_c), (dot(&g, &g) * dot(&d_c, &d_c) / g.len() as f64).sqrt())?;
    }

    /// Partial depth Arnoldi on a general dense matrix: θ̄, v̄, t̄ of vᵀexp(tA)v and
    /// ⟨w̄, exp(tA)v⟩ against finite differences.
    #[test]
    fn partial_depth_arnoldi_matches_fd(n in 5usize..=12, kfrac in 0.3f64..0.9, seed in any::<u64>(), t in -1.0f64..1.0) {
        let a: Vec<f64> = random_vector::<f64>(n * n, seed).iter().map(|x| x / (n as f64).sqrt()).collect();
        let op = DenseMatrix::from_col_major(n, n, a.clone()).unwrap();
        let k = ((n as f64 * kfrac) as usize).max(2);
        let p = KrylovParams::new(k);
        let v: Vec<f64> = random_vector(n, seed.wrapping_add(1));
        let wbar: Vec<f64> = random_vector(n, seed.wrapping_add(2));
        let dv: Vec<f64> = random_vector(n, seed.wrapping_add(3));
        let da: Vec<f64> = random_vector(n * n, seed.wrapping_add(4));
        let f = MatrixFunction::ScaledExp(t);
        let at = |x: &[f64]| DenseMatrix::from_col_major(n, n, x.to_vec()).unwrap();
        let qf = quadform_arnoldi(&op, &v, &f, &p).unwrap();
        let mut g = vec![0.0; n * n];
        let gr = qf.gradient(&op, &mut g).unwrap();
        let sc = |g: &[f64], d: &[f64]| (dot(g, g) * dot(d, d) / g.len() as f64).sqrt();
        let fd = central(&mut |h| quadform_arnoldi(&at(&axpy(&a, h, &da)), &v, &f, &p).unwrap().value(), 1e-3);
        fd_check("arnoldi quadform θ", fd, dot(&g, &da), sc(&g, &da))?;
        let fd = central(&mut |h| quadform_arnoldi(&op, &axpy(&v, h, &dv), &f, &p).unwrap().value(), 1e-3);
        fd_check("arnoldi quadform v", fd, dot(&gr.v, &dv), sc(&gr.v, &dv))?;
        let fd = central(&mut |h| quadform_arnoldi(&op, &v, &MatrixFunction::ScaledExp(t + h), &p).unwrap().value(), 1e-3);
        fd_check("arnoldi quadform t", fd, gr.time.unwrap(), 0.0)?;

        let fv = apply_arnoldi(&op, &v, &f, &p).unwrap();
        let mut g = vec![0.0; n * n];
        let gr = fv.vjp(&op, &wbar, &mut g).unwrap();
        let fd = central(&mut |h| dot(&wbar, apply_arnoldi(&at(&axpy(&a, h, &da)), &v, &f, &p).unwrap().value()), 1e-3);
        fd_check("arnoldi apply θ", fd, dot(&g, &da), sc(&g, &da))?;
        let fd = central(&mut |h| dot(&wbar, apply_arnoldi(&op, &axpy(&v, h, &dv), &f, &p).unwrap().value()), 1e-3);
        fd_check("arnoldi apply v", fd, dot(&gr.v, &dv), sc(&gr.v, &dv))?;
        let fd = central(&mut |h| dot(&wbar, apply_arnoldi(&op, &v, &MatrixFunction::ScaledExp(t + h), &p).unwrap().value()), 1e-3);
        fd_check("arnoldi apply t", fd, gr.time.unwrap(), 0.0)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Breakdown, clamping and errors
// ---------------------------------------------------------------------------------------------

/// Three distinct eigenvalues: Lanczos stops at depth 3 (invariant subspace), where the
/// quadrature and its gradient are exact.
#[test]
fn breakdown_is_exact() {
    let n = 12;
    let lam: Vec<f64> = (0..n).map(|i| [0.5, 1.0, 2.0][i % 3]).collect();
    let a = matrix_with_spectrum(&lam, 3);
    let sd = SymmetricDense::from_col_major(n, a.clone()).unwrap();
    let v: Vec<f64> = random_vector(n, 9);
    let dense = SymmetricMatrixFunction::new(MatrixFunction::Log, n, &a).unwrap();
    let fa_v = dense.apply(&v).unwrap();
    for r in [Reorthogonalize::Full, Reorthogonalize::None] {
        let qf = quadform_lanczos(
            &sd,
            &v,
            &MatrixFunction::Log,
            &KrylovParams {
                reorthogonalize: r,
                ..KrylovParams::new(10)
            },
        )
        .unwrap();
        assert_eq!(qf.depth(), 3, "{r:?}");
        let rho = dot(&v, &fa_v);
        assert!((qf.value() - rho).abs() <= 1e-12 * rho.abs(), "{r:?}");
        let mut g = vec![0.0; sd.num_params()];
        let gr = qf.gradient(&sd, &mut g).unwrap();
        let vvt: Vec<f64> = (0..n * n).map(|p| v[p % n] * v[p / n]).collect();
        let abar = dense.pullback(&vvt).unwrap();
        let e = rel_vec(&g, &lower_params_of(n, &abar));
        assert!(e < 1e-9, "{r:?}: θ̄ error {e:e}");
        let vbar: Vec<f64> = fa_v.iter().map(|x| 2.0 * x).collect();
        let e = rel_vec(&gr.v, &vbar);
        assert!(e < 1e-9, "{r:?}: v̄ error {e:e}");
    }
}

#[test]
fn depth_is_clamped_to_dimension() {
    let a = SymmetricDense::from_col_major(2, vec![2.0, 0.5, 0.5, 1.0]).unwrap();
    let qf = quadform_lanczos(
        &a,
        &[1.0, 2.0],
        &MatrixFunction::Exp,
        &KrylovParams::new(50),
    )
    .unwrap();
    assert!(qf.depth() <= 2);
    assert!(qf.num_matvecs() <= 2);
}

#[test]
fn errors_are_typed() {
    let a = SymmetricDense::from_col_major(2, vec![1.0, 2.0, 2.0, 1.0]).unwrap(); // eigenvalues -1, 3
    let v = [1.0, 0.3];
    let p = KrylovParams::new(2);
    match quadform_lanczos(&a, &v, &MatrixFunction::Log, &p) {
        Err(MatfunError::RitzValueOutsideDomain { ritz_value, .. }) => assert!(ritz_value < 0.0),
        other => panic!("expected RitzValueOutsideDomain, got {other:?}"),
    }
    let msg = quadform_lanczos(&a, &v, &MatrixFunction::Log, &p)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not positive definite"), "{msg}");
    assert!(matches!(
        quadform_lanczos(&a, &v, &MatrixFunction::Exp, &KrylovParams::new(0)),
        Err(MatfunError::InvalidParameter(_))
    ));
    assert!(matches!(
        quadform_lanczos(&a, &[1.0, 2.0, 3.0], &MatrixFunction::Exp, &p),
        Err(MatfunError::Krylov(_))
    ));
    assert!(matches!(
        quadform_lanczos(&a, &[0.0, 0.0], &MatrixFunction::Exp, &p),
        Err(MatfunError::Krylov(_))
    ));
    assert!(matches!(
        quadform_lanczos(&a, &[f64::NAN, 0.0], &MatrixFunction::Exp, &p),
        Err(MatfunError::Krylov(_))
    ));
    let g = DenseMatrix::from_col_major(2, 2, vec![1.0, 2.0, 0.0, 1.0]).unwrap();
    assert!(matches!(
        quadform_arnoldi(&g, &v, &MatrixFunction::Log, &p),
        Err(MatfunError::UnsupportedFunction { .. })
    ));
    assert!(matches!(
        apply_arnoldi(&g, &v, &MatrixFunction::ScaledExp(f64::NAN), &p),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
    let qf = quadform_lanczos(&a, &v, &MatrixFunction::Exp, &p).unwrap();
    let mut short = vec![0.0; 1];
    assert!(matches!(
        qf.gradient(&a, &mut short),
        Err(MatfunError::DimensionMismatch { .. })
    ));
    let mut g3 = vec![0.0; 3];
    assert!(matches!(
        qf.vjp(&a, f64::INFINITY, &mut g3),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
    // (Asking a Lanczos result for the Arnoldi backward pass was a run-time
    // `InvalidParameter` before; the typed results make it a compile error.)
    let fv = apply_lanczos(&a, &v, &MatrixFunction::Exp, &p).unwrap();
    assert!(matches!(
        fv.vjp(&a, &[1.0], &mut g3),
        Err(MatfunError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        fv.vjp(&a, &[1.0, f64::NAN], &mut g3),
        Err(MatfunError::NonFiniteInput { .. })
    ));
}

/// f32 runs end to end (values to f32 accuracy).
#[test]
fn f32_quadform() {
    let lam = [0.5, 1.0, 2.0, 3.0];
    let a64 = matrix_with_spectrum(&lam, 1);
    let a32: Vec<f32> = a64.iter().map(|x| *x as f32).collect();
    // Symmetrise exactly after rounding.
    let mut a32s = a32.clone();
    for j in 0..4 {
        for i in 0..4 {
            a32s[i + j * 4] = a32[i.max(j) + i.min(j) * 4];
        }
    }
    let op = SymmetricDense::from_col_major(4, a32s).unwrap();
    let v = [1.0f32, -1.0, 1.0, -1.0];
    let qf = quadform_lanczos(&op, &v, &MatrixFunction::Log, &KrylovParams::new(4)).unwrap();
    let dense = SymmetricMatrixFunction::new(MatrixFunction::Log, 4, &a64).unwrap();
    let v64 = [1.0, -1.0, 1.0, -1.0];
    let rho = dot(&v64, &dense.apply(&v64).unwrap());
    assert!((qf.value() as f64 - rho).abs() < 1e-4 * rho.abs().max(1.0));
    let mut g = vec![0.0f32; op.num_params()];
    let gr = qf.gradient(&op, &mut g).unwrap();
    assert!(gr.v.iter().all(|x| x.is_finite()));
}
