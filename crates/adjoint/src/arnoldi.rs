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
//!
//! What keeps the backward pass below the forward pass's basis traffic (the forward reads `Q`
//! three times per step for classical Gram–Schmidt with reorthogonalisation), all exact to
//! rounding:
//!
//! * With the projection on, `uᵀq_j = λᵀAq_j = (H[:, j])ᵀ(Qᵀλ)` by the Arnoldi relation
//!   `AQ = QH + r e_Kᵀ` for `j < K−1`, and `Q_Jᵀλ` of the projected λ is known from the Gram
//!   matrix `M = QᵀQ` (one GEMM up front): `Γ[k, :]` needs no pass over the basis. (The first
//!   step, `k = K−1`, and the unprojected recursion take the pass.)
//! * Terms of `Q (Γ + Γᵀ)[k, :]` below `eps/(2K)` of the largest `|H[k,j]|·‖Λ[:, j]‖∞` are
//!   skipped (together they are below the rounding error of the sum). For a symmetric operator
//!   (fully reorthogonalised Lanczos) `Γ + Γᵀ` is banded up to rounding, so a step reads a few
//!   columns of `Q` for it instead of all `K`.
//! * `Σ_j H[k,j] Λ[:, j]` goes by look-ahead blocks of `B ≈ √(K−k)` steps: the columns beyond
//!   the block enter through one product `Λ[:, k0+1..K] W` made when the block starts, and a
//!   step reads only the columns inside its block — a 1/B share of a pass over `Λ` per step
//!   instead of a whole one. (All entries of `H` are kept: for a symmetric operator the ones
//!   beyond the band are rounding noise of the forward's Gram–Schmidt, but they are what the
//!   forward computed.)
//! * For a symmetric operator the projection is applied inside the update pass that reads
//!   `Q_{≤k}` for the next step's `Q_Jᵀλ` anyway, and the matvec runs on the unprojected `λ`:
//!   `A(λ + Q_J c) = Aλ + Q H[:, J] c (+ r c_{K−1})` by the Arnoldi relation. One pass over the
//!   basis per step remains (with per-step parameter VJPs, which need the projected `λ` at the
//!   matvec, and for general operators: two).
//! * The update pass is compiled for the best instruction set of the CPU (a fixed order of
//!   operations: the same results on every set and thread count).

use crate::{check_len, AdjointError, AdjointParams, ParamAccumulation};
use gradmat_krylov::arnoldi::Arnoldi;
use gradmat_krylov::reduce;
use gradmat_operators::vector::{dot_seq, with_best_isa};
use gradmat_operators::{AdjointOperator, ParamVjp, Scalar};
use rayon::prelude::*;

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
/// Costs one `Aᵀλ` per step plus the parameter VJPs (fused into block calls by default), one
/// read of the first `k + 2` basis columns per step for the projection and one for the next
/// step's `Q_Jᵀλ`, a share of a pass over the stored adjoint vectors, and one GEMM for the
/// Gram matrix `QᵀQ` (see the module notes); stores the adjoint vectors `Λ` (`N×K`), `Γ` and
/// `QᵀQ` (`K×K`) and a look-ahead product (`N×B`, `B ≤ 16`). The re-projection step is on by
/// default (with or without reorthogonalisation in the forward pass; see the source for the
/// measurement behind this choice).
///
/// # Errors
/// Cotangent lengths that do not match, an operator of the wrong size, a vanishing sub-diagonal
/// of `H` (with the step), or non-finite values.
///
/// A `v̄` or `θ̄` that overflows (huge cotangents or operator entries) is reported as
/// [`AdjointError::NonFinite`], never returned.
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
    let vbar = arnoldi_vjp_unchecked(op, dec, cot, params, theta_grad)?;
    // Found by the `arnoldi` fuzz target: overflow in the backward sweep gave ±∞.
    if vbar.iter().chain(theta_grad.iter()).any(|x| !x.is_finite()) {
        return Err(AdjointError::NonFinite { step: 0 });
    }
    Ok(vbar)
}

