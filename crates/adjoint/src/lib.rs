//! # gradmat-adjoint
//!
//! Reverse-mode (adjoint) gradients of the Lanczos, Arnoldi and conjugate-gradient iterations
//! of `gradmat-krylov`, after Krämer, Moreno-Muñoz, Roy and Hauberg, *Gradients of Functions of
//! Large Matrices* (NeurIPS 2024): gradients with respect to the start vector and to the
//! operator's parameters (through `gradmat_operators::ParamVjp`) at the cost of one more
//! pass of matrix-vector products, in O(N·K) memory.
//!
//! *Status: the adjoint recursions land with the adjoint issue; this crate is a placeholder today.*
