//! Arnoldi (Hessenberg) decomposition `A Q = Q H + r e_{K-1}ᵀ`.
//!
//! With `Q e₀ = c·v`, `c = 1/‖v‖`, `QᵀQ = I`, `Qᵀr = 0` (to rounding; exactly so only with
//! reorthogonalisation), and `H` upper Hessenberg. The recursion (Krämer et al. 2024, Alg. E.1,
//! with `c = 1/‖v‖`, see `ALGORITHMS.md`):
//!
//! ```text
//! w = v; len = ‖v‖; c = 1/len
//! for k in 0..K:
//!     q_k = w/len;  w = A q_k
//!     h = Q[:, ..=k]ᵀ w;  w -= Q[:, ..=k] h          # classical Gram–Schmidt
//!     if reorthogonalise: w -= Q (Qᵀ w)              # second pass, not added to H
//!     len = ‖w‖;  if k+1 < K: h[k+1] = len
//!     H[:, k] = h
//! r = w
//! ```
//!
//! Basis products run through [`crate::reduce`] as products with the whole basis (GEMV-shaped),
//! never as `k` separate dot products.
//!
//! ```
//! use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
//! use gradmat_operators::dense::DenseMatrix;
//!
//! let a = DenseMatrix::from_fn(6, 6, |i, j| 1.0 / (1.0 + i as f64 + 2.0 * j as f64)).unwrap();
//! let v = vec![1.0; 6];
//! let params = ArnoldiParams::new(4).reorthogonalize(Reorthogonalize::Full);
//! let dec = arnoldi(&a, &v, &params).unwrap();
//! assert_eq!(dec.depth(), 4);
//! assert!((dec.inv_norm() - 1.0 / 6f64.sqrt()).abs() < 1e-15);
//! ```

use crate::reduce;
use crate::KrylovError;
use gradmat_operators::{Operator, Scalar};

/// Whether to reorthogonalise the new Krylov vector against the whole basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reorthogonalize {
    /// Plain recursion: cheapest, but orthogonality is lost as Ritz values converge.
    #[default]
    None,
    /// A second classical Gram–Schmidt pass against the whole basis at every step.
    Full,
}

/// Parameters of [`arnoldi`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ArnoldiParams {
    /// Krylov depth `K`: the number of matrix–vector products (the budget).
    pub num_matvecs: usize,
    /// Reorthogonalisation of the forward pass.
    pub reorthogonalize: Reorthogonalize,
    /// Breakdown threshold: the iteration stops at an invariant subspace when the new vector's
    /// norm falls below `breakdown_tol · ‖A q_k‖` (relative to the step's own product: the
    /// rounding Gram–Schmidt leaves behind is of that size, and a small-eigenvalue direction of
    /// an ill-conditioned operator has a small `‖A q_k‖`). `None` uses `1000·√N·eps`.
    pub breakdown_tol: Option<f64>,
}

impl ArnoldiParams {
    /// `num_matvecs` = `k`, no reorthogonalisation, default breakdown threshold.
    pub fn new(k: usize) -> Self {
        Self {
            num_matvecs: k,
            reorthogonalize: Reorthogonalize::None,
            breakdown_tol: None,
        }
    }
    /// Sets the reorthogonalisation.
    pub fn reorthogonalize(mut self, r: Reorthogonalize) -> Self {
        self.reorthogonalize = r;
        self
    }
    /// Sets the relative breakdown threshold.
    pub fn breakdown_tol(mut self, tol: f64) -> Self {
        self.breakdown_tol = Some(tol);
        self
    }
}

impl Default for ArnoldiParams {
    fn default() -> Self {
        Self::new(10)
    }
}

/// An invariant Krylov subspace met before the budget was spent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakdown {
    /// 0-based step `k` whose new vector vanished: the returned decomposition has depth `k + 1`.
    pub step: usize,
    /// Norm of the (tiny) residual at that step.
    pub residual_norm: f64,
    /// The scale it was compared with: `‖A q_k‖` of the breakdown step.
    pub scale: f64,
}