fn arnoldi_vjp_unchecked<T, A>(
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
    let project = params.project;
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
        false,
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
    symmetric: bool,
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
    let mut coef = vec![T::ZERO; kk];
    let mut hrow = vec![T::ZERO; kk];
    // Projection coefficients of the step (λ += Q_J pcoef) and, when it is folded into the
    // update pass, the coefficients of A Q_J pcoef = Q (H pcoef) (+ r pcoef_{K−1}).
    let mut pcoef = vec![T::ZERO; kk];
    let mut ucoef = vec![T::ZERO; kk];
    let online = acc == ParamAccumulation::Online && !theta_grad.is_empty();
    let mut pending: Option<Vec<T>> = None;
    // With the projection on, Q_Jᵀλ of the projected λ is known exactly from the Gram matrix
    // M = QᵀQ, and then Q_{≤k}ᵀu = Q_{≤k}ᵀAᵀλ = (AQ_{≤k})ᵀλ = H[:, ≤k]ᵀ(Q_{k+1}ᵀλ) by the Arnoldi
    // relation AQ = QH + r e_Kᵀ (for k < K−1): no pass over the basis for it.
    let gram_m = if project && kk > 1 {
        reduce::gram(q, n, kk)
    } else {
        Vec::new()
    };
    let mut qt_lam = vec![T::ZERO; kk];
    // ‖Λ[:, j]‖∞ of the stored adjoint vectors.
    let mut lam_max = vec![T::ZERO; kk];
    // Look-ahead block of the Λ terms: steps k0 down to k0 − look + 1, and the product of the
    // columns beyond it (N × look, column k0 − k for step k).
    let (mut k0, mut look, mut ahead) = (usize::MAX, 2usize, Vec::<T>::new());
    let mut has_ahead = false;
    for k in (0..kk).rev() {
        // For a symmetric operator (A = Aᵀ, fully reorthogonalised Lanczos) the projection
        // λ += Q_J c is not applied before the matvec but inside the update pass below, which
        // reads the same columns of Q anyway (for the next step's Q_Jᵀλ): the matvec runs on the
        // unprojected λ and gets A Q_J c = Q H[:, J] c (+ r c_{K−1}) from the Arnoldi relation
        // — one pass over the basis per step instead of two. (Not for per-step parameter VJPs,
        // which need the projected λ at the matvec, nor at the first step.)
        let fold = project && symmetric && !online && k + 1 < kk;
        let mut jn_fold = 0;
        if project {
            let jn = (k + 2).min(kk);
            match pending.take() {
                Some(t) => tmp_k[..jn].copy_from_slice(&t[..jn]),
                None => reduce::basis_t_vec(q, n, jn, &lambda, &mut tmp_k),
            }
            for j in 0..jn {
                pcoef[j] = hb(j, k) - tmp_k[j];
            }
            if fold {
                jn_fold = jn;
            } else {
                reduce::basis_vec_acc(T::ONE, q, n, jn, &pcoef, &mut lambda);
            }
            if k + 1 < kk {
                // Q_Jᵀ(λ + Q_J c) = Q_Jᵀλ + M_JJ c.
                for j in 0..jn {
                    let mut s = tmp_k[j];
                    for (i, ci) in pcoef[..jn].iter().enumerate() {
                        s += gram_m[j + i * kk] * *ci;
                    }
                    qt_lam[j] = s;
                }
            }
        }
        let qk = &q[k * n..(k + 1) * n];
        match (online, fused_step) {
            (true, Some(step)) => step(&lambda, &mut u, qk, theta_grad),
            (true, None) => {
                apply_t(&lambda, &mut u);
                pvjp(&lambda, qk, 1, theta_grad);
            }
            (false, _) => apply_t(&lambda, &mut u),
        }
        if project && k + 1 < kk {
            // (Qᵀu)_j = Σ_{i ≤ j+1} H[i, j] (Qᵀλ)_i for j ≤ k.
            for j in 0..=k {
                let mut s = T::ZERO;
                for (i, t) in qt_lam.iter().enumerate().take(j + 2) {
                    s += hh(i, j) * *t;
                }
                tmp_k[j] = s;
            }
        } else {
            reduce::basis_t_vec(q, n, k + 1, &u, &mut tmp_k);
        }
        for j in 0..=k {
            let w = if j == k { half } else { T::ONE };
            gam[k + j * kk] = w * (g[k + j * kk] - tmp_k[j]);
        }
        // λ = (ξ + u − H[k,k] λ − Σ_{j>k} H[k,j] Λ[:, j]) / β,  ξ = Q̄[:,k] + γ_k r + Q (Γ + Γᵀ)[k, :]
        let beta = if k > 0 { hh(k, k - 1) } else { T::ONE };
        if beta == T::ZERO || !beta.is_finite() || !(T::ONE / beta).is_finite() {
            return Err(AdjointError::VanishingSubdiagonal {
                step: k,
                value: beta.to_f64(),
            });
        }
        for j in 0..kk {
            coef[j] = gam[k + j * kk] + gam[j + k * kk];
        }
        let nh = kk - k - 1;
        for j in k + 1..kk {
            hrow[j - (k + 1)] = -hh(k, j);
        }
        // Basis terms below one rounding unit of the largest known term are skipped: every
        // skipped term is at most eps/(2K) of that term, so all of them together change λ by
        // less than the rounding error of the sum they are dropped from. (With a symmetric
        // operator — fully reorthogonalised Lanczos — Γ + Γᵀ is banded up to rounding, so this
        // leaves a few columns of Q per step instead of all K.) The scale is the largest
        // |H[k,j]|·‖Λ[:,j]‖∞; the basis terms are bounded by |coef_j| since ‖q_j‖∞ ≤ 1.
        let scale = (0..nh)
            .map(|i| hrow[i].abs() * lam_max[k + 1 + i])
            .fold(T::ZERO, |a, b| if b > a { b } else { a });
        let cut = scale * T::EPS / T::from_f64(2.0 * kk as f64);
        for c in coef[..kk].iter_mut() {
            if c.abs() <= cut {
                *c = T::ZERO;
            }
        }
        // The Λ terms −Σ_{j>k} H[k,j] Λ[:, j] go in blocks of steps k0, k0−1, …, k0−B+1: the
        // columns beyond the block (j > k0, all stored when the block starts) enter through one
        // product Λ[:, k0+1..K] W for the whole block, made when it starts (`ahead`), and only
        // the columns k+1..=k0 inside the block (and the sub-diagonal one) are read at the step.
        // A step then reads ~B/2 columns of Λ plus a 1/B share of the product's pass instead of
        // all K − k − 1 columns — for a symmetric operator the entries beyond the band are
        // rounding noise of the forward pass's Gram–Schmidt, but they are entries of the H that
        // was computed, so they are all kept (only the order of the sum changes).
        if k + 1 < kk && (k0 == usize::MAX || k + look <= k0) {
            k0 = k;
            look = (((kk - k) as f64).sqrt().round() as usize).clamp(2, 16);
            let m = kk - 1 - k0;
            let mut wmat = vec![T::ZERO; m * look];
            for c in 0..look.min(k0 + 1) {
                let kp = k0 - c;
                for j in (k0 + 1).max(kp + 2)..kk {
                    wmat[(j - k0 - 1) + c * m] = -hh(kp, j);
                }
            }
            has_ahead = m > 0 && wmat.iter().any(|w| *w != T::ZERO);
            if has_ahead {
                lookahead_product(&big_lambda[(k0 + 1) * n..], n, m, &wmat, look, &mut ahead);
            }
        }
        let (nh_step, rcol) = if k + 1 < kk {
            let rcol = has_ahead.then_some((&ahead[..], look, k0 - k));
            ((k0 - k).max(1).min(nh), rcol)
        } else {
            (0, None)
        };
        // Folded projection: u += Q_{≤jn} (H[:, J] c) (+ r c_{K−1} when J holds column K−1).
        let (mut nu_fold, mut r_fold) = (0, T::ZERO);
        if jn_fold > 0 {
            nu_fold = (jn_fold + 1).min(kk);
            for (i, uc) in ucoef[..nu_fold].iter_mut().enumerate() {
                let mut s = T::ZERO;
                for (j, cj) in pcoef[..jn_fold].iter().enumerate() {
                    if i <= j + 1 {
                        s += hh(i, j) * *cj;
                    }
                }
                *uc = s;
            }
            if jn_fold == kk {
                r_fold = pcoef[kk - 1];
            }
        }
        // The next step's projection needs Q_Jᵀλ over J = 0..=min(k, K−1): accumulated in the
        // same pass over rows that produces λ (one pass over Q, Λ and the vectors per step).
        let jn_next = if project && k > 0 { (k + 1).min(kk) } else { 0 };
        let (lam_lo, lam_hi) = big_lambda.split_at_mut((k + 1) * n);
        let (t, finite, stored_max) = fused_update(FusedUpdate {
            n,
            q,
            coef: &coef[..kk],
            qbar_k: qbar.map(|qb| &qb[k * n..(k + 1) * n]),
            gamma_k: gamma[k],
            r,
            u: &mut u,
            fold: (jn_fold > 0).then(|| FoldedProjection {
                coef: &pcoef[..jn_fold],
                ucoef: &ucoef[..nu_fold],
                rcoef: r_fold,
            }),
            hkk: hh(k, k),
            lam_next: &lam_hi[..nh_step * n],
            hrow: &hrow[..nh_step],
            ahead: rcol,
            inv_beta: T::ONE / beta,
            jn_next,
            lambda: &mut lambda,
            lam_k: &mut lam_lo[k * n..],
        });
        if !finite {
            return Err(AdjointError::NonFinite { step: k });
        }
        lam_max[k] = stored_max;
        pending = (jn_next > 0).then_some(t);
    }
    if acc == ParamAccumulation::Fused && !theta_grad.is_empty() {
        pvjp(&big_lambda, &q[..n * kk], kk, theta_grad);
    }
    reduce::scale(d.c, &mut lambda);
    Ok(lambda)
}

