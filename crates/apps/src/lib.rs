//! # gradmat-apps
//!
//! The applications built on the gradmat library crates: Gaussian-process hyperparameter
//! fitting, learning a PDE coefficient field, and Laplace calibration of a Bayesian neural
//! network, plus the `gradmat` command-line tool. This is the only crate that does I/O beyond
//! parsing helpers and prints.
//!
//! Modules: [`cli`] (the `gradmat` subcommands `quadform`, `logdet`, `gp`, `pde`, `bnn`),
//! [`gp`] (Gaussian-process fitting), [`pde`] (wave-equation coefficient learning), [`bnn`]
//! (Laplace calibration of an MNIST classifier), the shared pieces of the pipelines —
//! [`nn`] (the dense network of the PDE field model and the BNN classifier), [`optim`] (Adam and
//! softplus) — and [`report`] (progress, plots, summaries).
//!
//! **Start here.** `cargo run --release -p gradmat-apps -- gp` fits the bundled example;
//! `gradmat --help` lists the subcommands. As a library, each pipeline is
//! `run(&Config, &Progress) -> Result<Outcome, PipelineError>` (see [`pipeline`]) and the
//! library crates below it do the numerical work.
//!
//! Feature `cli` (default): the `gradmat` binary and what only it needs (clap, indicatif,
//! plotters). Without it the library keeps the pipelines, the readers and plain-line progress.

#![forbid(unsafe_code)]

pub mod bnn;
pub mod cli;
pub mod cluster;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod gp;
pub mod nn;
pub mod optim;
pub mod pde;
pub mod pipeline;
pub mod report;

/// The Rust examples of the README, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
