//! Krylov approximations of `f(A)v` and `vᵀf(A)v` for large operators, with exact reverse-mode
//! gradients through the adjoints of Lanczos and Arnoldi.
//!
//! * **Lanczos** (self-adjoint `A`): `A Q = Q T + r e_{K-1}ᵀ`, `Q e₀ = v/‖v‖`, and
//!   `f(A)v ≈ ‖v‖ Q f(T) e₀`, `vᵀf(A)v ≈ ‖v‖² e₀ᵀ f(T) e₀` (Gauss quadrature), for every
//!   [`MatrixFunction`] (log, exp, `exp(t·)`, sqrt, inverse sqrt, inverse, powers, custom).
//! * **Arnoldi** (general `A`): `A Q = Q H + r e_{K-1}ᵀ` and `f(A)v ≈ ‖v‖ Q f(H) e₀` for
//!   `f = exp` and `f = exp(t·)` (Padé `expm` of the small Hessenberg matrix). Other functions
//!   of a non-symmetric `H` are rejected with [`MatfunError::UnsupportedFunction`].
//!
//! The forward functions return an object that keeps the decomposition, typed by it:
//! [`LanczosQuadForm`] and [`ArnoldiQuadForm`] for `vᵀf(A)v`, [`LanczosFunVec`] and
//! [`ArnoldiFunVec`] for `f(A)v`. Each has one backward pass, `vjp` (for a quadratic form
//! `gradient` is `vjp` with `ρ̄ = 1`), whose operator bound is the one its decomposition needs
//! (`SelfAdjoint` after Lanczos, `AdjointOperator` after Arnoldi). It builds the cotangents
//! of the decomposition's outputs from the dense reverse rules of [`crate::dense`] and hands
//! them to [`gradmat_adjoint::lanczos_vjp`] / [`gradmat_adjoint::arnoldi_vjp`], which return the
//! start vector's cotangent `v̄` and **accumulate** the parameter gradient `θ̄` through
//! [`ParamVjp`]. For `exp(t·)` the cotangent `t̄` of the time is returned as well.
//!
//! # The cotangents (with `c = 1/‖v‖`)
//!
//! * `ρ = vᵀf(A)v ≈ φ/c²` with `φ = e₀ᵀ f(T) e₀`: `φ̄ = ρ̄/c²`, `T̄` from the Daleckii–Krein rule
//!   ([`SymmetricMatrixFunction::pullback_quadratic_form`]) mapped to `(ā, b̄)` by
//!   [`tridiagonal_cotangent`], and `c̄ = ∂ρ/∂c · ρ̄ = −2ρρ̄/c`. (Arnoldi: `H̄` from
//!   [`expm_scaled_e0_pullback`] with `w̄ = φ̄ e₀`.)
//! * `w = f(A)v ≈ Q y / c` with `y = f(T) e₀`: for a cotangent `w̄`, `Q̄ = w̄ yᵀ / c`,
//!   `ȳ = Qᵀ w̄ / c`, `T̄` (or `H̄`, `t̄`) from the pullback of `y` with `ȳ`, and
//!   `c̄ = −⟨w̄, w⟩/c = −ȳᵀy/c`.
//!
//! The gradient is always the exact gradient *of the approximation* that was computed. At full
//! depth `K = N` the approximations are exact for every nearby `A` too, so their gradients are
//! the gradients of `f(A)v` and `vᵀf(A)v` themselves.
//!
//! **Exact decompositions: breakdown and full depth.** When the decomposition is exact — the
//! iteration met an invariant subspace at depth `m < K` (or a sub-diagonal at rounding level,
//! see below), or it spans the whole space (`K = N`) — the function the user asked for is the
//! function itself near `A`, and its gradient is not the derivative of the truncated algorithm
//! (a generic perturbation of `A` leaves the invariant subspace). The backward pass then takes
//! the gradient in the Krylov space by Rayleigh–Ritz ([`crate::subspace`] explains it):
//!
//! * `vᵀf(A)v` (and SLQ): `Ā = Z (∂ρ/∂B) Zᵀ` with `Z` an orthonormal basis of the invariant
//!   subspace and `∂ρ/∂B` from Daleckii–Krein; exact to rounding for every decomposition
//!   (plain Lanczos is recomputed with full reorthogonalisation when its Ritz vectors are not
//!   accurate enough, which costs the forward products once more).
//! * `f(A)v` with a cotangent `w̄`: exact if `w̄` lies in the Krylov space or `K = N`. If the
//!   request was the exact function (depth `N`) and `w̄` has a part outside, the decomposition
//!   is continued from that part (up to `N − m` more products). Below full depth the truncated
//!   approximation is not differentiable in the directions that leave the subspace, and
//!   [`MatfunError::GradientUnavailable`] is returned — never a different number.
//! * Arnoldi: exact at `K = N`; at a breakdown below it only if the subspace also reduces `Aᵀ`
//!   (a symmetric operator), otherwise [`MatfunError::GradientUnavailable`].
//!
//! A sub-diagonal `b_j ≤ 1e5·√N·ε·‖A q_j‖` is treated as a breakdown by the backward pass even
//! if the iteration's own threshold (`1000·√N·ε`) let it continue: past such a step the run
//! explores amplified rounding noise and the adjoint recursion would divide by `b_j`.
//!
//! **Singular input.** A Ritz value within `10·K·ε·max|θ|` of zero (of either sign) is
//! rejected for `log`, `1/x` and `1/√x` (and for the gradient of `√x`) with
//! [`MatfunError::NumericallySingular`]: a zero eigenvalue comes out of the iteration as a
//! rounding error. A Krylov method only sees the part of the spectrum the vector weighs: SLQ at
//! `K ≪ N` cannot detect a singular operator whose null space gets little probe weight.
//!
//! # Example
//!
//! ```
//! use gradmat_matfun::dense::{MatrixFunction, SymmetricMatrixFunction};
//! use gradmat_matfun::krylov::{quadform_lanczos, KrylovParams};
//! use gradmat_operators::dense::SymmetricDense;
//! use gradmat_operators::ParamVjp;
//!
//! // vᵀ log(A) v for a 3×3 SPD matrix at full depth (exact), and its gradient.
//! let dense = vec![4.0_f64, 1.0, 0.0, 1.0, 3.0, 0.5, 0.0, 0.5, 2.0];
//! let a = SymmetricDense::from_col_major(3, dense.clone())?;
//! let v = [1.0, -1.0, 0.5];
//! let qf = quadform_lanczos(&a, &v, &MatrixFunction::Log, &KrylovParams::new(3))?;
//! let log_a = SymmetricMatrixFunction::new(MatrixFunction::Log, 3, &dense)?;
//! let exact: f64 = log_a.apply(&v)?.iter().zip(&v).map(|(x, y)| x * y).sum();
//! assert!((qf.value() - exact).abs() < 1e-13);
//! let mut theta_bar = vec![0.0; a.num_params()];
//! let grad = qf.gradient(&a, &mut theta_bar)?; // θ̄ accumulated, v̄ returned
//! // v̄ = 2 log(A) v for symmetric A.
//! for (g, x) in grad.v.iter().zip(log_a.apply(&v)?) {
//!     assert!((g - 2.0 * x).abs() < 1e-12);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::dense::{
    expm_scaled_e0, expm_scaled_e0_pullback, tridiagonal_cotangent, MatrixFunction,
    SymmetricMatrixFunction,
};
use crate::subspace::{self, ArnoldiOutput, Restriction};
use crate::MatfunError;
use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointParams, ArnoldiCotangent, LanczosCotangent, ParamAccumulation,
};
use gradmat_krylov::arnoldi::{arnoldi, Arnoldi, ArnoldiParams};
use gradmat_krylov::lanczos::{lanczos, lanczos_into, Lanczos, LanczosParams};
use gradmat_krylov::reduce;
use gradmat_krylov::Reorthogonalize;
use gradmat_operators::{AdjointOperator, NonExhaustive, Operator, ParamVjp, Scalar, SelfAdjoint};
use std::borrow::Cow;

