//! The Arnoldi adjoint (Krämer et al. 2024, Alg. E.2 in the checked form of `ALGORITHMS.md`).
//!
//! ```text
//! W   = lower-triangular ones with diagonal 1/2            (K×K)
//! γ   = H̄[:, K-1] − Qᵀ r̄
//! λ   = r̄ + Q γ
//! P   = Q̄ᵀ + γ rᵀ                                          (row k used at step k)
//! G   = H H̄ᵀ − Q̄ᵀ Q;  G[0,0] −= c̄ c
//! for k = K-1 down to 0:
//!     if project: λ = λ − Q_J (Q_Jᵀ λ) + Q_J H̄[J, k],  J = 0..=min(k+1, K-1)
//!     u = Aᵀ λ;   θ̄ += ∇θ⟨λ, A q_k⟩
//!     Γ[k, j] = W[k, j] (G[k, j] − uᵀ q_j)     for j ≤ k
//!     Λ[:, k] = λ
//!     ξ = P[k, :] + Q (Γ + Γᵀ)[k, :]
//!     λ = (ξ + u − H[k,k] λ − Σ_{j>k} H[k,j] Λ[:, j]) / β,   β = H[k,k-1] if k > 0 else 1
//! v̄ = c λ
//! ```

use crate::{check_len, AdjointError, AdjointParams, ParamAccumulation};
use gradmat_krylov::arnoldi::Arnoldi;
use gradmat_krylov::reduce;
use gradmat_operators::{AdjointOperator, ParamVjp, Scalar};

/// Cotangents of the outputs of an Arnoldi decomposition. `None` means zero.
#[derive(Debug, Clone, Copy)]
pub struct ArnoldiCotangent<'a, T: Scalar> {
    /// `Q̄`, `N×K` column-major.
    pub basis: Option<&'a [T]>,
    /// `H̄`, `K×K` column-major (entries outside the Hessenberg pattern are ignored, as `H` is
    /// structurally zero there).
    pub hessenberg: Option<&'a [T]>,
    /// `r̄`, length `N`.
    pub residual: Option<&'a [T]>,
    /// `c̄`, the cotangent of `c = 1/‖v‖`.
    pub inv_norm: T,
}

impl<T: Scalar> Default for ArnoldiCotangent<'_, T> {
    fn default() -> Self {
        Self {
            basis: None,
            hessenberg: None,
            residual: None,
            inv_norm: T::ZERO,
        }
    }
}

/// Reverse-mode derivative of [`gradmat_krylov::arnoldi::arnoldi`]: returns `v̄` and
/// **accumulates** `θ̄` into `theta_grad` (length `op.num_params()`).
///
/// Costs one `Aᵀλ` per step plus the parameter VJPs (fused into one block call by default);
/// stores the adjoint vectors `Λ` (`N×K`) and `Γ` (`K×K`). The re-projection step is on by
/// default (with or without reorthogonalisation in the forward pass; see the source for the
/// measurement behind this choice).
///
/// # Errors
/// Cotangent lengths that do not match, an operator of the wrong size, a vanishing sub-diagonal
/// of `H` (with the step), or non-finite values.
pub fn arnoldi_vjp<T, A>(
    op: &A,
    dec: &Arnoldi<T>,
    cot: &ArnoldiCotangent<'_, T>,
    params: &AdjointParams,
    theta_grad: &mut [T],
) -> Result<Vec<T>, AdjointError>
where
    T: Scalar,
    A: AdjointOperator<T> + ParamVjp<T> + ?Sized,
{
    check_operator(op.nrows(), op.ncols(), dec.dim())?;
    check_len("parameter gradient", theta_grad.len(), op.num_params())?;
    // Re-projection is on by default, also after a forward pass without reorthogonalisation:
    // measured against finite differences on general sparse matrices, the unprojected adjoint's
    // error grows with the basis' loss of orthogonality (‖I − QᵀQ‖ ≈ 5e-11 gave 6e-6 relative
    // error, ≈ 1e-8 gave 1e-3 to O(1)), while the projected one stayed within the FD
    // uncertainty. `AdjointParams::project(false)` gives the plain recursion.
    let project = params.project.unwrap_or(true);
    let k = dec.depth();
    let hbar = match cot.hessenberg {
        Some(h) => {
            check_len("H cotangent", h.len(), k * k)?;
            // Only the Hessenberg pattern is an output: entries below the sub-diagonal of H
            // are structurally zero, so their cotangents are dropped.
            let mut h = h.to_vec();
            for j in 0..k {
                for i in j + 2..k {
                    h[i + j * k] = T::ZERO;
                }
            }
            h
        }
        None => vec![T::ZERO; k * k],
    };
    arnoldi_vjp_core(
        &ArnoldiParts {
            n: dec.dim(),
            k,
            q: dec.basis(),
            h: dec.hessenberg(),
            r: dec.residual(),
            c: dec.inv_norm(),
        },
        &hbar,
        cot.basis,
        cot.residual,
        cot.inv_norm,
        &|x, y| op.apply_transpose(x, y),
        &|u, x, m, g| op.vjp_params_block(u, x, m, g),
        None,
        project,
        params.accumulation.resolve(op),
        theta_grad,
    )
}

