//! Functions of symmetric matrices through the eigendecomposition, and the Daleckii–Krein
//! reverse rule.

use std::marker::PhantomData;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::{Mat, MatRef, Par};
use gradmat_operators::Scalar;

use super::function::MatrixFunction;
use super::{
    check_finite, check_len, check_scalar, check_square, from_mat, from_vec_check, matmul_seq,
    to_mat,
};
use crate::MatfunError;

/// The symmetry check of the symmetric path accepts `max |A[i,j] − A[j,i]| ≤ c·K·ε_T·max|A|`
/// with this `c` (`ε_T` the machine epsilon of the input type): loose enough for a product
/// `QᵀAQ` formed in floating point, tight enough to reject a general matrix.
pub const SYMMETRY_TOLERANCE_FACTOR: f64 = 100.0;

/// The eigendecomposition `A = S diag(θ) Sᵀ` of a small symmetric matrix, eigenvalues in
/// ascending order, computed in `f64` by faer's self-adjoint eigensolver (`Par::Seq`).
#[derive(Debug, Clone)]
pub struct SymmetricEigen {
    n: usize,
    values: Vec<f64>,
    vectors: Mat<f64>,
    /// `S = I` (from [`SymmetricEigen::from_diagonal`]): products with `S` are skipped.
    identity: bool,
}

impl SymmetricEigen {
    /// Decomposes the symmetric `n×n` column-major matrix `a`.
    ///
    /// The matrix must be finite and symmetric within the tolerance of
    /// [`SYMMETRY_TOLERANCE_FACTOR`]; the decomposition is of its symmetric part
    /// `(A + Aᵀ)/2`.
    ///
    /// # Errors
    /// [`MatfunError::EmptyMatrix`], [`MatfunError::DimensionMismatch`],
    /// [`MatfunError::NonFiniteInput`], [`MatfunError::NotSymmetric`],
    /// [`MatfunError::EigensolverFailed`].
    pub fn new<T: Scalar>(n: usize, a: &[T]) -> Result<Self, MatfunError> {
        check_square("symmetric matrix", n, a)?;
        check_finite("symmetric matrix", n, a)?;
        check_symmetric(n, a)?;
        let m = to_mat(n, n, a);
        let sym = Mat::from_fn(n, n, |i, j| {
            let (x, y) = (m[(i, j)], m[(j, i)]);
            let h = 0.5 * (x + y);
            // The sum overflows only for entries near f64::MAX; the halves cannot.
            if h.is_finite() {
                h
            } else {
                0.5 * x + 0.5 * y
            }
        });
        Self::decompose(sym.as_ref())
    }

    /// Decomposes the symmetric tridiagonal matrix with diagonal `diag` (length `K`) and
    /// off-diagonal `offdiag` (length `K − 1`, `T[k+1,k] = T[k,k+1] = offdiag[k]`) by bisection
    /// and inverse iteration: the small eigenvalues of the graded Lanczos matrices of
    /// ill-conditioned operators come out to high relative accuracy, where a dense solver is
    /// accurate only to `ε‖T‖` (see the source module's notes).
    ///
    /// # Errors
    /// [`MatfunError::EmptyMatrix`], [`MatfunError::DimensionMismatch`],
    /// [`MatfunError::NonFiniteInput`], [`MatfunError::EigensolverFailed`].
    pub fn from_tridiagonal<T: Scalar>(diag: &[T], offdiag: &[T]) -> Result<Self, MatfunError> {
        let n = diag.len();
        if n == 0 {
            return Err(MatfunError::EmptyMatrix {
                what: "tridiagonal diagonal",
            });
        }
        check_len("tridiagonal off-diagonal", n - 1, offdiag.len())?;
        check_finite("tridiagonal diagonal", n, diag)?;
        check_finite("tridiagonal off-diagonal", n - 1, offdiag)?;
        let d: Vec<f64> = diag.iter().map(|x| x.to_f64()).collect();
        let e: Vec<f64> = offdiag.iter().map(|x| x.to_f64()).collect();
        let (values, vectors) = super::tridiagonal::tridiagonal_eigen(&d, &e);
        if values.iter().any(|x| !x.is_finite())
            || (0..n).any(|j| (0..n).any(|i| !vectors[(i, j)].is_finite()))
        {
            return Err(MatfunError::EigensolverFailed);
        }
        Ok(Self {
            n,
            values,
            vectors,
            identity: false,
        })
    }

