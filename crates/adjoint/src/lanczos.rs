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
///
/// A `v̄` or `θ̄` that overflows (huge cotangents or operator entries) is reported as
/// [`AdjointError::NonFinite`], never returned.
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
    let vbar = lanczos_vjp_unchecked(op, dec, cot, params, theta_grad)?;
    // Found by the `lanczos` fuzz target: overflow in the backward sweep gave ±∞.
    if vbar.iter().chain(theta_grad.iter()).any(|x| !x.is_finite()) {
        return Err(AdjointError::NonFinite { step: 0 });
    }
    Ok(vbar)
}

fn lanczos_vjp_unchecked<T, A>(
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
            // A(θ) is symmetric for every θ, so ∇θ⟨λ, A q_k⟩ = ∇θ⟨q_k, A λ⟩: fuse it with Aλ.
            Some(&|l, u, qk, g| op.apply_and_vjp_params(l, u, qk, g)),
            project,
            params.accumulation.resolve(op),
            theta_grad,
        );
    }
    lanczos_vjp_three_term(op, dec, cot, params.accumulation.resolve(op), theta_grad)
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
    // λ_k lives in column k mod B of `lambdas`, a ring of B columns. Fused: B = the operator's
    // block size (all K for kernels), and the parameter VJP of steps k..k+B runs as one block call
    // once step k (k ≡ 0 mod B) is done — the ring's columns 0..B then pair with the contiguous
    // basis columns k..k+B. Without fusion B = 2 (λ and λ₊).
    let cols = if fused {
        op.vjp_block_size().max(2).min(kk.max(1))
    } else {
        2.min(kk.max(1))
    };
    let mut lambdas = vec![T::ZERO; n * cols];
    let slot = |k: usize| k % cols;
    let mut zeta = vec![T::ZERO; n];
    let mut y = vec![T::ZERO; n];
    let zero = vec![T::ZERO; n];
    let rbar = cot.residual.unwrap_or(&zero);

    // The inner products each step needs (λ₊ᵀx_k, x_{k+1}ᵀζ, x_kᵀζ) are accumulated in the
    // pass that produces ζ at the step before, so every step makes three passes over memory
    // (λ, the matvec, ζ) plus the parameter VJP.
    let mut dots = [T::ZERO; 3];
    for k in (0..kk).rev() {
        let xk = x(k);
        let last = k + 1 == kk;
        let (cur, next) = if last {
            let sk = slot(k);
            (&mut lambdas[sk * n..(sk + 1) * n], None)
        } else {
            let (c, p) = two_cols(&mut lambdas, n, slot(k), slot(k + 1));
            (c, Some(p))
        };
        // λ = −ξ + μ x_{k+1} + ν x_k with ξ = ζ/b_k (or −r̄ at the last step, where μ = 0).
        let (inv, mu, nu) = if last {
            let [d] = reduce::sum_chunks::<T, 1, _>(n, |rg| {
                [rg.clone().fold(T::ZERO, |s, i| s - xk[i] * rbar[i])]
            });
            (T::ZERO, T::ZERO, abar(k) + d)
        } else {
            let bk = b[k];
            if bk == T::ZERO || !(T::ONE / bk).is_finite() {
                return Err(AdjointError::VanishingSubdiagonal {
                    step: k,
                    value: bk.to_f64(),
                });
            }
            let inv = T::ONE / bk;
            let [d_lx, d_x1z, d_xz] = dots;
            (inv, bbar(k) - d_lx + inv * d_x1z, abar(k) + inv * d_xz)
        };
        {
            let z = &zeta;
            let xk1 = if last { xk } else { x(k + 1) };
            reduce::for_each_chunk(cur, |o, c| {
                let m = c.len();
                let xk_c = &xk[o..o + m];
                if last {
                    for ((l, r), x) in c.iter_mut().zip(&rbar[o..o + m]).zip(xk_c) {
                        *l = *r + nu * *x;
                    }
                } else {
                    let it = c.iter_mut().zip(&z[o..o + m]).zip(&xk1[o..o + m]);
                    for (((l, zz), a), b) in it.zip(xk_c) {
                        *l = -inv * *zz + mu * *a + nu * *b;
                    }
                }
            });
        }
        if fused || theta_grad.is_empty() {
            op.apply(cur, &mut y);
        } else {
            // y = Aλ and θ̄ += ∇θ⟨x_k, Aλ⟩ in one pass where the operator fuses them.
            op.apply_and_vjp_params(cur, &mut y, xk, theta_grad);
        }
        // ζ = −x̄_k − y + a_k λ + b_k λ₊ − b_k ν x_{k+1}   (last step: − ν r instead)
        let ak = a[k];
        let lam = &*cur;
        let (bk, lp, tail): (T, &[T], &[T]) = if last {
            (T::ZERO, lam, r)
        } else {
            (b[k], next.expect("λ₊ exists below the last step"), x(k + 1))
        };
        let tail_coef = if last { nu } else { b[k] * nu };
        let xprev = if k > 0 { x(k - 1) } else { xk };
        let xbar_k = cot.basis.map(|qb| &qb[k * n..(k + 1) * n]);
        dots = reduce::for_each_chunk_sum::<T, 3, _>(&mut zeta, |o, c| {
            let r = o..o + c.len();
            zeta_chunk(
                c,
                ZetaInputs {
                    xbar: xbar_k.map(|v| &v[r.clone()]),
                    y: &y[r.clone()],
                    lam: &lam[r.clone()],
                    lam_next: &lp[r.clone()],
                    tail: &tail[r.clone()],
                    xprev: &xprev[r.clone()],
                    xk: &xk[r],
                },
                [ak, bk, tail_coef],
                k > 0,
            )
        });
        if !(dots[0].is_finite() && dots[1].is_finite() && dots[2].is_finite()) {
            return Err(AdjointError::NonFinite { step: k });
        }
        if fused && k % cols == 0 {
            let len = cols.min(kk - k);
            op.vjp_params_block(
                &q[k * n..(k + len) * n],
                &lambdas[..len * n],
                len,
                theta_grad,
            );
        }
    }
    drop(lambdas);
    // v̄ = ((x_0ᵀ ζ) x_0 − ζ) / ‖v‖ − c̄ c² x_0   with ‖v‖ = 1/c
    let c = dec.inv_norm();
    let x0 = x(0);
    let p = dots[1]; // x_0ᵀζ from the last pass
    let coeff_x0 = p * c - cot.inv_norm * c * c;
    let vbar: Vec<T> = zeta
        .iter()
        .zip(x0)
        .map(|(z, xv)| coeff_x0 * *xv - *z * c)
        .collect();
    Ok(vbar)
}