/// Parameters of the Krylov matrix functions.
///
/// ```
/// use gradmat_matfun::krylov::KrylovParams;
/// use gradmat_matfun::Reorthogonalize;
/// let p = KrylovParams { reorthogonalize: Reorthogonalize::None, ..KrylovParams::new(30) };
/// assert_eq!(p.depth, 30);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct KrylovParams {
    /// Krylov depth `K` (matrix–vector products of the forward pass). Depths larger than the
    /// dimension `N` are clamped to `N` (where the approximation is exact); 0 is an error.
    /// Default 10.
    pub depth: usize,
    /// Reorthogonalisation of the forward pass. Default [`Reorthogonalize::Full`]: accurate
    /// quadrature and exact-to-rounding gradients (the projected adjoint), at `O(N K²)` extra
    /// work. [`Reorthogonalize::None`] is the plain three-term Lanczos (cheaper, `O(N)` memory
    /// per step in the forward pass; loses orthogonality as Ritz values converge).
    pub reorthogonalize: Reorthogonalize,
    /// Re-projection in the Arnoldi adjoint (default `true`: required for exactness to rounding
    /// after a reorthogonalised forward pass, and measured more accurate than the plain
    /// recursion after a non-reorthogonalised one too); see [`AdjointParams::project`].
    pub project: bool,
    /// How parameter gradients are accumulated in the backward pass (default
    /// [`ParamAccumulation::Auto`]: as the operator prefers).
    pub accumulation: ParamAccumulation,
    /// Relative breakdown threshold of the Krylov iteration (`None`: the Krylov crate's
    /// default `1000·√N·eps` of the step's `‖A q_k‖`).
    pub breakdown_tol: Option<f64>,
    #[doc(hidden)]
    pub non_exhaustive: NonExhaustive,
}

impl KrylovParams {
    /// The default parameters with depth `depth`: full reorthogonalisation, projected adjoint,
    /// automatic parameter-gradient accumulation.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            reorthogonalize: Reorthogonalize::Full,
            project: true,
            accumulation: ParamAccumulation::Auto,
            breakdown_tol: None,
            non_exhaustive: NonExhaustive::default(),
        }
    }

    pub(crate) fn adjoint_params(&self) -> AdjointParams {
        AdjointParams {
            accumulation: self.accumulation,
            project: self.project,
            ..AdjointParams::default()
        }
    }

    /// The depth to run on an `n`-dimensional operator.
    pub(crate) fn depth_for(&self, n: usize) -> Result<usize, MatfunError> {
        if self.depth == 0 {
            return Err(MatfunError::InvalidParameter(
                "the Krylov depth must be at least 1".into(),
            ));
        }
        // The global dimension in a distributed scope (the same decision on every rank).
        let n = gradmat_krylov::distributed::global_dim(n);
        if n == 0 {
            return Err(MatfunError::EmptyMatrix { what: "operator" });
        }
        Ok(self.depth.min(n))
    }

    pub(crate) fn lanczos_params(&self, k: usize) -> LanczosParams {
        LanczosParams {
            reorthogonalize: self.reorthogonalize,
            breakdown_tol: self.breakdown_tol,
            ..LanczosParams::new(k)
        }
    }

    fn arnoldi_params(&self, k: usize) -> ArnoldiParams {
        ArnoldiParams {
            reorthogonalize: self.reorthogonalize,
            breakdown_tol: self.breakdown_tol,
            ..ArnoldiParams::new(k)
        }
    }
}

impl Default for KrylovParams {
    fn default() -> Self {
        Self::new(10)
    }
}

/// The result of a backward pass: the cotangent of the start vector and, for `exp(t·)`, of the
/// time. The parameter gradient `θ̄` is accumulated into the caller's buffer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Gradient<T> {
    /// `v̄ = ∂ρ/∂v · ρ̄` (length `N`).
    pub v: Vec<T>,
    /// `t̄` for [`MatrixFunction::ScaledExp`] (`f(x) = exp(t x)`) and [`MatrixFunction::Exp`]
    /// (`t = 1`); `None` for other functions.
    pub time: Option<T>,
}

/// The time `t` of an exponential, if `f` is one.
fn exp_time(f: &MatrixFunction) -> Option<f64> {
    match *f {
        MatrixFunction::Exp => Some(1.0),
        MatrixFunction::ScaledExp(t) => Some(t),
        _ => None,
    }
}

fn arnoldi_time(f: &MatrixFunction) -> Result<f64, MatfunError> {
    exp_time(f).ok_or(MatfunError::UnsupportedFunction {
        function: f.name(),
        method: "Arnoldi",
        hint: "the Lanczos path for self-adjoint operators",
    })
}

/// Maps a domain error of the small eigenproblem to the Krylov-level message.
pub(crate) fn ritz_error(e: MatfunError) -> MatfunError {
    match e {
        MatfunError::EigenvalueOutsideDomain {
            function,
            eigenvalue,
            domain,
            ..
        } => MatfunError::RitzValueOutsideDomain {
            function,
            ritz_value: eigenvalue,
            domain,
        },
        other => other,
    }
}

/// Factor `c` of the rounding threshold `c·K·ε·max|θ|` below which a positive Ritz value is
/// treated as zero (see [`MatfunError::NumericallySingular`]).
pub const RITZ_ZERO_FACTOR: f64 = 10.0;

/// Rejects a Ritz value within rounding of zero (of either sign: a zero eigenvalue comes out of
/// a Krylov iteration as `±` a rounding error) for the functions that are singular at 0 (`log`,
/// `1/x`, `1/√x`, negative powers; with `for_gradient`, also the derivative of `√x` and of
/// positive fractional powers).
pub(crate) fn check_ritz_values<T: Scalar>(
    f: &MatrixFunction,
    th: &[f64],
    for_gradient: bool,
) -> Result<(), MatfunError> {
    let singular_value = match *f {
        MatrixFunction::Log | MatrixFunction::Inv | MatrixFunction::InvSqrt => true,
        MatrixFunction::PowI(n) => n < 0,
        MatrixFunction::Pow(p) => p < 0.0,
        _ => false,
    };
    let singular_derivative = match *f {
        MatrixFunction::Sqrt => true,
        MatrixFunction::Pow(p) => p > 0.0 && p < 1.0,
        _ => false,
    };
    if !(singular_value || (for_gradient && singular_derivative)) {
        return Ok(());
    }
    let k = th.len();
    let max = th.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    let threshold = RITZ_ZERO_FACTOR * k as f64 * T::EPS.to_f64() * max;
    match th.iter().copied().find(|x| x.abs() <= threshold) {
        Some(ritz_value) => Err(MatfunError::NumericallySingular {
            function: f.name(),
            ritz_value,
            threshold,
            dim: k,
        }),
        None => Ok(()),
    }
}

