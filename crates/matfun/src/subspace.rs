//! Exact gradients at an invariant Krylov subspace.
//!
//! When a Krylov decomposition `A Q = Q S + r e_{K-1}ᵀ` (`S = T` for Lanczos, `H` for Arnoldi)
//! is *exact* — it met an invariant subspace (breakdown), or it spans the whole space (`K = N`)
//! — the function the user asked for is the function itself, `vᵀf(A)v` or `f(A)v`, and its
//! gradient is not the derivative of the truncated algorithm: a generic perturbation of `A`
//! leaves the invariant subspace, and the algorithm asked for would then run past it. For a
//! symmetric `A` the whole gradient of `ρ = vᵀf(A)v` lies in the Krylov space,
//! `∇_A ρ = Z (∂ρ/∂B) Zᵀ` with `Z` an orthonormal basis of `span Q` and `B = ZᵀAZ`, and
//! `∂ρ/∂B` comes from the dense reverse rule of the small `f(B)` (Daleckii–Krein). No
//! division by the small sub-diagonals of a (near-)breakdown is needed, so the result is
//! accurate to rounding where the adjoint recursion of the algorithm is not.
//!
//! # The restriction (Rayleigh–Ritz on the Krylov basis)
//!
//! Plain three-term Lanczos loses orthogonality, so `Q` itself is not used as `Z`. With the
//! Gram matrix `M = QᵀQ = V diag(d) Vᵀ`, the columns with `d_i > √ε · max d` give
//! `Z = Q C`, `C = V_r diag(d_r)^{-1/2}` (orthonormal to rounding; numerically dependent ghost
//! copies are dropped), and the Krylov relation gives the restriction without a matrix–vector
//! product: `ZᵀAZ = Cᵀ (M S + (Qᵀr) e_{K-1}ᵀ) C`, `Zᵀv = Cᵀ M e₀ / c` (`c = 1/‖v‖`). The
//! invariance residual `‖AZ − ZB‖_F` is computed from the same small quantities
//! (`AZ − ZB = Q (S C − C B) + r (Cᵀe_{K-1})ᵀ`). With full reorthogonalisation `M = I` to
//! rounding and this is `Z = Q`, `B = S`.
//!
//! # What is exact where
//!
//! * `vᵀf(A)v` for a self-adjoint `A` (Lanczos, plain or reorthogonalised): always.
//! * `f(A)v` for a self-adjoint `A` and a cotangent `w̄`: if `w̄` lies in the Krylov space (or
//!   `K = N`), directly; otherwise the gradient needs directions the Krylov space never saw.
//!   If the request was the exact function (depth `N`), the decomposition is **continued**
//!   from the part of `w̄` outside the space (Lanczos with full reorthogonalisation on
//!   `(I − ZZᵀ) A (I − ZZᵀ)`, until it too meets an invariant subspace; at most `N − rank`
//!   more products), and the gradient is taken on the union. For a depth `K < N` that broke
//!   down early, the depth-`K` approximation is not differentiable in the directions that
//!   leave the subspace (its directional derivative depends on the direction through the new
//!   Ritz values), so a typed [`MatfunError::GradientUnavailable`] is returned.
//! * Arnoldi (`exp(tA)`, any square `A`): at `K = N` always. At a breakdown with `K < N` the
//!   in-span gradient is exact only if the subspace also reduces `Aᵀ` (`AᵀZ = ZBᵀ`, checked
//!   with one block of `rank` transposed products); for a non-normal operator it is not, and
//!   [`MatfunError::GradientUnavailable`] is returned.

use crate::dense::{expm_scaled, expm_scaled_pullback, MatrixFunction, SymmetricMatrixFunction};
use crate::krylov::Gradient;
use crate::MatfunError;
use faer::Mat;
use gradmat_adjoint::subspace_vjp;
use gradmat_krylov::arnoldi::Reorthogonalize;
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_krylov::reduce;
use gradmat_operators::{AdjointOperator, Operator, ParamVjp, Scalar, SelfAdjoint};

/// The relative invariance threshold of a restriction: residuals `≤ τ ‖B‖_F` with
/// `τ = max(1000·√N·ε, 10·breakdown_tol)`, above the `O(√N·ε‖A‖)` Ritz residuals of a fully
/// reorthogonalised run; a breakdown accepted by the Krylov iteration with a larger tolerance is
/// accepted here too. After plain Lanczos has lost orthogonality (a run to `K = N`) the Ritz
/// vectors recovered from the Gram matrix are often accurate only to `1e4·√N·ε‖A‖`; such a
/// restriction is rejected and the decomposition recomputed with full reorthogonalisation.
fn invariance_tol<T: Scalar>(n: usize, breakdown_tol: Option<f64>) -> f64 {
    let n = gradmat_krylov::distributed::global_dim(n);
    let base = 1e3 * (n.max(1) as f64).sqrt() * T::EPS.to_f64();
    base.max(10.0 * breakdown_tol.unwrap_or(0.0))
}

