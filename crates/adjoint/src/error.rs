//! Errors of the adjoint (backward) passes.

use gradmat_krylov::KrylovError;
use thiserror::Error;

/// Why a backward pass could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum AdjointError {
    /// A cotangent or gradient buffer has the wrong length.
    #[error("dimension mismatch: {what} has length {got}, expected {expected}")]
    DimensionMismatch {
        /// Which quantity.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// The backward step would divide by a vanishing sub-diagonal entry of `H` / off-diagonal
    /// of `T` (the forward decomposition is numerically at an invariant subspace there).
    #[error("backward step {step} would divide by a vanishing sub-diagonal entry ({value:e})")]
    VanishingSubdiagonal {
        /// 0-based step of the backward sweep (the forward step it reverses).
        step: usize,
        /// The offending value.
        value: f64,
    },
    /// A NaN or infinity appeared in the backward sweep (from a cotangent or the operator).
    #[error("non-finite value in the backward pass at step {step}")]
    NonFinite {
        /// 0-based step.
        step: usize,
    },
    /// The operator does not match the decomposition (e.g. different dimension).
    #[error("operator is {nrows}×{ncols} but the decomposition has dimension {dim}")]
    OperatorMismatch {
        /// Operator rows.
        nrows: usize,
        /// Operator columns.
        ncols: usize,
        /// Decomposition dimension.
        dim: usize,
    },
    /// The linear solve of the backward pass failed.
    #[error("adjoint solve: {0}")]
    Solve(#[from] KrylovError),
}
