//! Conformance kit for operators (feature `testing`).
//!
//! Each check draws seeded random vectors, compares two ways of computing the same quantity and
//! returns the measured relative error, or an `Err` with a message when it exceeds the caller's
//! tolerance. Tolerances are the caller's to derive: a backward-stable product has error about
//! `c·eps·n`; a central finite difference with step `h` has truncation error `O(h²)` and rounding
//! error `O(eps/h)`, so `h ≈ eps^{1/3}` gives about `eps^{2/3}` relative error.
//!
//! The one-line form for a downstream operator is [`Conformance`], which runs every check its
//! traits allow with tolerances derived from `eps` and the size; [`check_param_gradient`] is the
//! end-to-end check a user wants of a gradient computed through gradmat: central differences of
//! the scalar function itself along generic directions in θ.
//!
//! ```
//! use gradmat_operators::{dense::DenseMatrix, testing};
//! let a = DenseMatrix::<f64>::from_fn(5, 4, |i, j| (i as f64) - 2.0 * (j as f64)).unwrap();
//! testing::Conformance::new(&a).check_all().unwrap();
//! // The same checks one by one, with tolerances of your own:
//! testing::check_adjoint(&a, 7, 1e-13).unwrap();
//! testing::check_block_consistency(&a, 3, 7, 1e-13).unwrap();
//! testing::check_vjp_params_fd(&a, 7, 1e-5, 1e-8).unwrap();
//! ```

use crate::vector::{dot, norm2};
use crate::{AdjointOperator, Operator, ParamVjp, Scalar, SetParams};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A vector of `n` standard-normal entries from `seed`.
pub fn random_vector<T: Scalar>(n: usize, seed: u64) -> Vec<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| T::from_f64(rng.sample::<f64, _>(StandardNormal)))
        .collect()
}

fn rel(err: f64, scale: f64) -> f64 {
    if scale > 0.0 {
        err / scale
    } else {
        err
    }
}

fn verdict(what: &str, err: f64, tol: f64) -> Result<f64, String> {
    if err.is_finite() && err <= tol {
        Ok(err)
    } else {
        Err(format!(
            "{what}: relative error {err:.3e} exceeds tolerance {tol:.3e}"
        ))
    }
}

fn to64<T: Scalar>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

/// A cancellation-proof size of the operator for relative errors: the largest `‖A g‖ / ‖g‖`
/// over four Gaussian probes (or of `Aᵀ` with `transpose`). Rounding in a product `A x` is
/// relative to `|A| |x|`, not to `‖A x‖`, which can be arbitrarily small when the terms cancel
/// (a 1×3 matrix times a vector is one dot product): measuring against `‖A x‖` alone made
/// correct products fail on rare seeds in f32. Four probes miss the operator's size only when
/// all four land near its null space.
fn probe_size<T: Scalar>(len: usize, seed: u64, mut apply: impl FnMut(&[T]) -> Vec<T>) -> f64 {
    let mut size: f64 = 0.0;
    for i in 0..4u64 {
        let g = random_vector::<T>(len, seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1)));
        let ng = norm2(&to64(&g));
        if ng > 0.0 {
            size = size.max(norm2(&to64(&apply(&g))) / ng);
        }
    }
    size
}

fn op_size<T: Scalar, A: Operator<T> + ?Sized>(op: &A, seed: u64) -> f64 {
    probe_size::<T>(op.ncols(), seed, |g| {
        let mut y = vec![T::ZERO; op.nrows()];
        op.apply(g, &mut y);
        y
    })
}

fn op_t_size<T: Scalar, A: AdjointOperator<T> + ?Sized>(op: &A, seed: u64) -> f64 {
    probe_size::<T>(op.nrows(), seed, |g| {
        let mut y = vec![T::ZERO; op.ncols()];
        op.apply_transpose(g, &mut y);
        y
    })
}

