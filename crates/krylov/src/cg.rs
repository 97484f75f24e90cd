//! (Preconditioned) conjugate gradients for symmetric positive definite operators, with several
//! right-hand sides solved together.
//!
//! For `A x = b` with `A` SPD and a preconditioner `M ≈ A` (SPD, applied as `M⁻¹`), each
//! right-hand side runs the textbook recursion (Hestenes & Stiefel 1952; Saad, *Iterative
//! Methods for Sparse Linear Systems*, Alg. 9.1):
//!
//! ```text
//! r₀ = b − A x₀,  z₀ = M⁻¹ r₀,  p₀ = z₀
//! for i = 0, 1, …:
//!     αᵢ = rᵢᵀzᵢ / pᵢᵀA pᵢ          (pᵢᵀ A pᵢ ≤ 0 ⇒ error: A is not positive definite)
//!     xᵢ₊₁ = xᵢ + αᵢ pᵢ,   rᵢ₊₁ = rᵢ − αᵢ A pᵢ
//!     stop when ‖rᵢ₊₁‖ ≤ max(atol, rtol·‖b‖)
//!     zᵢ₊₁ = M⁻¹ rᵢ₊₁,  βᵢ = rᵢ₊₁ᵀzᵢ₊₁ / rᵢᵀzᵢ,  pᵢ₊₁ = zᵢ₊₁ + βᵢ pᵢ
//! ```
//!
//! **Fused right-hand sides.** The `k` right-hand sides form a column-major block `B` (`n×k`);
//! every iteration performs **one** [`apply_block`](Operator::apply_block) on the search
//! directions of the right-hand sides that have not yet converged (and one block application of
//! the preconditioner). Converged columns are *compacted away*: the internal state is kept in
//! "slots", and a column that converges is swapped with the last active slot, so the block passed
//! to the operator shrinks to the `k_active` unconverged columns (contiguous, no copy per
//! iteration). The solution block `X` stays in the caller's column order. The recursions are
//! independent per column (this is not block CG), so the result for a column does not depend
//! on the other columns.
//!
//! The residual norms reported and tested against the tolerance are those of the recursively
//! updated residual `rᵢ`, which may drift from the true residual `b − A xᵢ` by about
//! `eps·‖A‖·‖x‖·iterations` on ill-conditioned problems.
//!
//! No allocation happens per iteration: all vectors live in a [`CgWorkspace`] that can be
//! reused across solves ([`solve_in_place`]).
//!
//! ```
//! use gradmat_krylov::cg::{self, CgParams};
//! use gradmat_operators::dense::SymmetricDense;
//!
//! let a = SymmetricDense::from_col_major(2, vec![4.0, 1.0, 1.0, 3.0]).unwrap();
//! // Two right-hand sides, column-major: b₀ = (1, 2), b₁ = (0, 0).
//! let b = [1.0_f64, 2.0, 0.0, 0.0];
//! let sol = cg::solve(&a, &b, 2, &CgParams { rtol: Some(1e-12), ..CgParams::default() }).unwrap();
//! let x = sol.column(0);
//! assert!((4.0 * x[0] + x[1] - 1.0).abs() < 1e-10 && (x[0] + 3.0 * x[1] - 2.0).abs() < 1e-10);
//! assert!(sol.info().converged.iter().all(|c| *c));
//! assert_eq!(sol.column(1), &[0.0, 0.0]);
//! ```

use crate::precond::{IdentityPreconditioner, Preconditioner};
use crate::reduce;
use crate::KrylovError;
use gradmat_operators::{NonExhaustive, Operator, Scalar, SelfAdjoint};

const ALGORITHM: &str = "conjugate gradients";

/// Parameters of conjugate gradients.
///
/// ```
/// use gradmat_krylov::cg::CgParams;
/// let p = CgParams { rtol: Some(1e-10), max_iters: Some(500), ..CgParams::default() };
/// assert_eq!(p.atol, 0.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CgParams {
    /// Absolute residual tolerance. Default `0`.
    pub atol: f64,
    /// Relative residual tolerance: a right-hand side `b` has converged when
    /// `‖r‖ ≤ max(atol, rtol·‖b‖)`. `None` (default) means `√eps` of the scalar type (`1.5e-8`
    /// for `f64`, `3.5e-4` for `f32`).
    pub rtol: Option<f64>,
    /// Maximal number of iterations per right-hand side (one iteration = one block product).
    /// `None` (default) means `max(10, 10·n)`. Reaching it is not an error unless
    /// [`error_on_nonconvergence`](Self::error_on_nonconvergence) is set.
    pub max_iters: Option<usize>,
    /// Return an error (instead of reporting `converged = false` in [`CgInfo`]) when a
    /// right-hand side has not converged after `max_iters` iterations. Default `false`.
    pub error_on_nonconvergence: bool,
    #[doc(hidden)]
    pub non_exhaustive: NonExhaustive,
}