/// [`check_ritz_values`] on the eigenvalues of an existing small function.
pub(crate) fn check_ritz_threshold<T: Scalar>(
    fun: &SymmetricMatrixFunction<impl Scalar>,
    for_gradient: bool,
) -> Result<(), MatfunError> {
    check_ritz_values::<T>(fun.function(), fun.eigen().values(), for_gradient)
}

/// `f` of a Krylov matrix from its eigendecomposition: the rounding threshold first (so that a
/// zero Ritz value of either sign is reported as singular input), then the domain of `f`.
pub(crate) fn ritz_function<T: Scalar, S: Scalar>(
    f: &MatrixFunction,
    eig: crate::dense::SymmetricEigen,
) -> Result<SymmetricMatrixFunction<S>, MatfunError> {
    check_ritz_values::<T>(f, eig.values(), false)?;
    SymmetricMatrixFunction::from_eigen(f.clone(), eig).map_err(ritz_error)
}

/// The relative size `τ = 1e5·√N·ε` below which a sub-diagonal `b_j` (relative to the step's
/// `‖A q_j‖`) is treated as a breakdown by the backward pass even when the iteration's own
/// (stricter) threshold did not stop it: rounding noise amplified by such a step (a plain
/// three-term run, or a cluster of eigenvalues) otherwise carries the run on into directions of
/// the noise, and the recursion of the adjoint divides by `b_j`. At `b_j ≤ τ‖A q_j‖` the
/// leading `j + 1` vectors span an invariant subspace to that accuracy, which is where the
/// function the user asked for has its gradient (see [`crate::subspace`]).
pub(crate) fn numerical_breakdown_tol<T: Scalar>(n: usize) -> f64 {
    let n = gradmat_krylov::distributed::global_dim(n);
    1e5 * (n.max(1) as f64).sqrt() * T::EPS.to_f64()
}

/// The depth `m` at which a decomposition is exact, if it is: a breakdown reported by the
/// iteration (`m` = the depth), the whole space (`m = N`), or the first sub-diagonal `b_j`
/// below [`numerical_breakdown_tol`] of `‖A q_j‖` (`m = j + 1`). `sub(j)` is the sub-diagonal
/// after column `j`, `col(j)` the norm `‖A q_j‖` of column `j` of the relation.
fn exact_depth<T: Scalar>(
    info: &gradmat_krylov::Info,
    k: usize,
    n: usize,
    sub: impl Fn(usize) -> f64,
    col: impl Fn(usize) -> f64,
) -> Option<usize> {
    if info.breakdown.is_some() || k == gradmat_krylov::distributed::global_dim(n) {
        return Some(k);
    }
    let tau = numerical_breakdown_tol::<T>(n);
    (0..k.saturating_sub(1))
        .find(|&j| sub(j).abs() <= tau * col(j))
        .map(|j| j + 1)
}

/// The exact depth of a Lanczos decomposition (three-term: `‖A x_j‖² = b_{j−1}² + a_j² +
/// b_j²`; with full reorthogonalisation: the Hessenberg columns).
fn lanczos_exact_depth<T: Scalar>(dec: &Lanczos<T>) -> Option<usize> {
    let (n, k) = (dec.dim(), dec.depth());
    match dec.arnoldi() {
        Some(arn) => arnoldi_exact_depth(arn),
        None => {
            let (a, b) = (dec.diagonal(), dec.off_diagonal());
            exact_depth::<T>(
                dec.info(),
                k,
                n,
                |j| b[j].to_f64(),
                |j| {
                    let bp = if j > 0 { b[j - 1].to_f64() } else { 0.0 };
                    (bp * bp + a[j].to_f64().powi(2) + b[j].to_f64().powi(2)).sqrt()
                },
            )
        }
    }
}

fn arnoldi_exact_depth<T: Scalar>(dec: &Arnoldi<T>) -> Option<usize> {
    let (n, k) = (dec.dim(), dec.depth());
    exact_depth::<T>(
        dec.info(),
        k,
        n,
        |j| dec.h(j + 1, j).to_f64(),
        |j| {
            (0..k.min(j + 2))
                .map(|i| dec.h(i, j).to_f64().powi(2))
                .sum::<f64>()
                .sqrt()
        },
    )
}

/// The leading `m×m` block of a column-major `k×k` matrix.
fn leading<T: Scalar>(h: &[T], k: usize, m: usize) -> Vec<T> {
    (0..m * m).map(|p| h[p % m + (p / m) * k]).collect()
}

/// The residual of the relation truncated at depth `m`: `r` itself at `m = K`, else the
/// sub-diagonal entry times the next basis vector.
fn truncated_residual<T: Scalar>(q: &[T], n: usize, k: usize, m: usize, sub: T, r: &[T]) -> Vec<T> {
    if m == k {
        r.to_vec()
    } else {
        q[m * n..(m + 1) * n].iter().map(|x| *x * sub).collect()
    }
}

/// An invariant restriction and the basis it refers to (borrowed from the decomposition, or
/// owned after a recomputation).
type ExactSubspace<'d, T> = (Restriction, Cow<'d, [T]>);

/// The invariant restriction of an exact Lanczos decomposition (see [`crate::subspace`]) and
/// the basis it refers to, or `None` if the decomposition is not exact.
///
/// With full reorthogonalisation the basis is used as it is and the tridiagonal `T` decomposed
/// by bisection (no pass over the basis). After a plain (three-term) run the Ritz vectors
/// recovered from the lost-orthogonality basis are used when they are accurate enough
/// (`plain_ok`, quadratic forms); otherwise — and always for `f(A)v`, whose cotangent may weigh
/// any Ritz vector — the decomposition is recomputed with full reorthogonalisation from the
/// same start vector (the same number of products again), so that the gradient is the exact
/// one.
fn lanczos_restriction<'d, T, A>(
    op: &A,
    dec: &'d Lanczos<T>,
    params: &KrylovParams,
    plain_ok: bool,
) -> Result<Option<ExactSubspace<'d, T>>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    let Some(m) = lanczos_exact_depth(dec) else {
        return Ok(None);
    };
    let (n, k) = (dec.dim(), dec.depth());
    if let Some(arn) = dec.arnoldi() {
        return Ok(reorthogonalized_restriction(arn, m, params)?
            .map(|r| (r, Cow::Borrowed(&arn.basis()[..n * m]))));
    }
    if plain_ok {
        let b = dec.off_diagonal();
        let sub = if m < k { b[m - 1] } else { T::ZERO };
        let rest = Restriction::new(
            &dec.basis()[..n * m],
            n,
            m,
            &leading(&dec.small_matrix(), k, m),
            &truncated_residual(dec.basis(), n, k, m, sub, dec.residual()),
            dec.inv_norm(),
            true,
            params.breakdown_tol,
        )?;
        if let Some(r) = rest {
            return Ok(Some((r, Cow::Borrowed(&dec.basis()[..n * m]))));
        }
    }
    let c = dec.inv_norm();
    let v: Vec<T> = dec.basis_vector(0).iter().map(|x| *x / c).collect();
    let lp = LanczosParams {
        reorthogonalize: Reorthogonalize::Full,
        ..params.lanczos_params(dec.info().requested_depth)
    };
    let full = lanczos(op, &v, &lp)?;
    let Some(m) = lanczos_exact_depth(&full) else {
        return Ok(None);
    };
    let arn = full
        .arnoldi()
        .expect("a fully reorthogonalised Lanczos run keeps its Arnoldi form");
    Ok(reorthogonalized_restriction(arn, m, params)?
        .map(|r| (r, Cow::Owned(arn.basis()[..n * m].to_vec()))))
}

