//! # gradmat-operators
//!
//! The foundation of gradmat: linear operators touched only through matrix–vector products,
//! and the vector–Jacobian products with respect to their own parameters that the Krylov
//! adjoints of `gradmat-adjoint` need.
//!
//! * Traits ([`traits`]): [`Operator`], [`AdjointOperator`], [`SelfAdjoint`], [`ParamVjp`],
//!   [`SetParams`] over a sealed real [`Scalar`] (`f32`, `f64`).
//! * Operators: [`dense`] (general and symmetric), [`csr`] (general and symmetric storage,
//!   parallel SpMV/SpMM; [`csr::CheckedSymmetricCsr`], general storage checked symmetric),
//!   [`kernel`] (matrix-free squared-exponential and Matérn kernel
//!   matrices), [`ggn`] (Gauss–Newton matrices of a model given by its JVP and VJP).
//! * Algebra ([`algebra`]): sum, scaling, shift, product, transpose, diagonal, identity.
//! * I/O: [`matrix_market`] reader and writer (coordinate and array, optional gzip), and the
//!   one conversion of a file to an operator with its entry-to-parameter map
//!   ([`matrix_market::MatrixMarketFile::into_operator`]); gzip with the default
//!   feature `matrix-market`.
//! * Conformance kit (module `testing`, feature `testing`): adjoint, self-adjointness, block and
//!   finite-difference checks and proptest strategies for any downstream operator.
//!
//! This crate knows nothing of Krylov methods.
//!
//! **Start here.** To compute with a matrix of your own, implement [`Operator`] (`apply`),
//! [`SelfAdjoint`] (a promise, for Lanczos) or [`AdjointOperator`] (`apply_transpose`, for
//! Arnoldi), and [`ParamVjp`] (the gradient `∇θ⟨u, A(θ)x⟩` in your parameters) — about fifteen
//! lines, see `examples/laplacian_stencil.rs` — and validate them with
//! `testing::Conformance::new(&op).check_all()` (feature `testing`). Then the one-call functions
//! of `gradmat-matfun` (`logdet_with_grad`, `quadform_lanczos`, …) give values and exact
//! gradients.
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

// The one exception, with the `mpi` feature only: `comm::mpi` declares the MPI communicator
// handle `Send + Sync` (see the SAFETY note there).
#![cfg_attr(not(feature = "mpi"), forbid(unsafe_code))]
#![cfg_attr(feature = "mpi", deny(unsafe_code))]
#![warn(missing_docs)]

pub mod algebra;
pub mod comm;
pub mod csr;
pub mod dense;
pub mod dist;
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

/// The hidden last field of gradmat's parameter structs (faer's pattern): every other field is
/// public, so `Params { depth: 30, ..Default::default() }` works, while new fields can be added
/// without breaking callers (a full struct literal cannot name this field's value).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NonExhaustive(pub(crate) ());
pub use scalar::Scalar;
pub use traits::{AdjointOperator, ColumnAccess, Operator, ParamVjp, SelfAdjoint, SetParams};