impl Default for CgParams {
    fn default() -> Self {
        Self {
            atol: 0.0,
            rtol: None,
            max_iters: None,
            error_on_nonconvergence: false,
            non_exhaustive: NonExhaustive::default(),
        }
    }
}

/// What happened during a conjugate-gradient solve; entries indexed by right-hand side.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CgInfo<T: Scalar> {
    /// Iterations (updates of `x`) performed for each right-hand side.
    pub iterations: Vec<usize>,
    /// Final (recursively updated) residual norm `‖r‖` for each right-hand side.
    pub residual_norms: Vec<T>,
    /// `‖b‖` for each right-hand side.
    pub rhs_norms: Vec<T>,
    /// Whether `‖r‖ ≤ max(atol, rtol·‖b‖)` was reached, per right-hand side. A zero right-hand
    /// side converges immediately with `x = 0`.
    pub converged: Vec<bool>,
    /// Total number of operator–vector products (columns of all block products, including the
    /// initial residual `b − A x₀` when an initial guess is non-zero).
    pub num_matvecs: usize,
    /// Number of calls to [`Operator::apply_block`].
    pub num_block_applies: usize,
}

impl<T: Scalar> CgInfo<T> {
    /// `true` if every right-hand side converged.
    pub fn all_converged(&self) -> bool {
        self.converged.iter().all(|c| *c)
    }
    /// The largest iteration count over the right-hand sides.
    pub fn max_iterations(&self) -> usize {
        self.iterations.iter().copied().max().unwrap_or(0)
    }
}

/// The solution block of a conjugate-gradient solve and its [`CgInfo`].
#[derive(Debug, Clone, PartialEq)]
pub struct CgSolution<T: Scalar> {
    x: Vec<T>,
    n: usize,
    k: usize,
    info: CgInfo<T>,
}

impl<T: Scalar> CgSolution<T> {
    /// The solution block `X` (`n×k`, column-major).
    pub fn solution(&self) -> &[T] {
        &self.x
    }
    /// Column `c` of the solution (the solution for right-hand side `c`).
    ///
    /// # Panics
    /// If `c ≥ k`.
    pub fn column(&self, c: usize) -> &[T] {
        assert!(c < self.k, "column {c} out of range (k = {})", self.k);
        &self.x[c * self.n..(c + 1) * self.n]
    }
    /// Number of right-hand sides `k`.
    pub fn num_rhs(&self) -> usize {
        self.k
    }
    /// The solve's [`CgInfo`].
    pub fn info(&self) -> &CgInfo<T> {
        &self.info
    }
    /// The solution block and the info.
    pub fn into_parts(self) -> (Vec<T>, CgInfo<T>) {
        (self.x, self.info)
    }
}

/// Reusable buffers of conjugate gradients: residuals, preconditioned residuals, search
/// directions and their images (each `n×k`), plus the preconditioner's scratch. Buffers grow on
/// demand and are never shrunk, so repeated solves of the same size allocate nothing.
#[derive(Debug, Clone, Default)]
pub struct CgWorkspace<T: Scalar> {
    r: Vec<T>,
    z: Vec<T>,
    p: Vec<T>,
    ap: Vec<T>,
    scratch: Vec<T>,
    rz: Vec<T>,
    rz_old: Vec<T>,
    rnorm: Vec<T>,
    slot_rhs: Vec<usize>,
}

