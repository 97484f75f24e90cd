//! # gradmat-matfun
//!
//! Functions of matrices and their gradients: dense `f(H)` of the small Krylov matrices with
//! reverse-mode rules (Daleckii–Krein for symmetric, Fréchet adjoint of `exp` for general), Krylov
//! approximations of `f(A)v` and `vᵀf(A)v`, stochastic trace and log-determinant estimators
//! (stochastic Lanczos quadrature), all differentiable through `gradmat-adjoint`.
//!
//! *Status: lands with the matfun issue; this crate is a placeholder today.*
