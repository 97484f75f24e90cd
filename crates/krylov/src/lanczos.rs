//! Lanczos tridiagonalisation of a self-adjoint operator: `A Q = Q T + r e_{K-1}ᵀ`.
//!
//! Vectors `x_0..x_{K-1}` (the basis `Q`), diagonal `a_0..a_{K-1}` and off-diagonal
//! `b_0..b_{K-2}` with `A x_k = b_{k-1} x_{k-1} + a_k x_k + b_k x_{k+1}`, `x_0 = v/‖v‖`; the last
//! step's `b_{K-1} x_K` is returned as the residual `r` (so `‖r‖ = b_{K-1}`, and
//! [`Lanczos::next_vector`] gives `x_K`).
//!
//! Without reorthogonalisation the three-term recursion is used (one matvec, two inner products
//! per step; orthogonality of `Q` is lost as Ritz values converge — measured in the tests, not
//! hidden). With [`Reorthogonalize::Full`] the run produces an Arnoldi decomposition (each step:
//! the three-term part, then one classical Gram–Schmidt pass over the whole basis, a second one
//! only after cancellation beyond `1/√2`; every coefficient goes into `H`) and
//! `T = (H + Hᵀ)/2` restricted to its tridiagonal band, which is what lets `gradmat-adjoint`
//! apply the projected Arnoldi adjoint; the Hessenberg matrix is kept in the result.
//!
//! ```
//! use gradmat_krylov::lanczos::{lanczos, LanczosParams};
//! use gradmat_operators::dense::SymmetricDense;
//!
//! let a = SymmetricDense::from_col_major(3, vec![2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0]).unwrap();
//! let dec = lanczos(&a, &[1.0, 0.0, 0.0], &LanczosParams::new(3)).unwrap();
//! // At full depth, T has A's eigenvalues (2 - √2, 2, 2 + √2): its trace is 6.
//! let tr: f64 = dec.diagonal().iter().sum();
//! assert!((tr - 6.0).abs() < 1e-14);
//! ```

use crate::arnoldi::{
    arnoldi_symmetric_into, default_breakdown_tol, validate_start, Arnoldi, ArnoldiParams,
};
use crate::reduce;
use crate::KrylovError;
use crate::{Breakdown, BreakdownKind, Info, Reorthogonalize};
use gradmat_operators::NonExhaustive;
use gradmat_operators::{Scalar, SelfAdjoint};

/// Parameters of [`lanczos`].
///
/// ```
/// use gradmat_krylov::lanczos::LanczosParams;
/// use gradmat_krylov::Reorthogonalize;
/// let p = LanczosParams { reorthogonalize: Reorthogonalize::Full, ..LanczosParams::new(30) };
/// assert_eq!((p.depth, p.breakdown_tol), (30, None));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LanczosParams {
    /// Krylov depth `K`: the number of matrix–vector products (the budget). Default 10.
    pub depth: usize,
    /// Reorthogonalisation (full runs through the Arnoldi code path). Default none.
    pub reorthogonalize: Reorthogonalize,
    /// Relative breakdown threshold (see [`ArnoldiParams::breakdown_tol`]).
    pub breakdown_tol: Option<f64>,
    /// When set, [`lanczos`] first runs [`check_self_adjoint`] with this relative tolerance
    /// (two extra matvecs; [`default_self_adjoint_tol`] is a sensible value) and fails with
    /// [`KrylovError::NotSelfAdjoint`] on an operator that is not symmetric. Off by default:
    /// the [`SelfAdjoint`] bound is a promise the type system cannot verify.
    pub self_adjoint_check: Option<f64>,
    #[doc(hidden)]
    pub non_exhaustive: NonExhaustive,
}

impl LanczosParams {
    /// The default parameters with depth `depth`.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            reorthogonalize: Reorthogonalize::None,
            breakdown_tol: None,
            self_adjoint_check: None,
            non_exhaustive: NonExhaustive::default(),
        }
    }
}

impl Default for LanczosParams {
    fn default() -> Self {
        Self::new(10)
    }
}

/// The result of [`lanczos`].
#[derive(Debug, Clone, PartialEq)]
pub struct Lanczos<T: Scalar> {
    n: usize,
    k: usize,
    q: Vec<T>,
    a: Vec<T>,
    b: Vec<T>,
    r: Vec<T>,
    c: T,
    arnoldi: Option<Arnoldi<T>>,
    info: Info,
}