/// Largest column error of `a` against `b`, each column relative to
/// `max(‖b_c‖, size · ‖x_c‖)` (see [`probe_size`]).
fn max_col_rel_scaled(a: &[f64], b: &[f64], len: usize, x: &[f64], size: f64) -> f64 {
    let len = len.max(1);
    let xlen = if a.is_empty() {
        1
    } else {
        (x.len() * len / a.len()).max(1)
    };
    let mut worst: f64 = 0.0;
    for ((ca, cb), xc) in a.chunks(len).zip(b.chunks(len)).zip(x.chunks(xlen)) {
        let diff: Vec<f64> = ca.iter().zip(cb).map(|(p, q)| p - q).collect();
        let scale = norm2(ca).max(norm2(cb)).max(size * norm2(xc));
        worst = worst.max(rel(norm2(&diff), scale));
    }
    worst
}

/// Dot-product test `⟨A x, y⟩ = ⟨x, Aᵀ y⟩`; error relative to `‖Ax‖‖y‖ + ‖x‖‖Aᵀy‖`.
pub fn check_adjoint<T: Scalar, A: AdjointOperator<T> + ?Sized>(
    op: &A,
    seed: u64,
    tol: f64,
) -> Result<f64, String> {
    let (m, n) = (op.nrows(), op.ncols());
    let x = random_vector::<T>(n, seed);
    let y = random_vector::<T>(m, seed.wrapping_add(1));
    let mut ax = vec![T::ZERO; m];
    let mut aty = vec![T::ZERO; n];
    op.apply(&x, &mut ax);
    op.apply_transpose(&y, &mut aty);
    let (ax, aty, x, y) = (to64(&ax), to64(&aty), to64(&x), to64(&y));
    let lhs = dot(&ax, &y);
    let rhs = dot(&x, &aty);
    let size = op_size(op, seed).max(op_t_size(op, seed));
    let scale =
        (norm2(&ax) * norm2(&y) + norm2(&x) * norm2(&aty)).max(size * norm2(&x) * norm2(&y));
    verdict("check_adjoint", rel((lhs - rhs).abs(), scale), tol)
}

/// `A x = Aᵀ x` and `⟨A x, y⟩ = ⟨x, A y⟩` using only `apply`; error relative to `‖Ax‖‖y‖`.
pub fn check_self_adjoint<T: Scalar, A: Operator<T> + ?Sized>(
    op: &A,
    seed: u64,
    tol: f64,
) -> Result<f64, String> {
    let n = op.nrows();
    if op.ncols() != n {
        return Err(format!(
            "check_self_adjoint: operator is {n}×{}",
            op.ncols()
        ));
    }
    let x = random_vector::<T>(n, seed);
    let y = random_vector::<T>(n, seed.wrapping_add(1));
    let mut ax = vec![T::ZERO; n];
    let mut ay = vec![T::ZERO; n];
    op.apply(&x, &mut ax);
    op.apply(&y, &mut ay);
    let (ax, ay, x, y) = (to64(&ax), to64(&ay), to64(&x), to64(&y));
    let size = op_size(op, seed);
    let scale = (norm2(&ax) * norm2(&y) + norm2(&x) * norm2(&ay)).max(size * norm2(&x) * norm2(&y));
    verdict(
        "check_self_adjoint",
        rel((dot(&ax, &y) - dot(&x, &ay)).abs(), scale),
        tol,
    )
}

fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(p, q)| p - q).collect()
}

fn max_col_rel(a: &[f64], b: &[f64], len: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for (ca, cb) in a.chunks(len.max(1)).zip(b.chunks(len.max(1))) {
        let diff: Vec<f64> = ca.iter().zip(cb).map(|(p, q)| p - q).collect();
        let scale = norm2(ca).max(norm2(cb));
        worst = worst.max(rel(norm2(&diff), scale));
    }
    worst
}

/// `apply_block` equals column-by-column `apply` for a block of `k` vectors.
pub fn check_block_consistency<T: Scalar, A: Operator<T> + ?Sized>(
    op: &A,
    k: usize,
    seed: u64,
    tol: f64,
) -> Result<f64, String> {
    let (m, n) = (op.nrows(), op.ncols());
    let x = random_vector::<T>(n * k, seed);
    let mut yb = vec![T::ZERO; m * k];
    op.apply_block(&x, &mut yb, k);
    let mut yc = vec![T::ZERO; m * k];
    for c in 0..k {
        op.apply(&x[c * n..(c + 1) * n], &mut yc[c * m..(c + 1) * m]);
    }
    let size = op_size(op, seed);
    verdict(
        "check_block_consistency",
        max_col_rel_scaled(&to64(&yb), &to64(&yc), m, &to64(&x), size),
        tol,
    )
}