    /// The trivial decomposition of the diagonal matrix `diag(values)` (`S = I`), eigenvalues
    /// sorted ascending (the columns of `S` permuted with them).
    ///
    /// # Errors
    /// [`MatfunError::EmptyMatrix`], [`MatfunError::NonFiniteInput`].
    pub fn from_diagonal(values: &[f64]) -> Result<Self, MatfunError> {
        let n = values.len();
        if n == 0 {
            return Err(MatfunError::EmptyMatrix { what: "diagonal" });
        }
        check_finite("diagonal", n, values)?;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let identity = order.iter().enumerate().all(|(i, &o)| i == o);
        Ok(Self {
            n,
            values: order.iter().map(|&i| values[i]).collect(),
            vectors: Mat::from_fn(n, n, |i, j| if i == order[j] { 1.0 } else { 0.0 }),
            identity,
        })
    }

    /// The eigendecomposition by faer. Every matrix is first scaled by the power of two `2^-e`
    /// that brings its largest entry into `[1/2, 1)` (exact: only exponents change), entries
    /// below `2^-501` of it are set to zero, and the eigenvalues are scaled back by `2^e`; the
    /// eigenvectors do not change. faer's solver otherwise fails on matrices whose largest entry
    /// is subnormal or near `f64::MAX`, or whose entries span more than about `10^154` (fuzz
    /// findings `dense_matfun`: `diag(3.5e-311, 0, 0)` and two 5×5 matrices were
    /// `EigensolverFailed`). Eigenvalues that overflow when scaled back (entries near
    /// `f64::MAX` whose eigenvalues exceed it) are `NonFiniteResult`.
    fn decompose(a: MatRef<'_, f64>) -> Result<Self, MatfunError> {
        let n = a.nrows();
        let mut amax = 0.0_f64;
        for j in 0..n {
            for i in 0..n {
                amax = amax.max(a[(i, j)].abs());
            }
        }
        // Scaled by an exact power of two to max|A| ∈ [½, 1), and entries below 2⁻⁵⁰¹ of that
        // flushed to zero: a perturbation of A far below the ε‖A‖ normwise accuracy of a dense
        // eigensolver, and one that keeps every square of an entry above the underflow
        // threshold. faer's solver returned NaN or failed on finite symmetric matrices whose
        // entries spanned more than about 10¹⁵⁴ (fuzz findings: 5×5 matrices with entries
        // 2.2e168 and 0.25, or 1.9e289 and 1.4), and refused subnormal input.
        if amax == 0.0 {
            return Self::decompose_unscaled(a);
        }
        let e = exponent(amax);
        let tiny = f64::from_bits(((1023 - 501) as u64) << 52);
        let scaled = Mat::from_fn(n, n, |i, j| {
            let x = scale_pow2(a[(i, j)], -e);
            if x.abs() < tiny {
                0.0
            } else {
                x
            }
        });
        let mut eig = match Self::decompose_unscaled(scaled.as_ref()) {
            Err(MatfunError::EigensolverFailed) => Self::decompose_jacobi(scaled.as_ref())?,
            other => other?,
        };
        for v in &mut eig.values {
            *v = scale_pow2(*v, e);
        }
        if eig.values.iter().any(|v| !v.is_finite()) {
            return Err(MatfunError::NonFiniteResult {
                what: "symmetric eigendecomposition (an eigenvalue overflows)",
            });
        }
        Ok(eig)
    }

