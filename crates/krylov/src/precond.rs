//! Preconditioners for [conjugate gradients](crate::cg): the [`Preconditioner`] trait, the
//! [`IdentityPreconditioner`] and a pivoted partial Cholesky preconditioner
//! ([`PartialCholesky`]) for kernel-type matrices.
//!
//! # Pivoted partial Cholesky
//!
//! For a symmetric positive semi-definite `K` (typically a kernel matrix, accessed only through
//! its diagonal and single columns, [`ColumnAccess`]) and a noise level `σ² > 0`, the
//! preconditioner of the system `(K + σ² I) x = b` is
//!
//! ```text
//! P = L Lᵀ + σ² I,        L ∈ R^{n×k},
//! ```
//!
//! where `L` is the rank-`k` pivoted partial Cholesky factor of `K` (Harbrecht, Peters &
//! Schneider 2012; Gardner et al., GPyTorch, NeurIPS 2018): at every step the pivot is the
//! largest remaining diagonal entry `d_i = K_ii − Σ_j L_ij²`, and the new column is
//! `l = (K[:, i] − L L[i, :]ᵀ) / √d_i`. The trace of the remaining diagonal, `Σ_i d_i =
//! tr(K − L Lᵀ)`, is the error of the low-rank approximation in the trace (nuclear) norm and is
//! reported by [`PartialCholesky::residual_trace`].
//!
//! `P⁻¹` is applied through the Woodbury identity with the small `k×k` matrix
//! `S = σ² I_k + LᵀL = C Cᵀ` (Cholesky):
//!
//! ```text
//! P⁻¹ r = σ⁻² (r − L S⁻¹ Lᵀ r),
//! log det P = n log σ² + log det(I_k + LᵀL/σ²) = (n − k) log σ² + 2 Σ_i log C_ii.
//! ```
//!
//! Pass the matrix **without** the noise term: the factor approximates `K`, and `σ²` is added
//! separately. (If the operator's columns already include `σ² I`, the preconditioner
//! approximates `K + 2σ² I`.)
//!
//! ```
//! use gradmat_krylov::precond::{PartialCholesky, PartialCholeskyParams, Preconditioner};
//! use gradmat_operators::kernel::{KernelKind, KernelMatrix};
//!
//! // Squared-exponential kernel on the points 0 and 1: K = [[1, e^{-1/2}], [e^{-1/2}, 1]].
//! let k = KernelMatrix::isotropic(KernelKind::SquaredExponential, 2, 1, vec![0.0, 1.0], 1.0, 1.0)
//!     .unwrap();
//! let sigma2 = 0.5;
//! let pc = PartialCholesky::new(&k, sigma2, &PartialCholeskyParams::new(2)).unwrap();
//! assert_eq!(pc.rank(), 2);
//! // Full rank, so P = K + σ² I exactly: det = (1 + σ²)² − e^{-1}.
//! let det: f64 = (1.0 + sigma2) * (1.0 + sigma2) - (-1.0_f64).exp();
//! assert!((pc.log_det() - det.ln()).abs() < 1e-14);
//! // P⁻¹ (P x) = x
//! let x = [1.0, -2.0];
//! let mut px = [0.0; 2];
//! pc.apply_matrix(&x, &mut px);
//! let mut z = [0.0; 2];
//! let mut scratch = vec![0.0; pc.scratch_len(1)];
//! pc.apply_inverse(&px, &mut z, &mut scratch);
//! assert!((z[0] - 1.0).abs() < 1e-14 && (z[1] + 2.0).abs() < 1e-14);
//! ```

use crate::reduce;
use crate::KrylovError;
use gradmat_operators::{ColumnAccess, NonExhaustive, Scalar};
use std::sync::Arc;

/// A symmetric positive definite preconditioner `M ≈ A`, applied through its inverse.
///
/// Application takes a caller-provided scratch slice of length at least
/// [`scratch_len(k)`](Preconditioner::scratch_len) so that solvers can allocate it once
/// (faer's scratch-space convention) and apply the preconditioner without allocating.
///
/// Blocks are column-major contiguous, as for [`Operator`](gradmat_operators::Operator).
pub trait Preconditioner<T: Scalar>: Send + Sync {
    /// The dimension `n` the preconditioner acts on, or `None` if it acts on vectors of any
    /// length (the identity).
    fn dim(&self) -> Option<usize>;

