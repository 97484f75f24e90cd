//! # gradmat-operators
//!
//! The foundation of gradmat: linear operators touched only through matrix–vector products,
//! and the vector–Jacobian products with respect to their own parameters that the Krylov
//! adjoints of `gradmat-adjoint` need.
//!
//! * Traits ([`traits`]): [`Operator`], [`AdjointOperator`], [`SelfAdjoint`], [`ParamVjp`],
//!   [`SetParams`] over a sealed real [`Scalar`] (`f32`, `f64`).
//! * Operators: [`dense`] (general and symmetric), [`csr`] (general and symmetric storage,
//!   parallel SpMV/SpMM), [`kernel`] (matrix-free squared-exponential and Matérn kernel
//!   matrices), [`ggn`] (Gauss–Newton matrices of a model given by its JVP and VJP).
//! * Algebra ([`algebra`]): sum, scaling, shift, product, transpose, diagonal, identity.
//! * I/O: [`matrix_market`] reader and writer (coordinate and array; gzip with the default
//!   feature `matrix-market`).
//! * Conformance kit (module `testing`, feature `testing`): adjoint, self-adjointness, block and
//!   finite-difference checks and proptest strategies for any downstream operator.
//!
//! This crate knows nothing of Krylov methods.
//!
//! ```
//! use gradmat_operators::{dense::DenseMatrix, Operator, ParamVjp};
//!
//! // A = [[2, 1], [0, 3]] (column-major entries).
//! let a = DenseMatrix::from_col_major(2, 2, vec![2.0, 0.0, 1.0, 3.0]).unwrap();
//! let mut y = [0.0; 2];
//! a.apply(&[1.0, 1.0], &mut y);
//! assert_eq!(y, [3.0, 3.0]);
//!
//! // ∇θ⟨u, A x⟩ with θ the entries: u xᵀ, column-major.
//! let mut grad = vec![0.0; a.num_params()];
//! a.vjp_params(&[1.0, 2.0], &[3.0, 4.0], &mut grad);
//! assert_eq!(grad, vec![3.0, 6.0, 4.0, 8.0]);
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod algebra;
pub mod csr;
pub mod dense;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod ggn;
pub mod kernel;
pub mod matrix_market;
mod scalar;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traits;
pub mod vector;

pub use error::{require_finite, require_len, OperatorError};
pub use scalar::Scalar;
pub use traits::{AdjointOperator, ColumnAccess, Operator, ParamVjp, SelfAdjoint, SetParams};