/// The tridiagonal band `(diag, off)` of `(H + Hᵀ)/2` of an Arnoldi decomposition (what a fully
/// reorthogonalised Lanczos run returns as `T`).
fn hessenberg_band<T: Scalar>(arn: &Arnoldi<T>) -> (Vec<T>, Vec<T>) {
    let k = arn.depth();
    let half = T::from_f64(0.5);
    let diag = (0..k).map(|i| arn.h(i, i)).collect();
    let off = (0..k.saturating_sub(1))
        .map(|i| half * (arn.h(i + 1, i) + arn.h(i, i + 1)))
        .collect();
    (diag, off)
}

/// [`Restriction::orthonormal`] of a fully reorthogonalised run (Lanczos through Arnoldi, or
/// Arnoldi on a symmetric operator) truncated at depth `m`, with `T` the band of `(H + Hᵀ)/2`.
fn reorthogonalized_restriction<T: Scalar>(
    arn: &Arnoldi<T>,
    m: usize,
    params: &KrylovParams,
) -> Result<Option<Restriction>, MatfunError> {
    let k = arn.depth();
    let (a, b) = hessenberg_band(arn);
    // ‖H − T‖_F on the leading block: the entries of H outside the band of T, and the
    // asymmetry of the band.
    let mut off_band = 0.0_f64;
    for j in 0..m {
        for i in 0..m.min(j + 2) {
            let t = if i == j {
                a[j].to_f64()
            } else if i + 1 == j || i == j + 1 {
                b[i.min(j)].to_f64()
            } else {
                0.0
            };
            off_band += (arn.h(i, j).to_f64() - t).powi(2);
        }
    }
    let r_norm = if m < k {
        arn.h(m, m - 1).to_f64()
    } else {
        reduce::norm(arn.residual()).to_f64()
    };
    Restriction::orthonormal(
        arn.dim(),
        &a[..m],
        &b[..m - 1],
        off_band.sqrt(),
        r_norm,
        arn.inv_norm(),
        params.breakdown_tol,
    )
}

/// The restriction of an exact Arnoldi decomposition, if the span is numerically invariant.
fn arnoldi_restriction<T: Scalar>(
    dec: &Arnoldi<T>,
    params: &KrylovParams,
) -> Result<Option<Restriction>, MatfunError> {
    let Some(m) = arnoldi_exact_depth(dec) else {
        return Ok(None);
    };
    let (n, k) = (dec.dim(), dec.depth());
    let sub = if m < k { dec.h(m, m - 1) } else { T::ZERO };
    Restriction::new(
        &dec.basis()[..n * m],
        n,
        m,
        &leading(dec.hessenberg(), k, m),
        &truncated_residual(dec.basis(), n, k, m, sub, dec.residual()),
        dec.inv_norm(),
        false,
        params.breakdown_tol,
    )
}

fn check_theta_grad<T: Scalar, A: ParamVjp<T> + ?Sized>(
    op: &A,
    theta_grad: &[T],
) -> Result<(), MatfunError> {
    if theta_grad.len() != op.num_params() {
        return Err(MatfunError::DimensionMismatch {
            what: "parameter gradient",
            expected: op.num_params(),
            got: theta_grad.len(),
        });
    }
    Ok(())
}

fn check_cotangent_scalar<T: Scalar>(what: &'static str, x: T) -> Result<(), MatfunError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(MatfunError::NonFiniteParameter {
            what,
            value: x.to_f64(),
        })
    }
}

fn finite_out<T: Scalar>(what: &'static str, x: T) -> Result<T, MatfunError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(MatfunError::NonFiniteResult { what })
    }
}

/// `Σᵢ aᵢ θᵢ e^{tθᵢ} bᵢ` — `∂/∂t` of `aᵀ exp(tΘ) b` in the eigenbasis.
fn dexp_dt(sf: &SymmetricMatrixFunction<impl Scalar>, a: &[f64], b: &[f64]) -> f64 {
    let th = sf.eigen().values();
    let fv = sf.function_values();
    (0..th.len()).map(|i| a[i] * th[i] * fv[i] * b[i]).sum()
}

/// First row of the eigenvector matrix, `s = Sᵀe₀`.
fn first_row(sf: &SymmetricMatrixFunction<impl Scalar>) -> Vec<f64> {
    let s = sf.eigen().vectors();
    (0..s.ncols()).map(|i| s[(0, i)]).collect()
}

// ---------------------------------------------------------------------------------------------
// Quadratic forms
// ---------------------------------------------------------------------------------------------

/// Accessors shared by the Krylov results of this module.
macro_rules! krylov_result_accessors {
    () => {
        /// The Krylov depth reached (smaller than requested after a breakdown, where the
        /// approximation is exact).
        pub fn depth(&self) -> usize {
            self.dec().depth()
        }
        /// Matrix–vector products of the forward pass.
        pub fn num_matvecs(&self) -> usize {
            self.dec().info().num_matvecs
        }
    };
}

/// `ρ = vᵀ f(A) v ≈ ‖v‖² e₀ᵀ f(T) e₀` from Lanczos, keeping the decomposition for the backward
/// pass. Built by [`quadform_lanczos`]; its backward pass needs a self-adjoint operator.
#[derive(Debug, Clone)]
pub struct LanczosQuadForm<T: Scalar> {
    dec: Box<Lanczos<T>>,
    fun: SymmetricMatrixFunction<T>,
    value: T,
    params: KrylovParams,
}

impl<T: Scalar> LanczosQuadForm<T> {
    fn dec(&self) -> &Lanczos<T> {
        &self.dec
    }
    krylov_result_accessors!();
    /// The approximation of `vᵀ f(A) v`.
    pub fn value(&self) -> T {
        self.value
    }
    /// The Ritz values (eigenvalues of `T`, ascending).
    pub fn ritz_values(&self) -> &[f64] {
        self.fun.eigen().values()
    }
    /// The smallest and the largest Ritz value.
    pub fn ritz_range(&self) -> (f64, f64) {
        let th = self.ritz_values();
        match (th.first(), th.last()) {
            (Some(lo), Some(hi)) => (*lo, *hi),
            _ => (f64::NAN, f64::NAN),
        }
    }