    /// Length of the scratch slice needed to apply the inverse to a block of `k` vectors.
    fn scratch_len(&self, k: usize) -> usize {
        let _ = k;
        0
    }

    /// Writes `Z = M⁻¹ R` for a column-major block of `k` vectors of length `n`
    /// (`r.len() == z.len() == n·k`). `scratch.len() ≥ scratch_len(k)`.
    ///
    /// # Panics
    /// May panic when slice lengths are inconsistent (solvers validate dimensions once).
    fn apply_inverse_block(&self, r: &[T], z: &mut [T], k: usize, scratch: &mut [T]);

    /// Writes `z = M⁻¹ r` for one vector; `scratch.len() ≥ scratch_len(1)`.
    fn apply_inverse(&self, r: &[T], z: &mut [T], scratch: &mut [T]) {
        self.apply_inverse_block(r, z, 1, scratch)
    }
}

/// The identity preconditioner `M = I` (plain conjugate gradients); acts on any dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityPreconditioner;

impl<T: Scalar> Preconditioner<T> for IdentityPreconditioner {
    fn dim(&self) -> Option<usize> {
        None
    }
    fn apply_inverse_block(&self, r: &[T], z: &mut [T], _k: usize, _scratch: &mut [T]) {
        z.copy_from_slice(r);
    }
}

macro_rules! forward_preconditioner {
    ($($ptr:ty),*) => {$(
        impl<T: Scalar, P: Preconditioner<T> + ?Sized> Preconditioner<T> for $ptr {
            fn dim(&self) -> Option<usize> { (**self).dim() }
            fn scratch_len(&self, k: usize) -> usize { (**self).scratch_len(k) }
            fn apply_inverse_block(&self, r: &[T], z: &mut [T], k: usize, scratch: &mut [T]) {
                (**self).apply_inverse_block(r, z, k, scratch)
            }
            fn apply_inverse(&self, r: &[T], z: &mut [T], scratch: &mut [T]) {
                (**self).apply_inverse(r, z, scratch)
            }
        }
    )*};
}

forward_preconditioner!(&P, &mut P, Box<P>, Arc<P>);

/// Parameters of the pivoted partial Cholesky factorisation.
///
/// ```
/// use gradmat_krylov::precond::PartialCholeskyParams;
/// let p = PartialCholeskyParams { tol: 1e-8, ..PartialCholeskyParams::new(15) };
/// assert_eq!(p.rank, 15);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PartialCholeskyParams {
    /// Maximal rank `k` of the factor (`0 ≤ k ≤ n`). Default 10.
    pub rank: usize,
    /// Absolute stopping tolerance: the factorisation stops early (with a smaller rank) when the
    /// largest remaining diagonal entry is `≤ tol`. Default `0`. Independently of `tol`, a
    /// remaining diagonal `≤ 16·n·eps·max_i K_ii` is treated as zero (rounding level), so that
    /// numerically rank-deficient matrices stop instead of pivoting on rounding noise.
    pub tol: f64,
    #[doc(hidden)]
    pub non_exhaustive: NonExhaustive,
}

impl Default for PartialCholeskyParams {
    fn default() -> Self {
        Self::new(10)
    }
}

impl PartialCholeskyParams {
    /// The default parameters with maximal rank `rank`.
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            tol: 0.0,
            non_exhaustive: NonExhaustive::default(),
        }
    }
}

/// The pivoted partial Cholesky preconditioner `P = L Lᵀ + σ² I` (see the [module](self) docs).
#[derive(Debug, Clone)]
pub struct PartialCholesky<T: Scalar> {
    n: usize,
    rank: usize,
    /// `n×rank`, column-major.
    l: Vec<T>,
    pivots: Vec<usize>,
    sigma2: T,
    /// Lower Cholesky factor `C` of `S = σ² I + LᵀL`, `rank×rank`, column-major.
    chol: Vec<T>,
    log_det: T,
    residual_trace: T,
}

