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
//!
//! **Start here.** Most users want the functions of matrices in `gradmat-matfun`, which run
//! these decompositions for them; use this crate directly for the decompositions themselves
//! ([`lanczos::lanczos`], [`arnoldi::arnoldi`], [`golub_kahan::golub_kahan`]), for linear solves
//! ([`cg::solve`]) and for the preconditioner ([`precond::PartialCholesky`]).
//!
//! # One vocabulary
//!
//! * Parameters ([`lanczos::LanczosParams`], [`arnoldi::ArnoldiParams`],
//!   [`golub_kahan::GkParams`], [`cg::CgParams`], [`precond::PartialCholeskyParams`]) are
//!   structs with public fields and `Default` (plus a `new(depth)` or `new(rank)` for the one
//!   value without a sensible default): `LanczosParams { reorthogonalize: Reorthogonalize::Full,
//!   ..LanczosParams::new(30) }`. Tolerances are `f64` everywhere.
//! * Every decomposition ([`lanczos::Lanczos`], [`arnoldi::Arnoldi`],
//!   [`golub_kahan::Bidiagonalization`]) answers `dim()`, `depth()`, `basis()`,
//!   `small_matrix()`, `residual()`, `inv_norm()` and `info()`, and reports in one [`Info`]
//!   with one [`Breakdown`] type.
//! * One [`Reorthogonalize`] option for all three.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod arnoldi;
pub mod cg;
pub mod distributed;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
pub mod golub_kahan;
pub mod lanczos;
pub mod precond;
pub mod reduce;

pub use error::KrylovError;

/// Whether to reorthogonalise each new Krylov vector against the whole basis (Lanczos, Arnoldi,
/// both bases of Golub–Kahan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reorthogonalize {
    /// Plain recursion: cheapest, but orthogonality is lost as Ritz values converge.
    #[default]
    None,
    /// A second classical Gram–Schmidt pass against the whole basis at every step.
    Full,
}

/// Which quantity vanished at a breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakdownKind {
    /// The new basis vector vanished (Lanczos, Arnoldi; Golub–Kahan's `β_{j+1} ≈ 0`: `A v_j`
    /// lies in the span of the left vectors): the residual of the returned decomposition is
    /// zero to rounding.
    Residual,
    /// Golub–Kahan's `α_j ≈ 0`: `Aᵀ u_j` lies in the span of the previous right vectors.
    Alpha,
}

/// An invariant Krylov subspace met before the budget was spent (every decomposition of this
/// crate reports it the same way, in [`Info::breakdown`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Breakdown {
    /// The depth of the decomposition returned (smaller than or equal to the requested depth).
    pub depth: usize,
    /// Which quantity vanished.
    pub kind: BreakdownKind,
    /// Its norm.
    pub norm: f64,
    /// The scale it was compared with (Lanczos and Arnoldi: `‖A q_k‖` of the breakdown step;
    /// Golub–Kahan: the largest product norm seen so far).
    pub scale: f64,
}

/// What happened during a decomposition.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Info {
    /// Products with `A` performed.
    pub num_matvecs: usize,
    /// Products with `Aᵀ` performed (Golub–Kahan; 0 for Lanczos and Arnoldi).
    pub num_transpose_matvecs: usize,
    /// Depth requested.
    pub requested_depth: usize,
    /// Set when an invariant subspace stopped the iteration early.
    pub breakdown: Option<Breakdown>,
}

impl Info {
    pub(crate) fn new(requested_depth: usize) -> Self {
        Info {
            num_matvecs: 0,
            num_transpose_matvecs: 0,
            requested_depth,
            breakdown: None,
        }
    }
}