/// `Z = Q C` (orthonormal), `B = ZᵀAZ` and `Zᵀv` of a Krylov decomposition (module docs).
#[derive(Debug, Clone)]
pub(crate) struct Restriction {
    n: usize,
    k: usize,
    /// `C`, `K × rank`.
    coef: Mat<f64>,
    /// `B = ZᵀAZ`, `rank × rank` (diagonal, the converged Ritz values, for a self-adjoint
    /// operator).
    small: Mat<f64>,
    /// `Zᵀv`.
    start: Vec<f64>,
    /// `‖B‖_F`.
    scale: f64,
    /// `B` is diagonal (the Ritz values, ascending): self-adjoint operators.
    diagonal: bool,
}

impl Restriction {
    /// The invariant restriction of the decomposition `A Q = Q S + r e_{K-1}ᵀ`, `Q e₀ = c v`
    /// (`Q` the column-major `n×k` basis, `S` the column-major `k×k` small matrix), or `None`
    /// if the span is not invariant to the threshold of [`invariance_tol`].
    ///
    /// For a self-adjoint operator the restriction keeps the Ritz pairs `(θᵢ, Z sᵢ)` of `B`
    /// whose residual `‖(AZ − ZB) sᵢ‖` is below the threshold, and requires `v` to lie in their
    /// span: after a plain Lanczos run to `K = N` the span of `Q` also holds a few directions
    /// made of rounding noise (not invariant, and with no weight of `v`), which this drops. For a
    /// general operator the whole span must be invariant.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<T: Scalar>(
        q: &[T],
        n: usize,
        k: usize,
        s: &[T],
        r: &[T],
        c: T,
        symmetric: bool,
        breakdown_tol: Option<f64>,
    ) -> Result<Option<Self>, MatfunError> {
        let gram = reduce::gram(q, n, k);
        let m = Mat::from_fn(k, k, |i, j| {
            0.5 * (gram[i + j * k].to_f64() + gram[j + i * k].to_f64())
        });
        let eig = crate::dense::SymmetricEigen::new(k, &flatten(&m))?;
        let d = eig.values();
        let dmax = d.iter().fold(0.0_f64, |a, &b| a.max(b));
        if dmax.is_nan() || dmax <= 0.0 {
            return Err(MatfunError::EigensolverFailed);
        }
        let cut = T::EPS.to_f64().sqrt() * dmax;
        let keep: Vec<usize> = (0..k).filter(|&i| d[i] > cut).collect();
        let rank = keep.len();
        let vecs = eig.vectors();
        let coef = Mat::from_fn(k, rank, |i, j| vecs[(i, keep[j])] / d[keep[j]].sqrt());
        let sm = Mat::from_fn(k, k, |i, j| s[i + j * k].to_f64());
        let mut qr_t = vec![T::ZERO; k];
        reduce::basis_t_vec(q, n, k, r, &mut qr_t);
        // P = M S + (Qᵀr) e_{K-1}ᵀ = QᵀAQ.
        let mut p = mul(&m, &sm);
        for (i, x) in qr_t.iter().enumerate() {
            p[(i, k - 1)] += x.to_f64();
        }
        let mut small = mul(&mul(&coef.transpose().to_owned(), &p), &coef);
        if symmetric {
            for j in 0..rank {
                for i in j + 1..rank {
                    let a = 0.5 * (small[(i, j)] + small[(j, i)]);
                    small[(i, j)] = a;
                    small[(j, i)] = a;
                }
            }
        }
        let inv_c = 1.0 / c.to_f64();
        let start: Vec<f64> = (0..rank)
            .map(|j| (0..k).map(|i| coef[(i, j)] * m[(i, 0)]).sum::<f64>() * inv_c)
            .collect();
        let scale = small.norm_l2();
        let tol = invariance_tol::<T>(n, breakdown_tol) * scale.max(f64::MIN_POSITIVE);
        // The residual AZ − ZB = Q (S C − C B) + r (Cᵀe_{K-1})ᵀ, formed explicitly (N × rank):
        // expanding its norm through M and Qᵀr cancels to √ε when r is not small.
        let residual_of = |c2: &Mat<f64>, b2: &Mat<f64>| -> Vec<T> {
            let cols = c2.ncols();
            let cr = &mul(&sm, c2) - &mul(c2, b2);
            let cr_t: Vec<T> = (0..k * cols)
                .map(|p| T::from_f64(cr[(p % k, p / k)]))
                .collect();
            let mut res = reduce::basis_mat(q, n, k, &cr_t, cols);
            for j in 0..cols {
                reduce::axpy(T::from_f64(c2[(k - 1, j)]), r, &mut res[j * n..(j + 1) * n]);
            }
            res
        };
        if !symmetric {
            let res = residual_of(&coef, &small);
            let residual = reduce::norm(&res).to_f64();
            if !residual.is_finite() || !scale.is_finite() {
                return Err(MatfunError::NonFiniteResult {
                    what: "Krylov-space restriction",
                });
            }
            return Ok((residual <= tol).then_some(Self {
                n,
                k,
                coef,
                small,
                start,
                scale,
                diagonal: false,
            }));
        }
        // Ritz pairs of B and their residuals ‖(AZ − ZB) sᵢ‖ = ‖A yᵢ − θᵢ yᵢ‖.
        let beig = crate::dense::SymmetricEigen::new(rank, &flatten(&small))?;
        let (theta, sv) = (beig.values(), beig.vectors().to_owned());
        let cs = mul(&coef, &sv);
        let diag = Mat::from_fn(rank, rank, |i, j| if i == j { theta[i] } else { 0.0 });
        let res = residual_of(&cs, &diag);
        let pair_res: Vec<f64> = (0..rank)
            .map(|i| reduce::norm(&res[i * n..(i + 1) * n]).to_f64())
            .collect();
        let weight: Vec<f64> = (0..rank)
            .map(|i| (0..rank).map(|j| sv[(j, i)] * start[j]).sum())
            .collect();
        Self::select::<T>(n, k, theta, &cs, &pair_res, &weight, scale, breakdown_tol)
    }

    /// The restriction of a decomposition with an orthonormal basis (full reorthogonalisation)
    /// and the tridiagonal `T = (diag, off)` (`m×m`) of the relation `A Q = Q T + E`,
    /// `‖E s‖ ≤ ‖H − T‖_F + |s_{m−1}|·‖r‖`: `Z = Q`, `B = T`, whose eigendecomposition
    /// (bisection and inverse iteration) keeps the small Ritz values of ill-conditioned
    /// operators to high relative accuracy. No pass over the basis.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn orthonormal<T: Scalar>(
        n: usize,
        diag: &[T],
        off: &[T],
        off_band: f64,
        r_norm: f64,
        c: T,
        breakdown_tol: Option<f64>,
    ) -> Result<Option<Self>, MatfunError> {
        let m = diag.len();
        let eig = crate::dense::SymmetricEigen::from_tridiagonal(diag, off)?;
        let (theta, sv) = (eig.values(), eig.vectors().to_owned());
        let scale = theta.iter().map(|x| x * x).sum::<f64>().sqrt();
        let pair_res: Vec<f64> = (0..m)
            .map(|i| off_band + sv[(m - 1, i)].abs() * r_norm)
            .collect();
        let inv_c = 1.0 / c.to_f64();
        let weight: Vec<f64> = (0..m).map(|i| sv[(0, i)] * inv_c).collect();
        if !(scale.is_finite() && off_band.is_finite() && r_norm.is_finite()) {
            return Err(MatfunError::NonFiniteResult {
                what: "Krylov-space restriction",
            });
        }
        Self::select::<T>(n, m, theta, &sv, &pair_res, &weight, scale, breakdown_tol)
    }

    /// Keeps the converged Ritz pairs and every pair that carries weight of `v` (the rest is
    /// rounding noise: no weight of `v`, not invariant), if `v` lies in their span and the
    /// weighted residual is below the threshold. `cs` holds the coefficient vectors (`k ×
    /// pairs`) of the Ritz vectors in the basis `Q`.
    #[allow(clippy::too_many_arguments)]
    fn select<T: Scalar>(
        n: usize,
        k: usize,
        theta: &[f64],
        cs: &Mat<f64>,
        pair_res: &[f64],
        weight: &[f64],
        scale: f64,
        breakdown_tol: Option<f64>,
    ) -> Result<Option<Self>, MatfunError> {
        let pairs = theta.len();
        let rel = invariance_tol::<T>(n, breakdown_tol);
        let tol = rel * scale.max(f64::MIN_POSITIVE);
        let vnorm = weight.iter().map(|x| x * x).sum::<f64>().sqrt();
        let good: Vec<usize> = (0..pairs)
            .filter(|&i| pair_res[i] <= tol || weight[i].abs() > rel * vnorm)
            .collect();
        let leak = (0..pairs)
            .filter(|i| !good.contains(i))
            .map(|i| weight[i].powi(2))
            .sum::<f64>()
            .sqrt();
        // Each kept pair moves the result by about its weight times its residual.
        let weighted: f64 = good.iter().map(|&i| weight[i].abs() * pair_res[i]).sum();
        if !(leak.is_finite() && weighted.is_finite() && scale.is_finite()) {
            return Err(MatfunError::NonFiniteResult {
                what: "Krylov-space restriction",
            });
        }
        if leak > rel * vnorm || weighted > tol * vnorm {
            return Ok(None);
        }
        // Ritz values ascending (the eigensolvers return them so), so that the diagonal small
        // matrix needs no permutation.
        let g = good.len();
        Ok(Some(Self {
            n,
            k,
            coef: Mat::from_fn(k, g, |i, j| cs[(i, good[j])]),
            small: Mat::from_fn(g, g, |i, j| if i == j { theta[good[i]] } else { 0.0 }),
            start: good.iter().map(|&i| weight[i]).collect(),
            scale,
            diagonal: true,
        }))
    }

    /// The number of basis columns `K` the restriction refers to.
    pub(crate) fn depth(&self) -> usize {
        self.k
    }

    /// Dimension of the span.
    pub(crate) fn rank(&self) -> usize {
        self.coef.ncols()
    }

    /// `B` as a column-major vector.
    fn small_vec(&self) -> Vec<f64> {
        flatten(&self.small)
    }

    /// `W = C G Cᵀ` (`K×K`, column-major, in `T`) for a `rank × rank` cotangent `G` of `B`,
    /// so that `Z G Zᵀ = Q W Qᵀ`.
    fn lift<T: Scalar>(&self, g: &[f64]) -> Result<Vec<T>, MatfunError> {
        let r = self.rank();
        let gm = Mat::from_fn(r, r, |i, j| g[i + j * r]);
        let w = mul(&mul(&self.coef, &gm), &self.coef.transpose().to_owned());
        let k = self.k;
        let out: Vec<T> = (0..k * k).map(|p| T::from_f64(w[(p % k, p / k)])).collect();
        finite_vec("Krylov-space gradient", out)
    }

    /// `Z y = Q (C y)` (length `n`).
    fn combine<T: Scalar>(&self, q: &[T], y: &[f64]) -> Result<Vec<T>, MatfunError> {
        let x: Vec<T> = (0..self.k)
            .map(|i| T::from_f64((0..self.rank()).map(|j| self.coef[(i, j)] * y[j]).sum()))
            .collect();
        let mut out = vec![T::ZERO; self.n];
        reduce::basis_vec_acc(T::ONE, q, self.n, self.k, &x, &mut out);
        finite_vec("Krylov-space vector", out)
    }

    /// `Zᵀ w = Cᵀ (Qᵀ w)`.
    fn project<T: Scalar>(&self, q: &[T], w: &[T]) -> Vec<f64> {
        let mut qt = vec![T::ZERO; self.k];
        reduce::basis_t_vec(q, self.n, self.k, w, &mut qt);
        (0..self.rank())
            .map(|j| {
                (0..self.k)
                    .map(|i| self.coef[(i, j)] * qt[i].to_f64())
                    .sum()
            })
            .collect()
    }

    /// The explicit orthonormal basis `Z = Q C` (`n × rank`, column-major).
    fn explicit_basis<T: Scalar>(&self, q: &[T]) -> Vec<T> {
        let r = self.rank();
        let c: Vec<T> = (0..self.k * r)
            .map(|p| T::from_f64(self.coef[(p % self.k, p / self.k)]))
            .collect();
        reduce::basis_mat(q, self.n, self.k, &c, r)
    }
}