impl<T: Scalar> PartialCholesky<T> {
    /// Factorises `K` (accessed through its diagonal and `rank` columns) and builds
    /// `P = L Lᵀ + σ² I`.
    ///
    /// # Errors
    /// * [`KrylovError::NotSquare`] if `K` is not square;
    /// * [`KrylovError::InvalidParameter`] if `σ² ≤ 0` or non-finite, `rank > n`, or `tol` is
    ///   negative or non-finite;
    /// * [`KrylovError::Preconditioner`] if the diagonal or a column of `K` contains a non-finite
    ///   value, or the diagonal has a negative entry (`K` is not positive semi-definite).
    pub fn new<A: ColumnAccess<T> + ?Sized>(
        a: &A,
        sigma2: T,
        params: &PartialCholeskyParams,
    ) -> Result<Self, KrylovError> {
        let n = a.nrows();
        if a.ncols() != n {
            return Err(KrylovError::NotSquare {
                nrows: n,
                ncols: a.ncols(),
            });
        }
        check_sigma2(sigma2)?;
        if params.rank > n {
            return Err(KrylovError::InvalidParameter(format!(
                "partial Cholesky rank {} exceeds the dimension {n}",
                params.rank
            )));
        }
        if !(params.tol.is_finite() && params.tol >= 0.0) {
            return Err(KrylovError::InvalidParameter(format!(
                "partial Cholesky tolerance must be finite and non-negative, got {:e}",
                params.tol
            )));
        }
        let kmax = params.rank;
        let mut d = vec![T::ZERO; n];
        a.diagonal(&mut d);
        if let Some(i) = reduce::first_non_finite(&d) {
            return Err(KrylovError::Preconditioner(format!(
                "diagonal entry {i} is not finite"
            )));
        }
        if let Some(i) = d.iter().position(|v| *v < T::ZERO) {
            return Err(KrylovError::Preconditioner(format!(
                "diagonal entry {i} is negative ({:e}): matrix is not positive semi-definite",
                d[i]
            )));
        }
        let dmax0 = d.iter().fold(T::ZERO, |m, v| m.max(*v));
        let floor = T::from_f64(16.0) * T::from_usize(n.max(1)) * T::EPS * dmax0;
        let stop = T::from_f64(params.tol).max(floor);

        let mut l = vec![T::ZERO; n * kmax];
        let mut pivoted = vec![false; n];
        let mut pivots = Vec::with_capacity(kmax);
        let mut row = vec![T::ZERO; kmax];
        let mut rank = 0;
        while rank < kmax {
            // Largest remaining diagonal over the rows not yet pivoted.
            let mut best: Option<(usize, T)> = None;
            for (i, (&di, &p)) in d.iter().zip(&pivoted).enumerate() {
                if !p && best.is_none_or(|(_, b)| di > b) {
                    best = Some((i, di));
                }
            }
            let Some((piv, dpiv)) = best else { break };
            if dpiv <= stop || dpiv <= T::ZERO {
                break;
            }
            let (done, rest) = l.split_at_mut(rank * n);
            let col = &mut rest[..n];
            a.column(piv, col);
            if let Some(i) = reduce::first_non_finite(col) {
                return Err(KrylovError::Preconditioner(format!(
                    "column {piv} has a non-finite entry at row {i}"
                )));
            }
            // col -= L[:, ..rank] L[piv, ..rank]ᵀ
            for (j, rj) in row.iter_mut().enumerate().take(rank) {
                *rj = done[piv + j * n];
            }
            reduce::basis_vec_acc(-T::ONE, done, n, rank, &row[..rank], col);
            let s = dpiv.sqrt();
            reduce::scale(T::ONE / s, col);
            // Rows already pivoted are exactly zero in exact arithmetic.
            for (c, &p) in col.iter_mut().zip(&pivoted) {
                if p {
                    *c = T::ZERO;
                }
            }
            col[piv] = s;
            pivoted[piv] = true;
            for (di, &c) in d.iter_mut().zip(col.iter()) {
                *di = (*di - c * c).max(T::ZERO);
            }
            d[piv] = T::ZERO;
            pivots.push(piv);
            rank += 1;
        }
        l.truncate(n * rank);
        let residual_trace = d
            .iter()
            .zip(&pivoted)
            .filter(|(_, p)| !**p)
            .fold(T::ZERO, |s, (v, _)| s + *v);
        let mut out = Self::assemble(n, rank, l, sigma2)?;
        out.pivots = pivots;
        out.residual_trace = residual_trace;
        Ok(out)
    }