/// `apply_transpose_block` equals column-by-column `apply_transpose`.
pub fn check_transpose_block_consistency<T: Scalar, A: AdjointOperator<T> + ?Sized>(
    op: &A,
    k: usize,
    seed: u64,
    tol: f64,
) -> Result<f64, String> {
    let (m, n) = (op.nrows(), op.ncols());
    let x = random_vector::<T>(m * k, seed);
    let mut yb = vec![T::ZERO; n * k];
    op.apply_transpose_block(&x, &mut yb, k);
    let mut yc = vec![T::ZERO; n * k];
    for c in 0..k {
        op.apply_transpose(&x[c * m..(c + 1) * m], &mut yc[c * n..(c + 1) * n]);
    }
    let size = op_t_size(op, seed);
    verdict(
        "check_transpose_block_consistency",
        max_col_rel_scaled(&to64(&yb), &to64(&yc), n, &to64(&x), size),
        tol,
    )
}

/// `vjp_params_block` equals the sum of column-by-column `vjp_params`, and both accumulate (a
/// non-zero starting gradient is kept).
pub fn check_vjp_block_consistency<T: Scalar, A: ParamVjp<T> + ?Sized>(
    op: &A,
    k: usize,
    seed: u64,
    tol: f64,
) -> Result<f64, String> {
    let (m, n, p) = (op.nrows(), op.ncols(), op.num_params());
    let u = random_vector::<T>(m * k, seed);
    let x = random_vector::<T>(n * k, seed.wrapping_add(1));
    let start = random_vector::<T>(p, seed.wrapping_add(2));
    let mut gb = start.clone();
    op.vjp_params_block(&u, &x, k, &mut gb);
    let mut gc = start.clone();
    for c in 0..k {
        op.vjp_params(&u[c * m..(c + 1) * m], &x[c * n..(c + 1) * n], &mut gc);
    }
    // Compare the increments, relative to their size.
    let db: Vec<f64> = gb
        .iter()
        .zip(&start)
        .map(|(a, s)| a.to_f64() - s.to_f64())
        .collect();
    let dc: Vec<f64> = gc
        .iter()
        .zip(&start)
        .map(|(a, s)| a.to_f64() - s.to_f64())
        .collect();
    // Accumulation rounds relative to ‖start‖ + Σ_c ‖ĝ_c‖ (ĝ_c a single column's VJP), not to the
    // size of the sum, which cancellation across columns can make arbitrarily small.
    let mut size = norm2(&to64(&start));
    for c in 0..k {
        let mut g = vec![T::ZERO; p];
        op.vjp_params(&u[c * m..(c + 1) * m], &x[c * n..(c + 1) * n], &mut g);
        size += norm2(&to64(&g));
    }
    verdict(
        "check_vjp_block_consistency",
        max_col_rel(&db, &dc, p.max(1)).min(rel(norm2(&sub(&db, &dc)), size)),
        tol,
    )
}

/// `apply_and_vjp_params` equals `apply` followed by `vjp_params` (and accumulates).
pub fn check_apply_and_vjp_consistency<T: Scalar, A: ParamVjp<T> + ?Sized>(
    op: &A,
    seed: u64,
    tol: f64,
) -> Result<f64, String> {
    let (m, n, p) = (op.nrows(), op.ncols(), op.num_params());
    let x = random_vector::<T>(n, seed);
    let u = random_vector::<T>(m, seed.wrapping_add(1));
    let start = random_vector::<T>(p, seed.wrapping_add(2));
    let (mut y1, mut y2) = (vec![T::ZERO; m], vec![T::ZERO; m]);
    let (mut g1, mut g2) = (start.clone(), start.clone());
    op.apply_and_vjp_params(&x, &mut y1, &u, &mut g1);
    op.apply(&x, &mut y2);
    op.vjp_params(&u, &x, &mut g2);
    let size = op_size(op, seed);
    let ey = max_col_rel_scaled(&to64(&y1), &to64(&y2), m, &to64(&x), size);
    let d1: Vec<f64> = g1
        .iter()
        .zip(&start)
        .map(|(a, s)| a.to_f64() - s.to_f64())
        .collect();
    let d2: Vec<f64> = g2
        .iter()
        .zip(&start)
        .map(|(a, s)| a.to_f64() - s.to_f64())
        .collect();
    let mut g0 = vec![T::ZERO; p];
    op.vjp_params(&u, &x, &mut g0);
    let gsize = norm2(&to64(&start)) + norm2(&to64(&g0));
    let eg = max_col_rel(&d1, &d2, p.max(1)).min(rel(norm2(&sub(&d1, &d2)), gsize));
    verdict("check_apply_and_vjp_consistency", ey.max(eg), tol)
}