fn flatten(m: &Mat<f64>) -> Vec<f64> {
    let (r, c) = (m.nrows(), m.ncols());
    (0..r * c).map(|p| m[(p % r, p / r)]).collect()
}

fn mul(a: &Mat<f64>, b: &Mat<f64>) -> Mat<f64> {
    crate::dense::matmul_seq(a.as_ref(), b.as_ref())
}

fn finite_vec<T: Scalar>(what: &'static str, v: Vec<T>) -> Result<Vec<T>, MatfunError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(v)
    } else {
        Err(MatfunError::NonFiniteResult { what })
    }
}

fn to_t<T: Scalar>(x: &[f64]) -> Vec<T> {
    x.iter().map(|v| T::from_f64(*v)).collect()
}

/// The small symmetric function `f(B)` with the Krylov-level domain checks (the rounding
/// threshold of `T`'s precision first).
fn small_function<T: Scalar>(
    f: &MatrixFunction,
    rest: &Restriction,
) -> Result<SymmetricMatrixFunction<f64>, MatfunError> {
    let eig = if rest.diagonal {
        let theta: Vec<f64> = (0..rest.rank()).map(|i| rest.small[(i, i)]).collect();
        crate::dense::SymmetricEigen::from_diagonal(&theta)?
    } else {
        crate::dense::SymmetricEigen::new(rest.rank(), &rest.small_vec())?
    };
    crate::krylov::ritz_function::<T, f64>(f, eig)
}

