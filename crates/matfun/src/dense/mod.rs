//! Dense functions of small `K×K` matrices with reverse-mode rules.
//!
//! These are the matrices a Krylov method produces: the symmetric tridiagonal `T` of Lanczos
//! and the upper Hessenberg `H` of Arnoldi (any small dense matrix works). Matrices are dense,
//! **column-major** slices of length `K·K` with the dimension passed beside them.
//!
//! * **Symmetric path** ([`SymmetricMatrixFunction`]): `f(T) = S diag(f(θ)) Sᵀ` from the
//!   eigendecomposition `T = S diag(θ) Sᵀ`, with `f` one of [`MatrixFunction`] (log, exp,
//!   scaled exp, sqrt, inverse sqrt, inverse, integer and real powers, user functions). Also
//!   `f(T)e₀` and `e₀ᵀf(T)e₀ = Σᵢ S₀ᵢ² f(θᵢ)`. The reverse rule is the Daleckii–Krein formula
//!   `T̄ = S (F ∘ (Sᵀ M̄ S)) Sᵀ`, `F_ij = f[θᵢ, θⱼ]` (divided differences, `f'(θᵢ)` on the
//!   diagonal), with cheaper forms for `M̄ = ρ̄ e₀e₀ᵀ` and `M̄ = w̄ e₀ᵀ`.
//! * **General path** ([`expm`] and friends): `exp(A)` by scaling and squaring with Padé
//!   approximants (Higham 2005), its Fréchet derivative and adjoint
//!   `H̄ = L_exp(Hᵀ, M̄)` read from the top-right block of `exp([[Hᵀ, M̄], [0, Hᵀ]])`, and the
//!   scaled `exp(tH)` with gradients in both `H` and `t`.
//!
//! # Precision
//!
//! The routines are generic over [`Scalar`] (`f32`, `f64`). The
//! matrices are small, so the work is done in `f64` throughout: inputs are widened, results
//! rounded to `T` once at the end (an `f32` caller gets `f32`-rounded `f64` results; an overflow
//! in that rounding is reported as [`MatfunError::NonFiniteResult`]). Input checks (symmetry
//! tolerance) use the precision of `T`. All faer kernels run with `Par::Seq`.
//!
//! # Cotangent conventions
//!
//! A cotangent `M̄` of a matrix-valued output is the `K×K` matrix with `ρ̄·dρ = ⟨M̄, d f⟩`
//! (Frobenius inner product) for a downstream scalar `ρ`. On the symmetric path the input
//! cotangent `T̄` is the gradient with respect to *symmetric* perturbations and is returned as
//! a **symmetric** matrix: `dρ = ⟨T̄, dT⟩` for every symmetric `dT`. A caller that parametrises
//! the tridiagonal `T` by its diagonal `a` and off-diagonal `b` (`T[k+1,k] = T[k,k+1] = b_k`)
//! gets `ā_k = T̄[k,k]` and `b̄_k = T̄[k+1,k] + T̄[k,k+1]`; see [`tridiagonal_cotangent`].
//!
//! # Example
//!
//! ```
//! use gradmat_matfun::dense::{MatrixFunction, SymmetricMatrixFunction};
//!
//! // T = [[2, 1], [1, 2]] has eigenvalues 1 and 3; log T has e₀ᵀ log(T) e₀ = (log 1 + log 3)/2.
//! let t = [2.0_f64, 1.0, 1.0, 2.0];
//! let logt = SymmetricMatrixFunction::new(MatrixFunction::Log, 2, &t)?;
//! assert!((logt.quadratic_form() - 0.5 * 3.0_f64.ln()).abs() < 1e-15);
//! // Gradient of ρ = e₀ᵀ log(T) e₀ with respect to (symmetric) T.
//! let tbar = logt.pullback_quadratic_form(1.0)?;
//! assert_eq!(tbar.len(), 4);
//! # Ok::<(), gradmat_matfun::MatfunError>(())
//! ```

mod expm;
mod function;
mod symmetric;
pub(crate) use symmetric::check_symmetric;
mod tridiagonal;

pub use expm::{
    expm, expm_frechet, expm_pullback, expm_scaled, expm_scaled_e0, expm_scaled_e0_pullback,
    expm_scaled_pullback, ScaledExpmCotangent,
};
pub use function::{MatrixFunction, ScalarFn};
pub use symmetric::{
    tridiagonal_cotangent, SymmetricEigen, SymmetricMatrixFunction, SYMMETRY_TOLERANCE_FACTOR,
};

use crate::MatfunError;
use faer::Mat;
use gradmat_operators::Scalar;

/// Checks that `a` holds a non-empty `n×n` matrix.
pub(crate) fn check_square<T>(what: &'static str, n: usize, a: &[T]) -> Result<(), MatfunError> {
    if n == 0 {
        return Err(MatfunError::EmptyMatrix { what });
    }
    check_len(what, n.saturating_mul(n), a.len())
}

/// Checks a slice length.
pub(crate) fn check_len(
    what: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), MatfunError> {
    if expected == got {
        Ok(())
    } else {
        Err(MatfunError::DimensionMismatch {
            what,
            expected,
            got,
        })
    }
}

/// Checks that a column-major `nrows×·` array is finite, reporting the first bad entry.
pub(crate) fn check_finite<T: Scalar>(
    what: &'static str,
    nrows: usize,
    a: &[T],
) -> Result<(), MatfunError> {
    match a.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(p) => Err(MatfunError::NonFiniteInput {
            what,
            row: p % nrows.max(1),
            col: p / nrows.max(1),
        }),
    }
}

/// Checks a scalar parameter.
pub(crate) fn check_scalar<T: Scalar>(what: &'static str, x: T) -> Result<f64, MatfunError> {
    let v = x.to_f64();
    if v.is_finite() {
        Ok(v)
    } else {
        Err(MatfunError::NonFiniteParameter { what, value: v })
    }
}

/// Widens a column-major `nrows×ncols` slice to an `f64` faer matrix.
pub(crate) fn to_mat<T: Scalar>(nrows: usize, ncols: usize, a: &[T]) -> Mat<f64> {
    Mat::from_fn(nrows, ncols, |i, j| a[i + j * nrows].to_f64())
}

/// Rounds an `f64` faer matrix to a column-major `Vec<T>`, failing on overflow.
pub(crate) fn from_mat<T: Scalar>(what: &'static str, m: &Mat<f64>) -> Result<Vec<T>, MatfunError> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            out.push(T::from_f64(m[(i, j)]));
        }
    }
    from_vec_check(what, out)
}

/// Fails if any entry is not finite.
pub(crate) fn from_vec_check<T: Scalar>(
    what: &'static str,
    v: Vec<T>,
) -> Result<Vec<T>, MatfunError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(v)
    } else {
        Err(MatfunError::NonFiniteResult { what })
    }
}

/// Rounds an `f64` to `T`, failing on overflow.
pub(crate) fn scalar_out<T: Scalar>(what: &'static str, x: f64) -> Result<T, MatfunError> {
    let v = T::from_f64(x);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(MatfunError::NonFiniteResult { what })
    }
}

/// `C = A·B` with faer's kernel on one thread.
pub(crate) fn matmul_seq(a: faer::MatRef<'_, f64>, b: faer::MatRef<'_, f64>) -> Mat<f64> {
    let mut c = Mat::<f64>::zeros(a.nrows(), b.ncols());
    faer::linalg::matmul::matmul(c.as_mut(), faer::Accum::Replace, a, b, 1.0, faer::Par::Seq);
    c
}