    /// [`vjp`](Self::vjp) with `ρ̄ = 1`: returns `v̄ = ∇_v ρ` (and `t̄` for exponentials) and
    /// **accumulates** `θ̄ += ∇_θ ρ` into `theta_grad`.
    ///
    /// # Errors
    /// See [`vjp`](Self::vjp).
    pub fn gradient<A>(&self, op: &A, theta_grad: &mut [T]) -> Result<Gradient<T>, MatfunError>
    where
        A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
    {
        self.vjp(op, T::ONE, theta_grad)
    }

    /// The backward pass for a cotangent `ρ̄` of the value: returns `v̄` (and `t̄` for
    /// exponentials) and **accumulates** `θ̄ += ρ̄ ∇_θ ρ` into `theta_grad` (length
    /// `op.num_params()`). `op` must be the operator of the forward pass (same parameters).
    ///
    /// # Errors
    /// [`MatfunError::DimensionMismatch`] for a wrong `theta_grad` length,
    /// [`MatfunError::NonFiniteParameter`] for a non-finite `ρ̄`, the errors of the dense
    /// reverse rules, and [`MatfunError::Adjoint`].
    pub fn vjp<A>(
        &self,
        op: &A,
        rho_bar: T,
        theta_grad: &mut [T],
    ) -> Result<Gradient<T>, MatfunError>
    where
        A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
    {
        let (dec, fun) = (&*self.dec, &self.fun);
        check_theta_grad(op, theta_grad)?;
        check_cotangent_scalar("cotangent ρ̄", rho_bar)?;
        check_ritz_threshold::<T>(fun, true)?;
        if let Some((rest, basis)) = lanczos_restriction(op, dec, &self.params, true)? {
            return subspace::quadform_symmetric(
                op,
                &basis,
                &rest,
                fun.function(),
                rho_bar,
                theta_grad,
            );
        }
        let c = dec.inv_norm();
        let k = dec.depth();
        let phi_bar = rho_bar / (c * c);
        let tbar = fun.pullback_quadratic_form(phi_bar)?;
        let (abar, bbar) = tridiagonal_cotangent(k, &tbar)?;
        let cbar = -T::from_f64(2.0) * rho_bar * self.value / c;
        let cot = LanczosCotangent {
            diagonal: Some(&abar),
            off_diagonal: Some(&bbar),
            inv_norm: cbar,
            ..Default::default()
        };
        let v = lanczos_vjp(op, dec, &cot, &self.params.adjoint_params(), theta_grad)?;
        let time = match exp_time(fun.function()) {
            Some(_) => {
                let s = first_row(fun);
                let dphi = dexp_dt(fun, &s, &s);
                Some(finite_out("t̄", T::from_f64(phi_bar.to_f64() * dphi))?)
            }
            None => None,
        };
        Ok(Gradient { v, time })
    }
}

#[derive(Debug, Clone)]
enum ArnoldiQuad<T: Scalar> {
    /// `exp(tH)` of the Hessenberg matrix.
    Exp { dec: Arnoldi<T>, t: f64 },
    /// An operator whose Hessenberg matrix is symmetric to rounding, with `f` of the tridiagonal
    /// band `T` of `(H + Hᵀ)/2` (any [`MatrixFunction`]).
    Symmetric {
        dec: Arnoldi<T>,
        fun: SymmetricMatrixFunction<T>,
    },
}

/// `ρ = vᵀ f(A) v ≈ ‖v‖² e₀ᵀ f(H) e₀` from Arnoldi, keeping the decomposition for the backward
/// pass. Built by [`quadform_arnoldi`]; its backward pass applies `Aᵀ`.
#[derive(Debug, Clone)]
pub struct ArnoldiQuadForm<T: Scalar> {
    inner: ArnoldiQuad<T>,
    value: T,
    params: KrylovParams,
}

impl<T: Scalar> ArnoldiQuadForm<T> {
    fn dec(&self) -> &Arnoldi<T> {
        match &self.inner {
            ArnoldiQuad::Exp { dec, .. } | ArnoldiQuad::Symmetric { dec, .. } => dec,
        }
    }
    krylov_result_accessors!();
    /// The approximation of `vᵀ f(A) v`.
    pub fn value(&self) -> T {
        self.value
    }
    /// The Ritz values (eigenvalues of the band `T`, ascending) for functions other than `exp`;
    /// `None` for `exp`.
    pub fn ritz_values(&self) -> Option<&[f64]> {
        match &self.inner {
            ArnoldiQuad::Symmetric { fun, .. } => Some(fun.eigen().values()),
            ArnoldiQuad::Exp { .. } => None,
        }
    }

    /// [`vjp`](Self::vjp) with `ρ̄ = 1`.
    ///
    /// # Errors
    /// See [`vjp`](Self::vjp).
    pub fn gradient<A>(&self, op: &A, theta_grad: &mut [T]) -> Result<Gradient<T>, MatfunError>
    where
        A: AdjointOperator<T> + ParamVjp<T> + ?Sized,
    {
        self.vjp(op, T::ONE, theta_grad)
    }

    /// The backward pass for a cotangent `ρ̄` (the Arnoldi adjoint applies `Aᵀ`, hence the
    /// [`AdjointOperator`] bound): returns `v̄` (and `t̄` for exponentials) and **accumulates**
    /// `θ̄ += ρ̄ ∇_θ ρ` into `theta_grad`.
    ///
    /// # Errors
    /// As [`LanczosQuadForm::vjp`].
    pub fn vjp<A>(
        &self,
        op: &A,
        rho_bar: T,
        theta_grad: &mut [T],
    ) -> Result<Gradient<T>, MatfunError>
    where
        A: AdjointOperator<T> + ParamVjp<T> + ?Sized,
    {
        match &self.inner {
            ArnoldiQuad::Exp { dec, t } => {
                check_theta_grad(op, theta_grad)?;
                check_cotangent_scalar("cotangent ρ̄", rho_bar)?;
                if let Some(rest) = arnoldi_restriction(dec, &self.params)? {
                    return subspace::arnoldi_exp(
                        op,
                        &dec.basis()[..dec.dim() * rest.depth()],
                        &rest,
                        *t,
                        ArnoldiOutput::QuadForm(rho_bar),
                        theta_grad,
                    );
                }
                let c = dec.inv_norm();
                let k = dec.depth();
                let phi_bar = rho_bar / (c * c);
                let mut wbar = vec![T::ZERO; k];
                wbar[0] = phi_bar;
                let pb = expm_scaled_e0_pullback(k, dec.hessenberg(), T::from_f64(*t), &wbar)?;
                let cbar = -T::from_f64(2.0) * rho_bar * self.value / c;
                let cot = ArnoldiCotangent {
                    hessenberg: Some(&pb.h),
                    inv_norm: cbar,
                    ..Default::default()
                };
                let v = arnoldi_vjp(op, dec, &cot, &self.params.adjoint_params(), theta_grad)?;
                Ok(Gradient {
                    v,
                    time: Some(pb.t),
                })
            }
            ArnoldiQuad::Symmetric { dec, fun } => {
                check_theta_grad(op, theta_grad)?;
                check_cotangent_scalar("cotangent ρ̄", rho_bar)?;
                check_ritz_threshold::<T>(fun, true)?;
                let (n, k) = (dec.dim(), dec.depth());
                if let Some(m) = arnoldi_exact_depth(dec) {
                    if let Some(rest) = reorthogonalized_restriction(dec, m, &self.params)? {
                        let q = &dec.basis()[..n * m];
                        if rest.rank() < gradmat_krylov::distributed::global_dim(n) {
                            subspace::check_reducing(op, q, &rest)?;
                        }
                        return subspace::quadform_symmetric(
                            op,
                            q,
                            &rest,
                            fun.function(),
                            rho_bar,
                            theta_grad,
                        );
                    }
                }
                // ρ depends on H only through the band T of (H + Hᵀ)/2: H̄ = T̄ on the band.
                let c = dec.inv_norm();
                let tbar = fun.pullback_quadratic_form(rho_bar / (c * c))?;
                let mut hbar = vec![T::ZERO; k * k];
                for j in 0..k {
                    for i in j.saturating_sub(1)..(j + 2).min(k) {
                        hbar[i + j * k] = tbar[i + j * k];
                    }
                }
                let cot = ArnoldiCotangent {
                    hessenberg: Some(&hbar),
                    inv_norm: -T::from_f64(2.0) * rho_bar * self.value / c,
                    ..Default::default()
                };
                let v = arnoldi_vjp(op, dec, &cot, &self.params.adjoint_params(), theta_grad)?;
                Ok(Gradient { v, time: None })
            }
        }
    }
}