impl<T: Scalar> Lanczos<T> {
    /// An empty decomposition whose buffers [`lanczos_into`] fills and reuses.
    pub fn empty() -> Self {
        Self {
            n: 0,
            k: 0,
            q: Vec::new(),
            a: Vec::new(),
            b: Vec::new(),
            r: Vec::new(),
            c: T::ZERO,
            arnoldi: None,
            info: Info::new(0),
        }
    }
    /// Dimension `N`.
    pub fn dim(&self) -> usize {
        self.n
    }
    /// Depth `K` reached (smaller than requested after a breakdown).
    pub fn depth(&self) -> usize {
        self.k
    }
    /// Basis `Q = (x_0, …, x_{K-1})`, `N×K` column-major.
    pub fn basis(&self) -> &[T] {
        match &self.arnoldi {
            Some(a) => a.basis(),
            None => &self.q[..self.n * self.k],
        }
    }
    /// Column `j` of the basis.
    pub fn basis_vector(&self, j: usize) -> &[T] {
        &self.basis()[j * self.n..(j + 1) * self.n]
    }
    /// Diagonal `a` of `T` (length `K`).
    pub fn diagonal(&self) -> &[T] {
        &self.a
    }
    /// Off-diagonal `b_0..b_{K-2}` of `T` (length `K − 1`).
    pub fn off_diagonal(&self) -> &[T] {
        &self.b
    }
    /// `T` as a dense `K×K` column-major matrix.
    pub fn small_matrix(&self) -> Vec<T> {
        let k = self.k;
        let mut t = vec![T::ZERO; k * k];
        for i in 0..k {
            t[i + i * k] = self.a[i];
            if i + 1 < k {
                t[i + 1 + i * k] = self.b[i];
                t[i + (i + 1) * k] = self.b[i];
            }
        }
        t
    }
    /// Residual `r = b_{K-1} x_K` (length `N`).
    pub fn residual(&self) -> &[T] {
        match &self.arnoldi {
            Some(a) => a.residual(),
            None => &self.r,
        }
    }
    /// The next basis vector `x_K = r/‖r‖`, or `None` if `r = 0`.
    pub fn next_vector(&self) -> Option<Vec<T>> {
        let r = self.residual();
        let nr = reduce::norm(r);
        (nr > T::ZERO).then(|| r.iter().map(|v| *v / nr).collect())
    }
    /// `c = 1/‖v‖`.
    pub fn inv_norm(&self) -> T {
        self.c
    }
    /// The underlying Arnoldi decomposition when the run reorthogonalised (`T = (H+Hᵀ)/2`).
    pub fn arnoldi(&self) -> Option<&Arnoldi<T>> {
        self.arnoldi.as_ref()
    }
    /// Run information.
    pub fn info(&self) -> &Info {
        &self.info
    }
}

/// Runs `params.depth` Lanczos steps on the self-adjoint `op` from `v`.
///
/// # Errors
/// As [`crate::arnoldi::arnoldi`].
pub fn lanczos<T: Scalar, A: SelfAdjoint<T> + ?Sized>(
    op: &A,
    v: &[T],
    params: &LanczosParams,
) -> Result<Lanczos<T>, KrylovError> {
    let mut out = Lanczos::empty();
    lanczos_into(op, v, params, &mut out)?;
    Ok(out)
}

/// Like [`lanczos`], reusing the buffers of `out`.
pub fn lanczos_into<T: Scalar, A: SelfAdjoint<T> + ?Sized>(
    op: &A,
    v: &[T],
    params: &LanczosParams,
    out: &mut Lanczos<T>,
) -> Result<(), KrylovError> {
    lanczos_impl(&op, v, params, out)
}

