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
    arnoldi_impl(&op, v, params, false, out)
}

/// Arnoldi with full reorthogonalisation for a **self-adjoint** operator (the fully
/// reorthogonalised Lanczos run): each step first removes the two large components by the
/// three-term recursion (`w = A q_k − b_{k−1} q_{k−1} − a_k q_k`, `a_k = q_kᵀ(A q_k)`), then
/// makes one classical Gram–Schmidt pass over the whole basis, and a second one only when that
/// pass cancelled more than a factor `1/√2` of the norm (the Daniel–Gragg–Kaufman–Stewart
/// criterion: otherwise the first pass already leaves `w` orthogonal to rounding). The
/// coefficients of every pass go into `H`, so `A Q = Q H + r e_{K−1}ᵀ` holds to rounding as
/// for [`arnoldi`]. Two reads of the basis per step instead of three: after the three-term
/// step the remaining components along `Q` are at rounding level, so the second pass is rarely
/// needed.
pub(crate) fn arnoldi_symmetric_into<T: Scalar>(
    op: &dyn Operator<T>,
    v: &[T],
    params: &ArnoldiParams,
    out: &mut Arnoldi<T>,
) -> Result<(), KrylovError> {
    debug_assert_eq!(params.reorthogonalize, Reorthogonalize::Full);
    arnoldi_impl(op, v, params, true, out)
}

/// `1/√2`: the cancellation beyond which a second Gram–Schmidt pass runs
/// ([`arnoldi_symmetric_into`]).
const DGKS_ETA: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// The body of [`arnoldi_into`], compiled once per scalar: the operator is only called through
/// the trait, so monomorphising the whole loop per operator type buys nothing (faer's pattern).
fn arnoldi_impl<T: Scalar>(
    op: &dyn Operator<T>,
    v: &[T],
    params: &ArnoldiParams,
    symmetric: bool,
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
        let (scale, len) = if symmetric {
            let b_prev = if k > 0 {
                out.h[k + (k - 1) * kmax]
            } else {
                T::ZERO
            };
            symmetric_step(&out.q, n, k, b_prev, w, &mut hcol, &mut hcorr)?
        } else {
            // ‖A q_k‖ and the first projection Qᵀ(A q_k): one message when distributed.
            let wnorm = reduce::norm_and_basis_t_vec(&out.q, n, cols, w, &mut hcol);
            if !wnorm.is_finite() {
                return Err(KrylovError::NonFinite {
                    algorithm: "arnoldi",
                    step: k,
                });
            }
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
            // Rounding left after Gram–Schmidt is relative to this step's ‖A q_k‖ (see
            // lanczos).
            (wnorm, len)
        };
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

/// One step of [`arnoldi_symmetric_into`] on `w = A q_k`: the three-term part, one classical
/// Gram–Schmidt pass over `q_0..q_k`, and a second pass when the first cancelled more than
/// [`DGKS_ETA`] of the norm. Writes `H[..=k, k]` into `hcol` (`hcorr` is scratch) and returns
/// `(‖A q_k‖, ‖w‖)` (the breakdown scale and the new subdiagonal).
fn symmetric_step<T: Scalar>(
    q: &[T],
    n: usize,
    k: usize,
    b_prev: T,
    w: &mut [T],
    hcol: &mut [T],
    hcorr: &mut [T],
) -> Result<(T, T), KrylovError> {
    let cols = k + 1;
    let non_finite = || KrylovError::NonFinite {
        algorithm: "lanczos",
        step: k,
    };
    let xk = &q[k * n..(k + 1) * n];
    let xprev = if k > 0 { &q[(k - 1) * n..k * n] } else { xk };
    let ak = reduce::dot(xk, w);
    if !ak.is_finite() {
        return Err(non_finite());
    }
    // The three-term part and the first projection in one pass over rows.
    let (s_in, s_out) = reduce::three_term_basis_t_vec(w, ak, xk, b_prev, xprev, q, n, cols, hcorr);
    // The plain sums of squares overflow for entries above ~1e154 although the vectors are
    // finite: the scaled norm of `A q_k = w + a x_k + b x_{k−1}` then (rare; allocates).
    let scale = if s_in.is_finite() {
        s_in.sqrt()
    } else {
        let w_in: Vec<T> = w
            .iter()
            .zip(xk)
            .zip(xprev)
            .map(|((wi, xi), pi)| *wi + ak * *xi + b_prev * *pi)
            .collect();
        reduce::norm(&w_in)
    };
    let mut len = if s_out.is_finite() {
        s_out.sqrt()
    } else {
        reduce::norm(w)
    };
    if !scale.is_finite() || !len.is_finite() {
        return Err(non_finite());
    }
    hcol[..cols].iter_mut().for_each(|h| *h = T::ZERO);
    hcol[k] = ak;
    if k > 0 {
        hcol[k - 1] = b_prev;
    }
    // At most two Gram–Schmidt passes (the second only after cancellation beyond 1/√2); the
    // first one's projection came with the three-term pass.
    for pass in 0..2 {
        if pass > 0 {
            reduce::basis_t_vec(q, n, cols, w, hcorr);
        }
        let len2 = reduce::basis_vec_acc_norm2(-T::ONE, q, n, cols, hcorr, w);
        for (h, c) in hcol[..cols].iter_mut().zip(&hcorr[..cols]) {
            *h += *c;
        }
        let before = len;
        len = if len2.is_finite() {
            len2.sqrt()
        } else {
            reduce::norm(w)
        };
        if !len.is_finite() {
            return Err(non_finite());
        }
        if len >= T::from_f64(DGKS_ETA) * before {
            break;
        }
    }
    Ok((scale, len))
}