/// Row-chunk length of [`fused_update`] and [`lookahead_product`].
const ROWS: usize = 2048;

/// Rows of the blocks inside a chunk of [`fused_update`] with a folded projection: the block's
/// columns of a basis of K ≤ 128 vectors (256 KB) stay in the L2 cache between the update and
/// the dot products.
const SUB: usize = 256;

/// `out = L W` for the column-major `n × m` block `L` (stride `n`) and the column-major
/// `m × look` matrix `W`, laid out by row chunks of [`ROWS`]: the chunk of rows `r0..r0+len`
/// holds its `look` columns one after the other from `out[r0·look]` on (so that
/// [`fused_update`] reads column `c` of its chunk at `out[r0·look + c·len..]`). One GEMM per
/// chunk (in parallel for large products, each entry computed by exactly one chunk:
/// deterministic for any thread count); `out` is reused and only grown.
fn lookahead_product<T: Scalar>(
    lam: &[T],
    n: usize,
    m: usize,
    w: &[T],
    look: usize,
    out: &mut Vec<T>,
) {
    use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
    if out.len() < n * look {
        out.resize(n * look, T::ZERO);
    }
    let wm = MatRef::from_column_major_slice(&w[..m * look], m, look);
    let chunk = |(c, o): (usize, &mut [T])| {
        let r0 = c * ROWS;
        let len = o.len() / look;
        let lc = MatRef::from_column_major_slice_with_stride(&lam[r0..], len, m, n);
        let om = MatMut::from_column_major_slice_mut(o, len, look);
        matmul(om, Accum::Replace, lc, wm, T::ONE, Par::Seq);
    };
    let out = &mut out[..n * look];
    if n * m * look >= 131_072 {
        out.par_chunks_mut(ROWS * look).enumerate().for_each(chunk);
    } else {
        out.chunks_mut(ROWS * look).enumerate().for_each(chunk);
    }
}

