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
//! let params = ArnoldiParams { reorthogonalize: Reorthogonalize::Full, ..ArnoldiParams::new(4) };
//! let dec = arnoldi(&a, &v, &params).unwrap();
//! assert_eq!(dec.depth(), 4);
//! assert!((dec.inv_norm() - 1.0 / 6f64.sqrt()).abs() < 1e-15);
//! ```

use crate::reduce;
use crate::KrylovError;
use gradmat_operators::{Operator, Scalar};

pub use crate::Reorthogonalize;
use crate::{Breakdown, BreakdownKind, Info};
use gradmat_operators::NonExhaustive;

/// Parameters of [`arnoldi`].
///
/// ```
/// use gradmat_krylov::arnoldi::ArnoldiParams;
/// use gradmat_krylov::Reorthogonalize;
/// let p = ArnoldiParams { reorthogonalize: Reorthogonalize::Full, ..ArnoldiParams::new(20) };
/// assert_eq!(p.depth, 20);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ArnoldiParams {
    /// Krylov depth `K`: the number of matrix–vector products (the budget). Default 10.
    pub depth: usize,
    /// Reorthogonalisation of the forward pass. Default none.
    pub reorthogonalize: Reorthogonalize,
    /// Breakdown threshold: the iteration stops at an invariant subspace when the new vector's
    /// norm falls below `breakdown_tol · ‖A q_k‖` (relative to the step's own product: the
    /// rounding Gram–Schmidt leaves behind is of that size, and a small-eigenvalue direction of
    /// an ill-conditioned operator has a small `‖A q_k‖`). `None` uses `1000·√N·eps`.
    pub breakdown_tol: Option<f64>,
    #[doc(hidden)]
    pub non_exhaustive: NonExhaustive,
}

impl ArnoldiParams {
    /// The default parameters with depth `depth`.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            reorthogonalize: Reorthogonalize::None,
            breakdown_tol: None,
            non_exhaustive: NonExhaustive::default(),
        }
    }
}

impl Default for ArnoldiParams {
    fn default() -> Self {
        Self::new(10)
    }
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
    info: Info,
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
            info: Info::new(0),
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
    /// The small matrix `H` (`K×K`, column-major; a copy of [`hessenberg`](Self::hessenberg)),
    /// the accessor every decomposition of this crate shares.
    pub fn small_matrix(&self) -> Vec<T> {
        self.hessenberg().to_vec()
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
    pub fn info(&self) -> &Info {
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
    // The global dimension (the same decision on every rank of a distributed run).
    let big_n = crate::distributed::global_dim(n);
    if k == 0 || k > big_n {
        return Err(KrylovError::DepthOutOfRange {
            depth: k,
            max: big_n,
        });
    }
    if let Some(index) = reduce::first_non_finite(v) {
        return Err(KrylovError::NonFiniteStartVector { index });
    }
    let len = reduce::norm(v);
    if len == T::ZERO {
        return Err(KrylovError::ZeroStartVector);
    }
    if !len.is_finite() || !(T::ONE / len).is_finite() {
        return Err(KrylovError::StartVectorNormOutOfRange { norm: len.to_f64() });
    }
    Ok(len)
}

pub(crate) fn default_breakdown_tol<T: Scalar>(n: usize, tol: Option<f64>) -> T {
    match tol {
        Some(t) => T::from_f64(t),
        None => {
            let n = crate::distributed::global_dim(n);
            T::from_f64(1000.0 * (n as f64).sqrt()) * T::EPS
        }
    }
}

/// Runs `params.depth` steps of Arnoldi on `op` from `v`.
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
    arnoldi_impl(&op, v, params, out)
}

/// The body of [`arnoldi_into`], compiled once per scalar: the operator is only called through
/// the trait, so monomorphising the whole loop per operator type buys nothing (faer's pattern).
fn arnoldi_impl<T: Scalar>(
    op: &dyn Operator<T>,
    v: &[T],
    params: &ArnoldiParams,
    out: &mut Arnoldi<T>,
) -> Result<(), KrylovError> {
    let kmax = params.depth;
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
    out.info = Info::new(kmax);
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
        let cols = k + 1;
        // ‖A q_k‖ and the first projection Qᵀ(A q_k): one message when distributed.
        let wnorm = reduce::norm_and_basis_t_vec(&out.q, n, cols, w, &mut hcol);
        if !wnorm.is_finite() {
            return Err(KrylovError::NonFinite {
                algorithm: "arnoldi",
                step: k,
            });
        }
        // Rounding left after Gram–Schmidt is relative to this step's ‖A q_k‖ (see lanczos).
        let scale = wnorm;
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
                    depth: k + 1,
                    kind: BreakdownKind::Residual,
                    norm: len.to_f64(),
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