/// What happened during a run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KrylovInfo {
    /// Matrix–vector products performed.
    pub num_matvecs: usize,
    /// Depth requested.
    pub requested_depth: usize,
    /// Set when an invariant subspace stopped the iteration early.
    pub breakdown: Option<Breakdown>,
}

/// The result of [`arnoldi`]: `A Q = Q H + r e_{K-1}ᵀ`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arnoldi<T: Scalar> {
    n: usize,
    k: usize,
    q: Vec<T>,
    h: Vec<T>,
    r: Vec<T>,
    c: T,
    reorth: Reorthogonalize,
    info: KrylovInfo,
}

impl<T: Scalar> Arnoldi<T> {
    /// An empty decomposition whose buffers [`arnoldi_into`] fills and reuses.
    pub fn empty() -> Self {
        Self {
            n: 0,
            k: 0,
            q: Vec::new(),
            h: Vec::new(),
            r: Vec::new(),
            c: T::ZERO,
            reorth: Reorthogonalize::None,
            info: KrylovInfo {
                num_matvecs: 0,
                requested_depth: 0,
                breakdown: None,
            },
        }
    }
    /// Dimension `N`.
    pub fn dim(&self) -> usize {
        self.n
    }
    /// Depth `K` actually reached (smaller than requested after a breakdown).
    pub fn depth(&self) -> usize {
        self.k
    }
    /// The basis `Q`, `N×K` column-major.
    pub fn basis(&self) -> &[T] {
        &self.q[..self.n * self.k]
    }
    /// Column `j` of the basis.
    pub fn basis_vector(&self, j: usize) -> &[T] {
        &self.q[j * self.n..(j + 1) * self.n]
    }
    /// `H`, `K×K` column-major upper Hessenberg.
    pub fn hessenberg(&self) -> &[T] {
        &self.h[..self.k * self.k]
    }
    /// Entry `H[i, j]`.
    pub fn h(&self, i: usize, j: usize) -> T {
        self.h[i + j * self.k]
    }
    /// The residual `r` (length `N`).
    pub fn residual(&self) -> &[T] {
        &self.r
    }
    /// `c = 1/‖v‖`.
    pub fn inv_norm(&self) -> T {
        self.c
    }
    /// Whether the forward pass reorthogonalised.
    pub fn reorthogonalized(&self) -> Reorthogonalize {
        self.reorth
    }
    /// Run information.
    pub fn info(&self) -> &KrylovInfo {
        &self.info
    }
}

/// Validates operator shape, start vector and depth; returns `‖v‖`.
pub(crate) fn validate_start<T: Scalar, A: Operator<T> + ?Sized>(
    op: &A,
    v: &[T],
    k: usize,
) -> Result<T, KrylovError> {
    let (m, n) = (op.nrows(), op.ncols());
    if m != n {
        return Err(KrylovError::NotSquare { nrows: m, ncols: n });
    }
    if v.len() != n {
        return Err(KrylovError::DimensionMismatch {
            what: "start vector",
            expected: n,
            got: v.len(),
        });
    }
    if k == 0 || k > n {
        return Err(KrylovError::DepthOutOfRange { depth: k, max: n });
    }
    if let Some(index) = reduce::first_non_finite(v) {
        return Err(KrylovError::NonFiniteStartVector { index });
    }
    let len = reduce::norm(v);
    if len == T::ZERO {
        return Err(KrylovError::ZeroStartVector);
    }
    Ok(len)
}

pub(crate) fn default_breakdown_tol<T: Scalar>(n: usize, tol: Option<f64>) -> T {
    match tol {
        Some(t) => T::from_f64(t),
        None => T::from_f64(1000.0 * (n as f64).sqrt()) * T::EPS,
    }
}