/// `vᵀ f(A) v ≈ ‖v‖² e₀ᵀ f(T) e₀` by Lanczos on the self-adjoint `op` (Gauss quadrature with
/// `K` nodes: exact for polynomials of degree `2K − 1`; exact at full depth or after breakdown).
///
/// # Errors
/// [`MatfunError::InvalidParameter`] for depth 0, [`MatfunError::EmptyMatrix`],
/// [`MatfunError::Krylov`] (wrong length, zero / non-finite `v`, non-finite operator output),
/// [`MatfunError::RitzValueOutsideDomain`] (e.g. a Ritz value `≤ 0` for `log`: `A` is not
/// positive definite), [`MatfunError::NonFiniteValue`] / [`MatfunError::NonFiniteResult`] on
/// overflow.
pub fn quadform_lanczos<T, A>(
    op: &A,
    v: &[T],
    f: &MatrixFunction,
    params: &KrylovParams,
) -> Result<LanczosQuadForm<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    let mut dec = Lanczos::empty();
    lanczos_forward(op, v, params, &mut dec)?;
    let fun = tridiagonal_function(&dec, f)?;
    let value = quad_value(&dec, &fun)?;
    Ok(LanczosQuadForm {
        dec: Box::new(dec),
        fun,
        value,
        params: params.clone(),
    })
}

/// Runs the Lanczos forward pass into `dec`.
fn lanczos_forward<T, A>(
    op: &A,
    v: &[T],
    params: &KrylovParams,
    dec: &mut Lanczos<T>,
) -> Result<(), MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    let k = params.depth_for(op.ncols())?;
    lanczos_into(op, v, &params.lanczos_params(k), dec)?;
    Ok(())
}

fn tridiagonal_function<T: Scalar>(
    dec: &Lanczos<T>,
    f: &MatrixFunction,
) -> Result<SymmetricMatrixFunction<T>, MatfunError> {
    let eig = crate::dense::SymmetricEigen::from_tridiagonal(dec.diagonal(), dec.off_diagonal())?;
    ritz_function::<T, T>(f, eig)
}

fn quad_value<T: Scalar>(
    dec: &Lanczos<T>,
    fun: &SymmetricMatrixFunction<T>,
) -> Result<T, MatfunError> {
    let c = dec.inv_norm();
    finite_out("vᵀf(A)v", fun.quadratic_form() / (c * c))
}

