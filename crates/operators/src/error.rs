//! Errors raised when building operators or replacing their parameters.

use thiserror::Error;

/// What went wrong constructing an operator or setting its parameters.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// Two sizes that must agree do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Which quantity.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Size found.
        got: usize,
    },
    /// A NaN or infinity where a finite value is required.
    #[error("non-finite value in {what} at position {index}")]
    NonFinite {
        /// Which array.
        what: &'static str,
        /// Position of the first offending value.
        index: usize,
    },
    /// A row or column index outside the matrix.
    #[error(
        "index out of range in {what} at entry {entry}: ({row}, {col}) in a {nrows}×{ncols} matrix"
    )]
    IndexOutOfRange {
        /// Which array.
        what: &'static str,
        /// Entry number (0-based).
        entry: usize,
        /// Row index.
        row: usize,
        /// Column index.
        col: usize,
        /// Number of rows.
        nrows: usize,
        /// Number of columns.
        ncols: usize,
    },
    /// Sparse structure that is not valid CSR (row pointers not monotone, unsorted or duplicate
    /// column indices in raw parts, …).
    #[error("invalid sparse structure: {0}")]
    InvalidStructure(String),
    /// A parameter outside its domain (e.g. a non-positive lengthscale).
    #[error("invalid parameter {index} ({name}): {reason}")]
    InvalidParameter {
        /// Position in the flat parameter vector.
        index: usize,
        /// What the parameter means.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An operator that must be square is not.
    #[error("operator must be square, got {nrows}×{ncols}")]
    NotSquare {
        /// Rows.
        nrows: usize,
        /// Columns.
        ncols: usize,
    },
    /// Any other invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Returns the first index whose value is not finite.
pub(crate) fn first_non_finite<T: crate::Scalar>(values: &[T]) -> Option<usize> {
    values.iter().position(|v| !v.is_finite())
}

/// `Err(NonFinite)` (naming `what` and the first bad position) if any value is NaN or
/// infinite: the check every constructor of an operator or model makes on its data.
pub fn require_finite<T: crate::Scalar>(
    what: &'static str,
    values: &[T],
) -> Result<(), OperatorError> {
    match first_non_finite(values) {
        Some(index) => Err(OperatorError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// `Err(DimensionMismatch)` (naming `what`) if `got != expected`.
pub fn require_len(what: &'static str, got: usize, expected: usize) -> Result<(), OperatorError> {
    if got == expected {
        Ok(())
    } else {
        Err(OperatorError::DimensionMismatch {
            what,
            expected,
            got,
        })
    }
}