/// The chunk slices one ζ update reads (all of the chunk's length).
struct ZetaInputs<'a, T> {
    xbar: Option<&'a [T]>,
    y: &'a [T],
    lam: &'a [T],
    lam_next: &'a [T],
    tail: &'a [T],
    xprev: &'a [T],
    xk: &'a [T],
}

/// `ζ = −x̄_k − y + a_k λ + b_k λ₊ − c·tail` on one chunk, returning the step-(k−1) inner
/// products `[λᵀx_{k−1}, x_kᵀζ, x_{k−1}ᵀζ]` (at k = 0: `[·, x_0ᵀζ, ζᵀζ]`). Eight independent
/// accumulators per sum let the loop vectorise (one running sum is latency bound); the chunk
/// split is fixed, so results do not depend on the thread count.
#[inline]
fn zeta_chunk<T: Scalar>(
    z: &mut [T],
    v: ZetaInputs<'_, T>,
    coef: [T; 3],
    has_prev: bool,
) -> [T; 3] {
    let m = z.len();
    let acc = match v.xbar {
        Some(xb) => {
            let xb = &xb[..m];
            zeta_loop(z, &v, |i| xb[i], coef, has_prev)
        }
        // No basis cotangent: x̄ = 0 without reading a zero vector.
        None => zeta_loop(z, &v, |_| T::ZERO, coef, has_prev),
    };
    let sum = |a: &[T; ZL]| ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    [sum(&acc[0]), sum(&acc[1]), sum(&acc[2])]
}

/// Lanes of [`zeta_loop`]'s accumulators.
const ZL: usize = 8;

/// The loop of [`zeta_chunk`], monomorphised for each way of reading `x̄`.
#[inline]
fn zeta_loop<T: Scalar>(
    z: &mut [T],
    v: &ZetaInputs<'_, T>,
    xb: impl Fn(usize) -> T,
    [ak, bk, tc]: [T; 3],
    has_prev: bool,
) -> [[T; ZL]; 3] {
    let m = z.len();
    let (y, lam, lp, tail, xp, xk) = (
        &v.y[..m],
        &v.lam[..m],
        &v.lam_next[..m],
        &v.tail[..m],
        &v.xprev[..m],
        &v.xk[..m],
    );
    let mut acc = [[T::ZERO; ZL]; 3];
    let mut one = |i: usize, l: usize| {
        let zi = -xb(i) - y[i] + ak * lam[i] + bk * lp[i] - tc * tail[i];
        z[i] = zi;
        acc[0][l] += lam[i] * xp[i];
        acc[1][l] += xk[i] * zi;
        acc[2][l] += if has_prev { xp[i] } else { zi } * zi;
    };
    let blocks = m / ZL;
    for b in 0..blocks {
        for l in 0..ZL {
            one(b * ZL + l, l);
        }
    }
    for l in 0..m % ZL {
        one(blocks * ZL + l, l);
    }
    acc
}

/// Column `a` mutably and column `b` shared of a column-major `n`-row buffer (`a != b`).
fn two_cols<T>(buf: &mut [T], n: usize, a: usize, b: usize) -> (&mut [T], &[T]) {
    debug_assert_ne!(a, b);
    if a < b {
        let (lo, hi) = buf.split_at_mut(b * n);
        (&mut lo[a * n..(a + 1) * n], &hi[..n])
    } else {
        let (lo, hi) = buf.split_at_mut(a * n);
        (&mut hi[..n], &lo[b * n..(b + 1) * n])
    }
}
