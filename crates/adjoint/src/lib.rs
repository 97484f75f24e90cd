//! # gradmat-adjoint
//!
//! Reverse-mode (adjoint) gradients of the Lanczos, Arnoldi and conjugate-gradient iterations
//! of `gradmat-krylov`, after Krämer, Moreno-Muñoz, Roy and Hauberg, *Gradients of Functions of
//! Large Matrices* (NeurIPS 2024). Given cotangents of every output of a decomposition, the
//! backward pass returns the start vector's cotangent `v̄` and accumulates the parameter gradient
//! `θ̄` through [`gradmat_operators::ParamVjp`]. It costs one matrix–vector product per step
//! (like the forward pass), needs no dense solves, and stores `O(N·K)` on top of the forward
//! result. It is exact up to rounding: it differentiates the algorithm that ran, not a
//! stochastic surrogate.
//!
//! **Start here.** For a value and its gradient in one call — `log det A`, `tr f(A)`,
//! `vᵀf(A)v`, `f(A)v` — use `gradmat-matfun` (`logdet_with_grad`, `quadform_lanczos(…)
//! .gradient(…)`, `apply_arnoldi(…).vjp(…)`): it builds the cotangents of the decomposition from
//! the dense reverse rules and calls this crate. Use this crate directly when your own scalar
//! function of the decomposition (its basis, small matrix, residual, `1/‖v‖`) needs
//! differentiating.
//!
//! * [`lanczos_vjp`]: three-term Lanczos (no reorthogonalisation) by the Lanczos adjoint; fully
//!   reorthogonalised Lanczos through the projected Arnoldi adjoint on `T = (H + Hᵀ)/2`.
//! * [`arnoldi_vjp`]: Arnoldi, with the re-projection step (on by default).
//! * [`cg_vjp`]: linear solves by implicit differentiation (one more solve).
//! * [`subspace_vjp`]: `θ̄ = ∇θ⟨Q W Qᵀ, A(θ)⟩` for a gradient that lies in the span of a basis
//!   (the exact gradient at an invariant Krylov subspace, built by `gradmat-matfun`).
//!
//! ```
//! use gradmat_adjoint::{lanczos_vjp, AdjointParams, LanczosCotangent};
//! use gradmat_krylov::lanczos::{lanczos, LanczosParams};
//! use gradmat_operators::{dense::SymmetricDense, ParamVjp};
//!
//! // ρ = Σ_k a_k = trace(T): at full depth this is trace(A), whose gradient with respect to
//! // the lower-triangle parameters is 1 on the diagonal and 0 elsewhere.
//! let a = SymmetricDense::<f64>::from_col_major(3, vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0]).unwrap();
//! let v = [1.0, 0.3, -0.2];
//! let dec = lanczos(&a, &v, &LanczosParams::new(3)).unwrap();
//! let abar = vec![1.0; 3];
//! let cot = LanczosCotangent { diagonal: Some(&abar), ..Default::default() };
//! let mut grad = vec![0.0; a.num_params()];
//! let vbar = lanczos_vjp(&a, &dec, &cot, &AdjointParams::default(), &mut grad).unwrap();
//! let expected = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
//! for (g, e) in grad.iter().zip(expected) { assert!((g - e).abs() < 1e-12); }
//! for x in vbar { assert!(x.abs() < 1e-12); }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod arnoldi;
mod cg;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod lanczos;
mod subspace;

pub use arnoldi::{arnoldi_vjp, ArnoldiCotangent};
pub use cg::cg_vjp;
pub use error::AdjointError;
pub use lanczos::{lanczos_vjp, LanczosCotangent};
pub use subspace::subspace_vjp;

use gradmat_operators::{Operator, ParamVjp, Scalar};