    /// `P = L Lᵀ + σ² I` from a given `n×rank` column-major factor `L` (no pivoting; the
    /// [`pivots`](Self::pivots) are empty and the [`residual_trace`](Self::residual_trace) is
    /// zero since no matrix is known).
    ///
    /// # Errors
    /// [`KrylovError::DimensionMismatch`] if `l.len() != n·rank`, [`KrylovError::InvalidParameter`]
    /// for `σ² ≤ 0`, non-finite `σ²` or `rank > n`, [`KrylovError::Preconditioner`] for non-finite
    /// entries of `L`.
    pub fn from_factor(n: usize, rank: usize, l: Vec<T>, sigma2: T) -> Result<Self, KrylovError> {
        check_sigma2(sigma2)?;
        // Distributed (a scope of `crate::distributed`): `l` holds this rank's rows, and the
        // checks use the global dimension.
        if rank > crate::distributed::global_dim(n) {
            return Err(KrylovError::InvalidParameter(format!(
                "factor rank {rank} exceeds the dimension {n}"
            )));
        }
        if l.len() != n * rank {
            return Err(KrylovError::DimensionMismatch {
                what: "partial Cholesky factor",
                expected: n * rank,
                got: l.len(),
            });
        }
        if let Some(i) = reduce::first_non_finite(&l) {
            return Err(KrylovError::Preconditioner(format!(
                "factor entry {i} is not finite"
            )));
        }
        Self::assemble(n, rank, l, sigma2)
    }

    fn assemble(n: usize, rank: usize, l: Vec<T>, sigma2: T) -> Result<Self, KrylovError> {
        // S = σ² I + LᵀL (column j = Lᵀ l_j), through the reduction layer.
        let mut s = vec![T::ZERO; rank * rank];
        for j in 0..rank {
            let (lj, sj) = (&l[j * n..(j + 1) * n], &mut s[j * rank..(j + 1) * rank]);
            reduce::basis_t_vec(&l, n, rank, lj, sj);
            sj[j] += sigma2;
        }
        // Symmetrise (the two triangles agree up to rounding) and factor S = C Cᵀ.
        let chol = cholesky_lower(&s, rank).ok_or_else(|| {
            KrylovError::Preconditioner(
                "σ² I + LᵀL is not numerically positive definite".to_string(),
            )
        })?;
        let mut log_det = T::from_usize(crate::distributed::global_dim(n) - rank) * sigma2.ln();
        for i in 0..rank {
            log_det += T::from_f64(2.0) * chol[i + i * rank].ln();
        }
        if !log_det.is_finite() {
            return Err(KrylovError::Preconditioner(
                "log-determinant is not finite".to_string(),
            ));
        }
        Ok(Self {
            n,
            rank,
            l,
            pivots: Vec::new(),
            sigma2,
            chol,
            log_det,
            residual_trace: T::ZERO,
        })
    }

    /// Dimension `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The rank actually used (`≤` the requested rank when the factorisation stopped early).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The factor `L`, `n×rank`, column-major.
    pub fn factor(&self) -> &[T] {
        &self.l
    }

    /// Pivot rows in the order chosen (`rank` entries; empty for [`from_factor`](Self::from_factor)).
    pub fn pivots(&self) -> &[usize] {
        &self.pivots
    }

    /// The noise level `σ²`.
    pub fn sigma2(&self) -> T {
        self.sigma2
    }

    /// `tr(K − L Lᵀ)`, the sum of the remaining diagonal: the trace-norm error of the low-rank
    /// approximation (zero for [`from_factor`](Self::from_factor)).
    pub fn residual_trace(&self) -> T {
        self.residual_trace
    }

    /// `log det(L Lᵀ + σ² I) = (n − k) log σ² + log det(σ² I_k + LᵀL)`.
    pub fn log_det(&self) -> T {
        self.log_det
    }

    /// Writes `y = P x = L (Lᵀ x) + σ² x` (for tests and diagnostics; allocates nothing).
    ///
    /// # Panics
    /// If `x.len() != n` or `y.len() != n`.
    pub fn apply_matrix(&self, x: &[T], y: &mut [T]) {
        let n = self.n;
        assert!(
            x.len() == n && y.len() == n,
            "PartialCholesky::apply_matrix: lengths {} and {}, expected {n}",
            x.len(),
            y.len()
        );
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = self.sigma2 * *xi;
        }
        for j in 0..self.rank {
            let lj = &self.l[j * n..(j + 1) * n];
            let c = reduce::dot(lj, x);
            reduce::axpy(c, lj, y);
        }
    }

    /// Solves `C Cᵀ t = t` in place (`C` the lower Cholesky factor of `S`).
    fn solve_small(&self, t: &mut [T]) {
        let k = self.rank;
        let c = &self.chol;
        for i in 0..k {
            let mut s = t[i];
            for j in 0..i {
                s -= c[i + j * k] * t[j];
            }
            t[i] = s / c[i + i * k];
        }
        for i in (0..k).rev() {
            let mut s = t[i];
            for j in i + 1..k {
                s -= c[j + i * k] * t[j];
            }
            t[i] = s / c[i + i * k];
        }
    }
}

