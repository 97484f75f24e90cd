//! Preconditioned log-determinants: `log det K = log det P + log det (P^{-1/2} K P^{-1/2})`
//! with `P = L Lᵀ + σ²I` from the pivoted partial Cholesky factor `L` (`n × r`).
//!
//! Stochastic Lanczos quadrature of `log` converges with the conditioning of the matrix: a
//! kernel matrix with small noise has a few huge eigenvalues (`~ n·s`) over a floor at `σ²`,
//! and depth-10 quadrature of `K` itself is visibly biased (measured on 4,000 diamonds points:
//! the loss off by +0.06 per point at 20 standard errors). The whitened matrix
//! `M = P^{-1/2} K P^{-1/2}` has the large eigenvalues removed by the rank-`r` factor, and
//! depth-10 quadrature of `M` is accurate. `log det P` is closed-form:
//! with `L = U S Vᵀ` (thin SVD, from the `r × r` eigenproblem of `LᵀL`),
//! `P^{-1/2} = σ⁻¹ I + U (diag((s² + σ²)^{-1/2}) − σ⁻¹) Uᵀ` and
//! `log det P = Σ log(sᵢ² + σ²) + (n − r) log σ²`.
//!
//! **Gradients.** `P` is held fixed (it is built from the current parameters but treated as a
//! constant): `log det K = log det P + log det M(θ)` holds at every `θ` near the current one
//! with the same `P`, so `∇θ log det K = ∇θ log det M(θ)` exactly, and
//! `∇θ ⟨u, M x⟩ = ∇θ ⟨P^{-1/2}u, K P^{-1/2}x⟩` is the inner operator's VJP on whitened vectors.

use gradmat_matfun::dense::SymmetricEigen;
use gradmat_operators::{Operator, ParamVjp, SelfAdjoint};

/// `P^{-1/2}` for `P = L Lᵀ + σ²I`, as `σ⁻¹ I + U diag(a) Uᵀ`.
#[derive(Debug, Clone)]
pub struct LowRankInvSqrt {
    n: usize,
    /// Orthonormal `n × r'` (column-major), `r' ≤ r` (numerically zero singular values dropped).
    u: Vec<f64>,
    /// `(sᵢ² + σ²)^{-1/2} − σ⁻¹`.
    a: Vec<f64>,
    inv_sigma: f64,
    logdet: f64,
}

impl LowRankInvSqrt {
    /// From the factor `L` (`n × r`, column-major) and `σ² > 0`.
    ///
    /// # Errors
    /// A failed `r × r` eigendecomposition (non-finite factor).
    pub fn new(
        n: usize,
        r: usize,
        l: &[f64],
        sigma2: f64,
    ) -> Result<Self, gradmat_matfun::MatfunError> {
        let mut logdet = n as f64 * sigma2.ln();
        let inv_sigma = 1.0 / sigma2.sqrt();
        if r == 0 {
            return Ok(LowRankInvSqrt {
                n,
                u: Vec::new(),
                a: Vec::new(),
                inv_sigma,
                logdet,
            });
        }
        // G = LᵀL (r × r).
        let mut g = vec![0.0; r * r];
        for j in 0..r {
            for i in 0..=j {
                let v: f64 = l[i * n..(i + 1) * n]
                    .iter()
                    .zip(&l[j * n..(j + 1) * n])
                    .map(|(a, b)| a * b)
                    .sum();
                g[i + j * r] = v;
                g[j + i * r] = v;
            }
        }
        let eig = SymmetricEigen::new(r, &g)?;
        let lmax = eig.values().iter().fold(0.0f64, |m, v| m.max(*v));
        let vecs = eig.vectors();
        let (mut u, mut a) = (Vec::new(), Vec::new());
        for (k, &lam) in eig.values().iter().enumerate() {
            if lam <= 1e-12 * lmax {
                continue;
            }
            // U_k = L v_k / s_k.
            let s = lam.sqrt();
            let mut col = vec![0.0; n];
            for j in 0..r {
                let c = vecs[(j, k)] / s;
                for (o, x) in col.iter_mut().zip(&l[j * n..(j + 1) * n]) {
                    *o += c * x;
                }
            }
            u.extend_from_slice(&col);
            a.push(1.0 / (lam + sigma2).sqrt() - inv_sigma);
            logdet += (lam + sigma2).ln() - sigma2.ln();
        }
        Ok(LowRankInvSqrt {
            n,
            u,
            a,
            inv_sigma,
            logdet,
        })
    }