    /// The cyclic Jacobi method: the fallback where faer's solver fails (it did on graded
    /// matrices whose entries span more than ~10¹³⁶ even after scaling: fuzz finding
    /// `dense_matfun`). Rotations `tan θ = sign(τ)/(|τ| + √(1 + τ²))`, `τ = (a_qq − a_pp)/(2a_pq)`
    /// (the smaller angle; `1/(2τ)` where `τ²` would overflow), sweeps until every
    /// off-diagonal entry is below `ε·√(|a_pp a_qq|)` or below `ε²·max|A|` (at most 64 sweeps;
    /// Jacobi converges quadratically, a few sweeps for the small matrices here). `a` has
    /// `max|a| ∈ [½, 1)` (the caller scales).
    fn decompose_jacobi(a: MatRef<'_, f64>) -> Result<Self, MatfunError> {
        let n = a.nrows();
        let mut m = a.to_owned();
        let mut v = Mat::<f64>::identity(n, n);
        let eps = f64::EPSILON;
        let mut converged = false;
        for _ in 0..64 {
            let mut rotated = false;
            for p in 0..n {
                for q in p + 1..n {
                    let apq = m[(p, q)];
                    let (app, aqq) = (m[(p, p)], m[(q, q)]);
                    if apq.abs() <= eps * (app * aqq).abs().sqrt() || apq.abs() <= eps * eps {
                        continue;
                    }
                    rotated = true;
                    let tau = (aqq - app) / (2.0 * apq);
                    let t = if tau.abs() > 1e150 {
                        0.5 / tau
                    } else {
                        tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt())
                    };
                    let c = 1.0 / (1.0 + t * t).sqrt();
                    let s = t * c;
                    for k in 0..n {
                        let (mkp, mkq) = (m[(k, p)], m[(k, q)]);
                        m[(k, p)] = c * mkp - s * mkq;
                        m[(k, q)] = s * mkp + c * mkq;
                    }
                    for k in 0..n {
                        let (mpk, mqk) = (m[(p, k)], m[(q, k)]);
                        m[(p, k)] = c * mpk - s * mqk;
                        m[(q, k)] = s * mpk + c * mqk;
                    }
                    for k in 0..n {
                        let (vkp, vkq) = (v[(k, p)], v[(k, q)]);
                        v[(k, p)] = c * vkp - s * vkq;
                        v[(k, q)] = s * vkp + c * vkq;
                    }
                }
            }
            if !rotated {
                converged = true;
                break;
            }
        }
        let vals: Vec<f64> = (0..n).map(|i| m[(i, i)]).collect();
        if !converged
            || vals.iter().any(|x| !x.is_finite())
            || (0..n).any(|j| (0..n).any(|i| !v[(i, j)].is_finite()))
        {
            return Err(MatfunError::EigensolverFailed);
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| vals[i].total_cmp(&vals[j]));
        Ok(Self {
            n,
            values: order.iter().map(|&i| vals[i]).collect(),
            vectors: Mat::from_fn(n, n, |i, j| v[(i, order[j])]),
            identity: false,
        })
    }

    fn decompose_unscaled(a: MatRef<'_, f64>) -> Result<Self, MatfunError> {
        let n = a.nrows();
        let par = Par::Seq;
        let mut u = Mat::<f64>::zeros(n, n);
        let mut s = faer::diag::Diag::<f64>::zeros(n);
        let req =
            self_adjoint_evd_scratch::<f64>(n, ComputeEigenvectors::Yes, par, Default::default());
        let mut buf = MemBuffer::new(req);
        self_adjoint_evd(
            a,
            s.as_mut(),
            Some(u.as_mut()),
            par,
            MemStack::new(&mut buf),
            Default::default(),
        )
        .map_err(|_| MatfunError::EigensolverFailed)?;
        let vals: Vec<f64> = (0..n).map(|i| s.column_vector()[i]).collect();
        if vals.iter().any(|x| !x.is_finite())
            || (0..n).any(|j| (0..n).any(|i| !u[(i, j)].is_finite()))
        {
            return Err(MatfunError::EigensolverFailed);
        }
        // faer returns ascending eigenvalues; enforce it so that reported indices are ascending.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| vals[i].total_cmp(&vals[j]));
        let values = order.iter().map(|&i| vals[i]).collect();
        let vectors = Mat::from_fn(n, n, |i, j| u[(i, order[j])]);
        Ok(Self {
            n,
            values,
            vectors,
            identity: false,
        })
    }

    /// The dimension `K`.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// The eigenvalues `θ`, ascending.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The orthogonal eigenvector matrix `S` (column `i` belongs to `θᵢ`).
    pub fn vectors(&self) -> MatRef<'_, f64> {
        self.vectors.as_ref()
    }

    /// `S · diag(d) · Sᵀ`.
    fn reconstruct(&self, d: &[f64]) -> Mat<f64> {
        let n = self.n;
        let s = &self.vectors;
        let sd = Mat::from_fn(n, n, |i, j| s[(i, j)] * d[j]);
        let mut out = matmul_seq(sd.as_ref(), s.transpose());
        symmetrize(&mut out);
        out
    }
}

