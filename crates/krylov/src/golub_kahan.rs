//! Golub–Kahan–Lanczos bidiagonalisation of a (possibly rectangular) operator.
//!
//! For `A ∈ R^{m×n}` and a start vector `b ∈ R^m` (the **left** side, as in LSQR; Golub & Kahan
//! 1965, Paige & Saunders 1982 "Bidiag 1"), `K` steps produce
//!
//! * `U = [u_0, …, u_{K−1}] ∈ R^{m×K}` and `V = [v_0, …, v_{K−1}] ∈ R^{n×K}` with orthonormal
//!   columns (in exact arithmetic; to working accuracy with full reorthogonalisation),
//! * the `K×K` **lower** bidiagonal `B` with diagonal `α_0..α_{K−1}` and sub-diagonal
//!   `β_1..β_{K−1}` (`B[i, i] = α_i`, `B[i+1, i] = β_{i+1}`),
//! * the residual `r = β_K u_K ∈ R^m` and `c = 1/‖b‖`,
//!
//! such that
//!
//! ```text
//! A V  = U B + r e_{K−1}ᵀ,     Uᵀ r = 0,
//! Aᵀ U = V Bᵀ                  (exactly: no residual term on this side),
//! U e_0 = c b.
//! ```
//!
//! Equivalently `A V = U₊ B₊` with `U₊ = [U, r/‖r‖]` and the `(K+1)×K` lower bidiagonal
//! `B₊ = [B; ‖r‖ e_{K−1}ᵀ]` ([`Bidiagonalization::bidiagonal_extended`]); at full depth
//! `K = min(m, n)` the singular values of `B₊` are those of `A`.
//!
//! The recursion (0-based), with `u_0 = b/‖b‖`, `β_0 = ‖b‖`, `v_{−1} = 0`:
//!
//! ```text
//! for j in 0..K:
//!     w = Aᵀ u_j − β_j v_{j−1};   [reorthogonalise against v_0..v_{j−1}];   α_j = ‖w‖;  v_j = w/α_j
//!     s = A v_j − α_j u_j;        [reorthogonalise against u_0..u_j];       β_{j+1} = ‖s‖;  u_{j+1} = s/β_{j+1}
//! r = s (the last one)
//! ```
//!
//! Reorthogonalisation, when enabled, is classical Gram–Schmidt applied twice through the
//! reduction layer ([`reduce::basis_t_vec`], [`reduce::basis_vec_acc`]): one GEMV-shaped pass
//! over the basis per sweep, not `j` separate dot products. It does not change `α`, `β`.
//!
//! # Breakdown
//! A coefficient is treated as zero when it is `≤ tol·scale`, with `scale` the largest norm of
//! `Aᵀu_j` or `A v_j` seen so far (a lower estimate of `‖A‖`) and `tol` = `breakdown_tol`
//! (default `max(m, n)·eps`). Breakdown is **not** an error; the iteration stops, the step is
//! recorded in [`Info::breakdown`], and the decomposition returned is the exact smaller one:
//!
//! * `β_{j+1} ≈ 0` after step `j`: depth `j+1`, `r = 0`, so `A V = U B` and `Aᵀ U = V Bᵀ` (an
//!   invariant singular subspace: the singular values of `B` are singular values of `A`). This
//!   always happens at full depth `K = m ≤ n`, and is then recorded with step `K`.
//! * `α_j ≈ 0` at step `j`: depth `j`, `r = β_j u_j` (the vector `u_j` with `Aᵀ u_j ∈ span V`);
//!   both relations above hold. If `j = 0` (`Aᵀ b ≈ 0`) the depth is zero and `r = b`.
//!
//! ```
//! use gradmat_krylov::golub_kahan::{golub_kahan, GkParams};
//! use gradmat_operators::dense::DenseMatrix;
//!
//! let a = DenseMatrix::<f64>::from_fn(5, 3, |i, j| 1.0 / (1.0 + i as f64 + 2.0 * j as f64)).unwrap();
//! let gk = golub_kahan(&a, &[1.0, 0.0, 2.0, 0.0, 1.0], &GkParams::new(2)).unwrap();
//! assert_eq!(gk.depth(), 2);
//! assert_eq!(gk.left_basis().len(), 5 * 2);
//! assert_eq!(gk.right_basis().len(), 3 * 2);
//! ```