/// `Σᵢ aᵢ θᵢ e^{tθᵢ} bᵢ` in the eigenbasis of `f(B)`, for `f = exp(t·)`.
fn dexp_dt(fun: &SymmetricMatrixFunction<f64>, a: &[f64], b: &[f64]) -> f64 {
    let s = fun.eigen().vectors();
    let r = fun.dim();
    let th = fun.eigen().values();
    let fv = fun.function_values();
    (0..r)
        .map(|i| {
            let ai: f64 = (0..r).map(|p| s[(p, i)] * a[p]).sum();
            let bi: f64 = (0..r).map(|p| s[(p, i)] * b[p]).sum();
            ai * th[i] * fv[i] * bi
        })
        .sum()
}

fn exp_time(f: &MatrixFunction) -> Option<f64> {
    match *f {
        MatrixFunction::Exp => Some(1.0),
        MatrixFunction::ScaledExp(t) => Some(t),
        _ => None,
    }
}

/// The exact gradient of `ρ = vᵀf(A)v` for a self-adjoint `A` on an invariant restriction:
/// `θ̄ += ρ̄ ∇θ⟨Z G Zᵀ, A⟩` with `G` the Daleckii–Krein pullback of `v̂ᵀf(B)v̂`, and
/// `v̄ = 2ρ̄ f(A)v = 2ρ̄ Z f(B) v̂`.
pub(crate) fn quadform_symmetric<T, A>(
    op: &A,
    q: &[T],
    rest: &Restriction,
    f: &MatrixFunction,
    rho_bar: T,
    theta_grad: &mut [T],
) -> Result<Gradient<T>, MatfunError>
where
    T: Scalar,
    A: ParamVjp<T> + ?Sized,
{
    let fun = small_function::<T>(f, rest)?;
    crate::krylov::check_ritz_threshold::<T>(&fun, true)?;
    let vh = &rest.start;
    let rb = rho_bar.to_f64();
    let g = fun.pullback_outer(vh, vh, rb)?;
    let w = rest.lift::<T>(&g)?;
    subspace_vjp(op, q, rest.n, rest.k, &w, theta_grad)?;
    let fv = fun.apply(vh)?;
    let y: Vec<f64> = fv.iter().map(|x| 2.0 * rb * x).collect();
    let v = rest.combine(q, &y)?;
    let time = match exp_time(f) {
        Some(_) => Some(scalar("t̄", rb * dexp_dt(&fun, vh, vh))?),
        None => None,
    };
    Ok(Gradient { v, time })
}

