//! The parameter gradient of a function of `A` whose gradient lies in the span of a basis:
//! `Ā = Q W Qᵀ`, so `θ̄ = ∇θ⟨Q W Qᵀ, A(θ)⟩ = Σ_j ∇θ⟨(QW)_j, A(θ) q_j⟩`.
//!
//! This is the exact gradient of `vᵀf(A)v` (and of `f(A)v` for a cotangent in the span) when
//! the span of `Q` is invariant under `A`: there the whole gradient lies in the Krylov space
//! (`Ā = Q (∂ρ/∂T) Qᵀ`), and no division by the small sub-diagonals of a (near-)breakdown is
//! needed. `gradmat-matfun` builds `W` from the dense reverse rule of the small matrix.

use crate::{check_len, AdjointError};
use gradmat_krylov::reduce;
use gradmat_operators::{ParamVjp, Scalar};

/// **Accumulates** `θ̄ += ∇θ⟨Q W Qᵀ, A(θ)⟩` into `theta_grad` for the column-major `n×k`
/// basis `q` and the column-major `k×k` matrix `w`: one parameter VJP per column pair
/// `((QW)_j, q_j)`, handed to [`ParamVjp::vjp_params_block`] in blocks of
/// [`ParamVjp::vjp_block_size`] columns (so the extra memory is one block of `QW`, at most
/// `n·k`).
///
/// ```
/// use gradmat_adjoint::subspace_vjp;
/// use gradmat_operators::{dense::DenseMatrix, ParamVjp};
///
/// // With Q = I (the whole space), θ̄ = W for a dense matrix whose parameters are its entries.
/// let a = DenseMatrix::from_col_major(2, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
/// let q = [1.0, 0.0, 0.0, 1.0];
/// let w = [0.5, -1.0, 2.0, 0.25];
/// let mut g = vec![0.0; a.num_params()];
/// subspace_vjp(&a, &q, 2, 2, &w, &mut g).unwrap();
/// assert_eq!(g, w);
/// ```
///
/// # Errors
/// [`AdjointError::DimensionMismatch`] for slices of the wrong length,
/// [`AdjointError::OperatorMismatch`] for an operator that is not `n×n`, and
/// [`AdjointError::NonFinite`] when the accumulated gradient is not finite.
pub fn subspace_vjp<T, A>(
    op: &A,
    q: &[T],
    n: usize,
    k: usize,
    w: &[T],
    theta_grad: &mut [T],
) -> Result<(), AdjointError>
where
    T: Scalar,
    A: ParamVjp<T> + ?Sized,
{
    crate::arnoldi::check_operator(op.nrows(), op.ncols(), n)?;
    check_len("basis", q.len(), n * k)?;
    check_len("small cotangent W", w.len(), k * k)?;
    check_len("parameter gradient", theta_grad.len(), op.num_params())?;
    if theta_grad.is_empty() || k == 0 {
        return Ok(());
    }
    let block = op.vjp_block_size().clamp(1, k);
    let mut j0 = 0;
    while j0 < k {
        let m = block.min(k - j0);
        let u = reduce::basis_mat(q, n, k, &w[j0 * k..(j0 + m) * k], m);
        op.vjp_params_block(&u, &q[j0 * n..(j0 + m) * n], m, theta_grad);
        j0 += m;
    }
    if theta_grad.iter().any(|x| !x.is_finite()) {
        return Err(AdjointError::NonFinite { step: 0 });
    }
    Ok(())
}
