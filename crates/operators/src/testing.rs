//! Conformance kit for operators (feature `testing`).
//!
//! Each check draws seeded random vectors, compares two ways of computing the same quantity and
//! returns the measured relative error, or an `Err` with a message when it exceeds the caller's
//! tolerance. Tolerances are the caller's to derive: a backward-stable product has error about
//! `c·eps·n`; a central finite difference with step `h` has truncation error `O(h²)` and rounding
//! error `O(eps/h)`, so `h ≈ eps^{1/3}` gives about `eps^{2/3}` relative error.
//!
//! ```
//! use gradmat_operators::{dense::DenseMatrix, testing};
//! let a = DenseMatrix::<f64>::from_fn(5, 4, |i, j| (i as f64) - 2.0 * (j as f64)).unwrap();
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
    let scale = norm2(&ax) * norm2(&y) + norm2(&x) * norm2(&aty);
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
    let scale = norm2(&ax) * norm2(&y) + norm2(&x) * norm2(&ay);
    verdict(
        "check_self_adjoint",
        rel((dot(&ax, &y) - dot(&x, &ay)).abs(), scale),
        tol,
    )
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
    verdict(
        "check_block_consistency",
        max_col_rel(&to64(&yb), &to64(&yc), m),
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
    verdict(
        "check_transpose_block_consistency",
        max_col_rel(&to64(&yb), &to64(&yc), n),
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
    verdict(
        "check_vjp_block_consistency",
        max_col_rel(&db, &dc, p.max(1)),
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
    let ey = max_col_rel(&to64(&y1), &to64(&y2), m.max(1));
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
    let eg = max_col_rel(&d1, &d2, p.max(1));
    verdict("check_apply_and_vjp_consistency", ey.max(eg), tol)
}

/// `vjp_params` against central finite differences of `θ ↦ ⟨u, A(θ) x⟩`.
///
/// Checks the directional derivative along a few random directions (and along every coordinate
/// when there are at most 64 parameters) with step `h` scaled by `max(1, ‖θ‖_∞)`. The error is
/// `|fd − ⟨grad, d⟩|` relative to `‖u‖·‖∂A/∂d‖`-sized quantities: `max(|fd|, ‖grad‖·‖d‖, ‖u‖‖x‖·eps)`.
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
    let mut eval = |t: &[f64]| -> Result<f64, String> {
        let tt: Vec<T> = t.iter().map(|v| T::from_f64(*v)).collect();
        work.set_params(&tt)
            .map_err(|e| format!("check_vjp_params_fd: set_params failed: {e}"))?;
        work.apply(&x, &mut y);
        Ok(dot(&to64(&u), &to64(&y)))
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
        let fd = (eval(&tp)? - eval(&tm)?) / (2.0 * h);
        let an = dot(&g64, &d);
        let gabs: Vec<f64> = g64.iter().zip(&d).map(|(g, di)| (g * di).abs()).collect();
        let scale = fd
            .abs()
            .max(gabs.iter().sum::<f64>())
            .max(norm2(&to64(&u)) * norm2(&to64(&x)) * T::EPS.to_f64());
        worst = worst.max(rel((fd - an).abs(), scale));
    }
    verdict("check_vjp_params_fd", worst, tol)
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