/// The exponent `e` with `2^(e-1) ≤ x < 2^e` of a finite `x > 0` (subnormals included).
fn exponent(x: f64) -> i32 {
    let (mut m, mut e) = (x, 0);
    // Normalise subnormals first (2^64 is exact), then read the biased exponent.
    if m < f64::MIN_POSITIVE {
        m *= 18446744073709551616.0;
        e -= 64;
    }
    let biased = ((m.to_bits() >> 52) & 0x7ff) as i32;
    e + biased - 1022
}

/// `x · 2^k`, in steps of at most `2^±1000` (each exact unless it leaves the normal range: the
/// callers' last step is the only one that can, so a subnormal result rounds once).
fn scale_pow2(x: f64, k: i32) -> f64 {
    let (mut y, mut k) = (x, k);
    while k != 0 {
        let step = k.clamp(-1000, 1000);
        y *= f64::from_bits(((1023 + step) as u64) << 52);
        k -= step;
    }
    y
}

/// Rejects matrices that are not symmetric within the tolerance.
pub(crate) fn check_symmetric<T: Scalar>(n: usize, a: &[T]) -> Result<(), MatfunError> {
    let scale = a.iter().fold(0.0_f64, |m, x| m.max(x.to_f64().abs()));
    let tolerance = SYMMETRY_TOLERANCE_FACTOR * n as f64 * T::EPS.to_f64() * scale;
    let mut worst = (0.0_f64, 0, 0);
    for j in 0..n {
        for i in j + 1..n {
            let d = (a[i + j * n].to_f64() - a[j + i * n].to_f64()).abs();
            if d > worst.0 {
                worst = (d, i, j);
            }
        }
    }
    if worst.0 > tolerance {
        return Err(MatfunError::NotSymmetric {
            max_asymmetry: worst.0,
            row: worst.1,
            col: worst.2,
            tolerance,
        });
    }
    Ok(())
}

/// `A ← (A + Aᵀ)/2`.
fn symmetrize(a: &mut Mat<f64>) {
    let n = a.nrows();
    for j in 0..n {
        for i in j + 1..n {
            let m = 0.5 * (a[(i, j)] + a[(j, i)]);
            a[(i, j)] = m;
            a[(j, i)] = m;
        }
    }
}