fn scalar<T: Scalar>(what: &'static str, x: f64) -> Result<T, MatfunError> {
    let v = T::from_f64(x);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(MatfunError::NonFiniteResult { what })
    }
}

/// `‖x‖₂` in `f64`.
fn norm<T: Scalar>(x: &[T]) -> f64 {
    reduce::norm(x).to_f64()
}

/// The part of `w̄` outside the span: `w̄ − Z ŵ`, and `ŵ = Zᵀw̄`.
fn split<T: Scalar>(
    q: &[T],
    rest: &Restriction,
    wbar: &[T],
) -> Result<(Vec<f64>, Vec<T>), MatfunError> {
    let wh = rest.project(q, wbar);
    let inside = rest.combine(q, &wh)?;
    let perp: Vec<T> = wbar.iter().zip(&inside).map(|(a, b)| *a - *b).collect();
    Ok((wh, perp))
}

/// The exact gradient of `w = f(A)v` for a self-adjoint `A` and a cotangent `w̄` on an
/// invariant restriction (see the module docs for the three cases).
pub(crate) fn apply_symmetric<T, A>(
    op: &A,
    q: &[T],
    rest: &Restriction,
    f: &MatrixFunction,
    wbar: &[T],
    requested_full: bool,
    theta_grad: &mut [T],
) -> Result<Gradient<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    let n = rest.n;
    let (wh, perp) = split(q, rest, wbar)?;
    let outside = norm(&perp);
    let tol = invariance_tol::<T>(n, None) * norm(wbar);
    if outside <= tol || rest.rank() == gradmat_krylov::distributed::global_dim(n) {
        let fun = small_function::<T>(f, rest)?;
        crate::krylov::check_ritz_threshold::<T>(&fun, true)?;
        let g = fun.pullback_outer(&wh, &rest.start, 1.0)?;
        let w = rest.lift::<T>(&g)?;
        subspace_vjp(op, q, n, rest.k, &w, theta_grad)?;
        let v = rest.combine(q, &fun.apply(&wh)?)?;
        let time = match exp_time(f) {
            Some(_) => Some(scalar("t̄", dexp_dt(&fun, &wh, &rest.start))?),
            None => None,
        };
        return Ok(Gradient { v, time });
    }
    if !requested_full {
        return Err(MatfunError::GradientUnavailable {
            reason: format!(
                "f(A)v met an invariant subspace of dimension {} before the requested depth \
                 (below N = {n}) and the cotangent has a relative component {:.2e} outside it: \
                 the truncated approximation is not differentiable in the directions that leave \
                 the subspace; request depth N for the exact f(A)v",
                rest.rank(),
                outside / norm(wbar)
            ),
        });
    }
    // Continue the decomposition from the part of w̄ outside the span (module docs), then take
    // the gradient on the union by Rayleigh–Ritz with explicit products (robust to rounding
    // that leaks the continuation back into the first span).
    let z = rest.explicit_basis(q);
    let r = rest.rank();
    let deflated = Deflated { op, z: &z, n, r };
    // Stop at the first sub-diagonal at rounding level (the backward pass's numerical
    // breakdown): running on would explore amplified noise.
    let params = LanczosParams {
        reorthogonalize: Reorthogonalize::Full,
        breakdown_tol: Some(crate::krylov::numerical_breakdown_tol::<T>(n)),
        ..LanczosParams::new(n - r)
    };
    let dec2 = lanczos(&deflated, &perp, &params)?;
    // The continuation is orthogonal to Z only up to the rounding of its own iteration: project
    // Z out of it once more and keep the columns that remain (a column that was mostly rounding
    // noise inside span Z vanishes here).
    let mut q2 = dec2.basis().to_vec();
    for col in q2.chunks_mut(n) {
        let mut h = vec![T::ZERO; r];
        for _ in 0..2 {
            reduce::basis_t_vec(&z, n, r, col, &mut h);
            reduce::basis_vec_acc(-T::ONE, &z, n, r, &h, col);
        }
    }
    let keep_cut = T::EPS.to_f64().sqrt();
    let mut y = Vec::with_capacity(n * (r + dec2.depth()));
    y.extend_from_slice(&z);
    for col in q2.chunks(n) {
        if norm(col) > keep_cut {
            y.extend_from_slice(col);
        }
    }
    let k2 = y.len() / n - r;

    let (ybasis, theta) = ritz_explicit(op, &y, n, r + k2)?;
    let g = theta.len();
    let v_full = rest.combine(q, &rest.start)?;
    let coords = |x: &[T]| -> (Vec<f64>, f64) {
        let mut h = vec![T::ZERO; g];
        reduce::basis_t_vec(&ybasis, n, g, x, &mut h);
        let mut back = x.to_vec();
        reduce::basis_vec_acc(-T::ONE, &ybasis, n, g, &h, &mut back);
        (
            h.iter().map(|t| t.to_f64()).collect(),
            norm(&back) / norm(x),
        )
    };
    let ((vh, leak_v), (wh, leak_w)) = (coords(&v_full), coords(wbar));
    let rel_tol = invariance_tol::<T>(n, None);
    if leak_v > rel_tol || leak_w > rel_tol {
        return Err(MatfunError::GradientUnavailable {
            reason: format!(
                "the Krylov space continued from the cotangent is not invariant to working \
                 precision (relative parts outside its converged Ritz vectors: v {leak_v:.2e}, \
                 w̄ {leak_w:.2e})"
            ),
        });
    }
    let fun = crate::krylov::ritz_function::<T, f64>(
        f,
        crate::dense::SymmetricEigen::from_diagonal(&theta)?,
    )?;
    crate::krylov::check_ritz_threshold::<T>(&fun, true)?;
    let gm = fun.pullback_outer(&wh, &vh, 1.0)?;
    let w: Vec<T> = finite_vec("Krylov-space gradient", to_t(&gm))?;
    subspace_vjp(op, &ybasis, n, g, &w, theta_grad)?;
    let fy = to_t::<T>(&fun.apply(&wh)?);
    let mut v = vec![T::ZERO; n];
    reduce::basis_vec_acc(T::ONE, &ybasis, n, g, &fy, &mut v);
    let v = finite_vec("v̄", v)?;
    let time = match exp_time(f) {
        Some(_) => Some(scalar("t̄", dexp_dt(&fun, &wh, &vh))?),
        None => None,
    };
    Ok(Gradient { v, time })
}

