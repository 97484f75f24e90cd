//! # gradmat-krylov
//!
//! Krylov decompositions of operators from [`gradmat_operators`]: Lanczos tridiagonalisation,
//! Arnoldi (Hessenberg) decomposition, Golub–Kahan bidiagonalisation and (preconditioned)
//! conjugate gradients, plus a pivoted partial Cholesky preconditioner.
//!
//! This crate knows nothing of gradients: it produces the decompositions (basis, small matrix,
//! residual, `1/‖v‖`) whose reverse-mode derivatives `gradmat-adjoint` computes. An invariant
//! Krylov subspace (breakdown) is not an error: it is reported in the `Info` of each algorithm
//! together with the exact smaller decomposition.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod arnoldi;
pub mod cg;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod golub_kahan;
pub mod lanczos;
pub mod precond;
pub mod reduce;

pub use error::KrylovError;