/// `vᵀ exp(tA) v ≈ ‖v‖² e₀ᵀ exp(tH) e₀` by Arnoldi on the general `op` for
/// [`MatrixFunction::Exp`] and [`MatrixFunction::ScaledExp`]; for the other functions
/// `vᵀ f(A) v ≈ ‖v‖² e₀ᵀ f(T) e₀` with `T` the tridiagonal band of `(H + Hᵀ)/2`, which needs an
/// operator whose Hessenberg matrix is symmetric to rounding (a symmetric operator that is not
/// declared [`SelfAdjoint`]).
///
/// # Errors
/// [`MatfunError::UnsupportedFunction`] for a function other than `exp` on an operator whose
/// Hessenberg matrix is not symmetric, and as [`quadform_lanczos`] (the errors of
/// [`crate::dense::expm_scaled`] for the small exponential).
pub fn quadform_arnoldi<T, A>(
    op: &A,
    v: &[T],
    f: &MatrixFunction,
    params: &KrylovParams,
) -> Result<ArnoldiQuadForm<T>, MatfunError>
where
    T: Scalar,
    A: Operator<T> + ?Sized,
{
    let Some(t) = exp_time(f) else {
        let k = params.depth_for(op.ncols())?;
        let dec = arnoldi(op, v, &params.arnoldi_params(k))?;
        let kk = dec.depth();
        // Functions other than exp need a symmetric Krylov matrix (a symmetric operator).
        if let Err(MatfunError::NotSymmetric { .. }) =
            crate::dense::check_symmetric(kk, dec.hessenberg())
        {
            return Err(MatfunError::UnsupportedFunction {
                function: f.name(),
                method: "Arnoldi",
                hint: "a symmetric operator — the Hessenberg matrix is not symmetric to rounding \
                       (exp works for any operator)",
            });
        }
        let (diag, off) = hessenberg_band(&dec);
        let eig = crate::dense::SymmetricEigen::from_tridiagonal(&diag, &off)?;
        let fun = ritz_function::<T, T>(f, eig)?;
        let c = dec.inv_norm();
        let value = finite_out("vᵀf(A)v", fun.quadratic_form() / (c * c))?;
        return Ok(ArnoldiQuadForm {
            inner: ArnoldiQuad::Symmetric { dec, fun },
            value,
            params: params.clone(),
        });
    };
    if !t.is_finite() {
        return Err(MatfunError::NonFiniteParameter {
            what: "scaled exp: t",
            value: t,
        });
    }
    let k = params.depth_for(op.ncols())?;
    let dec = arnoldi(op, v, &params.arnoldi_params(k))?;
    let kk = dec.depth();
    let y = expm_scaled_e0(kk, dec.hessenberg(), T::from_f64(t))?;
    let c = dec.inv_norm();
    let phi = y[0];
    let value = finite_out("vᵀexp(tA)v", phi / (c * c))?;
    Ok(ArnoldiQuadForm {
        inner: ArnoldiQuad::Exp { dec, t },
        value,
        params: params.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Convergence of the quadratic forms
// ---------------------------------------------------------------------------------------------

/// How settled a Krylov value is ([`LanczosQuadForm::convergence`],
/// [`ArnoldiQuadForm::convergence`]; summed over probes in SLQ's
/// [`Estimate`](crate::estimators::Estimate)).
///
/// The value at depth `m` is a Gauss quadrature rule with `m` nodes (Lanczos) or its Arnoldi
/// analogue; `last_step_change` is what the last Krylov step changed it by, computed from the
/// leading `(m−1)×(m−1)` block of the same small matrix (no further matrix–vector products).
/// It is the usual practical error estimate of such rules: once the quadrature converges, the
/// change of one step is of the order of the error that is left (typically an overestimate
/// of the error of the depth-`m` value, which converges faster than the differences shrink).
/// A value whose `last_step_change` is not small relative to it has not converged — unless
/// `exact` is set, in which case no further step can change it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Convergence<T> {
    /// `value(m) − value(m − 1)` at the depth `m` reached; `None` at depth 1, or where the
    /// depth-`(m−1)` value cannot be evaluated (a Ritz value of the smaller matrix within
    /// rounding of zero for `log`, `1/x`, `1/√x`).
    pub last_step_change: Option<T>,
    /// The decomposition is exact — the iteration met an invariant subspace (a breakdown, or a
    /// sub-diagonal at rounding level) or spans the whole space (`K = N`) — so the value is the
    /// function's own, to rounding.
    pub exact: bool,
}

/// `Some(value − previous)` when both are finite.
fn change<T: Scalar>(value: T, previous: Option<T>) -> Option<T> {
    let p = previous?;
    let d = value - p;
    (p.is_finite() && d.is_finite()).then_some(d)
}

impl<T: Scalar> LanczosQuadForm<T> {
    /// How settled the value is: the change made by the last Lanczos step and whether the
    /// decomposition is exact (see [`Convergence`]).
    pub fn convergence(&self) -> Convergence<T> {
        let dec = &*self.dec;
        let m = dec.depth();
        let previous = (m >= 2)
            .then(|| {
                let (a, b) = (dec.diagonal(), dec.off_diagonal());
                let eig = crate::dense::SymmetricEigen::from_tridiagonal(&a[..m - 1], &b[..m - 2])
                    .ok()?;
                let fun = ritz_function::<T, T>(self.fun.function(), eig).ok()?;
                let c = dec.inv_norm();
                Some(fun.quadratic_form() / (c * c))
            })
            .flatten();
        Convergence {
            last_step_change: change(self.value, previous),
            exact: lanczos_exact_depth(dec).is_some(),
        }
    }
}

impl<T: Scalar> ArnoldiQuadForm<T> {
    /// How settled the value is: the change made by the last Arnoldi step and whether the
    /// decomposition is exact (see [`Convergence`]).
    pub fn convergence(&self) -> Convergence<T> {
        let dec = self.dec();
        let (k, m) = (dec.depth(), dec.depth().saturating_sub(1));
        let c = dec.inv_norm();
        let previous = (m >= 1)
            .then(|| match &self.inner {
                ArnoldiQuad::Exp { t, .. } => {
                    let h = leading(dec.hessenberg(), k, m);
                    let y = expm_scaled_e0(m, &h, T::from_f64(*t)).ok()?;
                    Some(y[0] / (c * c))
                }
                ArnoldiQuad::Symmetric { fun, .. } => {
                    let (diag, off) = hessenberg_band(dec);
                    let eig =
                        crate::dense::SymmetricEigen::from_tridiagonal(&diag[..m], &off[..m - 1])
                            .ok()?;
                    let f = ritz_function::<T, T>(fun.function(), eig).ok()?;
                    Some(f.quadratic_form() / (c * c))
                }
            })
            .flatten();
        Convergence {
            last_step_change: change(self.value, previous),
            exact: arnoldi_exact_depth(dec).is_some(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// f(A) v
// ---------------------------------------------------------------------------------------------

/// Checks the length and finiteness of a cotangent `w̄` of an `n`-vector.
fn check_wbar<T: Scalar>(n: usize, wbar: &[T]) -> Result<(), MatfunError> {
    if wbar.len() != n {
        return Err(MatfunError::DimensionMismatch {
            what: "cotangent w̄",
            expected: n,
            got: wbar.len(),
        });
    }
    if let Some(p) = reduce::first_non_finite(wbar) {
        return Err(MatfunError::NonFiniteInput {
            what: "cotangent w̄",
            row: p,
            col: 0,
        });
    }
    Ok(())
}

/// Common pieces of the backward pass of `w = Q y / c`: `ȳ = Qᵀw̄/c`, `Q̄ = w̄ yᵀ/c`,
/// `c̄ = −ȳᵀy/c`.
fn basis_cotangents<T: Scalar>(
    y: &[T],
    q: &[T],
    c: T,
    wbar: &[T],
) -> Result<(Vec<T>, Vec<T>, T), MatfunError> {
    let n = wbar.len();
    let k = y.len();
    let inv_c = T::ONE / c;
    let mut ybar = vec![T::ZERO; k];
    reduce::basis_t_vec(q, n, k, wbar, &mut ybar);
    ybar.iter_mut().for_each(|x| *x *= inv_c);
    let mut qbar = vec![T::ZERO; n * k];
    for (j, yj) in y.iter().enumerate() {
        let s = *yj * inv_c;
        for (o, w) in qbar[j * n..(j + 1) * n].iter_mut().zip(wbar) {
            *o = s * *w;
        }
    }
    let yy: T = ybar.iter().zip(y).map(|(a, b)| *a * *b).sum();
    Ok((ybar, qbar, -yy * inv_c))
}

/// Accessors shared by the `f(A)v` results.
macro_rules! fun_vec_accessors {
    () => {
        krylov_result_accessors!();
        /// The approximation of `f(A) v` (length `N`).
        pub fn value(&self) -> &[T] {
            &self.value
        }
        /// Moves the value out.
        pub fn into_value(self) -> Vec<T> {
            self.value
        }
    };
}

/// `w = f(A) v ≈ ‖v‖ Q f(T) e₀` from Lanczos, keeping the decomposition for the backward pass.
/// Built by [`apply_lanczos`]; its backward pass needs a self-adjoint operator.
#[derive(Debug, Clone)]
pub struct LanczosFunVec<T: Scalar> {
    dec: Box<Lanczos<T>>,
    fun: SymmetricMatrixFunction<T>,
    /// `y = f(T) e₀` (length `K`).
    y: Vec<T>,
    value: Vec<T>,
    params: KrylovParams,
}

impl<T: Scalar> LanczosFunVec<T> {
    fn dec(&self) -> &Lanczos<T> {
        &self.dec
    }
    fun_vec_accessors!();

    /// The backward pass for a cotangent `w̄` of the value: returns `v̄` (and `t̄` for
    /// exponentials) and **accumulates** `θ̄` into `theta_grad`.
    ///
    /// # Errors
    /// [`MatfunError::DimensionMismatch`] / [`MatfunError::NonFiniteInput`] for `w̄` or
    /// `theta_grad`, [`MatfunError::GradientUnavailable`] at an invariant subspace below full
    /// depth with a cotangent outside the Krylov space, the errors of the dense reverse rules,
    /// [`MatfunError::Adjoint`].
    pub fn vjp<A>(
        &self,
        op: &A,
        wbar: &[T],
        theta_grad: &mut [T],
    ) -> Result<Gradient<T>, MatfunError>
    where
        A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
    {
        let (dec, fun) = (&*self.dec, &self.fun);
        check_theta_grad(op, theta_grad)?;
        check_wbar(self.value.len(), wbar)?;
        check_ritz_threshold::<T>(fun, true)?;
        if let Some((rest, basis)) = lanczos_restriction(op, dec, &self.params, false)? {
            return subspace::apply_symmetric(
                op,
                &basis,
                &rest,
                fun.function(),
                wbar,
                dec.info().requested_depth == gradmat_krylov::distributed::global_dim(dec.dim()),
                theta_grad,
            );
        }
        let (ybar, qbar, cbar) = basis_cotangents(&self.y, dec.basis(), dec.inv_norm(), wbar)?;
        let tbar = fun.pullback_apply_e0(&ybar)?;
        let (abar, bbar) = tridiagonal_cotangent(dec.depth(), &tbar)?;
        let cot = LanczosCotangent {
            basis: Some(&qbar),
            diagonal: Some(&abar),
            off_diagonal: Some(&bbar),
            inv_norm: cbar,
            ..Default::default()
        };
        let v = lanczos_vjp(op, dec, &cot, &self.params.adjoint_params(), theta_grad)?;
        let time = match exp_time(fun.function()) {
            Some(_) => {
                let s = first_row(fun);
                let sv = fun.eigen().vectors();
                let k = s.len();
                let u: Vec<f64> = (0..k)
                    .map(|i| (0..k).map(|r| sv[(r, i)] * ybar[r].to_f64()).sum())
                    .collect();
                Some(finite_out("t̄", T::from_f64(dexp_dt(fun, &u, &s)))?)
            }
            None => None,
        };
        Ok(Gradient { v, time })
    }
}

/// `w = exp(tA) v ≈ ‖v‖ Q exp(tH) e₀` from Arnoldi, keeping the decomposition for the backward
/// pass. Built by [`apply_arnoldi`]; its backward pass applies `Aᵀ`.
#[derive(Debug, Clone)]
pub struct ArnoldiFunVec<T: Scalar> {
    dec: Arnoldi<T>,
    t: f64,
    /// `y = exp(tH) e₀` (length `K`).
    y: Vec<T>,
    value: Vec<T>,
    params: KrylovParams,
}

impl<T: Scalar> ArnoldiFunVec<T> {
    fn dec(&self) -> &Arnoldi<T> {
        &self.dec
    }
    fun_vec_accessors!();

    /// The backward pass for a cotangent `w̄` (applies `Aᵀ`): returns `v̄` and `t̄`, and
    /// **accumulates** `θ̄` into `theta_grad`.
    ///
    /// # Errors
    /// As [`LanczosFunVec::vjp`].
    pub fn vjp<A>(
        &self,
        op: &A,
        wbar: &[T],
        theta_grad: &mut [T],
    ) -> Result<Gradient<T>, MatfunError>
    where
        A: AdjointOperator<T> + ParamVjp<T> + ?Sized,
    {
        let dec = &self.dec;
        check_theta_grad(op, theta_grad)?;
        check_wbar(self.value.len(), wbar)?;
        if let Some(rest) = arnoldi_restriction(dec, &self.params)? {
            return subspace::arnoldi_exp(
                op,
                &dec.basis()[..dec.dim() * rest.depth()],
                &rest,
                self.t,
                ArnoldiOutput::Apply(wbar),
                theta_grad,
            );
        }
        let (ybar, qbar, cbar) = basis_cotangents(&self.y, dec.basis(), dec.inv_norm(), wbar)?;
        let pb =
            expm_scaled_e0_pullback(dec.depth(), dec.hessenberg(), T::from_f64(self.t), &ybar)?;
        let cot = ArnoldiCotangent {
            basis: Some(&qbar),
            hessenberg: Some(&pb.h),
            inv_norm: cbar,
            ..Default::default()
        };
        let v = arnoldi_vjp(op, dec, &cot, &self.params.adjoint_params(), theta_grad)?;
        Ok(Gradient {
            v,
            time: Some(pb.t),
        })
    }
}

/// `w = Q y / c`.
fn combine<T: Scalar>(q: &[T], n: usize, y: &[T], c: T) -> Result<Vec<T>, MatfunError> {
    let mut w = vec![T::ZERO; n];
    let inv_c = T::ONE / c;
    let coef: Vec<T> = y.iter().map(|x| *x * inv_c).collect();
    reduce::basis_vec_acc(T::ONE, q, n, y.len(), &coef, &mut w);
    if reduce::first_non_finite(&w).is_some() {
        return Err(MatfunError::NonFiniteResult { what: "f(A)v" });
    }
    Ok(w)
}

/// `f(A) v ≈ ‖v‖ Q f(T) e₀` by Lanczos on the self-adjoint `op`, for every [`MatrixFunction`]
/// (including `exp(tA)v` through [`MatrixFunction::ScaledExp`], whose gradient reports `t̄`).
///
/// # Errors
/// As [`quadform_lanczos`].
pub fn apply_lanczos<T, A>(
    op: &A,
    v: &[T],
    f: &MatrixFunction,
    params: &KrylovParams,
) -> Result<LanczosFunVec<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    let mut dec = Lanczos::empty();
    lanczos_forward(op, v, params, &mut dec)?;
    let fun = tridiagonal_function(&dec, f)?;
    let y = fun.apply_e0();
    let value = combine(dec.basis(), dec.dim(), &y, dec.inv_norm())?;
    Ok(LanczosFunVec {
        dec: Box::new(dec),
        fun,
        y,
        value,
        params: params.clone(),
    })
}

/// `exp(tA) v ≈ ‖v‖ Q exp(tH) e₀` by Arnoldi on the general `op`; `f` must be
/// [`MatrixFunction::Exp`] or [`MatrixFunction::ScaledExp`] (the gradient reports `t̄`).
///
/// # Errors
/// [`MatfunError::UnsupportedFunction`] for other functions, and as [`quadform_arnoldi`].
pub fn apply_arnoldi<T, A>(
    op: &A,
    v: &[T],
    f: &MatrixFunction,
    params: &KrylovParams,
) -> Result<ArnoldiFunVec<T>, MatfunError>
where
    T: Scalar,
    A: Operator<T> + ?Sized,
{
    let t = arnoldi_time(f)?;
    if !t.is_finite() {
        return Err(MatfunError::NonFiniteParameter {
            what: "scaled exp: t",
            value: t,
        });
    }
    let k = params.depth_for(op.ncols())?;
    let dec = arnoldi(op, v, &params.arnoldi_params(k))?;
    let y = expm_scaled_e0(dec.depth(), dec.hessenberg(), T::from_f64(t))?;
    let value = combine(dec.basis(), dec.dim(), &y, dec.inv_norm())?;
    Ok(ArnoldiFunVec {
        dec,
        t,
        y,
        value,
        params: params.clone(),
    })
}