/// `vjp_params` against central finite differences of `θ ↦ ⟨u, A(θ) x⟩`.
///
/// Checks the directional derivative along a few random directions (and along every coordinate
/// when there are at most 64 parameters) with step `h` scaled by `max(1, ‖θ‖_∞)`. The error is
/// `|fd − ⟨grad, d⟩|`, less the evaluations' rounding `(n+1)·eps·‖u‖·|A(θ ± h d)|·‖x‖ / h`,
/// relative to `max(|fd|, Σ|grad_i d_i|, ‖u‖‖x‖·eps)`.
/// The operator must accept small perturbations of its parameters (positive parameters are
/// perturbed relatively, so they stay positive for `h < 1`).
pub fn check_vjp_params_fd<T, A>(op: &A, seed: u64, h: f64, tol: f64) -> Result<f64, String>
where
    T: Scalar,
    A: SetParams<T> + Clone,
{
    let (m, n, p) = (op.nrows(), op.ncols(), op.num_params());
    if p == 0 {
        return Ok(0.0);
    }
    let u = random_vector::<T>(m, seed);
    let x = random_vector::<T>(n, seed.wrapping_add(1));
    let mut grad = vec![T::ZERO; p];
    op.vjp_params(&u, &x, &mut grad);
    let theta = op.params_vec();
    let theta64 = to64(&theta);
    let mut work = op.clone();
    let mut y = vec![T::ZERO; m];
    let (nu, nx) = (norm2(&to64(&u)), norm2(&to64(&x)));
    // Each evaluation rounds relative to ‖u‖·|A(θ ± h d)|·‖x‖ (products of length n, in T):
    // that over h is the floor of the difference quotient's error, however small the
    // directional derivative itself (a coordinate with a near-zero gradient entry).
    let eps_n = T::EPS.to_f64() * (m.max(n) as f64 + 1.0);
    let mut eval = |t: &[f64]| -> Result<(f64, f64), String> {
        let tt: Vec<T> = t.iter().map(|v| T::from_f64(*v)).collect();
        work.set_params(&tt)
            .map_err(|e| format!("check_vjp_params_fd: set_params failed: {e}"))?;
        work.apply(&x, &mut y);
        let floor = eps_n * nu * nx * op_size(&work, seed);
        Ok((dot(&to64(&u), &to64(&y)), floor))
    };
    let mut dirs: Vec<Vec<f64>> = Vec::new();
    for r in 0..3 {
        dirs.push(random_vector::<f64>(p, seed.wrapping_add(10 + r)));
    }
    if p <= 64 {
        for i in 0..p {
            let mut e = vec![0.0; p];
            e[i] = 1.0;
            dirs.push(e);
        }
    }
    let g64 = to64(&grad);
    let mut worst: f64 = 0.0;
    for d in dirs {
        // Relative perturbation: step along d scaled by |θ_i| (or 1 for small entries).
        let d: Vec<f64> = d
            .iter()
            .zip(&theta64)
            .map(|(di, ti)| di * ti.abs().max(1.0))
            .collect();
        let tp: Vec<f64> = theta64.iter().zip(&d).map(|(t, di)| t + h * di).collect();
        let tm: Vec<f64> = theta64.iter().zip(&d).map(|(t, di)| t - h * di).collect();
        let ((fp, rp), (fm, rm)) = (eval(&tp)?, eval(&tm)?);
        let fd = (fp - fm) / (2.0 * h);
        let an = dot(&g64, &d);
        let gabs: Vec<f64> = g64.iter().zip(&d).map(|(g, di)| (g * di).abs()).collect();
        let scale = fd
            .abs()
            .max(gabs.iter().sum::<f64>())
            .max(nu * nx * T::EPS.to_f64());
        // The part of the discrepancy above the evaluations' own rounding, relative to size.
        let excess = ((fd - an).abs() - (rp + rm) / (2.0 * h)).max(0.0);
        worst = worst.max(rel(excess, scale));
    }
    verdict("check_vjp_params_fd", worst, tol)
}