use crate::reduce;
use crate::{Breakdown, BreakdownKind, Info, KrylovError, Reorthogonalize};
use gradmat_operators::{AdjointOperator, NonExhaustive, Scalar};

const ALGORITHM: &str = "Golub-Kahan bidiagonalisation";

/// Parameters of Golub–Kahan bidiagonalisation.
///
/// ```
/// use gradmat_krylov::golub_kahan::GkParams;
/// use gradmat_krylov::Reorthogonalize;
/// let p = GkParams { reorthogonalize: Reorthogonalize::None, ..GkParams::new(5) };
/// assert_eq!(p.depth, 5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GkParams {
    /// Depth `K`: steps, each one product with `Aᵀ` and one with `A`. Default 10.
    pub depth: usize,
    /// Full reorthogonalisation of both bases (classical Gram–Schmidt twice). Default
    /// [`Reorthogonalize::Full`].
    pub reorthogonalize: Reorthogonalize,
    /// Relative breakdown tolerance (see the [module](self) docs); `None` (default) means
    /// `max(m, n)·eps`.
    pub breakdown_tol: Option<f64>,
    #[doc(hidden)]
    pub non_exhaustive: NonExhaustive,
}

impl GkParams {
    /// The default parameters with depth `depth`.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            reorthogonalize: Reorthogonalize::Full,
            breakdown_tol: None,
            non_exhaustive: NonExhaustive::default(),
        }
    }
}

impl Default for GkParams {
    fn default() -> Self {
        Self::new(10)
    }
}

/// The result of [`golub_kahan`]: `A V = U B + r e_{K−1}ᵀ`, `Aᵀ U = V Bᵀ` (see the
/// [module](self) docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Bidiagonalization<T: Scalar> {
    m: usize,
    n: usize,
    depth: usize,
    u: Vec<T>,
    v: Vec<T>,
    alpha: Vec<T>,
    beta: Vec<T>,
    residual: Vec<T>,
    residual_norm: T,
    inv_norm: T,
    info: Info,
}

impl<T: Scalar> Bidiagonalization<T> {
    /// Rows `m` of the operator.
    pub fn nrows(&self) -> usize {
        self.m
    }
    /// Columns `n` of the operator.
    pub fn ncols(&self) -> usize {
        self.n
    }
    /// Depth `K` reached (the requested depth unless a breakdown occurred).
    pub fn depth(&self) -> usize {
        self.depth
    }
    /// `U`, `m×K`, column-major.
    pub fn left_basis(&self) -> &[T] {
        &self.u
    }
    /// The basis of the start vector's side, `U` (the accessor every decomposition of this
    /// crate shares; [`right_basis`](Self::right_basis) is `V`).
    pub fn basis(&self) -> &[T] {
        &self.u
    }
    /// `V`, `n×K`, column-major.
    pub fn right_basis(&self) -> &[T] {
        &self.v
    }
    /// Diagonal `α_0..α_{K−1}` of `B`.
    pub fn alpha(&self) -> &[T] {
        &self.alpha
    }
    /// Sub-diagonal `β_1..β_{K−1}` of `B` (`K−1` entries; `beta()[i] = B[i+1, i]`).
    pub fn beta(&self) -> &[T] {
        &self.beta
    }
    /// The `K×K` lower bidiagonal `B`, dense column-major (the accessor every decomposition
    /// of this crate shares).
    pub fn small_matrix(&self) -> Vec<T> {
        let k = self.depth;
        let mut b = vec![T::ZERO; k * k];
        for i in 0..k {
            b[i + i * k] = self.alpha[i];
            if i + 1 < k {
                b[i + 1 + i * k] = self.beta[i];
            }
        }
        b
    }
    /// The `(K+1)×K` lower bidiagonal `B₊ = [B; ‖r‖ e_{K−1}ᵀ]`, dense column-major.
    pub fn bidiagonal_extended(&self) -> Vec<T> {
        let k = self.depth;
        let mut b = vec![T::ZERO; (k + 1) * k];
        for i in 0..k {
            b[i + i * (k + 1)] = self.alpha[i];
            b[i + 1 + i * (k + 1)] = if i + 1 < k {
                self.beta[i]
            } else {
                self.residual_norm
            };
        }
        b
    }
    /// The residual `r = β_K u_K` (length `m`).
    pub fn residual(&self) -> &[T] {
        &self.residual
    }
    /// `‖r‖ = β_K`.
    pub fn residual_norm(&self) -> T {
        self.residual_norm
    }
    /// `c = 1/‖b‖`.
    pub fn inv_norm(&self) -> T {
        self.inv_norm
    }
    /// The run's [`Info`] (`num_transpose_matvecs` counts the products with `Aᵀ`).
    pub fn info(&self) -> &Info {
        &self.info
    }
}