/// A projection `λ += Q_J c` folded into [`fused_update`], with the matching correction
/// `u += Q ucoef + rcoef·r` of `u = Aλ` (symmetric `A`).
struct FoldedProjection<'a, T> {
    coef: &'a [T],
    ucoef: &'a [T],
    rcoef: T,
}

/// One row chunk of [`fused_update`]: its index and its parts of `λ`, `Λ[:, k]` and `u`.
type RowChunk<'a, T> = (usize, ((&'a mut [T], &'a mut [T]), &'a mut [T]));

/// Inputs of [`fused_update`].
struct FusedUpdate<'a, T> {
    n: usize,
    q: &'a [T],
    /// `(Γ + Γᵀ)[k, :]`, length K.
    coef: &'a [T],
    qbar_k: Option<&'a [T]>,
    gamma_k: T,
    r: &'a [T],
    /// `Aᵀλ` (of the unprojected λ when `fold` is given; corrected in place).
    u: &'a mut [T],
    /// The projection applied in this pass, if any.
    fold: Option<FoldedProjection<'a, T>>,
    hkk: T,
    /// `Λ[:, k+1..K]`.
    lam_next: &'a [T],
    /// `−H[k, k+1..]` for the columns of `lam_next`.
    hrow: &'a [T],
    /// `−Σ_j H[k,j] Λ[:, j]` over the columns beyond `lam_next`, if any: column `c` of the
    /// [`lookahead_product`] layout with `look` columns, as `(buffer, look, c)`.
    ahead: Option<(&'a [T], usize, usize)>,
    inv_beta: T,
    /// Number of leading basis columns whose products with the new λ are wanted.
    jn_next: usize,
    lambda: &'a mut [T],
    lam_k: &'a mut [T],
}

