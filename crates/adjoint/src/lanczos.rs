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
//!
//! Two implementations of it: with per-step parameter VJPs ([`ParamAccumulation::Online`]),
//! the recursion as written, each matvec fused with its VJP; otherwise (block VJPs, the
//! default for sparse, dense and kernel operators, or no parameters) `Aλ_k` is assembled from
//! `Aζ_{k+1}` and the forward pass's three-term relation, so that `λ_k`, `Aλ_k`, `ζ_k` and the
//! next step's inner products come out of one pass over memory per step (see
//! `lanczos_vjp_relation`; exact to rounding like the recursion itself).

use crate::arnoldi::{arnoldi_vjp_core, check_operator, ArnoldiParts};
use crate::{check_len, AdjointError, AdjointParams, ParamAccumulation};
use gradmat_krylov::lanczos::Lanczos;
use gradmat_krylov::reduce;
use gradmat_operators::vector::with_best_isa;
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
        let project = params.project;
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
            true,
            project,
            params.accumulation.resolve(op),
            theta_grad,
        );
    }
    if params.accumulation.resolve(op) == ParamAccumulation::Online && !theta_grad.is_empty() {
        lanczos_vjp_online(op, dec, cot, theta_grad)
    } else {
        lanczos_vjp_relation(op, dec, cot, theta_grad)
    }
}

/// The recursion as written (module notes), with the parameter VJP of each step fused into
/// its matvec ([`ParamVjp::apply_and_vjp_params`]): for [`ParamAccumulation::Online`].
fn lanczos_vjp_online<T, A>(
    op: &A,
    dec: &Lanczos<T>,
    cot: &LanczosCotangent<'_, T>,
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
    // λ_k lives in column k mod 2 of `lambdas` (λ and λ₊).
    let cols = 2.min(kk.max(1));
    let mut lambdas = vec![T::ZERO; n * cols];
    let slot = |k: usize| k % cols;
    let mut zeta = vec![T::ZERO; n];
    let mut y = vec![T::ZERO; n];
    let zero = vec![T::ZERO; n];
    let rbar = cot.residual.unwrap_or(&zero);

    // The inner products each step needs (λ₊ᵀx_k, x_{k+1}ᵀζ, x_kᵀζ) are accumulated in the
    // pass that produces ζ at the step before, so every step makes three passes over memory
    // (λ, the matvec with the parameter VJP, ζ).
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
            last_step_nu(xk, rbar, abar(k))
        } else {
            let inv = inv_subdiagonal(b[k], k)?;
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
        // y = Aλ and θ̄ += ∇θ⟨x_k, Aλ⟩ in one pass where the operator fuses them.
        op.apply_and_vjp_params(cur, &mut y, xk, theta_grad);
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
        check_dots(&dots, k)?;
    }
    Ok(start_vector_cotangent(dec, cot, &zeta, dots[1]))
}