    /// `log det P`.
    pub fn logdet(&self) -> f64 {
        self.logdet
    }

    /// `y = P^{-1/2} x` for `k` column-major vectors.
    pub fn apply_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        let n = self.n;
        let r = self.a.len();
        for c in 0..k {
            let (xc, yc) = (&x[c * n..(c + 1) * n], &mut y[c * n..(c + 1) * n]);
            for (o, v) in yc.iter_mut().zip(xc) {
                *o = self.inv_sigma * v;
            }
            for j in 0..r {
                let uj = &self.u[j * n..(j + 1) * n];
                let t: f64 = uj.iter().zip(xc).map(|(a, b)| a * b).sum::<f64>() * self.a[j];
                for (o, u) in yc.iter_mut().zip(uj) {
                    *o += t * u;
                }
            }
        }
    }
}

/// `M = P^{-1/2} K P^{-1/2}` with the parameters of `K` (see the module documentation).
pub struct Whitened<'a, A> {
    /// The inner operator `K`.
    pub k: &'a A,
    /// `P^{-1/2}`.
    pub w: &'a LowRankInvSqrt,
}

impl<A: Operator<f64>> Operator<f64> for Whitened<'_, A> {
    fn nrows(&self) -> usize {
        self.k.nrows()
    }
    fn ncols(&self) -> usize {
        self.k.ncols()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.apply_block(x, y, 1);
    }
    fn apply_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        let mut t = vec![0.0; x.len()];
        self.w.apply_block(x, &mut t, k);
        let mut kt = vec![0.0; x.len()];
        self.k.apply_block(&t, &mut kt, k);
        self.w.apply_block(&kt, y, k);
    }
}

impl<A: SelfAdjoint<f64>> SelfAdjoint<f64> for Whitened<'_, A> {}

impl<A: ParamVjp<f64>> ParamVjp<f64> for Whitened<'_, A> {
    fn num_params(&self) -> usize {
        self.k.num_params()
    }
    fn params(&self, out: &mut [f64]) {
        self.k.params(out);
    }
    fn vjp_params(&self, u: &[f64], x: &[f64], grad: &mut [f64]) {
        self.vjp_params_block(u, x, 1, grad);
    }
    fn vjp_params_block(&self, u: &[f64], x: &[f64], k: usize, grad: &mut [f64]) {
        let mut wu = vec![0.0; u.len()];
        let mut wx = vec![0.0; x.len()];
        self.w.apply_block(u, &mut wu, k);
        self.w.apply_block(x, &mut wx, k);
        self.k.vjp_params_block(&wu, &wx, k, grad);
    }
    fn prefers_block_vjp(&self) -> bool {
        self.k.prefers_block_vjp()
    }
    fn vjp_block_size(&self) -> usize {
        self.k.vjp_block_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `P^{-1/2}` applied twice to `P x` gives `x`, and `log det P` matches a dense Cholesky
    /// computation (`n = 7`, rank 3).
    #[test]
    fn inverse_square_root_and_logdet() {
        let (n, r, s2) = (7, 3, 0.3);
        let l: Vec<f64> = (0..n * r)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 4.0)
            .collect();
        let w = LowRankInvSqrt::new(n, r, &l, s2).unwrap();
        let p = |i: usize, j: usize| {
            (0..r).map(|k| l[i + k * n] * l[j + k * n]).sum::<f64>() + if i == j { s2 } else { 0.0 }
        };
        let x: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let px: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| p(i, j) * x[j]).sum())
            .collect();
        let mut t = vec![0.0; n];
        let mut y = vec![0.0; n];
        w.apply_block(&px, &mut t, 1);
        w.apply_block(&t, &mut y, 1);
        for i in 0..n {
            assert!((y[i] - x[i]).abs() < 1e-12, "{} vs {}", y[i], x[i]);
        }
        // Dense log det by Gaussian elimination (P is SPD: no pivoting needed).
        let mut m: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| p(i, j)).collect()).collect();
        let mut ld = 0.0;
        for k in 0..n {
            ld += m[k][k].ln();
            for i in k + 1..n {
                let f = m[i][k] / m[k][k];
                for j in k..n {
                    m[i][j] -= f * m[k][j];
                }
            }
        }
        assert!(
            (w.logdet() - ld).abs() < 1e-12 * ld.abs().max(1.0),
            "{} vs {ld}",
            w.logdet()
        );
    }
}