/// Rayleigh–Ritz with explicit products on the span of the column-major `n×m` matrix `y`:
/// orthonormalises it through its Gram matrix (dropping numerically dependent directions),
/// applies `A` once per remaining column, and returns the Ritz vectors (`n × g`, column-major)
/// and values of the pairs whose residual `‖A u − θ u‖` is below the invariance threshold.
fn ritz_explicit<T, A>(
    op: &A,
    y: &[T],
    n: usize,
    m: usize,
) -> Result<(Vec<T>, Vec<f64>), MatfunError>
where
    T: Scalar,
    A: Operator<T> + ?Sized,
{
    let gram = reduce::gram(y, n, m);
    let gm: Vec<f64> = (0..m * m)
        .map(|p| 0.5 * (gram[p].to_f64() + gram[(p % m) * m + p / m].to_f64()))
        .collect();
    let eig = crate::dense::SymmetricEigen::new(m, &gm)?;
    let d = eig.values();
    let dmax = d.iter().fold(0.0_f64, |a, &b| a.max(b));
    let keep: Vec<usize> = (0..m)
        .filter(|&i| d[i] > T::EPS.to_f64().sqrt() * dmax)
        .collect();
    let r = keep.len();
    let vecs = eig.vectors();
    let c: Vec<T> = (0..m * r)
        .map(|p| T::from_f64(vecs[(p % m, keep[p / m])] / d[keep[p / m]].sqrt()))
        .collect();
    let u = reduce::basis_mat(y, n, m, &c, r);
    let mut au = vec![T::ZERO; n * r];
    op.apply_block(&u, &mut au, r);
    let b: Vec<f64> = (0..r * r)
        .map(|p| {
            let (i, j) = (p % r, p / r);
            let bij = reduce::dot(&u[i * n..(i + 1) * n], &au[j * n..(j + 1) * n]).to_f64();
            let bji = reduce::dot(&u[j * n..(j + 1) * n], &au[i * n..(i + 1) * n]).to_f64();
            0.5 * (bij + bji)
        })
        .collect();
    let beig = crate::dense::SymmetricEigen::new(r, &b)?;
    let s: Vec<T> = (0..r * r)
        .map(|p| T::from_f64(beig.vectors()[(p % r, p / r)]))
        .collect();
    let ritz = reduce::basis_mat(&u, n, r, &s, r);
    let aritz = reduce::basis_mat(&au, n, r, &s, r);
    let scale = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    let tol = invariance_tol::<T>(n, None) * scale.max(f64::MIN_POSITIVE);
    let theta = beig.values();
    let mut out = Vec::new();
    let mut vals = Vec::new();
    for i in 0..r {
        let (x, ax) = (&ritz[i * n..(i + 1) * n], &aritz[i * n..(i + 1) * n]);
        let res: Vec<T> = ax
            .iter()
            .zip(x)
            .map(|(a, b)| *a - T::from_f64(theta[i]) * *b)
            .collect();
        if norm(&res) <= tol {
            out.extend_from_slice(x);
            vals.push(theta[i]);
        }
    }
    Ok((out, vals))
}