/// Runs `params.num_matvecs` steps of Arnoldi on `op` from `v`.
///
/// # Errors
/// Non-square operator, wrong start-vector length, zero or non-finite start vector, depth outside
/// `1..=N`, or a non-finite value produced by the operator (with the step).
pub fn arnoldi<T: Scalar, A: Operator<T> + ?Sized>(
    op: &A,
    v: &[T],
    params: &ArnoldiParams,
) -> Result<Arnoldi<T>, KrylovError> {
    let mut out = Arnoldi::empty();
    arnoldi_into(op, v, params, &mut out)?;
    Ok(out)
}

/// Like [`arnoldi`], reusing the buffers of `out` (no allocation when sizes repeat).
pub fn arnoldi_into<T: Scalar, A: Operator<T> + ?Sized>(
    op: &A,
    v: &[T],
    params: &ArnoldiParams,
    out: &mut Arnoldi<T>,
) -> Result<(), KrylovError> {
    let kmax = params.num_matvecs;
    let len0 = validate_start(op, v, kmax)?;
    let n = v.len();
    let tol = default_breakdown_tol::<T>(n, params.breakdown_tol);
    // Every column is written before it is read: only grow the buffer (no zero-fill pass over
    // N·K entries on reuse).
    out.q.resize(n * kmax, T::ZERO);
    out.h.clear();
    out.h.resize(kmax * kmax, T::ZERO);
    out.r.resize(n, T::ZERO);
    out.n = n;
    out.c = T::ONE / len0;
    out.reorth = params.reorthogonalize;
    out.info = KrylovInfo {
        num_matvecs: 0,
        requested_depth: kmax,
        breakdown: None,
    };
    let mut hcol = vec![T::ZERO; kmax];
    let mut hcorr = vec![T::ZERO; kmax];
    // q_0 = v / ‖v‖
    for (qi, vi) in out.q[..n].iter_mut().zip(v) {
        *qi = *vi * out.c;
    }
    let w = &mut out.r;
    let mut depth = kmax;
    for k in 0..kmax {
        op.apply(&out.q[k * n..(k + 1) * n], w);
        out.info.num_matvecs += 1;
        let wnorm = reduce::norm(w);
        if !wnorm.is_finite() {
            return Err(KrylovError::NonFinite {
                algorithm: "arnoldi",
                step: k,
            });
        }
        // Rounding left after Gram–Schmidt is relative to this step's ‖A q_k‖ (see lanczos).
        let scale = wnorm;
        let cols = k + 1;
        reduce::basis_t_vec(&out.q, n, cols, w, &mut hcol);
        if params.reorthogonalize == Reorthogonalize::Full {
            // Subtraction and the second projection in one pass over the basis.
            reduce::basis_vec_acc_t_vec(-T::ONE, &out.q, n, cols, &hcol, w, &mut hcorr);
            reduce::basis_vec_acc(-T::ONE, &out.q, n, cols, &hcorr, w);
        } else {
            reduce::basis_vec_acc(-T::ONE, &out.q, n, cols, &hcol, w);
        }
        let len = reduce::norm(w);
        if !len.is_finite() {
            return Err(KrylovError::NonFinite {
                algorithm: "arnoldi",
                step: k,
            });
        }
        out.h[k * kmax..k * kmax + cols].copy_from_slice(&hcol[..cols]);
        if k + 1 < kmax {
            if len <= tol * scale {
                out.info.breakdown = Some(Breakdown {
                    step: k,
                    residual_norm: len.to_f64(),
                    scale: scale.to_f64(),
                });
                depth = k + 1;
                break;
            }
            out.h[k + 1 + k * kmax] = len;
            let inv = T::ONE / len;
            let (_, rest) = out.q.split_at_mut((k + 1) * n);
            for (qi, wi) in rest[..n].iter_mut().zip(w.iter()) {
                *qi = *wi * inv;
            }
        }
    }
    if depth < kmax {
        // Compact H from kmax×kmax to depth×depth (column-major) and truncate Q.
        for j in 0..depth {
            for i in 0..depth {
                out.h[i + j * depth] = out.h[i + j * kmax];
            }
        }
        out.h.truncate(depth * depth);
        out.q.truncate(depth * n);
    }
    out.k = depth;
    Ok(())
}