/// Runs `params.depth` steps of Golub–Kahan bidiagonalisation of `A` (`m×n`) from the left start vector
/// `b ∈ R^m`.
///
/// # Errors
/// * [`KrylovError::DimensionMismatch`]: `b.len() != m`;
/// * [`KrylovError::DepthOutOfRange`]: `depth ∉ 1..=min(m, n)`;
/// * [`KrylovError::NonFiniteStartVector`] / [`KrylovError::ZeroStartVector`] /
///   [`KrylovError::StartVectorNormOutOfRange`] (a subnormal start vector);
/// * [`KrylovError::InvalidParameter`]: a negative or non-finite `breakdown_tol`;
/// * [`KrylovError::NonFinite`]: a NaN or infinity appeared (`step` = 0-based step `j`).
pub fn golub_kahan<T, A>(
    a: &A,
    b: &[T],
    params: &GkParams,
) -> Result<Bidiagonalization<T>, KrylovError>
where
    T: Scalar,
    A: AdjointOperator<T> + ?Sized,
{
    golub_kahan_impl(&a, b, params)
}

/// The body of [`golub_kahan`], compiled once per scalar (the operator is only called through
/// the trait).
fn golub_kahan_impl<T: Scalar>(
    a: &dyn AdjointOperator<T>,
    b: &[T],
    params: &GkParams,
) -> Result<Bidiagonalization<T>, KrylovError> {
    let (m, n) = (a.nrows(), a.ncols());
    let depth = params.depth;
    if b.len() != m {
        return Err(KrylovError::DimensionMismatch {
            what: "start vector",
            expected: m,
            got: b.len(),
        });
    }
    let max = crate::distributed::global_dim(m).min(crate::distributed::global_dim(n));
    if depth == 0 || depth > max {
        return Err(KrylovError::DepthOutOfRange { depth, max });
    }
    if let Some(index) = reduce::first_non_finite(b) {
        return Err(KrylovError::NonFiniteStartVector { index });
    }
    let tol = match params.breakdown_tol {
        Some(t) if t.is_finite() && t >= 0.0 => T::from_f64(t),
        Some(t) => {
            return Err(KrylovError::InvalidParameter(format!(
                "breakdown tolerance must be finite and non-negative, got {t:e}"
            )))
        }
        None => {
            let big = crate::distributed::global_dim(m).max(crate::distributed::global_dim(n));
            T::from_usize(big) * T::EPS
        }
    };
    let bnorm = reduce::norm(b);
    if bnorm <= T::ZERO {
        return Err(KrylovError::ZeroStartVector);
    }
    if bnorm.is_finite() && !(T::ONE / bnorm).is_finite() {
        return Err(KrylovError::StartVectorNormOutOfRange {
            norm: bnorm.to_f64(),
        });
    }
    if !bnorm.is_finite() {
        // Overflowing norm of finite entries.
        return Err(KrylovError::NonFinite {
            algorithm: ALGORITHM,
            step: 0,
        });
    }
    let kk = depth;
    let mut u = vec![T::ZERO; m * kk];
    let mut v = vec![T::ZERO; n * kk];
    let mut alpha = Vec::with_capacity(kk);
    let mut beta = Vec::with_capacity(kk);
    let mut wn = vec![T::ZERO; n];
    let mut wm = vec![T::ZERO; m];
    let mut h = vec![T::ZERO; kk];
    let mut info = Info::new(depth);
    let non_finite = |step| KrylovError::NonFinite {
        algorithm: ALGORITHM,
        step,
    };

    let inv_norm = T::ONE / bnorm;
    for (ui, bi) in u[..m].iter_mut().zip(b) {
        *ui = *bi * inv_norm;
    }
    // β_j of the current step (β_0 = ‖b‖), and the scale estimate of ‖A‖.
    let mut beta_j = bnorm;
    let mut scale = T::ZERO;
    let mut residual = vec![T::ZERO; m];
    let mut residual_norm = T::ZERO;
    let mut reached = kk;

    for j in 0..kk {
        // w = Aᵀ u_j − β_j v_{j−1}
        a.apply_transpose(&u[j * m..(j + 1) * m], &mut wn);
        info.num_transpose_matvecs += 1;
        // (Checked explicitly: the scaled norm of an all-NaN vector is not NaN.)
        let raw = reduce::norm(&wn);
        if !raw.is_finite() || reduce::first_non_finite(&wn).is_some() {
            return Err(non_finite(j));
        }
        scale = scale.max(raw);
        if j > 0 {
            reduce::axpy(-beta_j, &v[(j - 1) * n..j * n], &mut wn);
        }
        if params.reorthogonalize == Reorthogonalize::Full && j > 0 {
            reorthogonalize(&v, n, j, &mut wn, &mut h);
        }
        let alpha_j = reduce::norm(&wn);
        if !alpha_j.is_finite() {
            return Err(non_finite(j));
        }
        if alpha_j <= tol * scale {
            // α-breakdown: depth j, r = β_j u_j (= b exactly when j = 0).
            if j == 0 {
                residual.copy_from_slice(b);
            } else {
                for (ri, ui) in residual.iter_mut().zip(&u[j * m..(j + 1) * m]) {
                    *ri = beta_j * *ui;
                }
            }
            residual_norm = beta_j;
            reached = j;
            info.breakdown = Some(Breakdown {
                depth: j,
                kind: BreakdownKind::Alpha,
                norm: alpha_j.to_f64(),
                scale: scale.to_f64(),
            });
            break;
        }
        let vj = &mut v[j * n..(j + 1) * n];
        for (vi, wi) in vj.iter_mut().zip(&wn) {
            *vi = *wi / alpha_j;
        }
        alpha.push(alpha_j);

        // s = A v_j − α_j u_j
        a.apply(&v[j * n..(j + 1) * n], &mut wm);
        info.num_matvecs += 1;
        let raw = reduce::norm(&wm);
        if !raw.is_finite() || reduce::first_non_finite(&wm).is_some() {
            return Err(non_finite(j));
        }
        scale = scale.max(raw);
        reduce::axpy(-alpha_j, &u[j * m..(j + 1) * m], &mut wm);
        if params.reorthogonalize == Reorthogonalize::Full {
            reorthogonalize(&u, m, j + 1, &mut wm, &mut h);
        }
        let beta_next = reduce::norm(&wm);
        if !beta_next.is_finite() {
            return Err(non_finite(j));
        }
        if beta_next <= tol * scale {
            // β-breakdown: depth j+1, r = 0.
            reached = j + 1;
            residual_norm = T::ZERO;
            info.breakdown = Some(Breakdown {
                depth: j + 1,
                kind: BreakdownKind::Residual,
                norm: beta_next.to_f64(),
                scale: scale.to_f64(),
            });
            break;
        }
        if j + 1 == kk {
            residual.copy_from_slice(&wm);
            residual_norm = beta_next;
            break;
        }
        beta.push(beta_next);
        let un = &mut u[(j + 1) * m..(j + 2) * m];
        for (ui, si) in un.iter_mut().zip(&wm) {
            *ui = *si / beta_next;
        }
        beta_j = beta_next;
    }
    u.truncate(m * reached);
    v.truncate(n * reached);
    alpha.truncate(reached);
    beta.truncate(reached.saturating_sub(1));
    Ok(Bidiagonalization {
        m,
        n,
        depth: reached,
        u,
        v,
        alpha,
        beta,
        residual,
        residual_norm,
        inv_norm,
        info,
    })
}

/// `w ← (I − Q Qᵀ)² w` over the first `k` columns of `q` (classical Gram–Schmidt twice).
fn reorthogonalize<T: Scalar>(q: &[T], len: usize, k: usize, w: &mut [T], h: &mut [T]) {
    for _ in 0..2 {
        reduce::basis_t_vec(q, len, k, w, &mut h[..k]);
        reduce::basis_vec_acc(-T::ONE, q, len, k, &h[..k], w);
    }
}