impl<T: Scalar> CgWorkspace<T> {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }

    fn prepare(&mut self, n: usize, k: usize, scratch: usize) {
        let grow = |v: &mut Vec<T>, len: usize| {
            if v.len() < len {
                v.resize(len, T::ZERO);
            }
        };
        grow(&mut self.r, n * k);
        grow(&mut self.z, n * k);
        grow(&mut self.p, n * k);
        grow(&mut self.ap, n * k);
        grow(&mut self.scratch, scratch);
        grow(&mut self.rz, k);
        grow(&mut self.rz_old, k);
        grow(&mut self.rnorm, k);
        self.slot_rhs.clear();
        self.slot_rhs.extend(0..k);
    }

    /// Swaps slots `s` and `t` (columns of `r`, `z`, `p` and the per-slot scalars).
    fn swap_slots(&mut self, n: usize, s: usize, t: usize) {
        if s == t {
            return;
        }
        let (lo, hi) = (s.min(t), s.max(t));
        for v in [&mut self.r, &mut self.z, &mut self.p] {
            let (a, b) = v.split_at_mut(hi * n);
            a[lo * n..(lo + 1) * n].swap_with_slice(&mut b[..n]);
        }
        self.rz.swap(lo, hi);
        self.rnorm.swap(lo, hi);
        self.slot_rhs.swap(lo, hi);
    }
}

/// Solves `A X = B` for `k` right-hand sides (columns of the `n×k` column-major block `b`) with
/// plain conjugate gradients from `X₀ = 0`.
///
/// # Errors
/// See [`solve_in_place`].
pub fn solve<T, A>(
    a: &A,
    b: &[T],
    k: usize,
    params: &CgParams,
) -> Result<CgSolution<T>, KrylovError>
where
    T: Scalar,
    A: Operator<T> + SelfAdjoint<T> + ?Sized,
{
    solve_preconditioned(a, &IdentityPreconditioner, b, k, None, params)
}

/// Solves `A X = B` for `k` right-hand sides with preconditioned conjugate gradients, from the
/// initial guess `x0` (`n×k`, or zero when `None`).
///
/// # Errors
/// See [`solve_in_place`].
pub fn solve_preconditioned<T, A, P>(
    a: &A,
    precond: &P,
    b: &[T],
    k: usize,
    x0: Option<&[T]>,
    params: &CgParams,
) -> Result<CgSolution<T>, KrylovError>
where
    T: Scalar,
    A: Operator<T> + SelfAdjoint<T> + ?Sized,
    P: Preconditioner<T> + ?Sized,
{
    let n = a.nrows();
    let mut x = match x0 {
        Some(x0) => {
            if x0.len() != n * k {
                return Err(KrylovError::DimensionMismatch {
                    what: "initial guess",
                    expected: n * k,
                    got: x0.len(),
                });
            }
            x0.to_vec()
        }
        None => vec![T::ZERO; n * k],
    };
    let mut ws = CgWorkspace::new();
    let info = solve_in_place(a, precond, b, k, &mut x, &mut ws, params)?;
    Ok(CgSolution { x, n, k, info })
}

/// Preconditioned conjugate gradients writing into a caller-provided block: `x` holds the
/// initial guess on entry (`n×k`, column-major) and the solution on exit; `ws` is reused.
///
/// A right-hand side that is exactly zero gets `x = 0` (whatever the initial guess), converged,
/// with zero iterations.
///
/// # Errors
/// * [`KrylovError::NotSquare`]: `A` is not square;
/// * [`KrylovError::DimensionMismatch`]: `b` or `x` is not `n·k` long, or the preconditioner's
///   dimension is not `n`;
/// * [`KrylovError::InvalidParameter`]: a tolerance is negative or non-finite, or the initial
///   guess has a non-finite entry; also (with a message saying so) non-convergence when
///   [`CgParams::error_on_nonconvergence`] is set;
/// * [`KrylovError::NonFiniteStartVector`]: `b` has a non-finite entry (index into the block);
/// * [`KrylovError::NonPositiveCurvature`]: `pᵀAp ≤ 0` (A is not positive definite);
/// * [`KrylovError::Preconditioner`]: `rᵀM⁻¹r ≤ 0` for `r ≠ 0` (M is not positive definite);
/// * [`KrylovError::NonFinite`]: a NaN or infinity appeared (`step` = 0-based iteration).
///
/// On error `x` holds the iterate reached so far.
pub fn solve_in_place<T, A, P>(
    a: &A,
    precond: &P,
    b: &[T],
    k: usize,
    x: &mut [T],
    ws: &mut CgWorkspace<T>,
    params: &CgParams,
) -> Result<CgInfo<T>, KrylovError>
where
    T: Scalar,
    A: Operator<T> + SelfAdjoint<T> + ?Sized,
    P: Preconditioner<T> + ?Sized,
{
    solve_impl(&a, &precond, b, k, x, ws, params)
}

