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
}