/// `(I − ZZᵀ) A (I − ZZᵀ)` for an orthonormal `Z` whose span is invariant under the
/// self-adjoint `A`: the operator on the orthogonal complement that continues a Krylov space.
struct Deflated<'a, A: ?Sized, T> {
    op: &'a A,
    z: &'a [T],
    n: usize,
    r: usize,
}

impl<T: Scalar, A: Operator<T> + ?Sized> Deflated<'_, A, T> {
    fn project_out(&self, x: &mut [T]) {
        let mut h = vec![T::ZERO; self.r];
        reduce::basis_t_vec(self.z, self.n, self.r, x, &mut h);
        reduce::basis_vec_acc(-T::ONE, self.z, self.n, self.r, &h, x);
    }
}

impl<T: Scalar, A: Operator<T> + ?Sized> Operator<T> for Deflated<'_, A, T> {
    fn nrows(&self) -> usize {
        self.n
    }
    fn ncols(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        let mut xp = x.to_vec();
        self.project_out(&mut xp);
        self.op.apply(&xp, y);
        self.project_out(y);
    }
}

impl<T: Scalar, A: SelfAdjoint<T> + ?Sized> SelfAdjoint<T> for Deflated<'_, A, T> {}

/// Checks that the span also reduces `Aᵀ` (`‖AᵀZ − ZBᵀ‖_F` small): then the in-span gradient
/// of the Arnoldi path is exact at a breakdown with `K < N`.
pub(crate) fn check_reducing<T, A>(op: &A, q: &[T], rest: &Restriction) -> Result<(), MatfunError>
where
    T: Scalar,
    A: AdjointOperator<T> + ?Sized,
{
    let (n, r) = (rest.n, rest.rank());
    let z = rest.explicit_basis(q);
    let mut atz = vec![T::ZERO; n * r];
    op.apply_transpose_block(&z, &mut atz, r);
    let bt: Vec<T> = (0..r * r)
        .map(|p| T::from_f64(rest.small[(p / r, p % r)]))
        .collect();
    let zbt = reduce::basis_mat(&z, n, r, &bt, r);
    let diff: Vec<T> = atz.iter().zip(&zbt).map(|(a, b)| *a - *b).collect();
    let e = norm(&diff);
    let tol = invariance_tol::<T>(n, None) * rest.scale.max(f64::MIN_POSITIVE);
    if e <= tol {
        Ok(())
    } else {
        Err(MatfunError::GradientUnavailable {
            reason: format!(
                "Arnoldi met an invariant subspace (dimension {r} < N = {n}) of a non-normal \
                 operator (‖AᵀZ − ZBᵀ‖ = {e:.2e} relative to ‖B‖ = {:.2e}): the gradient needs \
                 the Krylov space of Aᵀ, which this decomposition does not have; request depth \
                 N",
                rest.scale
            ),
        })
    }
}

