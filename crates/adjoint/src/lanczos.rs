//! The Lanczos adjoint (three-term recursion) and the dispatch of fully reorthogonalised Lanczos
//! to the projected Arnoldi adjoint.
//!
//! With outputs `Q = (x_0..x_{K-1})`, `a`, `b_0..b_{K-2}`, `r = b_{K-1} x_K` and `c = 1/‖v‖`
//! (checked form of `ALGORITHMS.md`; the last step is written in terms of `r`, so it divides by
//! nothing and stays valid when the decomposition ends at an invariant subspace):
//!
//! ```text
//! k = K-1:   ξ = −r̄;  μ = 0;  ν = ā_k + x_kᵀξ;  λ = −ξ + ν x_k
//!            y = Aλ;  θ̄ += ∇θ⟨x_k, Aλ⟩;  ζ = −x̄_k − y + a_k λ − ν r;  λ₊ = λ
//! for k = K-2 down to 0:
//!     ξ = ζ / b_k
//!     μ = b̄_k − λ₊ᵀ x_k + x_{k+1}ᵀ ξ
//!     ν = ā_k + x_kᵀ ξ
//!     λ = −ξ + μ x_{k+1} + ν x_k
//!     y = A λ;   θ̄ += ∇θ⟨x_k, A λ⟩
//!     ζ = −x̄_k − y + a_k λ + b_k λ₊ − b_k ν x_{k+1}
//!     λ₊ = λ
//! v̄ = ((x_0ᵀ ζ) x_0 − ζ) / ‖v‖ − c̄ c² x_0
//! ```

use crate::arnoldi::{arnoldi_vjp_core, check_operator, ArnoldiParts};
use crate::{check_len, AdjointError, AdjointParams, ParamAccumulation};
use gradmat_krylov::lanczos::Lanczos;
use gradmat_krylov::reduce;
use gradmat_operators::{ParamVjp, Scalar, SelfAdjoint};

/// Cotangents of the outputs of a Lanczos decomposition. `None` means zero.
#[derive(Debug, Clone, Copy)]
pub struct LanczosCotangent<'a, T: Scalar> {
    /// `Q̄ = (x̄_0..x̄_{K-1})`, `N×K` column-major.
    pub basis: Option<&'a [T]>,
    /// `ā`, length `K`.
    pub diagonal: Option<&'a [T]>,
    /// `b̄`, length `K − 1` (a dense `T̄` maps to `b̄_k = T̄[k+1,k] + T̄[k,k+1]`).
    pub off_diagonal: Option<&'a [T]>,
    /// `r̄`, length `N`.
    pub residual: Option<&'a [T]>,
    /// `c̄`, the cotangent of `c = 1/‖v‖`.
    pub inv_norm: T,
}

impl<T: Scalar> Default for LanczosCotangent<'_, T> {
    fn default() -> Self {
        Self {
            basis: None,
            diagonal: None,
            off_diagonal: None,
            residual: None,
            inv_norm: T::ZERO,
        }
    }
}

/// Reverse-mode derivative of [`gradmat_krylov::lanczos::lanczos`]: returns `v̄` and
/// **accumulates** `θ̄` into `theta_grad` (length `op.num_params()`).
///
/// Without reorthogonalisation this is the Lanczos adjoint (one `Aλ` and one parameter VJP per
/// step, no dense solves). With full reorthogonalisation the decomposition carries its Arnoldi
/// form and the projected Arnoldi adjoint is used on `T = (H + Hᵀ)/2` (for a self-adjoint
/// operator `Aᵀ = A`).
///
/// # Errors
/// Cotangent lengths that do not match, an operator of the wrong size, division by a vanishing
/// off-diagonal `b_k` (with the step), or non-finite values.
pub fn lanczos_vjp<T, A>(
    op: &A,
    dec: &Lanczos<T>,
    cot: &LanczosCotangent<'_, T>,
    params: &AdjointParams,
    theta_grad: &mut [T],
) -> Result<Vec<T>, AdjointError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    let (n, kk) = (dec.dim(), dec.depth());
    check_operator(op.nrows(), op.ncols(), n)?;
    check_len("parameter gradient", theta_grad.len(), op.num_params())?;
    if let Some(x) = cot.basis {
        check_len("Q cotangent", x.len(), n * kk)?;
    }
    if let Some(x) = cot.diagonal {
        check_len("diagonal cotangent", x.len(), kk)?;
    }
    if let Some(x) = cot.off_diagonal {
        check_len("off-diagonal cotangent", x.len(), kk.saturating_sub(1))?;
    }
    if let Some(x) = cot.residual {
        check_len("r cotangent", x.len(), n)?;
    }
    if let Some(arn) = dec.arnoldi() {
        // T = (H + Hᵀ)/2 on the band: H̄[k,k] = ā_k, H̄[k+1,k] = H̄[k,k+1] = b̄_k / 2.
        let mut hbar = vec![T::ZERO; kk * kk];
        let half = T::from_f64(0.5);
        for i in 0..kk {
            if let Some(a) = cot.diagonal {
                hbar[i + i * kk] = a[i];
            }
            if i + 1 < kk {
                if let Some(b) = cot.off_diagonal {
                    hbar[i + 1 + i * kk] = half * b[i];
                    hbar[i + (i + 1) * kk] = half * b[i];
                }
            }
        }
        let project = params.project.unwrap_or(true);
        return arnoldi_vjp_core(
            &ArnoldiParts {
                n,
                k: kk,
                q: arn.basis(),
                h: arn.hessenberg(),
                r: arn.residual(),
                c: arn.inv_norm(),
            },
            &hbar,
            cot.basis,
            cot.residual,
            cot.inv_norm,
            &|x, y| op.apply(x, y),
            &|u, x, m, g| op.vjp_params_block(u, x, m, g),
            project,
            params.accumulation,
            theta_grad,
        );
    }
    lanczos_vjp_three_term(op, dec, cot, params.accumulation, theta_grad)
}

