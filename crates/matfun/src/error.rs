//! The typed error of the matrix-function routines.

/// Why a matrix function, or its reverse rule, could not be computed.
///
/// Every data-dependent failure of [`crate::dense`] is reported with this type; the routines
/// never panic on data.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MatfunError {
    /// A matrix of dimension zero was given (there is no `e₀`, and nothing to compute).
    #[error("{what}: the matrix has dimension 0")]
    EmptyMatrix {
        /// Which argument.
        what: &'static str,
    },
    /// A slice does not have the length its dimension implies (a non-square matrix, or a
    /// cotangent / vector of the wrong size).
    #[error("{what}: expected {expected} entries, got {got}")]
    DimensionMismatch {
        /// Which argument.
        what: &'static str,
        /// Entries implied by the dimension (`n·n` for a matrix, `n` for a vector).
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// An input matrix or vector contains NaN or ±∞.
    #[error("{what}: non-finite value at row {row}, column {col}")]
    NonFiniteInput {
        /// Which argument.
        what: &'static str,
        /// Row of the first non-finite entry.
        row: usize,
        /// Column of the first non-finite entry (0 for vectors).
        col: usize,
    },
    /// A scalar parameter (a time `t`, a power `p`, a cotangent `ρ̄`) is NaN or ±∞.
    #[error("{what}: non-finite scalar parameter {value}")]
    NonFiniteParameter {
        /// Which parameter.
        what: &'static str,
        /// Its value (widened to `f64`).
        value: f64,
    },
    /// The input to the symmetric path is not symmetric within the tolerance.
    #[error(
        "matrix is not symmetric: |A[{row},{col}] - A[{col},{row}]| = {max_asymmetry:e} \
         exceeds the tolerance {tolerance:e}"
    )]
    NotSymmetric {
        /// The largest `|A[i,j] − A[j,i]|`.
        max_asymmetry: f64,
        /// Row of the largest asymmetry.
        row: usize,
        /// Column of the largest asymmetry.
        col: usize,
        /// The tolerance it was compared with.
        tolerance: f64,
    },
    /// An eigenvalue lies outside the domain of the function (e.g. a non-positive eigenvalue
    /// for `log`).
    #[error("{function}: eigenvalue #{index} = {eigenvalue:e} is outside the domain {domain}")]
    EigenvalueOutsideDomain {
        /// Name of the function.
        function: &'static str,
        /// Index of the eigenvalue (eigenvalues in ascending order).
        index: usize,
        /// The eigenvalue.
        eigenvalue: f64,
        /// The domain, e.g. `"x > 0"`.
        domain: &'static str,
    },
    /// The function is defined at an eigenvalue but not differentiable there (e.g. `sqrt` at
    /// 0), so the reverse rule does not exist.
    #[error(
        "{function}: not differentiable at eigenvalue #{index} = {eigenvalue:e} \
         (the reverse rule needs {domain})"
    )]
    NotDifferentiable {
        /// Name of the function.
        function: &'static str,
        /// Index of the eigenvalue (ascending order).
        index: usize,
        /// The eigenvalue.
        eigenvalue: f64,
        /// Where the derivative is finite, e.g. `"x > 0"`.
        domain: &'static str,
    },
    /// The function or its divided difference evaluated to NaN or ±∞ at an eigenvalue
    /// (overflow of `exp`, or a user function returning NaN).
    #[error("{function}: non-finite value at eigenvalue #{index} = {eigenvalue:e}")]
    NonFiniteValue {
        /// Name of the function.
        function: &'static str,
        /// Index of the eigenvalue (ascending order).
        index: usize,
        /// The eigenvalue.
        eigenvalue: f64,
    },
    /// A result overflowed (e.g. `exp` of a matrix with a large norm, or rounding an `f64`
    /// result to `f32`).
    #[error("{what}: the result is not finite (overflow)")]
    NonFiniteResult {
        /// Which computation.
        what: &'static str,
    },
    /// The symmetric eigensolver did not converge or returned non-finite values.
    #[error("the symmetric eigensolver failed")]
    EigensolverFailed,
    /// The denominator `q_m(A)` of the Padé approximant of `exp` is numerically singular.
    #[error("the Padé denominator of exp is singular")]
    SingularPadeDenominator,
    /// The Krylov decomposition (Lanczos / Arnoldi) failed: wrong start-vector length, zero or
    /// non-finite start vector, non-square operator, or a non-finite value from the operator.
    #[error("Krylov decomposition: {0}")]
    Krylov(#[from] gradmat_krylov::KrylovError),
    /// The adjoint (backward) pass of the Krylov decomposition failed.
    #[error("adjoint pass: {0}")]
    Adjoint(#[from] gradmat_adjoint::AdjointError),
    /// An invalid argument of the Krylov-level routines (zero probes, zero depth, a gradient
    /// buffer of the wrong length, …), with a description.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The function is not available for the requested Krylov method (Arnoldi supports `exp`
    /// and `exp(t·)` only: the other functions need a symmetric Krylov matrix).
    #[error("{function} is not supported by the {method} path (use {hint})")]
    UnsupportedFunction {
        /// Name of the function.
        function: &'static str,
        /// The Krylov method.
        method: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// A Ritz value (eigenvalue of the Lanczos matrix `T = QᵀAQ`) is outside the domain of the
    /// function. Ritz values of a self-adjoint operator lie in `[λ_min(A), λ_max(A)]`, so this
    /// means the operator's spectrum leaves the domain; for `log`, `1/√x` and `√x`: the
    /// operator is **not positive definite** (or not positive semidefinite), up to rounding of
    /// eigenvalues at the edge of the domain.
    #[error(
        "{function}: Ritz value {ritz_value:e} of the Krylov matrix is outside the domain \
         {domain}; Ritz values lie within the operator's spectrum, so the operator's spectrum \
         leaves the domain (for log / inverse sqrt: the operator is not positive definite)"
    )]
    RitzValueOutsideDomain {
        /// Name of the function.
        function: &'static str,
        /// The offending Ritz value.
        ritz_value: f64,
        /// The domain of the function, e.g. `"x > 0"`.
        domain: &'static str,
    },
    /// A Ritz value is positive but below the rounding threshold `10·K·ε·max|θ|` of the Krylov
    /// matrix: the operator is singular (or not positive definite) to working precision, so
    /// `log`, `1/x` and `1/√x` (and the derivative of `√x`) are not defined there. A Ritz value
    /// that is zero in exact arithmetic comes out of a Krylov iteration as a rounding error of
    /// this size and either sign.
    #[error(
        "{function}: the smallest Ritz value {ritz_value:e} is below the rounding threshold \
         {threshold:e} (10·K·ε·max|θ| for the {dim}×{dim} Krylov matrix): the operator is \
         singular or not positive definite to working precision"
    )]
    NumericallySingular {
        /// Name of the function.
        function: &'static str,
        /// The smallest Ritz value.
        ritz_value: f64,
        /// The threshold it was compared with.
        threshold: f64,
        /// Dimension `K` of the Krylov matrix.
        dim: usize,
    },
    /// The gradient of the requested function cannot be obtained from this decomposition (for
    /// instance `f(A)v` truncated at an invariant subspace below the requested depth, where the
    /// truncated approximation is not differentiable); the message says why and what to request
    /// instead. Never replaced by a different number.
    #[error("gradient not available: {reason}")]
    GradientUnavailable {
        /// Why, and what to do instead.
        reason: String,
    },
    /// An error on another rank of a distributed computation (every rank returns an error;
    /// this is what the ranks that did not fail report).
    #[error("rank {rank}: {message}")]
    OtherRank {
        /// The first rank that failed.
        rank: usize,
        /// Its error message.
        message: String,
    },
    /// An error while processing one probe vector of a stochastic estimator.
    #[error("probe {probe}: {source}")]
    Probe {
        /// Index of the probe (0-based, in the estimator's probe order).
        probe: usize,
        /// What went wrong.
        source: Box<MatfunError>,
    },
}