/// The body of [`lanczos_into`], compiled once per scalar (the operator is only called through
/// the trait).
fn lanczos_impl<T: Scalar>(
    op: &dyn SelfAdjoint<T>,
    v: &[T],
    params: &LanczosParams,
    out: &mut Lanczos<T>,
) -> Result<(), KrylovError> {
    if let Some(tol) = params.self_adjoint_check {
        validate_start(op, v, params.depth)?;
        check_self_adjoint(op, tol)?;
    }
    if params.reorthogonalize == Reorthogonalize::Full {
        return lanczos_via_arnoldi(op, v, params, out);
    }
    out.arnoldi = None;
    let kmax = params.depth;
    let len0 = validate_start(op, v, kmax)?;
    let n = v.len();
    let tol = default_breakdown_tol::<T>(n, params.breakdown_tol);
    out.n = n;
    out.c = T::ONE / len0;
    // Every column is written before it is read: only grow the buffer (no zero-fill pass over
    // N·K entries on reuse).
    out.q.resize(n * kmax, T::ZERO);
    out.a.clear();
    out.b.clear();
    out.r.resize(n, T::ZERO);
    out.info = Info::new(kmax);
    for (qi, vi) in out.q[..n].iter_mut().zip(v) {
        *qi = *vi * out.c;
    }
    let mut b_prev = T::ZERO;
    let mut depth = kmax;
    for k in 0..kmax {
        let (done, rest) = out.q.split_at_mut(k * n);
        let xk = &rest[..n];
        let w = &mut out.r;
        op.apply(xk, w);
        out.info.num_matvecs += 1;
        let ak = reduce::dot(xk, w);
        if !ak.is_finite() {
            return Err(KrylovError::NonFinite {
                algorithm: "lanczos",
                step: k,
            });
        }
        let xprev = if k > 0 { &done[(k - 1) * n..] } else { xk };
        let (wnorm2, len2) = three_term_update(w, ak, xk, b_prev, xprev);
        // The plain sums of squares overflow for entries above ~1e154 although the vectors are
        // finite: fall back to scaled norms (an infinite `scale` would report a false breakdown;
        // found with the `lanczos` fuzz property). `w_in = w + a·x + b·x_prev` is rebuilt for its
        // norm only in that case.
        let wnorm = if wnorm2.is_finite() {
            wnorm2.sqrt()
        } else {
            let w_in: Vec<T> = w
                .iter()
                .zip(xk)
                .zip(xprev)
                .map(|((wi, xi), pi)| *wi + ak * *xi + b_prev * *pi)
                .collect();
            reduce::norm(&w_in)
        };
        let len = if len2.is_finite() {
            len2.sqrt()
        } else {
            reduce::norm(w)
        };
        if !len.is_finite() || !wnorm.is_finite() {
            return Err(KrylovError::NonFinite {
                algorithm: "lanczos",
                step: k,
            });
        }
        // The rounding left in the new vector is relative to this step's ‖A x_k‖ (not to the
        // largest seen: a small-eigenvalue direction of an ill-conditioned operator has a
        // small ‖A x_k‖ and a legitimately small new component).
        let scale = wnorm;
        out.a.push(ak);
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
            // Guard against underflow in the sum of squares: recompute the scaled norm.
            let len = if len2 < T::from_f64(1e-250_f64.max(1e3 * T::EPS.to_f64().powi(9))) {
                reduce::norm(w)
            } else {
                len
            };
            out.b.push(len);
            b_prev = len;
            let inv = T::ONE / len;
            let next = &mut out.q[(k + 1) * n..(k + 2) * n];
            for (qi, wi) in next.iter_mut().zip(w.iter()) {
                *qi = *wi * inv;
            }
        }
    }
    out.q.truncate(depth * n);
    out.k = depth;
    Ok(())
}

/// The default relative tolerance of [`check_self_adjoint`] for dimension `n`:
/// `1000·√n·ε` of the scalar type (rounding of two length-`n` inner products, with room).
pub fn default_self_adjoint_tol<T: Scalar>(n: usize) -> f64 {
    let n = crate::distributed::global_dim(n);
    1e3 * (n.max(1) as f64).sqrt() * T::EPS.to_f64()
}