fn lanczos_vjp_three_term<T, A>(
    op: &A,
    dec: &Lanczos<T>,
    cot: &LanczosCotangent<'_, T>,
    acc: ParamAccumulation,
    theta_grad: &mut [T],
) -> Result<Vec<T>, AdjointError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    let (n, kk) = (dec.dim(), dec.depth());
    let q = dec.basis();
    let (a, b, r) = (dec.diagonal(), dec.off_diagonal(), dec.residual());
    let x = |k: usize| &q[k * n..(k + 1) * n];
    let abar = |k: usize| cot.diagonal.map_or(T::ZERO, |v| v[k]);
    let bbar = |k: usize| cot.off_diagonal.map_or(T::ZERO, |v| v[k]);
    let fused = acc == ParamAccumulation::Fused && !theta_grad.is_empty();
    let mut lambdas = if fused {
        vec![T::ZERO; n * kk]
    } else {
        Vec::new()
    };
    let mut lam = vec![T::ZERO; n];
    let mut lam_next = vec![T::ZERO; n]; // λ₊
    let mut zeta = vec![T::ZERO; n];
    let mut xi = vec![T::ZERO; n];
    let mut y = vec![T::ZERO; n];

    for k in (0..kk).rev() {
        let xk = x(k);
        let last = k + 1 == kk;
        // ξ, μ
        let mu = if last {
            match cot.residual {
                Some(rb) => xi.iter_mut().zip(rb).for_each(|(s, v)| *s = -*v),
                None => xi.iter_mut().for_each(|s| *s = T::ZERO),
            }
            T::ZERO
        } else {
            let bk = b[k];
            if bk == T::ZERO || !(T::ONE / bk).is_finite() {
                return Err(AdjointError::VanishingSubdiagonal {
                    step: k,
                    value: bk.to_f64(),
                });
            }
            let inv = T::ONE / bk;
            xi.iter_mut().zip(&zeta).for_each(|(s, z)| *s = *z * inv);
            bbar(k) - reduce::dot(&lam_next, xk) + reduce::dot(x(k + 1), &xi)
        };
        let nu = abar(k) + reduce::dot(xk, &xi);
        // λ = −ξ + μ x_{k+1} + ν x_k
        lam.iter_mut()
            .zip(&xi)
            .zip(xk)
            .for_each(|((l, s), xv)| *l = -*s + nu * *xv);
        if !last && mu != T::ZERO {
            reduce::axpy(mu, x(k + 1), &mut lam);
        }
        op.apply(&lam, &mut y);
        if fused {
            lambdas[k * n..(k + 1) * n].copy_from_slice(&lam);
        } else if !theta_grad.is_empty() {
            op.vjp_params(xk, &lam, theta_grad);
        }
        // ζ = −x̄_k − y + a_k λ + b_k λ₊ − b_k ν x_{k+1}   (last step: b_k x_{k+1} = r, λ₊ = 0)
        let ak = a[k];
        match cot.basis {
            Some(qb) => zeta
                .iter_mut()
                .zip(&qb[k * n..(k + 1) * n])
                .for_each(|(z, v)| *z = -*v),
            None => zeta.iter_mut().for_each(|z| *z = T::ZERO),
        }
        zeta.iter_mut()
            .zip(&y)
            .zip(&lam)
            .for_each(|((z, yv), l)| *z += ak * *l - *yv);
        if last {
            reduce::axpy(-nu, r, &mut zeta);
        } else {
            let bk = b[k];
            reduce::axpy(bk, &lam_next, &mut zeta);
            reduce::axpy(-bk * nu, x(k + 1), &mut zeta);
        }
        if reduce::first_non_finite(&zeta).is_some() {
            return Err(AdjointError::NonFinite { step: k });
        }
        std::mem::swap(&mut lam_next, &mut lam);
    }
    if fused {
        op.vjp_params_block(&q[..n * kk], &lambdas, kk, theta_grad);
    }
    // v̄ = ((x_0ᵀ ζ) x_0 − ζ) / ‖v‖ − c̄ c² x_0   with ‖v‖ = 1/c
    let c = dec.inv_norm();
    let x0 = x(0);
    let p = reduce::dot(x0, &zeta);
    let coeff_x0 = p * c - cot.inv_norm * c * c;
    let vbar: Vec<T> = zeta
        .iter()
        .zip(x0)
        .map(|(z, xv)| coeff_x0 * *xv - *z * c)
        .collect();
    Ok(vbar)
}