/// How parameter gradients `θ̄ = Σ_k ∇θ⟨λ_k, A q_k⟩` are accumulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamAccumulation {
    /// Ask the operator ([`ParamVjp::vjp_block_size`] above 1): `Fused` for kernel, dense and
    /// sparse operators, `Online` otherwise. The default, chosen by measurement (README).
    #[default]
    Auto,
    /// Store the adjoint vectors `λ_k` and hand them to the operator's
    /// [`ParamVjp::vjp_params_block`] in blocks of [`ParamVjp::vjp_block_size`] pairs: one call
    /// for all `K` pairs for a kernel (one pass over its tiles, 14–15× cheaper per pair than
    /// single VJPs for a Matérn kernel), groups of 8 for CSR (one pass over the pattern per
    /// group; three-term Lanczos then keeps a ring of 8 vectors, not `N·K`). Compare the two
    /// modes on your operator with `bench_krylov --accumulation fused|online`.
    Fused,
    /// Accumulate at every backward step, fused with the step's matvec through
    /// [`ParamVjp::apply_and_vjp_params`] where the operator provides it. Needs no stored
    /// adjoint vectors beyond the recursion's own.
    Online,
}

impl ParamAccumulation {
    /// Resolves `Auto` for a given operator.
    pub fn resolve<T: Scalar, A: ParamVjp<T> + ?Sized>(self, op: &A) -> Self {
        match self {
            Self::Auto if op.vjp_block_size() > 1 => Self::Fused,
            Self::Auto => Self::Online,
            other => other,
        }
    }
}

/// Options of the backward passes (public fields, `Default`, the style of the Krylov
/// `Params`):
///
/// ```
/// use gradmat_adjoint::{AdjointParams, ParamAccumulation};
/// let p = AdjointParams { project: false, ..AdjointParams::default() };
/// assert_eq!((p.project, p.accumulation), (false, ParamAccumulation::Auto));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AdjointParams {
    /// Re-projection of the Arnoldi adjoint (also for Lanczos with full reorthogonalisation,
    /// which runs through Arnoldi). Default `true`: required for exactness to rounding after a
    /// reorthogonalised forward pass, and measured more accurate than the plain recursion
    /// after a non-reorthogonalised one too.
    pub project: bool,
    /// Parameter-gradient accumulation strategy. Default [`ParamAccumulation::Auto`].
    pub accumulation: ParamAccumulation,
    #[doc(hidden)]
    pub non_exhaustive: gradmat_operators::NonExhaustive,
}

impl Default for AdjointParams {
    fn default() -> Self {
        Self {
            project: true,
            accumulation: ParamAccumulation::Auto,
            non_exhaustive: gradmat_operators::NonExhaustive::default(),
        }
    }
}

/// Wraps an operator so that it has no parameters: use it when only `v̄` is wanted from an
/// operator that does not implement [`ParamVjp`].
#[derive(Debug, Clone, Copy)]
pub struct NoParams<A>(pub A);

impl<T: Scalar, A: Operator<T>> Operator<T> for NoParams<A> {
    fn nrows(&self) -> usize {
        self.0.nrows()
    }
    fn ncols(&self) -> usize {
        self.0.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_block(x, y, k)
    }
}
impl<T: Scalar, A: gradmat_operators::AdjointOperator<T>> gradmat_operators::AdjointOperator<T>
    for NoParams<A>
{
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.0.apply_transpose(x, y)
    }
}
impl<T: Scalar, A: gradmat_operators::SelfAdjoint<T>> gradmat_operators::SelfAdjoint<T>
    for NoParams<A>
{
}
impl<T: Scalar, A: Operator<T>> ParamVjp<T> for NoParams<A> {
    fn num_params(&self) -> usize {
        0
    }
    fn vjp_params(&self, _u: &[T], _x: &[T], _grad: &mut [T]) {}
    fn vjp_params_block(&self, _u: &[T], _x: &[T], _k: usize, _grad: &mut [T]) {}
}

pub(crate) fn check_len(
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<(), AdjointError> {
    if got == expected {
        Ok(())
    } else {
        Err(AdjointError::DimensionMismatch {
            what,
            expected,
            got,
        })
    }
}