impl<T: Scalar> Preconditioner<T> for PartialCholesky<T> {
    fn dim(&self) -> Option<usize> {
        Some(self.n)
    }

    fn scratch_len(&self, _k: usize) -> usize {
        self.rank
    }

    /// `Z = σ⁻² (R − L S⁻¹ Lᵀ R)`: column by column (`Lᵀ r` through
    /// [`reduce::basis_t_vec`], `r − L t` through [`reduce::basis_vec_acc`]), or, for blocks
    /// of at least [`GEMM_MIN_COLS`] columns, by two GEMMs over row chunks
    /// ([`reduce::basis_t_mat`], [`reduce::basis_mat`]) that read `L` twice per block instead
    /// of twice per column (the same values to rounding; deterministic either way).
    fn apply_inverse_block(&self, r: &[T], z: &mut [T], k: usize, scratch: &mut [T]) {
        let n = self.n;
        assert!(
            r.len() == n * k && z.len() == n * k && scratch.len() >= self.rank,
            "PartialCholesky::apply_inverse_block: lengths {}, {}, scratch {}; expected {n}·{k} \
             and scratch ≥ {}",
            r.len(),
            z.len(),
            scratch.len(),
            self.rank
        );
        let inv = T::ONE / self.sigma2;
        if self.rank > 0 && k >= GEMM_MIN_COLS {
            let mut t = reduce::basis_t_mat(&self.l, n, self.rank, r, k);
            for tc in t.chunks_exact_mut(self.rank) {
                self.solve_small(tc);
            }
            let u = reduce::basis_mat(&self.l, n, self.rank, &t, k);
            reduce::for_each_chunk(z, |o, zc| {
                for ((zi, ri), ui) in zc.iter_mut().zip(&r[o..]).zip(&u[o..]) {
                    *zi = inv * (*ri - *ui);
                }
            });
            return;
        }
        let t = &mut scratch[..self.rank];
        for c in 0..k {
            let (rc, zc) = (&r[c * n..(c + 1) * n], &mut z[c * n..(c + 1) * n]);
            zc.copy_from_slice(rc);
            if self.rank > 0 {
                reduce::basis_t_vec(&self.l, n, self.rank, rc, t);
                self.solve_small(t);
                reduce::basis_vec_acc(-T::ONE, &self.l, n, self.rank, t, zc);
            }
            reduce::scale(inv, zc);
        }
    }
}

/// Blocks of at least this many columns apply [`PartialCholesky`]'s inverse by GEMMs (a block
/// of variance solves, say); smaller ones (CG's usual blocks) column by column.
pub const GEMM_MIN_COLS: usize = 32;

fn check_sigma2<T: Scalar>(sigma2: T) -> Result<(), KrylovError> {
    if sigma2.is_finite() && sigma2 > T::ZERO {
        Ok(())
    } else {
        Err(KrylovError::InvalidParameter(format!(
            "noise level σ² must be positive and finite, got {sigma2:e}"
        )))
    }
}

/// Lower Cholesky factor of the symmetric `k×k` column-major matrix `s` (lower triangle read),
/// or `None` if a pivot is not positive and finite.
fn cholesky_lower<T: Scalar>(s: &[T], k: usize) -> Option<Vec<T>> {
    let mut c = vec![T::ZERO; k * k];
    for j in 0..k {
        let mut djj = s[j + j * k];
        for p in 0..j {
            djj -= c[j + p * k] * c[j + p * k];
        }
        if !(djj.is_finite() && djj > T::ZERO) {
            return None;
        }
        let cjj = djj.sqrt();
        c[j + j * k] = cjj;
        for i in j + 1..k {
            // Average the two triangles of S so rounding asymmetry does not matter.
            let mut v = (s[i + j * k] + s[j + i * k]) / T::from_f64(2.0);
            for p in 0..j {
                v -= c[i + p * k] * c[j + p * k];
            }
            c[i + j * k] = v / cjj;
        }
    }
    Some(c)
}
