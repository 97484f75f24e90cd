//! # gradmat-apps
//!
//! The applications built on the gradmat library crates: Gaussian-process hyperparameter
//! fitting, learning a PDE coefficient field, and Laplace calibration of a Bayesian neural
//! network, plus the `gradmat` command-line tool. This is the only crate that does I/O beyond
//! parsing helpers and prints.
//!
//! *Status:* the [`cli`] module (the `gradmat quadform` and `gradmat logdet` subcommands) is
//! implemented; the pipelines land with their issues.

pub mod cli;
pub mod gp;
pub mod report;