/// The recursion with `Aλ_k` taken from the forward pass's three-term relation, for block
/// parameter VJPs ([`ParamAccumulation::Fused`]) and calls without parameters. Below the last
/// step `λ_k = −ζ_{k+1}/b_k + μ_k x_{k+1} + ν_k x_k`, so
///
/// ```text
/// Aλ_k = −(Aζ_{k+1})/b_k + μ_k A x_{k+1} + ν_k A x_k,
/// A x_j = b_{j−1} x_{j−1} + a_j x_j + b_j x_{j+1}    (A x_{K−1} = b_{K−2} x_{K−2} + a_{K−1} x_{K−1} + r)
/// ```
///
/// (the relation `AQ = QT + r e_{K−1}ᵀ` holds to rounding in finite precision, with or without
/// loss of orthogonality). The matvec then runs on `ζ_{k+1}` as soon as the pass that produced
/// it ends, and one pass per step builds `λ_k` (into the ring of adjoint vectors), `Aλ_k`, `ζ_k`
/// and the next step's three inner products: it reads `Aζ_{k+1}`, `ζ_{k+1}`, `λ_{k+1}` and
/// `x_{k−1}..x_{k+2}` and writes `ζ_k` (in place) and `λ_k` — nine vector streams per step
/// against eleven for a separate `λ` pass (three reads and a write) and `ζ` pass (seven). The
/// loops are compiled for the best instruction set of the CPU with a fixed order of
/// operations (results do not depend on the set or on the thread count).
fn lanczos_vjp_relation<T, A>(
    op: &A,
    dec: &Lanczos<T>,
    cot: &LanczosCotangent<'_, T>,
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
    let vjp = !theta_grad.is_empty();
    // λ_k lives in column k mod B of `lambdas`, a ring of B columns: B = the operator's block
    // size (all K for kernels), and the parameter VJP of steps k..k+B runs as one block call
    // once step k (k ≡ 0 mod B) is done — the ring's columns 0..B then pair with the contiguous
    // basis columns k..k+B. Without parameters B = 2 (λ and λ₊).
    let cols = if vjp {
        op.vjp_block_size().max(2).min(kk.max(1))
    } else {
        2.min(kk.max(1))
    };
    let mut lambdas = vec![T::ZERO; n * cols];
    let slot = |k: usize| k % cols;
    let mut zeta = vec![T::ZERO; n];
    let mut w = vec![T::ZERO; n];
    let flush = |k: usize, lambdas: &[T], theta_grad: &mut [T]| {
        if vjp && k.is_multiple_of(cols) {
            let len = cols.min(kk - k);
            op.vjp_params_block(
                &q[k * n..(k + len) * n],
                &lambdas[..len * n],
                len,
                theta_grad,
            );
        }
    };
    if kk == 0 {
        return Ok(Vec::new());
    }

    // Last step (k = K−1): ξ = −r̄, μ = 0, λ = r̄ + ν x_k formed explicitly, y = Aλ.
    let k = kk - 1;
    let xk = x(k);
    let zero;
    let rbar = match cot.residual {
        Some(v) => v,
        None => {
            zero = vec![T::ZERO; n];
            &zero
        }
    };
    let (_, _, nu) = last_step_nu(xk, rbar, abar(k));
    {
        let sk = slot(k);
        let lam = &mut lambdas[sk * n..(sk + 1) * n];
        reduce::for_each_chunk(lam, |o, c| {
            let m = c.len();
            for ((l, r), x) in c.iter_mut().zip(&rbar[o..o + m]).zip(&xk[o..o + m]) {
                *l = *r + nu * *x;
            }
        });
        op.apply(lam, &mut w);
        let lam = &*lam;
        let xprev = if k > 0 { x(k - 1) } else { xk };
        let xbar_k = cot.basis.map(|qb| &qb[k * n..(k + 1) * n]);
        let ak = a[k];
        let y = &w;
        // ζ = −x̄_k − y + a_k λ − ν r
        let dots = reduce::for_each_chunk_sum::<T, 3, _>(&mut zeta, |o, c| {
            let rg = o..o + c.len();
            zeta_chunk(
                c,
                ZetaInputs {
                    xbar: xbar_k.map(|v| &v[rg.clone()]),
                    y: &y[rg.clone()],
                    lam: &lam[rg.clone()],
                    lam_next: &lam[rg.clone()],
                    tail: &r[rg.clone()],
                    xprev: &xprev[rg.clone()],
                    xk: &xk[rg],
                },
                [ak, T::ZERO, nu],
                k > 0,
            )
        });
        check_dots(&dots, k)?;
        flush(k, &lambdas, theta_grad);
        if kk == 1 {
            return Ok(start_vector_cotangent(dec, cot, &zeta, dots[1]));
        }
        let mut dots = dots;
        for k in (0..kk - 1).rev() {
            let inv = inv_subdiagonal(b[k], k)?;
            let [d_lx, d_x1z, d_xz] = dots;
            let (mu, nu) = (bbar(k) - d_lx + inv * d_x1z, abar(k) + inv * d_xz);
            // w = Aζ_{k+1}
            op.apply(&zeta, &mut w);
            let (cur, next) = two_cols(&mut lambdas, n, slot(k), slot(k + 1));
            let co = RelationCoefs {
                inv,
                mu,
                nu,
                a0: a[k],
                a1: a[k + 1],
                bm: if k > 0 { b[k - 1] } else { T::ZERO },
                b0: b[k],
                // A x_{k+1} ends in b_{k+1} x_{k+2}, or in r at the last step.
                c2: if k + 2 < kk { b[k + 1] } else { T::ONE },
            };
            let (xm, x0, x1) = (if k > 0 { x(k - 1) } else { x(k) }, x(k), x(k + 1));
            let x2 = if k + 2 < kk { x(k + 2) } else { r };
            let xbar_k = cot.basis.map(|qb| &qb[k * n..(k + 1) * n]);
            let w_ = &w;
            let has_prev = k > 0;
            dots = reduce::for_each_chunk2_sum::<T, 3, _>(&mut zeta, cur, |o, zc, lc| {
                let rg = o..o + zc.len();
                let v = RelationInputs {
                    w: &w_[rg.clone()],
                    lam_next: &next[rg.clone()],
                    xm: &xm[rg.clone()],
                    x0: &x0[rg.clone()],
                    x1: &x1[rg.clone()],
                    x2: &x2[rg.clone()],
                };
                let xb = xbar_k.map(|xb| &xb[rg]);
                let acc = with_best_isa(
                    #[inline(always)]
                    || relation_loop(zc, lc, &v, xb, &co, has_prev),
                );
                let sum =
                    |a: &[T; ZL]| ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
                [sum(&acc[0]), sum(&acc[1]), sum(&acc[2])]
            });
            check_dots(&dots, k)?;
            flush(k, &lambdas, theta_grad);
        }
        Ok(start_vector_cotangent(dec, cot, &zeta, dots[1]))
    }
}

