//! What the GP, PDE and BNN pipelines share: the shape `run(&Config, &Progress) -> Result<Outcome,
//! PipelineError>` (the outcome is written to disk by [`crate::report`]) and its error type.

use gradmat_matfun::MatfunError;
use gradmat_operators::OperatorError;

/// Why a pipeline stopped. Every variant prints as one line; the CLI prints it after
/// `gradmat: ` and exits with status 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// An option or configuration value outside its domain (the message names it).
    #[error("{0}")]
    InvalidConfig(String),
    /// Missing or malformed input data (the message names the file).
    #[error(transparent)]
    Data(#[from] crate::bnn::idx::IdxError),
    /// A malformed CSV file (the message names the file, line and column).
    #[error(transparent)]
    Csv(#[from] crate::gp::csv::CsvError),
    /// A table that cannot be used for a GP (target, too few rows, a constant column).
    #[error(transparent)]
    Table(#[from] crate::gp::data::DataError),
    /// A GP loss, gradient or prediction failed.
    #[error(transparent)]
    Gp(#[from] crate::gp::model::GpError),
    /// An operator or model could not be built or its parameters were rejected.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A Krylov or matrix-function computation failed.
    #[error(transparent)]
    Matfun(#[from] MatfunError),
    /// A computation produced a value the pipeline cannot use (a non-finite loss, a zero
    /// target); the message says which.
    #[error("{0}")]
    Numerical(String),
    /// A failure inside a named stage (`"lanczos-50: objective at step 3"`); the cause follows
    /// in the error chain (`{:#}` of an `anyhow` error prints both).
    #[error("{context}")]
    Stage {
        /// Where it happened.
        context: String,
        /// What happened.
        #[source]
        source: Box<PipelineError>,
    },
}

impl PipelineError {
    /// Wraps the error with the stage it happened in.
    pub fn in_stage(self, context: impl Into<String>) -> Self {
        PipelineError::Stage {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// An invalid configuration value.
    pub fn config(msg: impl Into<String>) -> Self {
        PipelineError::InvalidConfig(msg.into())
    }
}

/// `Result::map_err(|e| PipelineError::from(e).in_stage(..))` in one call.
pub trait StageContext<T> {
    /// Converts the error and names the stage it happened in.
    fn stage(self, context: impl FnOnce() -> String) -> Result<T, PipelineError>;
}

impl<T, E: Into<PipelineError>> StageContext<T> for Result<T, E> {
    fn stage(self, context: impl FnOnce() -> String) -> Result<T, PipelineError> {
        self.map_err(|e| e.into().in_stage(context()))
    }
}

/// `Err(PipelineError::InvalidConfig(msg))` unless `cond`.
pub(crate) fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), PipelineError> {
    if cond {
        Ok(())
    } else {
        Err(PipelineError::InvalidConfig(msg()))
    }
}