/// The derivative at 0 of a smooth `g: ℝ → ℝ` by central differences with steps `h` and `h/2`
/// combined by one Richardson step: `(4 D(h/2) − D(h))/3`, truncation error `O(h⁴)` (against
/// `O(h²)` for one central difference), rounding error about `eps·|g|/h`. Returns the estimate
/// and `|D(h/2) − D(h)|`, a (pessimistic) estimate of the error of the plain difference that
/// callers can use to see that `h` is in the asymptotic range.
///
/// ```
/// let (d, _) = gradmat_operators::testing::richardson(1e-2, |t| (1.0 + t).ln());
/// assert!((d - 1.0).abs() < 1e-9);
/// ```
pub fn richardson(h: f64, mut g: impl FnMut(f64) -> f64) -> (f64, f64) {
    let d1 = central_difference(&mut g, h);
    let d2 = central_difference(&mut g, h / 2.0);
    ((4.0 * d2 - d1) / 3.0, (d2 - d1).abs())
}

/// `(g(h) − g(−h)) / 2h`.
fn central_difference(g: &mut impl FnMut(f64) -> f64, h: f64) -> f64 {
    (g(h) - g(-h)) / (2.0 * h)
}

/// The derivative at 0 of `g` by `levels` Richardson steps on central differences at
/// `h, h/2, …, h/2^levels`: truncation error `O(h^{2·levels + 2})`. `levels = 1` is
/// [`richardson`]; more levels pay when `g` is smooth and cheap to evaluate accurately (dense
/// references), fewer when rounding in `g` dominates.
pub fn richardson_levels(h: f64, levels: usize, mut g: impl FnMut(f64) -> f64) -> f64 {
    let mut row: Vec<f64> = (0..=levels)
        .map(|i| central_difference(&mut g, h / f64::powi(2.0, i as i32)))
        .collect();
    for level in 1..=levels {
        let c = f64::powi(4.0, level as i32);
        row = row
            .windows(2)
            .map(|w| (c * w[1] - w[0]) / (c - 1.0))
            .collect();
    }
    row[0]
}

/// The derivative at 0 of `g` where the step does not matter: [`richardson`] estimates on the
/// ladder `h_max·ratio^{-i}`, `i = 0..steps`, and the one where two successive estimates agree
/// best (the plateau between truncation and rounding error). The choice never looks at a value
/// under test. For outputs that can be steep (Krylov quantities after loss of orthogonality)
/// one fixed step is not reliable.
pub fn richardson_plateau(
    h_max: f64,
    ratio: f64,
    steps: usize,
    mut g: impl FnMut(f64) -> f64,
) -> f64 {
    let est: Vec<f64> = (0..steps.max(1))
        .map(|i| richardson(h_max * ratio.powi(-(i as i32)), &mut g).0)
        .collect();
    let mut best = (f64::INFINITY, est[0]);
    for w in est.windows(2) {
        let gap = (w[0] - w[1]).abs();
        if gap < best.0 {
            best = (gap, w[1]);
        }
    }
    best.1
}