/// The body of [`solve_in_place`], compiled once per scalar (operator and preconditioner are
/// only called through their traits).
fn solve_impl<T: Scalar>(
    a: &dyn SelfAdjoint<T>,
    precond: &dyn Preconditioner<T>,
    b: &[T],
    k: usize,
    x: &mut [T],
    ws: &mut CgWorkspace<T>,
    params: &CgParams,
) -> Result<CgInfo<T>, KrylovError> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(KrylovError::NotSquare {
            nrows: n,
            ncols: a.ncols(),
        });
    }
    for (what, len) in [("right-hand sides", b.len()), ("solution block", x.len())] {
        if len != n * k {
            return Err(KrylovError::DimensionMismatch {
                what,
                expected: n * k,
                got: len,
            });
        }
    }
    if let Some(d) = precond.dim() {
        if d != n {
            return Err(KrylovError::DimensionMismatch {
                what: "preconditioner",
                expected: n,
                got: d,
            });
        }
    }
    let atol = params.atol;
    let rtol = params.rtol.unwrap_or_else(|| T::EPS.sqrt().to_f64());
    for (name, v) in [("atol", atol), ("rtol", rtol)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(KrylovError::InvalidParameter(format!(
                "CG tolerance {name} must be finite and non-negative, got {v:e}"
            )));
        }
    }
    if let Some(index) = reduce::first_non_finite(b) {
        return Err(KrylovError::NonFiniteStartVector { index });
    }
    if let Some(i) = reduce::first_non_finite(x) {
        return Err(KrylovError::InvalidParameter(format!(
            "CG initial guess has a non-finite entry at index {i}"
        )));
    }
    let max_iters = params
        .max_iters
        .unwrap_or((10 * crate::distributed::global_dim(n)).max(10));

    let mut info = CgInfo {
        iterations: vec![0; k],
        residual_norms: vec![T::ZERO; k],
        rhs_norms: vec![T::ZERO; k],
        converged: vec![false; k],
        num_matvecs: 0,
        num_block_applies: 0,
    };
    let mut thr = vec![T::ZERO; k];
    for c in 0..k {
        let bn = reduce::norm(&b[c * n..(c + 1) * n]);
        info.rhs_norms[c] = bn;
        thr[c] = T::from_f64(atol).max(T::from_f64(rtol) * bn);
    }
    ws.prepare(n, k, precond.scratch_len(k));

    // Zero right-hand sides: x = 0, converged.
    for c in 0..k {
        if info.rhs_norms[c] <= T::ZERO {
            x[c * n..(c + 1) * n].fill(T::ZERO);
            info.converged[c] = true;
        }
    }
    if crate::distributed::global_dim(n) == 0 || info.converged.iter().all(|c| *c) {
        return Ok(info);
    }

    // r₀ = b − A x₀ (one block product, only if some initial guess is non-zero).
    let nonzero_guess = !reduce::all_ranks(!x.iter().any(|v| v.abs() > T::ZERO));
    ws.r[..n * k].copy_from_slice(b);
    if nonzero_guess {
        a.apply_block(x, &mut ws.ap[..n * k], k);
        info.num_matvecs += k;
        info.num_block_applies += 1;
        for (ri, ai) in ws.r[..n * k].iter_mut().zip(&ws.ap[..n * k]) {
            *ri -= *ai;
        }
    }
    for s in 0..k {
        ws.rnorm[s] = reduce::norm(&ws.r[s * n..(s + 1) * n]);
        if !ws.rnorm[s].is_finite() {
            return Err(KrylovError::NonFinite {
                algorithm: ALGORITHM,
                step: 0,
            });
        }
    }

    let mut k_act = k;
    compact(ws, &mut info, &thr, n, &mut k_act);
    if k_act > 0 {
        precondition(precond, ws, n, k_act, 0)?;
        ws.p[..n * k_act].copy_from_slice(&ws.z[..n * k_act]);
    }

    let mut it = 0;
    while k_act > 0 && it < max_iters {
        a.apply_block(&ws.p[..n * k_act], &mut ws.ap[..n * k_act], k_act);
        info.num_matvecs += k_act;
        info.num_block_applies += 1;
        for s in 0..k_act {
            let rhs = ws.slot_rhs[s];
            let (ps, aps) = (&ws.p[s * n..(s + 1) * n], &ws.ap[s * n..(s + 1) * n]);
            let pap = reduce::dot(ps, aps);
            if !pap.is_finite() {
                return Err(KrylovError::NonFinite {
                    algorithm: ALGORITHM,
                    step: it,
                });
            }
            if pap <= T::ZERO {
                return Err(KrylovError::NonPositiveCurvature {
                    iteration: it,
                    rhs,
                    curvature: pap.to_f64(),
                });
            }
            let alpha = ws.rz[s] / pap;
            reduce::axpy(alpha, ps, &mut x[rhs * n..(rhs + 1) * n]);
            let rs = &mut ws.r[s * n..(s + 1) * n];
            reduce::axpy(-alpha, aps, rs);
            let rn = reduce::norm(rs);
            if !rn.is_finite() {
                return Err(KrylovError::NonFinite {
                    algorithm: ALGORITHM,
                    step: it,
                });
            }
            ws.rnorm[s] = rn;
            info.iterations[rhs] += 1;
        }
        compact(ws, &mut info, &thr, n, &mut k_act);
        if k_act == 0 {
            break;
        }
        let (rz, rz_old) = (&ws.rz[..k_act], &mut ws.rz_old[..k_act]);
        rz_old.copy_from_slice(rz);
        precondition(precond, ws, n, k_act, it + 1)?;
        for s in 0..k_act {
            let beta = ws.rz[s] / ws.rz_old[s];
            let (zs, ps) = (&ws.z[s * n..(s + 1) * n], &mut ws.p[s * n..(s + 1) * n]);
            for (pi, zi) in ps.iter_mut().zip(zs) {
                *pi = *zi + beta * *pi;
            }
        }
        it += 1;
    }

    let mut unconverged = Vec::new();
    for s in 0..k_act {
        let rhs = ws.slot_rhs[s];
        info.residual_norms[rhs] = ws.rnorm[s];
        unconverged.push(rhs);
    }
    if params.error_on_nonconvergence && !unconverged.is_empty() {
        unconverged.sort_unstable();
        let worst = unconverged
            .iter()
            .map(|&c| (info.residual_norms[c] / info.rhs_norms[c]).to_f64())
            .fold(0.0_f64, f64::max);
        return Err(KrylovError::InvalidParameter(format!(
            "conjugate gradients did not converge within {max_iters} iterations for right-hand \
             side(s) {unconverged:?} (largest relative residual {worst:e}); \
             error_on_nonconvergence is set"
        )));
    }
    Ok(info)
}

