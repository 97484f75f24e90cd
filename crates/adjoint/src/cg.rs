//! Implicit differentiation of linear solves `A(θ) X = B` (conjugate gradients).
//!
//! For `X = A⁻¹B` and a cotangent `X̄`: `B̄ = A⁻ᵀX̄` (one more solve with the same operator and
//! preconditioner; `A` is self-adjoint here) and `θ̄ = −Σ_c ∇θ⟨B̄_c, A(θ) X_c⟩`. This
//! differentiates the exact solution, not the iterations: its accuracy is that of the two solves
//! (the tolerance of `params`).

use crate::{check_len, AdjointError};
use gradmat_krylov::cg::{solve_preconditioned, CgInfo, CgParams};
use gradmat_krylov::precond::Preconditioner;
use gradmat_operators::{ParamVjp, Scalar, SelfAdjoint};

/// Reverse-mode derivative of a (block) CG solve: given the solution block `x` (`n×k`) of
/// `A X = B` and its cotangent `xbar`, returns `B̄ = A⁻¹X̄` and the adjoint solve's info, and
/// **accumulates** `θ̄ −= Σ_c ∇θ⟨B̄_c, A X_c⟩` into `theta_grad`.
///
/// # Errors
/// Length mismatches, or a failure of the adjoint solve (see `gradmat_krylov::cg`).
pub fn cg_vjp<T, A, P>(
    op: &A,
    precond: &P,
    x: &[T],
    xbar: &[T],
    k: usize,
    params: &CgParams,
    theta_grad: &mut [T],
) -> Result<(Vec<T>, CgInfo<T>), AdjointError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
    P: Preconditioner<T> + ?Sized,
{
    let n = op.nrows();
    check_len("solution block", x.len(), n * k)?;
    check_len("solution cotangent", xbar.len(), n * k)?;
    check_len("parameter gradient", theta_grad.len(), op.num_params())?;
    let sol = solve_preconditioned(op, precond, xbar, k, None, params)?;
    let (bbar, info) = sol.into_parts();
    if !theta_grad.is_empty() {
        let neg: Vec<T> = bbar.iter().map(|v| -*v).collect();
        op.vjp_params_block(&neg, x, k, theta_grad);
    }
    Ok((bbar, info))
}