/// Which output of the Arnoldi path is differentiated.
pub(crate) enum ArnoldiOutput<'a, T> {
    /// `ρ = vᵀ exp(tA) v` with cotangent `ρ̄`.
    QuadForm(T),
    /// `w = exp(tA) v` with cotangent `w̄`.
    Apply(&'a [T]),
}

/// The exact gradient of `vᵀ exp(tA) v` or `exp(tA) v` on an exact Arnoldi restriction
/// (general `B`; Fréchet adjoint of the small exponential). Returns `v̄` and `t̄`.
pub(crate) fn arnoldi_exp<T, A>(
    op: &A,
    q: &[T],
    rest: &Restriction,
    t: f64,
    out: ArnoldiOutput<'_, T>,
    theta_grad: &mut [T],
) -> Result<Gradient<T>, MatfunError>
where
    T: Scalar,
    A: AdjointOperator<T> + ParamVjp<T> + ?Sized,
{
    let (n, r) = (rest.n, rest.rank());
    if r < gradmat_krylov::distributed::global_dim(n) {
        check_reducing(op, q, rest)?;
    }
    let b = rest.small_vec();
    let e = expm_scaled(r, &b, t)?;
    let ev = |x: &[f64], transpose: bool| -> Vec<f64> {
        (0..r)
            .map(|i| {
                (0..r)
                    .map(|j| if transpose { e[j + i * r] } else { e[i + j * r] } * x[j])
                    .sum()
            })
            .collect()
    };
    let vh = &rest.start;
    let (mbar, vbar_small): (Vec<f64>, Vec<f64>) = match out {
        ArnoldiOutput::QuadForm(rho_bar) => {
            let rb = rho_bar.to_f64();
            let m = (0..r * r).map(|p| rb * vh[p % r] * vh[p / r]).collect();
            let (a, bt) = (ev(vh, false), ev(vh, true));
            (m, a.iter().zip(&bt).map(|(x, y)| rb * (x + y)).collect())
        }
        ArnoldiOutput::Apply(wbar) => {
            let (wh, perp) = split(q, rest, wbar)?;
            let outside = norm(&perp);
            if r < gradmat_krylov::distributed::global_dim(n)
                && outside > invariance_tol::<T>(n, None) * norm(wbar)
            {
                return Err(MatfunError::GradientUnavailable {
                    reason: format!(
                        "exp(tA)v met an invariant subspace of dimension {r} < N = {n} and the \
                         cotangent has a relative component {:.2e} outside it; request depth N",
                        outside / norm(wbar)
                    ),
                });
            }
            let m = (0..r * r).map(|p| wh[p % r] * vh[p / r]).collect();
            (m, ev(&wh, true))
        }
    };
    let pb = expm_scaled_pullback(r, &b, t, &mbar)?;
    let w = rest.lift::<T>(&pb.h)?;
    subspace_vjp(op, q, n, rest.k, &w, theta_grad)?;
    let v = rest.combine(q, &vbar_small)?;
    Ok(Gradient {
        v,
        time: Some(scalar("t̄", pb.t)?),
    })
}