/// Marks the active slots whose residual reached the tolerance as converged and compacts them
/// out of the active range `0..k_act`.
fn compact<T: Scalar>(
    ws: &mut CgWorkspace<T>,
    info: &mut CgInfo<T>,
    thr: &[T],
    n: usize,
    k_act: &mut usize,
) {
    let mut s = 0;
    while s < *k_act {
        let rhs = ws.slot_rhs[s];
        if info.converged[rhs] || ws.rnorm[s] <= thr[rhs] {
            info.converged[rhs] = true;
            info.residual_norms[rhs] = ws.rnorm[s];
            ws.swap_slots(n, s, *k_act - 1);
            *k_act -= 1;
        } else {
            s += 1;
        }
    }
}

/// `z = M⁻¹ r` on the active slots and `rz = rᵀz` (which must be positive).
fn precondition<T: Scalar, P: Preconditioner<T> + ?Sized>(
    precond: &P,
    ws: &mut CgWorkspace<T>,
    n: usize,
    k_act: usize,
    step: usize,
) -> Result<(), KrylovError> {
    let len = precond.scratch_len(k_act);
    precond.apply_inverse_block(
        &ws.r[..n * k_act],
        &mut ws.z[..n * k_act],
        k_act,
        &mut ws.scratch[..len],
    );
    for s in 0..k_act {
        let rz = reduce::dot(&ws.r[s * n..(s + 1) * n], &ws.z[s * n..(s + 1) * n]);
        if !rz.is_finite() {
            return Err(KrylovError::NonFinite {
                algorithm: ALGORITHM,
                step,
            });
        }
        if rz <= T::ZERO {
            return Err(KrylovError::Preconditioner(format!(
                "rᵀM⁻¹r = {rz:e} ≤ 0 for right-hand side {} at CG iteration {step}: the \
                 preconditioner is not positive definite",
                ws.slot_rhs[s]
            )));
        }
        ws.rz[s] = rz;
    }
    Ok(())
}
