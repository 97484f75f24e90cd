//! # gradmat-matfun
//!
//! Functions of matrices and their gradients: dense `f(H)` of the small Krylov matrices with
//! reverse-mode rules (Daleckii–Krein for symmetric, Fréchet adjoint of `exp` for general), Krylov
//! approximations of `f(A)v` and `vᵀf(A)v`, stochastic trace and log-determinant estimators
//! (stochastic Lanczos quadrature), all differentiable through `gradmat-adjoint`.
//!
//! * [`logdet`] / [`logdet_with_grad`], [`trace_fn`] / [`trace_fn_with_grad`]
//!   ([`estimators`]): stochastic Lanczos quadrature for `log det A` and `tr f(A)` of a
//!   self-adjoint operator, with standard error and the exact gradient of the estimate with
//!   respect to the operator's parameters; deterministic parallel probes.
//! * [`krylov`]: `f(A)v` and `vᵀf(A)v` by Lanczos ([`apply_lanczos`], [`quadform_lanczos`]) or
//!   Arnoldi ([`apply_arnoldi`], [`quadform_arnoldi`]; `exp(tA)` with a differentiable `t`),
//!   each with a backward pass returning `v̄` (and `t̄`) and accumulating `θ̄`.
//! * [`estimators::diagonal_estimate`]: `diag(A) ≈ mean(v ∘ Av)`.
//! * Beyond one machine: [`split`] runs the probes of an estimator on the ranks of a
//!   communicator (replicated operator; estimate and gradient bit-identical to serial), and
//!   every function here runs on a row-distributed operator (`gradmat_operators::dist`) inside
//!   a distributed scope of `gradmat_krylov::distributed` (probes are then the ranks' rows of
//!   the serial probes, the lock-step threads get their own duplicate communicators).
//! * [`dense`]: the dense functions of the small `K×K` Krylov matrices and their reverse rules;
//!   the layer the Krylov-level functions build on.
//!
//! **Start here.** Give an operator from `gradmat-operators` (or your own, with `Operator`,
//! `SelfAdjoint` and `ParamVjp`) to [`logdet_with_grad`] or [`quadform_lanczos`] and call
//! `.gradient(…)` on the result; the options are plain structs with public fields
//! ([`SlqParams`], [`KrylovParams`]), and [`Reorthogonalize`], [`MatrixFunction`] and
//! [`ParamAccumulation`] are re-exported here, so one dependency on this crate is enough.
//!
//! # Log-determinant with gradient
//!
//! ```
//! use gradmat_matfun::{logdet_with_grad, SlqParams};
//! use gradmat_operators::algebra::Shifted;
//! use gradmat_operators::csr::SymCsrMatrix;
//! use gradmat_operators::ParamVjp;
//!
//! // A = L + σI with L the Laplacian of a path graph on 200 nodes; θ = (stored entries, σ).
//! let n = 200;
//! let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
//! for i in 0..n {
//!     r.push(i); c.push(i); v.push(if i == 0 || i == n - 1 { 1.0 } else { 2.0 });
//!     if i > 0 { r.push(i); c.push(i - 1); v.push(-1.0); }
//! }
//! let a = Shifted::new(SymCsrMatrix::from_triplets(n, &r, &c, &v)?, 0.5)?;
//! let params = SlqParams { num_probes: 20, depth: 20, seed: 7, ..SlqParams::default() };
//! let mut grad = vec![0.0; a.num_params()];
//! let est = logdet_with_grad(&a, &params, &mut grad)?;
//! // Exact: the path Laplacian has eigenvalues 2 − 2cos(πk/n), k = 0..n.
//! let exact: f64 = (0..n)
//!     .map(|k| (2.0 - 2.0 * (std::f64::consts::PI * k as f64 / n as f64).cos() + 0.5).ln())
//!     .sum();
//! assert!((est.value - exact).abs() < 5.0 * est.std_error + 1e-6 * exact.abs());
//! // ∂ log det/∂σ = tr A⁻¹ (estimated with the same probes).
//! assert!(grad[a.num_params() - 1] > 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```
//! use gradmat_matfun::dense::{expm, MatrixFunction, SymmetricMatrixFunction};
//!
//! // exp of a symmetric T through its eigendecomposition agrees with the Padé expm.
//! let t = [2.0_f64, -1.0, -1.0, 2.0];
//! let sym = SymmetricMatrixFunction::new(MatrixFunction::Exp, 2, &t)?.value();
//! let pade = expm(2, &t)?;
//! assert!(sym.iter().zip(&pade).all(|(a, b)| (a - b).abs() < 1e-13 * b.abs()));
//! # Ok::<(), gradmat_matfun::MatfunError>(())
//! ```
#![forbid(unsafe_code)]

pub mod dense;
mod error;
pub mod estimators;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod krylov;
pub mod lockstep;
pub mod preconditioned;
pub mod split;
pub mod subspace;
pub use dense::MatrixFunction;
pub use error::MatfunError;
pub use estimators::{
    diagonal_estimate, logdet, logdet_with_grad, trace_fn, trace_fn_with_grad, Estimate, Probe,
    SlqParams,
};
pub use gradmat_adjoint::ParamAccumulation;
pub use gradmat_krylov::Reorthogonalize;
pub use krylov::{
    apply_arnoldi, apply_lanczos, quadform_arnoldi, quadform_lanczos, ArnoldiFunVec,
    ArnoldiQuadForm, Gradient, KrylovParams, LanczosFunVec, LanczosQuadForm,
};
