//! The typed error shared by the Krylov algorithms.

use thiserror::Error;

/// Why a Krylov algorithm could not run or could not continue.
///
/// Breakdown (an invariant Krylov subspace) is **not** an error: it is reported in the
/// algorithm's `Info` together with the exact smaller decomposition.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum KrylovError {
    /// The start vector (or a right-hand side) is zero.
    #[error("start vector is zero")]
    ZeroStartVector,
    /// The start vector's norm (finite entries) overflows, or is so small that its reciprocal
    /// overflows (below about `1/T::MAX`: subnormal entries only). Rescale the vector.
    #[error("start vector norm {norm:e} cannot be normalised in this precision (it or its reciprocal overflows); rescale the vector")]
    StartVectorNormOutOfRange {
        /// The norm.
        norm: f64,
    },
    /// The start vector (or a right-hand side) contains NaN or infinity.
    #[error("start vector has a non-finite entry at index {index}")]
    NonFiniteStartVector {
        /// First offending index.
        index: usize,
    },
    /// Krylov depth outside `1..=N`.
    #[error("Krylov depth {depth} out of range 1..={max}")]
    DepthOutOfRange {
        /// Requested depth.
        depth: usize,
        /// Largest allowed depth (the dimension).
        max: usize,
    },
    /// Operator and vector sizes disagree.
    #[error("dimension mismatch: {what} has length {got}, expected {expected}")]
    DimensionMismatch {
        /// Which quantity.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// The operator must be square for this algorithm.
    #[error("operator must be square, got {nrows}×{ncols}")]
    NotSquare {
        /// Rows.
        nrows: usize,
        /// Columns.
        ncols: usize,
    },
    /// A NaN or infinity appeared during the iteration (typically from the operator).
    #[error("non-finite value appeared at step {step} of {algorithm}")]
    NonFinite {
        /// Algorithm name.
        algorithm: &'static str,
        /// 0-based step at which it was detected.
        step: usize,
    },
    /// Conjugate gradients met `pᵀAp ≤ 0`: the operator is not positive definite.
    #[error("non-positive curvature pᵀAp = {curvature:e} at CG iteration {iteration} (right-hand side {rhs}): operator is not positive definite")]
    NonPositiveCurvature {
        /// 0-based iteration.
        iteration: usize,
        /// Which right-hand side.
        rhs: usize,
        /// The value of `pᵀAp`.
        curvature: f64,
    },
    /// The preconditioner could not be built (e.g. a non-positive pivot).
    #[error("preconditioner: {0}")]
    Preconditioner(String),
    /// The operator given to Lanczos is not symmetric (found by the check requested with
    /// [`crate::lanczos::LanczosParams::self_adjoint_check`] or run directly with
    /// [`crate::lanczos::check_self_adjoint`]).
    #[error("operator is not self-adjoint: |⟨u, Aw⟩ − ⟨Au, w⟩| is {relative_asymmetry:e} of its scale (tolerance {tolerance:e}); use Arnoldi for a non-symmetric operator")]
    NotSelfAdjoint {
        /// `|⟨u, Aw⟩ − ⟨Au, w⟩| / (‖u‖‖Aw‖ + ‖Au‖‖w‖)` on the check's vectors.
        relative_asymmetry: f64,
        /// The tolerance it exceeded.
        tolerance: f64,
    },
    /// An invalid parameter value (tolerance, rank, …).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
}