/// The scalars of one step of [`lanczos_vjp_relation`].
struct RelationCoefs<T> {
    /// `1/b_k`.
    inv: T,
    mu: T,
    nu: T,
    /// `a_k`, `a_{k+1}`.
    a0: T,
    a1: T,
    /// `b_{k−1}` (0 at k = 0), `b_k`, and the coefficient of `x_{k+2}` (or of `r`) in `A x_{k+1}`.
    bm: T,
    b0: T,
    c2: T,
}

/// The chunk slices one step of [`lanczos_vjp_relation`] reads besides `ζ_{k+1}` and `x̄_k`.
struct RelationInputs<'a, T> {
    /// `Aζ_{k+1}`.
    w: &'a [T],
    /// `λ_{k+1}`.
    lam_next: &'a [T],
    /// `x_{k−1}` (any vector at k = 0, where its coefficient is 0), `x_k`, `x_{k+1}`, and
    /// `x_{k+2}` (or `r`).
    xm: &'a [T],
    x0: &'a [T],
    x1: &'a [T],
    x2: &'a [T],
}

/// One chunk of a step of [`lanczos_vjp_relation`]: `z` holds `ζ_{k+1}` and receives `ζ_k`,
/// `lam` receives `λ_k`; returns the lanes of `[λ_kᵀx_{k−1}, x_kᵀζ_k, x_{k−1}ᵀζ_k]` (at k = 0:
/// `[·, x_0ᵀζ_0, ζ_0ᵀζ_0]`), [`ZL`] independent accumulators each. Blocks of [`ZL`] entries,
/// each formula one loop over the block's lanes (which the compiler turns into vector
/// instructions); the tail goes through the same code with zero padding.
#[inline(always)]
fn relation_loop<T: Scalar>(
    z: &mut [T],
    lam: &mut [T],
    v: &RelationInputs<'_, T>,
    xbar: Option<&[T]>,
    c: &RelationCoefs<T>,
    has_prev: bool,
) -> [[T; ZL]; 3] {
    let m = z.len();
    let mut acc = [[T::ZERO; ZL]; 3];
    let full = m / ZL * ZL;
    for o in (0..full).step_by(ZL) {
        let r = o..o + ZL;
        let ld = |s: &[T]| -> [T; ZL] { *<&[T; ZL]>::try_from(&s[r.clone()]).expect("a block") };
        let xb = match xbar {
            Some(xb) => ld(xb),
            None => [T::ZERO; ZL],
        };
        let (lv, zn) = relation_block(
            c,
            &mut acc,
            has_prev,
            ZL,
            ld(z),
            ld(v.w),
            ld(v.lam_next),
            ld(v.xm),
            ld(v.x0),
            ld(v.x1),
            ld(v.x2),
            xb,
        );
        *<&mut [T; ZL]>::try_from(&mut z[r.clone()]).expect("a block") = zn;
        *<&mut [T; ZL]>::try_from(&mut lam[r]).expect("a block") = lv;
    }
    if full < m {
        let len = m - full;
        let ld = |s: &[T]| -> [T; ZL] {
            let mut a = [T::ZERO; ZL];
            a[..len].copy_from_slice(&s[full..m]);
            a
        };
        let xb = match xbar {
            Some(xb) => ld(xb),
            None => [T::ZERO; ZL],
        };
        let (lv, zn) = relation_block(
            c,
            &mut acc,
            has_prev,
            len,
            ld(z),
            ld(v.w),
            ld(v.lam_next),
            ld(v.xm),
            ld(v.x0),
            ld(v.x1),
            ld(v.x2),
            xb,
        );
        z[full..].copy_from_slice(&zn[..len]);
        lam[full..m].copy_from_slice(&lv[..len]);
    }
    acc
}

