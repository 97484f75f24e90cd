//! Implicit differentiation of linear solves (conjugate gradients). Lands with the CG API.

/// Placeholder until the CG API of `gradmat-krylov` lands.
pub fn cg_vjp() {}
