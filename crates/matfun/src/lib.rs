//! # gradmat-matfun
//!
//! Functions of matrices and their gradients: dense `f(H)` of the small Krylov matrices with
//! reverse-mode rules (Daleckii–Krein for symmetric, Fréchet adjoint of `exp` for general), Krylov
//! approximations of `f(A)v` and `vᵀf(A)v`, stochastic trace and log-determinant estimators
//! (stochastic Lanczos quadrature), all differentiable through `gradmat-adjoint`.
//!
//! [`dense`] holds the dense functions of the small `K×K` Krylov matrices and their reverse
//! rules; it is the layer the Krylov-level estimators build on.
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

pub mod dense;
mod error;
pub mod estimators;
pub mod krylov;
pub use error::MatfunError;
pub use estimators::{
    diagonal_estimate, logdet, logdet_with_grad, trace_fn, trace_fn_with_grad, Estimate, Probe,
    SlqParams,
};
pub use krylov::{
    apply_arnoldi, apply_lanczos, quadform_arnoldi, quadform_lanczos, KrylovParams, Method,
};