/// `f(T)` of a small symmetric `T` via `T = S diag(θ) Sᵀ`, with the Daleckii–Krein reverse
/// rule.
///
/// Built once per `T` (one eigendecomposition, `O(K³)`); the forward quantities
/// ([`value`](Self::value), [`apply_e0`](Self::apply_e0),
/// [`quadratic_form`](Self::quadratic_form), [`apply`](Self::apply)) and the pullbacks reuse it.
/// The output type is `T`; the work is done in `f64` (see the [module docs](super)).
///
/// # Reverse rule
///
/// For a cotangent `M̄` of `f(T)`, Daleckii–Krein gives
/// `T̄ = S (F ∘ (Sᵀ sym(M̄) S)) Sᵀ` with `F_ij = f[θᵢ, θⱼ]` (the divided difference of
/// [`MatrixFunction::divided_difference`], `f'(θᵢ)` on the diagonal and for equal eigenvalues)
/// and `sym(M̄) = (M̄ + M̄ᵀ)/2`. `T̄` is symmetric, the gradient with respect to symmetric
/// perturbations (see the module docs for the tridiagonal mapping). The rule is exact for
/// repeated eigenvalues (the divided difference tends to `f'`), so clustered spectra need no
/// special care.
///
/// # Example
///
/// ```
/// use gradmat_matfun::dense::{MatrixFunction, SymmetricMatrixFunction};
///
/// // Lanczos-style tridiagonal: diagonal a, off-diagonal b.
/// let (a, b) = ([4.0_f64, 3.0, 5.0], [1.0_f64, 0.5]);
/// let f = SymmetricMatrixFunction::from_tridiagonal(MatrixFunction::InvSqrt, &a, &b)?;
/// let y = f.apply_e0(); // T^{-1/2} e₀
/// let rho = f.quadratic_form(); // e₀ᵀ T^{-1/2} e₀
/// assert!((y[0] - rho).abs() < 1e-15);
/// # Ok::<(), gradmat_matfun::MatfunError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SymmetricMatrixFunction<T> {
    eig: SymmetricEigen,
    function: MatrixFunction,
    fvals: Vec<f64>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Scalar> SymmetricMatrixFunction<T> {
    /// `f(A)` for the symmetric `n×n` column-major matrix `a` (symmetric within the tolerance
    /// of [`SYMMETRY_TOLERANCE_FACTOR`]; its symmetric part is used).
    ///
    /// # Errors
    /// The errors of [`SymmetricEigen::new`]; [`MatfunError::NonFiniteParameter`] for a
    /// non-finite `t` or `p`; [`MatfunError::EigenvalueOutsideDomain`] when an eigenvalue is
    /// outside the domain of `f` (see [`MatrixFunction`]); [`MatfunError::NonFiniteValue`] when
    /// `f(θᵢ)` is not finite in `T`, or within a factor `4K` of overflowing there (the
    /// reconstruction could round past it), or a custom `f` returns NaN.
    pub fn new(function: MatrixFunction, n: usize, a: &[T]) -> Result<Self, MatfunError> {
        check_function(&function)?;
        Self::from_eigen(function, SymmetricEigen::new(n, a)?)
    }

    /// `f(T)` for the symmetric tridiagonal `T` with diagonal `diag` and off-diagonal `offdiag`.
    ///
    /// # Errors
    /// As [`new`](Self::new), with the checks of [`SymmetricEigen::from_tridiagonal`].
    pub fn from_tridiagonal(
        function: MatrixFunction,
        diag: &[T],
        offdiag: &[T],
    ) -> Result<Self, MatfunError> {
        check_function(&function)?;
        Self::from_eigen(function, SymmetricEigen::from_tridiagonal(diag, offdiag)?)
    }

    /// `f(T)` from an existing eigendecomposition (to apply several functions to one `T`).
    ///
    /// # Errors
    /// As [`new`](Self::new) after the decomposition.
    pub fn from_eigen(function: MatrixFunction, eig: SymmetricEigen) -> Result<Self, MatfunError> {
        check_function(&function)?;
        let dom = function.value_domain();
        let mut fvals = Vec::with_capacity(eig.n);
        for (index, &theta) in eig.values.iter().enumerate() {
            if !dom.contains(theta) {
                return Err(MatfunError::EigenvalueOutsideDomain {
                    function: function.name(),
                    index,
                    eigenvalue: theta,
                    domain: dom.describe(),
                });
            }
            let v = function.eval(theta);
            // |f(T)_ij| ≤ max |f(θ)| (rows of S have unit norm), but the rounding of the sums
            // S diag(f(θ)) Sᵀ can carry a value within a factor 1 + O(Kε) of the overflow
            // threshold past it (a fuzz finding: f(A) = A with entries at f64::MAX came back
            // with ∞ entries). A margin of 4K keeps every forward output finite in T.
            let margin = 4.0 * eig.n.max(1) as f64;
            if !v.is_finite() || !T::from_f64(v * margin).is_finite() {
                return Err(MatfunError::NonFiniteValue {
                    function: function.name(),
                    index,
                    eigenvalue: theta,
                });
            }
            fvals.push(v);
        }
        Ok(Self {
            eig,
            function,
            fvals,
            _t: PhantomData,
        })
    }

    /// The eigendecomposition of `T`.
    pub fn eigen(&self) -> &SymmetricEigen {
        &self.eig
    }

    /// The function `f`.
    pub fn function(&self) -> &MatrixFunction {
        &self.function
    }

    /// The dimension `K`.
    pub fn dim(&self) -> usize {
        self.eig.n
    }

    /// `f(θᵢ)` for the ascending eigenvalues `θᵢ`.
    pub fn function_values(&self) -> &[f64] {
        &self.fvals
    }

    /// `f(T)` as a dense symmetric `K×K` column-major matrix.
    pub fn value(&self) -> Vec<T> {
        let m = self.eig.reconstruct(&self.fvals);
        let mut out = Vec::with_capacity(self.eig.n * self.eig.n);
        for j in 0..self.eig.n {
            for i in 0..self.eig.n {
                out.push(T::from_f64(m[(i, j)]));
            }
        }
        out
    }

    /// `e₀ᵀ f(T) e₀ = Σᵢ S₀ᵢ² f(θᵢ)`.
    pub fn quadratic_form(&self) -> T {
        let s = &self.eig.vectors;
        let q: f64 = (0..self.eig.n)
            .map(|i| s[(0, i)] * s[(0, i)] * self.fvals[i])
            .sum();
        T::from_f64(q)
    }

    /// `f(T) e₀ = S (f(θ) ∘ Sᵀe₀)`.
    pub fn apply_e0(&self) -> Vec<T> {
        let n = self.eig.n;
        let s = &self.eig.vectors;
        (0..n)
            .map(|r| {
                let y: f64 = (0..n).map(|i| s[(r, i)] * self.fvals[i] * s[(0, i)]).sum();
                T::from_f64(y)
            })
            .collect()
    }

    /// `f(T) v` for a vector `v` of length `K`.
    ///
    /// # Errors
    /// [`MatfunError::DimensionMismatch`], [`MatfunError::NonFiniteInput`],
    /// [`MatfunError::NonFiniteResult`] (overflow when rounding to `T`).
    pub fn apply(&self, v: &[T]) -> Result<Vec<T>, MatfunError> {
        let n = self.eig.n;
        check_len("vector v", n, v.len())?;
        check_finite("vector v", n, v)?;
        let s = &self.eig.vectors;
        let c: Vec<f64> = (0..n)
            .map(|i| self.fvals[i] * (0..n).map(|r| s[(r, i)] * v[r].to_f64()).sum::<f64>())
            .collect();
        let y = (0..n)
            .map(|r| T::from_f64((0..n).map(|i| s[(r, i)] * c[i]).sum::<f64>()))
            .collect();
        from_vec_check("f(T) v", y)
    }

    /// The matrix `F` of divided differences, `F_ij = f[θᵢ, θⱼ]`, `F_ii = f'(θᵢ)`, `K×K`
    /// symmetric.
    ///
    /// # Errors
    /// [`MatfunError::NotDifferentiable`] when `f'` is infinite at an eigenvalue (e.g. `√x` at
    /// 0); [`MatfunError::NonFiniteValue`] when an entry is not finite (overflow, or a custom
    /// derivative returning NaN).
    pub fn divided_differences(&self) -> Result<Mat<f64>, MatfunError> {
        let n = self.eig.n;
        let th = &self.eig.values;
        let f = &self.function;
        let dom = f.derivative_domain();
        for (index, &theta) in th.iter().enumerate() {
            if !dom.contains(theta) {
                return Err(MatfunError::NotDifferentiable {
                    function: f.name(),
                    index,
                    eigenvalue: theta,
                    domain: dom.describe(),
                });
            }
        }
        let mut fm = Mat::<f64>::zeros(n, n);
        for j in 0..n {
            for i in j..n {
                let v = f.divided_difference(th[i], th[j]);
                if !v.is_finite() {
                    return Err(MatfunError::NonFiniteValue {
                        function: f.name(),
                        index: i,
                        eigenvalue: th[i],
                    });
                }
                fm[(i, j)] = v;
                fm[(j, i)] = v;
            }
        }
        Ok(fm)
    }

    /// `S (F ∘ X) Sᵀ` for a symmetric `X` given in the eigenbasis.
    fn pullback_eigenbasis(&self, mut x: Mat<f64>) -> Result<Vec<T>, MatfunError> {
        let fm = self.divided_differences()?;
        let n = self.eig.n;
        for j in 0..n {
            for i in 0..n {
                x[(i, j)] *= fm[(i, j)];
            }
        }
        if self.eig.identity {
            symmetrize(&mut x);
            return from_mat("Daleckii-Krein pullback", &x);
        }
        let s = self.eig.vectors.as_ref();
        let sx = matmul_seq(s, x.as_ref());
        let mut out = matmul_seq(sx.as_ref(), s.transpose());
        symmetrize(&mut out);
        from_mat("Daleckii-Krein pullback", &out)
    }

    /// Reverse rule for `f(T)`: given the cotangent `M̄` (`K×K`, column-major) of
    /// [`value`](Self::value), returns the symmetric `T̄ = S (F ∘ (Sᵀ sym(M̄) S)) Sᵀ`.
    ///
    /// # Errors
    /// [`MatfunError::DimensionMismatch`], [`MatfunError::NonFiniteInput`], the errors of
    /// [`divided_differences`](Self::divided_differences), [`MatfunError::NonFiniteResult`].
    pub fn pullback(&self, mbar: &[T]) -> Result<Vec<T>, MatfunError> {
        let n = self.eig.n;
        check_len("cotangent M̄", n * n, mbar.len())?;
        check_finite("cotangent M̄", n, mbar)?;
        let m = to_mat(n, n, mbar);
        let msym = Mat::from_fn(n, n, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
        let s = self.eig.vectors.as_ref();
        let x = matmul_seq(matmul_seq(s.transpose(), msym.as_ref()).as_ref(), s);
        self.pullback_eigenbasis(x)
    }

    /// Reverse rule for `ρ = e₀ᵀ f(T) e₀` ([`quadratic_form`](Self::quadratic_form)): with
    /// `M̄ = ρ̄ e₀e₀ᵀ` and `s = Sᵀe₀`, `T̄ = ρ̄ S (F ∘ s sᵀ) Sᵀ` (no `Sᵀ M̄ S` product).
    ///
    /// # Errors
    /// [`MatfunError::NonFiniteParameter`] for a non-finite `rho_bar`, the errors of
    /// [`divided_differences`](Self::divided_differences), [`MatfunError::NonFiniteResult`].
    pub fn pullback_quadratic_form(&self, rho_bar: T) -> Result<Vec<T>, MatfunError> {
        let rb = check_scalar("cotangent ρ̄", rho_bar)?;
        let s = self.first_row();
        self.pullback_outer_eigenbasis(&s, &s, rb)
    }

    /// Reverse rule for `y = f(T) e₀` ([`apply_e0`](Self::apply_e0)): with `M̄ = w̄ e₀ᵀ`,
    /// `u = Sᵀw̄`, `s = Sᵀe₀`, `T̄ = S (F ∘ (u sᵀ + s uᵀ)/2) Sᵀ`.
    ///
    /// # Errors
    /// [`MatfunError::DimensionMismatch`], [`MatfunError::NonFiniteInput`], the errors of
    /// [`divided_differences`](Self::divided_differences), [`MatfunError::NonFiniteResult`].
    pub fn pullback_apply_e0(&self, wbar: &[T]) -> Result<Vec<T>, MatfunError> {
        let n = self.eig.n;
        check_len("cotangent w̄", n, wbar.len())?;
        check_finite("cotangent w̄", n, wbar)?;
        let u = self.to_eigenbasis(wbar);
        self.pullback_outer_eigenbasis(&u, &self.first_row(), 1.0)
    }

    /// Reverse rule for the bilinear form `ρ = aᵀ f(T) b` with cotangent `ρ̄` (equivalently,
    /// for `f(T)` with the rank-one cotangent `M̄ = ρ̄ a bᵀ`): with `u = Sᵀa`, `w = Sᵀb`,
    /// `T̄ = ρ̄ S (F ∘ (u wᵀ + w uᵀ)/2) Sᵀ`. [`pullback_quadratic_form`] is the case
    /// `a = b = e₀`, [`pullback_apply_e0`] the case `b = e₀`, `ρ̄ = 1`.
    ///
    /// [`pullback_quadratic_form`]: Self::pullback_quadratic_form
    /// [`pullback_apply_e0`]: Self::pullback_apply_e0
    ///
    /// # Errors
    /// [`MatfunError::DimensionMismatch`], [`MatfunError::NonFiniteInput`],
    /// [`MatfunError::NonFiniteParameter`] for a non-finite `rho_bar`, the errors of
    /// [`divided_differences`](Self::divided_differences), [`MatfunError::NonFiniteResult`].
    pub fn pullback_outer(&self, a: &[T], b: &[T], rho_bar: T) -> Result<Vec<T>, MatfunError> {
        let n = self.eig.n;
        check_len("vector a", n, a.len())?;
        check_finite("vector a", n, a)?;
        check_len("vector b", n, b.len())?;
        check_finite("vector b", n, b)?;
        let rb = check_scalar("cotangent ρ̄", rho_bar)?;
        self.pullback_outer_eigenbasis(&self.to_eigenbasis(a), &self.to_eigenbasis(b), rb)
    }

    /// `Sᵀx` in `f64`.
    fn to_eigenbasis(&self, x: &[T]) -> Vec<f64> {
        let n = self.eig.n;
        let s = &self.eig.vectors;
        (0..n)
            .map(|i| (0..n).map(|r| s[(r, i)] * x[r].to_f64()).sum())
            .collect()
    }

    /// `Sᵀe₀`, the first row of `S`.
    fn first_row(&self) -> Vec<f64> {
        (0..self.eig.n).map(|i| self.eig.vectors[(0, i)]).collect()
    }

    /// `S (F ∘ ρ̄(u wᵀ + w uᵀ)/2) Sᵀ` for `u`, `w` given in the eigenbasis.
    fn pullback_outer_eigenbasis(
        &self,
        u: &[f64],
        w: &[f64],
        rho_bar: f64,
    ) -> Result<Vec<T>, MatfunError> {
        let n = self.eig.n;
        let x = Mat::from_fn(n, n, |i, j| 0.5 * rho_bar * (u[i] * w[j] + w[i] * u[j]));
        self.pullback_eigenbasis(x)
    }
}

/// Rejects non-finite fixed parameters of `f`.
fn check_function(f: &MatrixFunction) -> Result<(), MatfunError> {
    match f.non_finite_parameter() {
        Some((what, value)) => Err(MatfunError::NonFiniteParameter { what, value }),
        None => Ok(()),
    }
}

/// Maps a symmetric cotangent `T̄` (`K×K`, column-major) of a tridiagonal matrix to the
/// cotangents of its diagonal and off-diagonal: `ā_k = T̄[k,k]`,
/// `b̄_k = T̄[k+1,k] + T̄[k,k+1]` (both triangles, as `b_k` appears twice in `T`).
///
/// # Errors
/// [`MatfunError::EmptyMatrix`], [`MatfunError::DimensionMismatch`].
///
/// # Example
///
/// ```
/// use gradmat_matfun::dense::tridiagonal_cotangent;
///
/// let tbar = [1.0_f64, 0.5, 0.5, 2.0];
/// let (abar, bbar) = tridiagonal_cotangent(2, &tbar)?;
/// assert_eq!(abar, vec![1.0, 2.0]);
/// assert_eq!(bbar, vec![1.0]);
/// # Ok::<(), gradmat_matfun::MatfunError>(())
/// ```
pub fn tridiagonal_cotangent<T: Scalar>(
    n: usize,
    tbar: &[T],
) -> Result<(Vec<T>, Vec<T>), MatfunError> {
    check_square("cotangent T̄", n, tbar)?;
    let abar = (0..n).map(|k| tbar[k + k * n]).collect();
    let bbar = (0..n - 1)
        .map(|k| tbar[(k + 1) + k * n] + tbar[k + (k + 1) * n])
        .collect();
    Ok((abar, bbar))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Jacobi fallback against faer on ordinary matrices: the same eigenvalues to a few ε
    /// (normwise), orthonormal eigenvectors, and `S diag(θ) Sᵀ = A`.
    #[test]
    fn jacobi_fallback_agrees_with_faer() {
        for (n, seed) in [(1usize, 1u64), (2, 2), (5, 3), (12, 4)] {
            let mut x = seed;
            let mut rnd = || {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            };
            let mut a = Mat::<f64>::zeros(n, n);
            for j in 0..n {
                for i in 0..=j {
                    let v = rnd();
                    a[(i, j)] = v;
                    a[(j, i)] = v;
                }
            }
            let f = SymmetricEigen::decompose_unscaled(a.as_ref()).unwrap();
            let j = SymmetricEigen::decompose_jacobi(a.as_ref()).unwrap();
            let tol = 16.0 * n as f64 * f64::EPSILON;
            for (x, y) in f.values.iter().zip(&j.values) {
                assert!((x - y).abs() <= tol, "{x} vs {y}");
            }
            let s = &j.vectors;
            for p in 0..n {
                for q in 0..n {
                    let qtq: f64 = (0..n).map(|l| s[(l, p)] * s[(l, q)]).sum();
                    let want = if p == q { 1.0 } else { 0.0 };
                    assert!((qtq - want).abs() <= tol);
                    let rec: f64 = (0..n).map(|l| s[(p, l)] * j.values[l] * s[(q, l)]).sum();
                    assert!((rec - a[(p, q)]).abs() <= tol);
                }
            }
        }
    }
}