/// Checks that `op` is symmetric on two fixed pseudo-random vectors `u`, `w`:
/// `|⟨u, A w⟩ − ⟨A u, w⟩| ≤ tol · (‖u‖‖A w‖ + ‖A u‖‖w‖)`. Costs two matvecs. A non-symmetric
/// operator passes only if its asymmetry is (nearly) orthogonal to `u wᵀ − w uᵀ`, which the
/// fixed dense vectors make unlikely for any structured matrix.
///
/// ```
/// use gradmat_krylov::lanczos::{lanczos, LanczosParams};
/// use gradmat_krylov::KrylovError;
/// use gradmat_operators::{dense::DenseMatrix, Operator, SelfAdjoint};
///
/// // An operator that claims to be self-adjoint but is not.
/// struct Liar(DenseMatrix<f64>);
/// impl Operator<f64> for Liar {
///     fn nrows(&self) -> usize { 2 }
///     fn ncols(&self) -> usize { 2 }
///     fn apply(&self, x: &[f64], y: &mut [f64]) { self.0.apply(x, y) }
/// }
/// impl SelfAdjoint<f64> for Liar {}
/// let a = Liar(DenseMatrix::from_col_major(2, 2, vec![1.0, 0.0, 5.0, 1.0]).unwrap());
/// let params = LanczosParams { self_adjoint_check: Some(1e-10), ..LanczosParams::new(2) };
/// let err = lanczos(&a, &[1.0, 1.0], &params).unwrap_err();
/// assert!(matches!(err, KrylovError::NotSelfAdjoint { .. }));
/// ```
///
/// # Errors
/// [`KrylovError::NotSquare`], [`KrylovError::NonFinite`] (the operator produced NaN or ∞),
/// [`KrylovError::InvalidParameter`] for a negative or NaN `tol`, and
/// [`KrylovError::NotSelfAdjoint`].
pub fn check_self_adjoint<T: Scalar, A: gradmat_operators::Operator<T> + ?Sized>(
    op: &A,
    tol: f64,
) -> Result<(), KrylovError> {
    let (m, n) = (op.nrows(), op.ncols());
    if m != n {
        return Err(KrylovError::NotSquare { nrows: m, ncols: n });
    }
    if tol.is_nan() || tol < 0.0 {
        return Err(KrylovError::InvalidParameter(format!(
            "self-adjointness tolerance {tol} must be ≥ 0"
        )));
    }
    // splitmix64-driven entries in [-1, 1): fixed, dense, and different for u and w.
    let fill = |seed: u64| -> Vec<T> {
        (0..n as u64)
            .map(|i| {
                let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                T::from_f64((z >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
            })
            .collect()
    };
    let (u, w) = (fill(0x5EED_0001), fill(0x5EED_0002));
    let (mut au, mut aw) = (vec![T::ZERO; n], vec![T::ZERO; n]);
    op.apply(&u, &mut au);
    op.apply(&w, &mut aw);
    let uaw = reduce::dot(&u, &aw).to_f64();
    let auw = reduce::dot(&au, &w).to_f64();
    let scale = reduce::norm(&u).to_f64() * reduce::norm(&aw).to_f64()
        + reduce::norm(&au).to_f64() * reduce::norm(&w).to_f64();
    let diff = (uaw - auw).abs();
    if !diff.is_finite() || !scale.is_finite() {
        return Err(KrylovError::NonFinite {
            algorithm: "self-adjointness check",
            step: 0,
        });
    }
    if diff > tol * scale {
        return Err(KrylovError::NotSelfAdjoint {
            relative_asymmetry: if scale > 0.0 {
                diff / scale
            } else {
                f64::INFINITY
            },
            tolerance: tol,
        });
    }
    Ok(())
}

/// `w ← w − a·x − b·x_prev`, returning `(‖w_in‖², ‖w_out‖²)` in one deterministic chunked pass
/// (through [`reduce::for_each_chunk_sum`]: one message when distributed).
fn three_term_update<T: Scalar>(w: &mut [T], a: T, x: &[T], b: T, xprev: &[T]) -> (T, T) {
    let [s_in, s_out] = reduce::for_each_chunk_sum::<T, 2, _>(w, |o, wc| {
        let (xc, pc) = (&x[o..o + wc.len()], &xprev[o..o + wc.len()]);
        let (mut s_in, mut s_out) = (T::ZERO, T::ZERO);
        for ((wi, xi), pi) in wc.iter_mut().zip(xc).zip(pc) {
            s_in += *wi * *wi;
            let nw = *wi - a * *xi - b * *pi;
            s_out += nw * nw;
            *wi = nw;
        }
        [s_in, s_out]
    });
    (s_in, s_out)
}

fn lanczos_via_arnoldi<T: Scalar>(
    op: &dyn SelfAdjoint<T>,
    v: &[T],
    params: &LanczosParams,
    out: &mut Lanczos<T>,
) -> Result<(), KrylovError> {
    let ap = ArnoldiParams {
        reorthogonalize: Reorthogonalize::Full,
        breakdown_tol: params.breakdown_tol,
        ..ArnoldiParams::new(params.depth)
    };
    let mut arn = out.arnoldi.take().unwrap_or_else(Arnoldi::empty);
    arnoldi_symmetric_into(op, v, &ap, &mut arn)?;
    let k = arn.depth();
    out.n = arn.dim();
    out.k = k;
    out.c = arn.inv_norm();
    out.a.clear();
    out.b.clear();
    let half = T::from_f64(0.5);
    for i in 0..k {
        out.a.push(arn.h(i, i));
        if i + 1 < k {
            out.b.push(half * arn.h(i + 1, i) + half * arn.h(i, i + 1));
        }
    }
    out.q.clear();
    out.r.clear();
    out.info = arn.info().clone();
    out.arnoldi = Some(arn);
    Ok(())
}
