//! # gradmat-krylov
//!
//! Krylov decompositions of operators from [`gradmat_operators`]: Lanczos tridiagonalisation,
//! Arnoldi (Hessenberg) decomposition, Golub–Kahan bidiagonalisation and conjugate gradients.
//!
//! This crate knows nothing of gradients: it produces the decompositions (basis, small matrix,
//! residual, `1/‖v‖`) whose reverse-mode derivatives `gradmat-adjoint` computes. An invariant
//! Krylov subspace (breakdown) is not an error: it is reported in the `Info` of each algorithm
//! together with the exact smaller decomposition.
//!
//! *Status: the decompositions land with the Krylov issue; this crate is a placeholder today.*