pub(crate) fn check_operator(nrows: usize, ncols: usize, dim: usize) -> Result<(), AdjointError> {
    if nrows != dim || ncols != dim {
        return Err(AdjointError::OperatorMismatch { nrows, ncols, dim });
    }
    Ok(())
}

/// The parts of an Arnoldi decomposition the adjoint reads.
pub(crate) struct ArnoldiParts<'a, T> {
    pub n: usize,
    pub k: usize,
    pub q: &'a [T],
    pub h: &'a [T],
    pub r: &'a [T],
    pub c: T,
}

type ApplyFn<'a, T> = dyn Fn(&[T], &mut [T]) + 'a;
type VjpFn<'a, T> = dyn Fn(&[T], &[T], usize, &mut [T]) + 'a;
/// `(λ, u, q, θ̄) ↦ u = Aᵀλ, θ̄ += ∇θ⟨λ, A q⟩` in one call, where the operator fuses them.
pub(crate) type FusedFn<'a, T> = dyn Fn(&[T], &mut [T], &[T], &mut [T]) + 'a;

#[allow(clippy::too_many_arguments)]
pub(crate) fn arnoldi_vjp_core<T: Scalar>(
    d: &ArnoldiParts<'_, T>,
    hbar: &[T],
    qbar: Option<&[T]>,
    rbar: Option<&[T]>,
    cbar: T,
    apply_t: &ApplyFn<'_, T>,
    pvjp: &VjpFn<'_, T>,
    fused_step: Option<&FusedFn<'_, T>>,
    project: bool,
    acc: ParamAccumulation,
    theta_grad: &mut [T],
) -> Result<Vec<T>, AdjointError> {
    let (n, kk) = (d.n, d.k);
    let (q, h, r) = (d.q, d.h, d.r);
    if let Some(qb) = qbar {
        check_len("Q cotangent", qb.len(), n * kk)?;
    }
    if let Some(rb) = rbar {
        check_len("r cotangent", rb.len(), n)?;
    }
    let hh = |i: usize, j: usize| h[i + j * kk];
    let hb = |i: usize, j: usize| hbar[i + j * kk];
    let half = T::from_f64(0.5);

    // γ = H̄[:, K-1] − Qᵀ r̄ ;  λ = r̄ + Q γ
    let mut gamma: Vec<T> = (0..kk).map(|i| hb(i, kk - 1)).collect();
    let mut lambda = vec![T::ZERO; n];
    let mut tmp_k = vec![T::ZERO; kk];
    if let Some(rb) = rbar {
        reduce::basis_t_vec(q, n, kk, rb, &mut tmp_k);
        for (g, t) in gamma.iter_mut().zip(&tmp_k) {
            *g -= *t;
        }
        lambda.copy_from_slice(rb);
    }
    reduce::basis_vec_acc(T::ONE, q, n, kk, &gamma, &mut lambda);

    // G = H H̄ᵀ − Q̄ᵀ Q ; G[0,0] −= c̄ c   (only j ≤ k is used)
    let mut g = vec![T::ZERO; kk * kk];
    for kr in 0..kk {
        for j in 0..=kr {
            let mut s = T::ZERO;
            for l in 0..kk {
                s += hh(kr, l) * hb(j, l);
            }
            g[kr + j * kk] = s;
        }
    }
    if let Some(qb) = qbar {
        // Row k of Q̄ᵀQ is Q̄[:,k]ᵀ Q.
        for kr in 0..kk {
            reduce::basis_t_vec(q, n, kr + 1, &qb[kr * n..(kr + 1) * n], &mut tmp_k);
            for j in 0..=kr {
                g[kr + j * kk] -= tmp_k[j];
            }
        }
    }
    g[0] -= cbar * d.c;

    let mut gam = vec![T::ZERO; kk * kk]; // Γ
    let mut big_lambda = vec![T::ZERO; n * kk]; // Λ
    let mut u = vec![T::ZERO; n];
    let mut xi = vec![T::ZERO; n];
    let mut coef = vec![T::ZERO; kk];
    for k in (0..kk).rev() {
        if project {
            let jn = (k + 2).min(kk);
            reduce::basis_t_vec(q, n, jn, &lambda, &mut tmp_k);
            for j in 0..jn {
                coef[j] = hb(j, k) - tmp_k[j];
            }
            reduce::basis_vec_acc(T::ONE, q, n, jn, &coef, &mut lambda);
        }
        let qk = &q[k * n..(k + 1) * n];
        match (
            acc == ParamAccumulation::Online && !theta_grad.is_empty(),
            fused_step,
        ) {
            (true, Some(step)) => step(&lambda, &mut u, qk, theta_grad),
            (true, None) => {
                apply_t(&lambda, &mut u);
                pvjp(&lambda, qk, 1, theta_grad);
            }
            (false, _) => apply_t(&lambda, &mut u),
        }
        reduce::basis_t_vec(q, n, k + 1, &u, &mut tmp_k);
        for j in 0..=k {
            let w = if j == k { half } else { T::ONE };
            gam[k + j * kk] = w * (g[k + j * kk] - tmp_k[j]);
        }
        big_lambda[k * n..(k + 1) * n].copy_from_slice(&lambda);
        // ξ = Q̄[:,k] + γ_k r + Q (Γ + Γᵀ)[k, :]
        match qbar {
            Some(qb) => xi.copy_from_slice(&qb[k * n..(k + 1) * n]),
            None => xi.iter_mut().for_each(|x| *x = T::ZERO),
        }
        if gamma[k] != T::ZERO {
            reduce::axpy(gamma[k], r, &mut xi);
        }
        for j in 0..kk {
            coef[j] = gam[k + j * kk] + gam[j + k * kk];
        }
        reduce::basis_vec_acc(T::ONE, q, n, kk, &coef, &mut xi);
        // λ = (ξ + u − H[k,k] λ − Σ_{j>k} H[k,j] Λ[:, j]) / β
        let beta = if k > 0 { hh(k, k - 1) } else { T::ONE };
        if beta == T::ZERO || !beta.is_finite() || !(T::ONE / beta).is_finite() {
            return Err(AdjointError::VanishingSubdiagonal {
                step: k,
                value: beta.to_f64(),
            });
        }
        let hkk = hh(k, k);
        for ((l, x), uu) in lambda.iter_mut().zip(&xi).zip(&u) {
            *l = *x + *uu - hkk * *l;
        }
        if k + 1 < kk {
            for j in k + 1..kk {
                coef[j - (k + 1)] = -hh(k, j);
            }
            reduce::basis_vec_acc(
                T::ONE,
                &big_lambda[(k + 1) * n..],
                n,
                kk - k - 1,
                &coef[..kk - k - 1],
                &mut lambda,
            );
        }
        let inv = T::ONE / beta;
        if inv != T::ONE {
            reduce::scale(inv, &mut lambda);
        }
        if reduce::first_non_finite(&lambda).is_some() {
            return Err(AdjointError::NonFinite { step: k });
        }
    }
    if acc == ParamAccumulation::Fused && !theta_grad.is_empty() {
        pvjp(&big_lambda, &q[..n * kk], kk, theta_grad);
    }
    reduce::scale(d.c, &mut lambda);
    Ok(lambda)
}