/// Checks a parameter gradient end to end: `grad` (of length `op.num_params()`) against
/// Richardson-extrapolated central differences ([`richardson`]) of `θ ↦ f(A(θ))` along
/// `directions` random **generic** directions (Gaussian in every coordinate, so no structure of
/// the operator or of `f` is preserved by the perturbation), with steps `h·max(1, |θ_i|)` per
/// coordinate. Returns the largest relative error `|fd − ⟨grad, d⟩| / max(|fd|, Σ|grad_i d_i|)`
/// or an `Err` above `tol`.
///
/// This is the test a downstream user wants of a gradient computed through gradmat (a
/// log-determinant, a quadratic form of a matrix function, a loss built on them): it
/// differentiates the function the user asked for, not an intermediate. Derive `tol` from the
/// truncation `O(h⁴·f⁽⁵⁾)` and the rounding `O(eps·|f|/h)` of the difference, plus the error of
/// `f` itself (for a Krylov approximation at partial depth, differences of the approximation
/// are what `grad` is exact for).
///
/// ```
/// use gradmat_operators::{dense::DenseMatrix, testing, Operator, ParamVjp};
/// // f(A) = ⟨u, A x⟩ for fixed u, x: its gradient is the VJP.
/// let a = DenseMatrix::<f64>::from_fn(3, 3, |i, j| 1.0 + (i * j) as f64).unwrap();
/// let (u, x) = ([1.0, -2.0, 0.5], [0.3, 0.1, -1.0]);
/// let mut grad = vec![0.0; a.num_params()];
/// a.vjp_params(&u, &x, &mut grad);
/// let f = |op: &DenseMatrix<f64>| {
///     let mut y = [0.0; 3];
///     op.apply(&x, &mut y);
///     u.iter().zip(&y).map(|(p, q)| p * q).sum::<f64>()
/// };
/// testing::check_param_gradient(&a, f, &grad, 3, 1e-3, 1e-9).unwrap();
/// ```
pub fn check_param_gradient<T, A, F>(
    op: &A,
    mut f: F,
    grad: &[T],
    directions: usize,
    h: f64,
    tol: f64,
) -> Result<f64, String>
where
    T: Scalar,
    A: SetParams<T> + Clone,
    F: FnMut(&A) -> f64,
{
    let p = op.num_params();
    if grad.len() != p {
        return Err(format!(
            "check_param_gradient: gradient has length {}, the operator {p} parameters",
            grad.len()
        ));
    }
    let theta = to64(&op.params_vec());
    let g64 = to64(grad);
    let mut work = op.clone();
    let mut worst: f64 = 0.0;
    for r in 0..directions as u64 {
        let d: Vec<f64> = random_vector::<f64>(p, 0x5eed_0000 + r)
            .iter()
            .zip(&theta)
            .map(|(di, ti)| di * ti.abs().max(1.0))
            .collect();
        let mut failure = None;
        let (fd, _) = richardson(h, |t| {
            let tt: Vec<T> = theta
                .iter()
                .zip(&d)
                .map(|(th, di)| T::from_f64(th + t * di))
                .collect();
            match work.set_params(&tt) {
                Ok(()) => f(&work),
                Err(e) => {
                    failure = Some(format!("check_param_gradient: set_params failed: {e}"));
                    f64::NAN
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let an = dot(&g64, &d);
        let scale = fd.abs().max(
            g64.iter()
                .zip(&d)
                .map(|(g, di)| (g * di).abs())
                .sum::<f64>(),
        );
        worst = worst.max(rel((fd - an).abs(), scale));
    }
    verdict("check_param_gradient", worst, tol)
}

/// Every conformance check an operator's traits allow, in one call, with tolerances derived
/// from the scalar's `eps` and the operator's size (`c·eps·n`, the error of a backward-stable
/// product; faer's `ApproxEq` uses `8·eps·n`): products, block products, the dot-product test
/// of the transpose, block and fused VJPs against single ones, and the VJP against central
/// differences in θ (step `eps^{1/3}`, tolerance `eps^{1/2}`: truncation `O(h²)` plus rounding
/// `O(eps/h)` is about `eps^{2/3}` for the bilinear `⟨u, A(θ)x⟩`).
///
/// ```
/// use gradmat_operators::{kernel::{KernelKind, KernelMatrix}, testing::Conformance};
/// let k = KernelMatrix::<f64>::isotropic(KernelKind::Matern32, 20, 2,
///     (0..40).map(|i| (i as f64 * 0.37).sin()).collect(), 0.7, 1.3).unwrap();
/// // Ok: every measured error within its derived tolerance; the report names them.
/// let report = Conformance::new(&k).check_all().unwrap();
/// assert_eq!(report.len(), 6);
/// ```
#[derive(Debug, Clone)]
pub struct Conformance<'a, A: ?Sized> {
    op: &'a A,
    seed: u64,
    block: usize,
    factor: f64,
}

impl<'a, A: ?Sized> Conformance<'a, A> {
    /// The checks of `op` with the default seed, block size 5 and tolerance factor 8.
    pub fn new(op: &'a A) -> Self {
        Conformance {
            op,
            seed: 0x60d_f00d,
            block: 5,
            factor: 8.0,
        }
    }
    /// Another seed for the random vectors.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Another block size for the block checks.
    pub fn block(mut self, k: usize) -> Self {
        self.block = k.max(1);
        self
    }
    /// The constant `c` of the `c·eps·n` tolerance (default 8); raise it for operators whose
    /// products are not backward stable in the plain sense (e.g. long sums of large terms).
    pub fn factor(mut self, c: f64) -> Self {
        self.factor = c;
        self
    }
}

impl<A: ?Sized> Conformance<'_, A> {
    fn product_tol<T: Scalar>(&self, n: usize) -> f64 {
        self.factor * T::EPS.to_f64() * (n.max(1) as f64)
    }
}

/// The named measured errors of a conformance run.
pub type Report = Vec<(&'static str, f64)>;

impl<A: ?Sized> Conformance<'_, A> {
    /// Block products equal column-by-column products.
    pub fn check_operator<T: Scalar>(&self) -> Result<Report, String>
    where
        A: Operator<T>,
    {
        let tol = self.product_tol::<T>(self.op.ncols());
        Ok(vec![(
            "block product",
            check_block_consistency(self.op, self.block, self.seed, tol)?,
        )])
    }

    /// [`check_operator`](Self::check_operator) plus the dot-product test of `apply_transpose`
    /// and its block form.
    pub fn check_adjoint_operator<T: Scalar>(&self) -> Result<Report, String>
    where
        A: AdjointOperator<T>,
    {
        let mut r = self.check_operator()?;
        let n = self.op.nrows().max(self.op.ncols());
        let tol = self.product_tol::<T>(n);
        r.push(("adjoint", check_adjoint(self.op, self.seed, tol)?));
        r.push((
            "block transpose product",
            check_transpose_block_consistency(self.op, self.block, self.seed, tol)?,
        ));
        Ok(r)
    }

    /// A self-adjoint operator: `⟨Ax, y⟩ = ⟨x, Ay⟩` (using only `apply`).
    pub fn check_self_adjoint<T: Scalar>(&self) -> Result<Report, String>
    where
        A: Operator<T>,
    {
        let tol = self.product_tol::<T>(self.op.ncols());
        Ok(vec![(
            "self-adjoint",
            check_self_adjoint(self.op, self.seed, tol)?,
        )])
    }

    /// Block and fused VJPs equal single ones (relative to `c·eps·n·k`).
    pub fn check_vjp<T: Scalar>(&self) -> Result<Report, String>
    where
        A: ParamVjp<T>,
    {
        let n = self.op.nrows().max(self.op.ncols());
        let tol = self.product_tol::<T>(n * self.block);
        Ok(vec![
            (
                "block VJP",
                check_vjp_block_consistency(self.op, self.block, self.seed, tol)?,
            ),
            (
                "fused product and VJP",
                check_apply_and_vjp_consistency(self.op, self.seed, tol)?,
            ),
        ])
    }

    /// [`check_adjoint_operator`](Self::check_adjoint_operator), [`check_vjp`](Self::check_vjp)
    /// and the VJP against central differences in θ.
    pub fn check_all<T: Scalar>(&self) -> Result<Report, String>
    where
        A: AdjointOperator<T> + SetParams<T> + Clone,
    {
        let mut r = self.check_adjoint_operator()?;
        r.extend(self.check_vjp()?);
        let eps = T::EPS.to_f64();
        r.push((
            "VJP vs finite differences",
            check_vjp_params_fd(self.op, self.seed, eps.cbrt(), eps.sqrt())?,
        ));
        Ok(r)
    }
}

/// An orthogonal `n×n` matrix (column-major) from Gram–Schmidt (twice) on a Gaussian matrix.
pub fn random_orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut q = random_vector::<f64>(n * n, seed);
    for j in 0..n {
        for _pass in 0..2 {
            for i in 0..j {
                let (qi, qj) = q.split_at_mut(j * n);
                let qi = &qi[i * n..(i + 1) * n];
                let qj = &mut qj[..n];
                let c = dot(qi, qj);
                qj.iter_mut().zip(qi).for_each(|(a, b)| *a -= c * b);
            }
        }
        let col = &mut q[j * n..(j + 1) * n];
        let nr = norm2(col);
        col.iter_mut().for_each(|v| *v /= nr);
    }
    q
}

/// The symmetric matrix `Q diag(λ) Qᵀ` (column-major, `f64`) with a random orthogonal `Q`.
pub fn matrix_with_spectrum(eigenvalues: &[f64], seed: u64) -> Vec<f64> {
    let n = eigenvalues.len();
    let q = random_orthogonal(n, seed);
    let mut a = vec![0.0; n * n];
    for j in 0..n {
        for i in j..n {
            let mut s = 0.0;
            for (l, lam) in eigenvalues.iter().enumerate() {
                s += q[i + l * n] * lam * q[j + l * n];
            }
            a[i + j * n] = s;
            a[j + i * n] = s;
        }
    }
    a
}

/// Proptest strategies producing test data. Sizes are kept small so dense oracles stay cheap.
pub mod strategies {
    use super::*;

    /// Column-major `m×n` Gaussian matrix with `m, n` in the given ranges: `(m, n, entries)`.
    pub fn dense_matrix(
        rows: std::ops::RangeInclusive<usize>,
        cols: std::ops::RangeInclusive<usize>,
    ) -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
        (rows, cols, any::<u64>()).prop_map(|(m, n, s)| (m, n, random_vector::<f64>(m * n, s)))
    }

    /// SPD matrices with a prescribed spectrum: `(eigenvalues, column-major matrix)`. Spectra are
    /// log-uniform in `[1/cond, 1]`, and with probability 1/3 clustered (a few distinct values
    /// repeated), to exercise repeated eigenvalues.
    pub fn spd_with_spectrum(
        sizes: std::ops::RangeInclusive<usize>,
        cond: f64,
    ) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        (sizes, any::<u64>(), 0u8..3).prop_map(move |(n, s, kind)| {
            let mut rng = StdRng::seed_from_u64(s);
            let lc = cond.ln();
            let mut lam: Vec<f64> = (0..n).map(|_| (-lc * rng.random::<f64>()).exp()).collect();
            if kind == 0 {
                let distinct = lam[..n.min(3)].to_vec();
                for (i, l) in lam.iter_mut().enumerate() {
                    *l = distinct[i % distinct.len()];
                }
            }
            let a = matrix_with_spectrum(&lam, s ^ 0x9e37_79b9);
            (lam, a)
        })
    }

    /// Random sparse triplets `(nrows, ncols, rows, cols, values)` with roughly `density·m·n`
    /// entries (duplicates possible).
    pub fn sparse_triplets(
        rows: std::ops::RangeInclusive<usize>,
        cols: std::ops::RangeInclusive<usize>,
        density: f64,
    ) -> impl Strategy<Value = (usize, usize, Vec<usize>, Vec<usize>, Vec<f64>)> {
        (rows, cols, any::<u64>()).prop_map(move |(m, n, s)| {
            let mut rng = StdRng::seed_from_u64(s);
            let nnz = ((m * n) as f64 * density).ceil() as usize;
            let mut r = Vec::with_capacity(nnz);
            let mut c = Vec::with_capacity(nnz);
            let mut v = Vec::with_capacity(nnz);
            for _ in 0..nnz {
                r.push(rng.random_range(0..m));
                c.push(rng.random_range(0..n));
                v.push(rng.sample::<f64, _>(StandardNormal));
            }
            (m, n, r, c, v)
        })
    }

    /// Kernel data: `(n, d, row-major n×d inputs)` with standard-normal entries.
    pub fn kernel_data(
        sizes: std::ops::RangeInclusive<usize>,
        dims: std::ops::RangeInclusive<usize>,
    ) -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
        (sizes, dims, any::<u64>()).prop_map(|(n, d, s)| (n, d, random_vector::<f64>(n * d, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectrum_is_prescribed() {
        let lam = [3.0, 1.0, 0.5, 0.5];
        let a = matrix_with_spectrum(&lam, 3);
        // trace and Frobenius norm² equal Σλ and Σλ².
        let tr: f64 = (0..4).map(|i| a[i + 4 * i]).sum();
        let fro: f64 = a.iter().map(|v| v * v).sum();
        assert!((tr - 5.0).abs() < 1e-13);
        assert!((fro - (9.0 + 1.0 + 0.25 + 0.25)).abs() < 1e-12);
    }
}