/// One block of [`ZL`] lanes of [`relation_loop`] (`len` of them real: a tail is zero-padded
/// and its padding lanes are zeroed before they reach the sums): returns `(λ_k, ζ_k)`.
#[inline(always)]
fn relation_block<T: Scalar>(
    c: &RelationCoefs<T>,
    acc: &mut [[T; ZL]; 3],
    has_prev: bool,
    len: usize,
    zc: [T; ZL],
    wc: [T; ZL],
    pc: [T; ZL],
    mc: [T; ZL],
    c0: [T; ZL],
    c1: [T; ZL],
    cx2: [T; ZL],
    xb: [T; ZL],
) -> ([T; ZL], [T; ZL]) {
    let RelationCoefs {
        inv,
        mu,
        nu,
        a0,
        a1,
        bm,
        b0,
        c2,
    } = *c;
    let b0nu = b0 * nu;
    let mut lv = [T::ZERO; ZL];
    for l in 0..ZL {
        lv[l] = -inv * zc[l] + mu * c1[l] + nu * c0[l];
    }
    let mut y = [T::ZERO; ZL];
    for l in 0..ZL {
        let ax0 = bm * mc[l] + a0 * c0[l] + b0 * c1[l];
        let ax1 = b0 * c0[l] + a1 * c1[l] + c2 * cx2[l];
        y[l] = -inv * wc[l] + mu * ax1 + nu * ax0;
    }
    let mut zn = [T::ZERO; ZL];
    for l in 0..ZL {
        zn[l] = -xb[l] - y[l] + a0 * lv[l] + b0 * pc[l] - b0nu * c1[l];
    }
    if len < ZL {
        for l in len..ZL {
            zn[l] = T::ZERO;
            lv[l] = T::ZERO;
        }
    }
    for l in 0..ZL {
        acc[0][l] += lv[l] * mc[l];
        acc[1][l] += c0[l] * zn[l];
        acc[2][l] += if has_prev { mc[l] } else { zn[l] } * zn[l];
    }
    (lv, zn)
}

/// `(0, 0, ν)` of the last step: `ν = ā_{K−1} − x_{K−1}ᵀ r̄`.
fn last_step_nu<T: Scalar>(xk: &[T], rbar: &[T], abar: T) -> (T, T, T) {
    let [d] = reduce::sum_chunks::<T, 1, _>(xk.len(), |rg| {
        [rg.clone().fold(T::ZERO, |s, i| s - xk[i] * rbar[i])]
    });
    (T::ZERO, T::ZERO, abar + d)
}

/// `1/b_k`, or the typed error for a vanishing off-diagonal.
fn inv_subdiagonal<T: Scalar>(bk: T, step: usize) -> Result<T, AdjointError> {
    if bk == T::ZERO || !(T::ONE / bk).is_finite() {
        return Err(AdjointError::VanishingSubdiagonal {
            step,
            value: bk.to_f64(),
        });
    }
    Ok(T::ONE / bk)
}

fn check_dots<T: Scalar>(dots: &[T; 3], step: usize) -> Result<(), AdjointError> {
    if dots.iter().all(|d| d.is_finite()) {
        Ok(())
    } else {
        Err(AdjointError::NonFinite { step })
    }
}

/// `v̄ = ((x_0ᵀ ζ) x_0 − ζ) / ‖v‖ − c̄ c² x_0` with `‖v‖ = 1/c`, given `p = x_0ᵀζ`.
fn start_vector_cotangent<T: Scalar>(
    dec: &Lanczos<T>,
    cot: &LanczosCotangent<'_, T>,
    zeta: &[T],
    p: T,
) -> Vec<T> {
    let c = dec.inv_norm();
    let x0 = &dec.basis()[..dec.dim()];
    let coeff_x0 = p * c - cot.inv_norm * c * c;
    zeta.iter()
        .zip(x0)
        .map(|(z, xv)| coeff_x0 * *xv - *z * c)
        .collect()
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
