//! Gaussian-process hyperparameter fitting (the paper's §5): data, model, training.
//!
//! * [`csv`] — the strict numeric CSV reader (line and column in every error);
//! * [`data`] — target selection, seeded subsample and 80/20 split, standardisation;
//! * [`model`] — softplus parameters, the stochastic (CG + SLQ, exact adjoints) and exact
//!   (dense Cholesky) negative log marginal likelihood with gradients, predictions;
//! * [`train`] — Adam and the training loop with progress, summary and plots.

pub mod csv;
pub mod data;
pub mod model;
pub mod train;