/// One pass over rows: stores the current λ in `Λ[:, k]`, overwrites λ with
/// `(Q̄[:,k] + γ_k r + Q·coef + u − H[k,k] λ − Λ[:,k+1..]·hrow) / β`, and returns
/// `Q[:, ..jn_next]ᵀ λ_new` (chunk partials added in order: deterministic for any thread count)
/// whether every new entry is finite, and `‖Λ[:, k]‖∞` of the stored λ. Zero coefficients skip
/// their columns.
fn fused_update<T: Scalar>(a: FusedUpdate<'_, T>) -> (Vec<T>, bool, T) {
    let FusedUpdate {
        n,
        q,
        coef,
        qbar_k,
        gamma_k,
        r,
        u,
        fold,
        hkk,
        lam_next,
        hrow,
        ahead,
        inv_beta,
        jn_next,
        lambda,
        lam_k,
    } = a;
    let kk = coef.len();
    let fold = &fold;
    let body = |(c, ((lc, lk), uc)): RowChunk<'_, T>| -> (Vec<T>, bool, T) {
        // Compiled for the best instruction set (fixed order of operations: same bits on all).
        with_best_isa(
            #[inline(always)]
            move || {
                let r0 = c * ROWS;
                let m = lc.len();
                let mut stored_max = T::ZERO;
                let mut finite = true;
                let mut t = vec![T::ZERO; jn_next];
                // Blocks of SUB rows: each block's columns of Q are read once from memory for
                // the update (the folded projection of λ and u in one sweep) and again, from
                // the cache, for the dot products with the new λ.
                // (Only with the folded projection, whose columns are read twice; for the
                // non-symmetric update, short row blocks over all K columns measured slower.)
                let sub = if fold.is_some() { SUB } else { m.max(1) };
                for s0 in (0..m).step_by(sub) {
                    let s1 = (s0 + sub).min(m);
                    let (a0, a1) = (r0 + s0, r0 + s1);
                    let rows = a0..a1;
                    let lc = &mut lc[s0..s1];
                    let lk = &mut lk[s0..s1];
                    let uc = &mut uc[s0..s1];
                    if let Some(f) = fold {
                        // λ += Q_J c and u += Q ucoef (each in the column order of
                        // `basis_vec_acc`), one read of each column; then u += rcoef·r.
                        let (nl, nu) = (f.coef.len(), f.ucoef.len());
                        for j in 0..nl.max(nu) {
                            let col = &q[j * n + a0..j * n + a1];
                            if j < nl {
                                let cj = f.coef[j];
                                lc.iter_mut().zip(col).for_each(|(l, x)| *l += cj * *x);
                            }
                            if j < nu {
                                let ci = f.ucoef[j];
                                uc.iter_mut().zip(col).for_each(|(v, x)| *v += ci * *x);
                            }
                        }
                        if f.rcoef != T::ZERO {
                            let rc = f.rcoef;
                            uc.iter_mut()
                                .zip(&r[rows.clone()])
                                .for_each(|(v, x)| *v += rc * *x);
                        }
                    }
                    let uc = &*uc;
                    for (d, l) in lk.iter_mut().zip(lc.iter()) {
                        *d = *l;
                        let a = l.abs();
                        stored_max = if a > stored_max { a } else { stored_max };
                    }
                    match qbar_k {
                        Some(qb) => {
                            for (((l, qv), rv), uv) in lc
                                .iter_mut()
                                .zip(&qb[rows.clone()])
                                .zip(&r[rows.clone()])
                                .zip(uc)
                            {
                                *l = *qv + gamma_k * *rv + *uv - hkk * *l;
                            }
                        }
                        None => {
                            for ((l, rv), uv) in lc.iter_mut().zip(&r[rows.clone()]).zip(uc) {
                                *l = gamma_k * *rv + *uv - hkk * *l;
                            }
                        }
                    }
                    for (j, &cj) in coef.iter().enumerate().take(kk) {
                        if cj != T::ZERO {
                            let col = &q[j * n + a0..j * n + a1];
                            lc.iter_mut().zip(col).for_each(|(l, x)| *l += cj * *x);
                        }
                    }
                    for (j, &hj) in hrow.iter().enumerate() {
                        if hj != T::ZERO {
                            let col = &lam_next[j * n + a0..j * n + a1];
                            lc.iter_mut().zip(col).for_each(|(l, x)| *l += hj * *x);
                        }
                    }
                    if let Some((a, look, col)) = ahead {
                        let off = r0 * look + col * m + s0;
                        lc.iter_mut()
                            .zip(&a[off..off + (s1 - s0)])
                            .for_each(|(l, x)| *l += *x);
                    }
                    for l in lc.iter_mut() {
                        *l *= inv_beta;
                        finite &= l.is_finite();
                    }
                    // Multi-accumulator dot products (a single running sum would be latency
                    // bound), block partials added in block order.
                    for (j, tj) in t.iter_mut().enumerate() {
                        *tj += dot_seq(&q[j * n + a0..j * n + a1], lc);
                    }
                }
                (t, finite, stored_max)
            },
        )
    };
    let lam_k = &mut lam_k[..n];
    let parts: Vec<(Vec<T>, bool, T)> = if n * (kk + hrow.len()) >= 131_072 {
        lambda
            .par_chunks_mut(ROWS)
            .zip(lam_k.par_chunks_mut(ROWS))
            .zip(u.par_chunks_mut(ROWS))
            .enumerate()
            .map(body)
            .collect()
    } else {
        lambda
            .chunks_mut(ROWS)
            .zip(lam_k.chunks_mut(ROWS))
            .zip(u.chunks_mut(ROWS))
            .enumerate()
            .map(body)
            .collect()
    };
    let mut finite = true;
    let mut stored_max = T::ZERO;
    let mut tparts = Vec::with_capacity(parts.len());
    for (p, f, m) in parts {
        finite &= f;
        stored_max = if m > stored_max { m } else { stored_max };
        tparts.push(p);
    }
    // Chunk partials added in order (and, distributed, the flags combined over ranks: one
    // message).
    let mut flags = [f64::from(u8::from(!finite)), stored_max.to_f64()];
    let t = reduce::fold_chunk_partials(ROWS, jn_next, &tparts, &mut flags);
    (t, flags[0] == 0.0, T::from_f64(flags[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| (((i + seed) * 7919 + seed * 104_729) % 2003) as f64 / 1001.5 - 1.0)
            .collect()
    }

    #[test]
    fn chunk_dot_is_vector_dot_bit_for_bit() {
        for len in [0usize, 5, 8, 2048, 2047] {
            let (x, y) = (vals(len, 1), vals(len, 2));
            assert_eq!(
                dot_seq(&x, &y).to_bits(),
                gradmat_operators::vector::dot(&x, &y).to_bits()
            );
        }
    }

    #[test]
    fn lookahead_product_is_the_product_in_row_chunk_layout() {
        // Ragged last chunk; below and above the parallel threshold.
        for (n, m, look) in [(37usize, 3usize, 2usize), (3 * ROWS + 17, 11, 5)] {
            let l = vals(n * m, 3);
            let w = vals(m * look, 4);
            let mut out = vals(7, 5); // reused buffer: grown, stale entries overwritten
            lookahead_product(&l, n, m, &w, look, &mut out);
            for r0 in (0..n).step_by(ROWS) {
                let len = ROWS.min(n - r0);
                for c in 0..look {
                    for i in 0..len {
                        let exact: f64 = (0..m).map(|j| l[r0 + i + j * n] * w[j + c * m]).sum();
                        let got = out[r0 * look + c * len + i];
                        assert!((got - exact).abs() <= 1e-14 * m as f64, "{got} vs {exact}");
                    }
                }
            }
        }
    }
}
