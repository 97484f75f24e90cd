//! The GP model: hyperparameters through softplus, the negative log marginal likelihood per
//! training point and its gradient — stochastic (matrix-free: CG + SLQ with exact adjoints) and
//! exact (dense Cholesky) — and predictions.
//!
//! # Parameters
//!
//! The unconstrained vector `raw` holds `(ρ_ℓ₁ … ρ_ℓd, ρ_s, ρ_σ, c)`: lengthscales
//! `ℓ = softplus(ρ_ℓ)`, output scale `s = softplus(ρ_s)`, noise variance
//! `σ² = 10⁻⁴ + softplus(ρ_σ)` (so `σ² > 10⁻⁴`), constant mean `c`. The kernel operator
//! `K = k_θ(X, X) + σ² I` is `Shifted<KernelMatrix>` with parameters `θ = (ℓ, s, σ²)`.
//!
//! # Loss
//!
//! `L = [½ rᵀK⁻¹r + ½ log det K + (n/2) log 2π] / n` with `r = y − c`, and
//! `∂L/∂θ = [½ ∂ log det K − ½ αᵀ(∂K)α] / n`, `∂L/∂c = −Σα / n`, `α = K⁻¹r`.
//!
//! * **Stochastic** ([`Gp::loss_stochastic`]): `α` by preconditioned CG (pivoted partial
//!   Cholesky of rank `R`, warm-started from the previous `α`), `αᵀ(∂K)α` by one parameter VJP
//!   of the operator, `log det K` and its gradient by lock-step SLQ (depth `K`, `L` Rademacher
//!   probes, full reorthogonalisation; the gradient is the exact gradient of the estimate
//!   through the Lanczos adjoint) on the matrix whitened by the same preconditioner
//!   ([`gradmat_matfun::preconditioned`]). CG and the probes run in lock-step: one block
//!   product of the kernel (one pass over its tiles) serves the CG iterate and every probe of a
//!   step, and all parameter VJPs are one block VJP.
//! * **Exact** ([`Gp::loss_exact`]): dense `K`, Cholesky, `K⁻¹`, and
//!   `∂L/∂θ_j = ½ Σ_ab W_ab ∂K_ab/∂θ_j / n` with `W = K⁻¹ − ααᵀ`, the kernel derivatives in
//!   closed form — a reference that shares no code with the operator's VJP.

use super::data::GpData;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::{MatMut, MatRef, Par};
use gradmat_krylov::arnoldi::Reorthogonalize;
use gradmat_krylov::cg::{solve_in_place, CgParams, CgWorkspace};
use gradmat_krylov::precond::{PartialCholesky, PartialCholeskyParams};
use gradmat_matfun::estimators::SlqParams;
use gradmat_matfun::preconditioned::{logdet_and_solve_with_grad, SolveLogdetParams};
use gradmat_operators::algebra::{Cached, Shifted};
use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::ParamVjp;

/// Lower bound of the noise variance.
pub const NOISE_FLOOR: f64 = 1e-4;

pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_3;

pub use crate::optim::{softplus, softplus_grad, softplus_inv};

/// Errors of the GP computations.
#[derive(Debug, thiserror::Error)]
pub enum GpError {
    /// A parameter became non-finite (diverging optimisation).
    #[error("non-finite hyperparameter {name} (the optimisation diverged; try a smaller --lr)")]
    NonFiniteParameter {
        /// Which one.
        name: String,
    },
    /// A parameter left the range where the model is defined (a lengthscale or the output
    /// scale rounded to 0 or overflowed after softplus): the optimisation diverged.
    #[error(
        "hyperparameter {name} = {value:e} is outside its range (the optimisation diverged; \
         try a smaller --lr)"
    )]
    OutOfRange {
        /// Which one.
        name: String,
        /// Its value.
        value: f64,
    },
    /// The operator could not be built.
    #[error("kernel operator: {0}")]
    Operator(#[from] gradmat_operators::OperatorError),
    /// CG, Lanczos or the preconditioner failed.
    #[error("{0}")]
    Krylov(#[from] gradmat_krylov::KrylovError),
    /// CG did not reach its tolerance `‖r‖ ≤ max(atol, rtol·‖b‖)`.
    #[error("CG did not converge in {iterations} iterations (residual {residual:.2e}, ‖b‖ {rhs_norm:.2e}; tolerance: relative {rtol:.1e}, absolute {atol:.1e})")]
    CgNotConverged {
        /// Iterations.
        iterations: usize,
        /// Final residual norm `‖r‖` of the first right-hand side that did not converge.
        residual: f64,
        /// Its `‖b‖`.
        rhs_norm: f64,
        /// The relative tolerance.
        rtol: f64,
        /// The absolute tolerance.
        atol: f64,
    },
    /// A prediction request that does not fit the model (fewer input values than points ×
    /// dimension, more variance points than test points).
    #[error("prediction request: {0}")]
    BadRequest(String),
    /// A training checkpoint could not be read or written.
    #[error("{0}")]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    /// SLQ failed.
    #[error("log-determinant: {0}")]
    Slq(#[from] gradmat_matfun::MatfunError),
    /// The dense Cholesky factorisation failed (not positive definite to rounding).
    #[error("dense Cholesky failed: the kernel matrix is not numerically positive definite")]
    NotPositiveDefinite,
    /// The exact mode would need too much memory.
    #[error(
        "exact mode needs a dense {n}×{n} matrix ({gib:.1} GiB); use at most {max} training points"
    )]
    TooLargeForExact {
        /// Training points.
        n: usize,
        /// Memory needed.
        gib: f64,
        /// The limit.
        max: usize,
    },
}

/// The kernel family (the `--kernel` choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Matérn ν = 1/2.
    Matern12,
    /// Matérn ν = 3/2 (default).
    Matern32,
    /// Matérn ν = 5/2.
    Matern52,
    /// Squared exponential.
    Rbf,
}

impl Kernel {
    /// The operator crate's kernel.
    pub fn kind(self) -> KernelKind {
        match self {
            Kernel::Matern12 => KernelKind::Matern12,
            Kernel::Matern32 => KernelKind::Matern32,
            Kernel::Matern52 => KernelKind::Matern52,
            Kernel::Rbf => KernelKind::SquaredExponential,
        }
    }
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matern12 => "matern12",
            Kernel::Matern32 => "matern32",
            Kernel::Matern52 => "matern52",
            Kernel::Rbf => "rbf",
        }
    }
}

/// Hyperparameters in their natural (constrained) form.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// Lengthscales `ℓ` (one per input).
    pub lengthscales: Vec<f64>,
    /// Output scale `s` (kernel variance).
    pub outputscale: f64,
    /// Noise variance `σ²`.
    pub noise: f64,
    /// Constant mean `c`.
    pub mean: f64,
}

impl Hyper {
    /// From the unconstrained vector (see the module documentation).
    pub fn from_raw(raw: &[f64]) -> Result<Self, GpError> {
        let d = raw.len() - 3;
        for (i, r) in raw.iter().enumerate() {
            if !r.is_finite() {
                let name = match i {
                    i if i < d => format!("lengthscale {}", i + 1),
                    i if i == d => "outputscale".into(),
                    i if i == d + 1 => "noise".into(),
                    _ => "mean".into(),
                };
                return Err(GpError::NonFiniteParameter { name });
            }
        }
        let h = Hyper {
            lengthscales: raw[..d].iter().map(|&r| softplus(r)).collect(),
            outputscale: softplus(raw[d]),
            noise: NOISE_FLOOR + softplus(raw[d + 1]),
            mean: raw[d + 2],
        };
        // Finite raw values can still leave the model's domain: softplus underflows to 0 below
        // about −745 and overflows above about 1.8e308.
        let positive = h
            .lengthscales
            .iter()
            .enumerate()
            .map(|(i, &l)| (format!("lengthscale {}", i + 1), l))
            .chain([("outputscale".to_string(), h.outputscale)])
            .chain([("noise".to_string(), h.noise)]);
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(GpError::OutOfRange { name, value });
            }
        }
        Ok(h)
    }
    /// The unconstrained vector.
    pub fn to_raw(&self) -> Vec<f64> {
        let mut r: Vec<f64> = self.lengthscales.iter().map(|&l| softplus_inv(l)).collect();
        r.push(softplus_inv(self.outputscale));
        r.push(softplus_inv(self.noise - NOISE_FLOOR));
        r.push(self.mean);
        r
    }
    /// The initial values: `ℓ = 1` (standardised inputs), `s = 1`, `σ² = 0.1`, `c = 0`.
    pub fn initial(d: usize) -> Self {
        Hyper {
            lengthscales: vec![1.0; d],
            outputscale: 1.0,
            noise: 0.1,
            mean: 0.0,
        }
    }
}

/// Settings of the stochastic loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Stochastic {
    /// Lanczos depth `K` per probe.
    pub depth: usize,
    /// Number of probes `L`.
    pub probes: usize,
    /// Rank of the pivoted partial Cholesky preconditioner (0: none).
    pub precond_rank: usize,
    /// Relative CG tolerance (`‖r‖ ≤ max(atol, rtol·‖b‖)`).
    pub cg_tol: f64,
    /// Absolute CG tolerance (the paper's setting: `‖r‖ ≤ 1`).
    pub cg_atol: f64,
    /// Whether the kernel matrix is stored for the products of an epoch.
    pub kernel_cache: KernelCache,
}

/// How the kernel products of an epoch are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelCache {
    /// Dense when `8n²` bytes fit `budget` and `n ≤` [`CACHE_MAX_N`] (where the stored matrix
    /// is faster than the matrix-free engine), matrix-free otherwise.
    Auto {
        /// Bytes the stored matrix may use.
        budget: f64,
    },
    /// Always matrix-free (tiles evaluated for every product).
    MatrixFree,
    /// Always stored (the caller has checked the memory).
    Dense,
}

/// Above this many training points the matrix-free kernel engine is as fast as a product with
/// the stored matrix (which is then bound by memory bandwidth), so [`KernelCache::Auto`] stays
/// matrix-free.
pub const CACHE_MAX_N: usize = 8192;

impl KernelCache {
    /// Whether an epoch on `n` training points stores the kernel matrix.
    pub fn dense_for(self, n: usize) -> bool {
        match self {
            KernelCache::Auto { budget } => n <= CACHE_MAX_N && 8.0 * (n as f64).powi(2) <= budget,
            KernelCache::MatrixFree => false,
            KernelCache::Dense => true,
        }
    }
}

/// A quarter of the machine's memory (`MemTotal`; 4 GiB where it cannot be read): the default
/// budget of [`KernelCache::Auto`].
pub fn default_cache_budget() -> f64 {
    crate::cli::ops::total_memory().map_or(4.0 * (1u64 << 30) as f64, |b| b as f64 / 4.0)
}

impl Default for Stochastic {
    /// Depth 30, 10 probes, rank 15, CG tolerance 1e-4. (Depth 30, not the paper's 10: on the
    /// diamonds data the depth-10 quadrature overestimates the loss by 0.044 per point, 22
    /// standard errors; depth 20 by 0.008, depth 30 by 0.0024 — measured at n = 2,000.)
    fn default() -> Self {
        Stochastic {
            depth: 30,
            probes: 10,
            precond_rank: 15,
            cg_tol: 1e-4,
            cg_atol: 0.0,
            kernel_cache: KernelCache::Auto {
                budget: default_cache_budget(),
            },
        }
    }
}

/// A loss value with its gradient with respect to the unconstrained parameters.
#[derive(Debug, Clone)]
pub struct LossGrad {
    /// The loss (negative log marginal likelihood per training point).
    pub loss: f64,
    /// Standard error of the stochastic loss (`0` for the exact loss): the SLQ standard error
    /// of `log det K`, divided by `2n`; NaN with one probe (undefined).
    pub std_error: f64,
    /// `∂loss/∂raw`.
    pub grad: Vec<f64>,
    /// Kernel matrix–vector products (columns) used: CG iterations, SLQ forward and backward.
    pub matvecs: usize,
    /// CG iterations.
    pub cg_iterations: usize,
    /// Passes over the kernel (block products and block VJPs; for a kernel one pass over its
    /// tiles each): what an epoch costs.
    pub passes: usize,
}

/// A GP regression problem on standardised training data.
#[derive(Debug, Clone)]
pub struct Gp<'a> {
    /// Kernel family.
    pub kernel: Kernel,
    /// Training inputs, row-major `n × d`.
    pub x: &'a [f64],
    /// Training targets.
    pub y: &'a [f64],
    /// Input dimension.
    pub d: usize,
}

/// The share of the memory the system reports as available that the dense (Cholesky) paths
/// may use: the exact loss and the predictions hold one `n×n` matrix, exact training two.
pub const DENSE_MEMORY_SHARE: f64 = 0.8;

/// Whether `copies` dense `n×n` matrices of `f64` fit [`DENSE_MEMORY_SHARE`] of the available
/// memory (`MemAvailable`; where it cannot be read, 8 GiB are assumed).
pub fn dense_fits(n: usize, copies: usize) -> bool {
    (n as f64) <= dense_limit(copies) as f64
}

/// `Err(TooLargeForExact)` unless `copies` dense `n×n` matrices fit ([`dense_fits`]).
///
/// # Errors
/// [`GpError::TooLargeForExact`].
pub fn require_dense(n: usize, copies: usize) -> Result<(), GpError> {
    if dense_fits(n, copies) {
        return Ok(());
    }
    Err(GpError::TooLargeForExact {
        n,
        gib: copies as f64 * (n as f64).powi(2) * 8.0 / (1u64 << 30) as f64,
        max: dense_limit(copies),
    })
}

/// The largest `n` for which `copies` dense `n×n` matrices fit (see [`dense_fits`]).
pub fn dense_limit(copies: usize) -> usize {
    let avail = crate::cli::ops::available_memory().unwrap_or(8 << 30) as f64;
    (DENSE_MEMORY_SHARE * avail / (8.0 * copies.max(1) as f64)).sqrt() as usize
}

impl<'a> Gp<'a> {
    /// The problem on the training split of `data`.
    pub fn new(kernel: Kernel, data: &'a GpData) -> Self {
        Gp {
            kernel,
            x: &data.x_train,
            y: &data.y_train,
            d: data.d,
        }
    }

    /// Number of training points.
    pub fn n(&self) -> usize {
        self.y.len()
    }

    /// Number of unconstrained parameters (`d + 3`).
    pub fn num_params(&self) -> usize {
        self.d + 3
    }

    /// The kernel matrix at `h` (without noise).
    pub fn kernel_matrix(&self, h: &Hyper) -> Result<KernelMatrix<f64>, GpError> {
        Ok(KernelMatrix::new(
            self.kernel.kind(),
            self.n(),
            self.d,
            self.x.to_vec(),
            h.lengthscales.clone(),
            h.outputscale,
        )?)
    }

    /// Chain rule from `(∂/∂θ, ∂/∂c)` to `∂/∂raw`.
    pub(crate) fn to_raw_grad(&self, raw: &[f64], gtheta: &[f64], gmean: f64) -> Vec<f64> {
        let d = self.d;
        let mut g: Vec<f64> = (0..=d + 1)
            .map(|i| gtheta[i] * softplus_grad(raw[i]))
            .collect();
        g.push(gmean);
        g
    }

    /// The stochastic loss and gradient (see the module documentation). `seed` selects the
    /// probes; `warm` is the CG initial guess on entry (`None`: zero) and `α` on exit.
    ///
    /// # Errors
    /// [`GpError`]: non-finite parameters, CG non-convergence, SLQ failures.
    pub fn loss_stochastic(
        &self,
        raw: &[f64],
        settings: &Stochastic,
        seed: u64,
        warm: &mut Option<Vec<f64>>,
    ) -> Result<LossGrad, GpError> {
        let h = Hyper::from_raw(raw)?;
        let n = self.n();
        let kern = self.kernel_matrix(&h)?;
        // Rank 0: P = σ²I (no preconditioning, SLQ on K itself).
        let pc = if settings.precond_rank > 0 {
            PartialCholesky::new(
                &kern,
                h.noise,
                &PartialCholeskyParams::new(settings.precond_rank.min(n)),
            )?
        } else {
            PartialCholesky::from_factor(n, 0, Vec::new(), h.noise)?
        };
        let r: Vec<f64> = self.y.iter().map(|y| y - h.mean).collect();
        let params = solve_logdet_params(settings, seed, n);
        let mut gtheta = vec![0.0; kern.num_params() + 1];
        let res = if settings.kernel_cache.dense_for(n) {
            // Products through the stored matrix, VJPs through the engine.
            let dense = kern.to_dense()?;
            let op = Shifted::new(Cached::new(kern, dense)?, h.noise)?;
            logdet_and_solve_with_grad(&op, &pc, &r, warm.as_deref(), &params, &mut gtheta)?
        } else {
            let op = Shifted::new(kern, h.noise)?;
            logdet_and_solve_with_grad(&op, &pc, &r, warm.as_deref(), &params, &mut gtheta)?
        };
        let alpha_sum = res.solution.iter().sum::<f64>();
        self.finish_loss(raw, settings, res, &gtheta, alpha_sum, warm)
    }

    /// The loss and raw gradient from the joint solve and log-determinant `res` (of
    /// [`solve_logdet_params`]), `θ̄` of the kernel operator and `Σ α` (the mean's gradient);
    /// `α` becomes the next warm start.
    pub(crate) fn finish_loss(
        &self,
        raw: &[f64],
        settings: &Stochastic,
        res: gradmat_matfun::preconditioned::SolveLogdet<f64>,
        gtheta: &[f64],
        alpha_sum: f64,
        warm: &mut Option<Vec<f64>>,
    ) -> Result<LossGrad, GpError> {
        check_converged(&res.cg, settings.cg_tol, settings.cg_atol)?;
        let nf = self.n() as f64;
        // loss = (½ rᵀK⁻¹r + ½ log det K + (n/2) log 2π) / n.
        let loss = (0.5 * res.quad + 0.5 * res.logdet.value + 0.5 * nf * LN_2PI) / nf;
        let grad = self.to_raw_grad(raw, gtheta, -alpha_sum / nf);
        // One probe: no standard error (NaN, `null` in summary.json).
        let se = 0.5 * res.logdet.std_error / nf;
        *warm = Some(res.solution);
        Ok(LossGrad {
            loss,
            std_error: se,
            grad,
            // Forward SLQ products + as many in the backward pass, plus CG.
            matvecs: res.cg.num_matvecs + 2 * res.logdet.num_matvecs,
            cg_iterations: res.cg.iterations[0],
            passes: res.passes.apply_passes + res.passes.vjp_passes,
        })
    }

    /// The dense kernel matrix `K = k(X, X) + σ²I`, column-major, built by the kernel engine
    /// (SIMD, parallel) directly in the buffer the factorisation then works in (one `n×n`
    /// allocation). `copies` is the number of `n×n` matrices the caller will hold (for the
    /// memory check).
    fn dense(&self, h: &Hyper, copies: usize) -> Result<Square, GpError> {
        let n = self.n();
        require_dense(n, copies)?;
        let mut data = self.kernel_matrix(h)?.to_dense()?.into_vec();
        for j in 0..n {
            data[j * n + j] += h.noise;
        }
        Ok(Square { n, data })
    }

    /// Cholesky factor (lower) in place; `log det`.
    fn cholesky(k: &mut Square) -> Result<f64, GpError> {
        let n = k.n;
        let par = Par::rayon(2);
        let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
            n,
            par,
            Default::default(),
        ));
        llt::factor::cholesky_in_place(
            k.as_mut(),
            llt::factor::LltRegularization::default(),
            par,
            MemStack::new(&mut buf),
            Default::default(),
        )
        .map_err(|_| GpError::NotPositiveDefinite)?;
        Ok(2.0 * (0..n).map(|i| k.data[i * n + i].ln()).sum::<f64>())
    }

    fn solve(l: &Square, b: &[f64]) -> Vec<f64> {
        let n = l.n;
        let mut x = b.to_vec();
        let par = Par::Seq;
        let mut buf = MemBuffer::new(llt::solve::solve_in_place_scratch::<f64>(n, 1, par));
        llt::solve::solve_in_place(
            l.as_ref(),
            MatMut::from_column_major_slice_mut(&mut x, n, 1),
            par,
            MemStack::new(&mut buf),
        );
        x
    }

    /// The exact loss only (Cholesky, no inverse): the reference value at the end of training.
    ///
    /// # Errors
    /// [`GpError::TooLargeForExact`] when the dense matrix does not fit ([`dense_fits`]),
    /// [`GpError::NotPositiveDefinite`].
    pub fn loss_exact_value(&self, raw: &[f64]) -> Result<f64, GpError> {
        let h = Hyper::from_raw(raw)?;
        let mut k = self.dense(&h, 1)?;
        let logdet = Self::cholesky(&mut k)?;
        let r: Vec<f64> = self.y.iter().map(|y| y - h.mean).collect();
        let alpha = Self::solve(&k, &r);
        let quad: f64 = r.iter().zip(&alpha).map(|(a, b)| a * b).sum();
        let nf = self.n() as f64;
        Ok((0.5 * quad + 0.5 * logdet + 0.5 * nf * LN_2PI) / nf)
    }

    /// The exact loss and gradient by dense Cholesky (see the module documentation).
    ///
    /// # Errors
    /// As [`loss_exact_value`](Self::loss_exact_value).
    pub fn loss_exact(&self, raw: &[f64]) -> Result<LossGrad, GpError> {
        let h = Hyper::from_raw(raw)?;
        let n = self.n();
        let d = self.d;
        let mut l = self.dense(&h, 2)?;
        let logdet = Self::cholesky(&mut l)?;
        let r: Vec<f64> = self.y.iter().map(|y| y - h.mean).collect();
        let alpha = Self::solve(&l, &r);
        let quad: f64 = r.iter().zip(&alpha).map(|(a, b)| a * b).sum();
        // K⁻¹ (lower triangle) from the factor.
        let mut kinv = Square {
            n,
            data: vec![0.0; n * n],
        };
        let par = Par::rayon(2);
        let mut buf = MemBuffer::new(llt::inverse::inverse_scratch::<f64>(n, par));
        llt::inverse::inverse(kinv.as_mut(), l.as_ref(), par, MemStack::new(&mut buf));
        drop(l);
        let kinv = kinv.as_ref();
        // Σ_ab W_ab ∂K_ab/∂θ over the lower triangle (off-diagonal pairs twice).
        let kind = self.kernel.kind();
        let s = h.outputscale;
        let mut g_len = vec![0.0; d];
        let mut g_s = 0.0;
        let mut g_noise = 0.0;
        let mut diff2 = vec![0.0; d];
        for j in 0..n {
            for i in j..n {
                let w = kinv[(i, j)] - alpha[i] * alpha[j];
                let w = if i == j { w } else { 2.0 * w };
                let mut r2 = 0.0;
                for a in 0..d {
                    let t = (self.x[i * d + a] - self.x[j * d + a]) / h.lengthscales[a];
                    diff2[a] = t * t;
                    r2 += t * t;
                }
                let (kv, dk) = kind.value_and_derivative(r2, s);
                // ∂K/∂s = k/s; ∂K/∂ℓ_a = dk/d(r²) · (−2 Δ_a² / ℓ_a³) = dk · (−2 t_a² / ℓ_a).
                g_s += w * kv / s;
                for a in 0..d {
                    g_len[a] += w * dk * (-2.0 * diff2[a] / h.lengthscales[a]);
                }
                if i == j {
                    g_noise += w;
                }
            }
        }
        let nf = n as f64;
        let mut gtheta: Vec<f64> = g_len.iter().map(|g| 0.5 * g / nf).collect();
        gtheta.push(0.5 * g_s / nf);
        gtheta.push(0.5 * g_noise / nf);
        let gmean = -alpha.iter().sum::<f64>() / nf;
        Ok(LossGrad {
            loss: (0.5 * quad + 0.5 * logdet + 0.5 * nf * LN_2PI) / nf,
            std_error: 0.0,
            grad: self.to_raw_grad(raw, &gtheta, gmean),
            matvecs: 0,
            cg_iterations: 0,
            passes: 0,
        })
    }

    /// Matrix-free posterior predictions at `m` points `xs` (row-major, standardised like the
    /// training inputs): the means at all `m` points and the variances (noise included) at the
    /// first `var_points` of them, from **one** kernel operator and **one** pivoted partial
    /// Cholesky preconditioner of rank `precond_rank` (built once, shared by both solves).
    ///
    /// * Means: `c + k(x*, X) K⁻¹r` with `K⁻¹r` by CG to relative residual 1e-8, started from
    ///   `x0` (e.g. the training's last `α`; `None` or a wrong length: zero), the cross-kernel
    ///   product tiled (never `n × m` in memory).
    /// * Variances: block CG for `A z_j = k_j` (`A = K + σ²I`, `k_j = k(X, x*_j)`), all points
    ///   in one block (one kernel pass per iteration serves them all), to `‖r_j‖ ≤ 1e-3·σ²`;
    ///   then `q_j = 2k_jᵀz_j − z_jᵀAz_j` with one more block product, whose error is exactly
    ///   `‖z* − z_j‖²_A = r_jᵀA⁻¹r_j ≤ ‖r_j‖²/σ² ≤ 1e-6·σ²` for the true residual, whatever the
    ///   rounding in CG (the plain `k_jᵀz_j` relies on CG's Galerkin orthogonality, which
    ///   rounding erodes: measured 80× worse). `var_j = s + σ² − q_j`, clamped below at `σ²`:
    ///   relative error ≤ 1e-6. Memory `n × var_points`: meant for a modest number of points.
    ///
    /// # Errors
    /// [`GpError`] from the operator or CG (including [`GpError::CgNotConverged`]); an
    /// `xs` shorter than `m` points or `var_points > m`.
    pub fn predict_cg(
        &self,
        raw: &[f64],
        xs: &[f64],
        m: usize,
        var_points: usize,
        precond_rank: usize,
        x0: Option<&[f64]>,
    ) -> Result<CgPrediction, GpError> {
        if var_points > m || xs.len() < m * self.d {
            return Err(GpError::BadRequest(format!(
                "{var_points} variance points of {m} test points, {} input values \
                 for {m} points of dimension {}",
                xs.len(),
                self.d
            )));
        }
        let h = Hyper::from_raw(raw)?;
        let n = self.n();
        let kern = self.kernel_matrix(&h)?;
        let pc = PartialCholesky::new(
            &kern,
            h.noise,
            &PartialCholeskyParams::new(precond_rank.clamp(1, n)),
        )?;
        let op = Shifted::new(&kern, h.noise)?;

        // Means.
        let r: Vec<f64> = self.y.iter().map(|y| y - h.mean).collect();
        let mut alpha = match x0 {
            Some(x) if x.len() == n && x.iter().all(|v| v.is_finite()) => x.to_vec(),
            _ => vec![0.0; n],
        };
        let cg = CgParams {
            rtol: Some(1e-8),
            max_iters: Some(n.max(1000)),
            ..CgParams::default()
        };
        let mut ws = CgWorkspace::new();
        let info = solve_in_place(&op, &pc, &r, 1, &mut alpha, &mut ws, &cg)?;
        check_converged(&info, 1e-8, 0.0)?;
        let mut mean = vec![0.0; m];
        kern.cross_apply(&xs[..m * self.d], m, &alpha, &mut mean)?;
        for v in &mut mean {
            *v += h.mean;
        }
        let mean_iterations = info.max_iterations();
        if var_points == 0 {
            return Ok(CgPrediction {
                mean,
                var: Vec::new(),
                mean_iterations,
                var_iterations: 0,
            });
        }

        // Variances.
        let k = var_points;
        let b = kern.cross_matrix(&xs[..k * self.d], k)?;
        let mut z = vec![0.0; n * k];
        let atol = 1e-3 * h.noise;
        let cg = CgParams {
            atol,
            rtol: Some(0.0),
            max_iters: Some(n.max(1000)),
            ..CgParams::default()
        };
        let info = solve_in_place(&op, &pc, &b, k, &mut z, &mut ws, &cg)?;
        check_converged(&info, 0.0, atol)?;
        // q = 2kᵀz − zᵀAz = kᵀz + zᵀ(k − Az): the variational form, exact up to ‖z* − z‖²_A.
        let mut az = vec![0.0; n * k];
        gradmat_operators::Operator::apply_block(&op, &z, &mut az, k);
        let var = (0..k)
            .map(|j| {
                let c = j * n..(j + 1) * n;
                let q: f64 = b[c.clone()]
                    .iter()
                    .zip(&z[c.clone()])
                    .zip(&az[c])
                    .map(|((k, z), az)| z * (2.0 * k - az))
                    .sum();
                (h.outputscale + h.noise - q).max(h.noise)
            })
            .collect();
        Ok(CgPrediction {
            mean,
            var,
            mean_iterations,
            var_iterations: info.max_iterations(),
        })
    }

    /// Exact posterior predictive mean and variance by dense Cholesky (reference; small `n`).
    ///
    /// # Errors
    /// As [`loss_exact_value`](Self::loss_exact_value).
    pub fn predict_exact(
        &self,
        raw: &[f64],
        xs: &[f64],
        m: usize,
    ) -> Result<(Vec<f64>, Vec<f64>), GpError> {
        let e = self.evaluate_exact(raw, xs, m)?;
        Ok((e.mean, e.var))
    }

    /// The exact loss and the exact posterior predictive mean and variance (noise included) at
    /// `m` points, from **one** dense Cholesky factorisation (one `n×n` matrix in memory): the
    /// end-of-training evaluation. Variances are `s + σ² − ‖L⁻¹k*_j‖²`, blocks of 256 test
    /// points through one triangular solve each.
    ///
    /// # Errors
    /// As [`loss_exact_value`](Self::loss_exact_value).
    pub fn evaluate_exact(&self, raw: &[f64], xs: &[f64], m: usize) -> Result<Exact, GpError> {
        let h = Hyper::from_raw(raw)?;
        let n = self.n();
        let mut l = self.dense(&h, 1)?;
        let logdet = Self::cholesky(&mut l)?;
        let r: Vec<f64> = self.y.iter().map(|y| y - h.mean).collect();
        let alpha = Self::solve(&l, &r);
        let quad: f64 = r.iter().zip(&alpha).map(|(a, b)| a * b).sum();
        let nf = n as f64;
        let loss = (0.5 * quad + 0.5 * logdet + 0.5 * nf * LN_2PI) / nf;
        let kern = self.kernel_matrix(&h)?;
        let mut mean = vec![0.0; m];
        kern.cross_apply(xs, m, &alpha, &mut mean)?;
        mean.iter_mut().for_each(|v| *v += h.mean);
        const BLOCK: usize = 256;
        let mut var = Vec::with_capacity(m);
        for start in (0..m).step_by(BLOCK) {
            let b = BLOCK.min(m - start);
            let mut v = kern.cross_matrix(&xs[start * self.d..(start + b) * self.d], b)?;
            faer::linalg::triangular_solve::solve_lower_triangular_in_place(
                l.as_ref(),
                MatMut::from_column_major_slice_mut(&mut v, n, b),
                Par::rayon(2),
            );
            for col in v.chunks_exact(n) {
                let q: f64 = col.iter().map(|x| x * x).sum();
                var.push((h.outputscale + h.noise - q).max(h.noise));
            }
        }
        Ok(Exact { loss, mean, var })
    }
}

/// The exact end-of-training evaluation ([`Gp::evaluate_exact`]).
#[derive(Debug, Clone)]
pub struct Exact {
    /// The exact loss (negative log marginal likelihood per training point).
    pub loss: f64,
    /// Posterior predictive means.
    pub mean: Vec<f64>,
    /// Posterior predictive variances (noise included).
    pub var: Vec<f64>,
}

/// Matrix-free predictions ([`Gp::predict_cg`]).
#[derive(Debug, Clone)]
pub struct CgPrediction {
    /// Posterior predictive means at all test points.
    pub mean: Vec<f64>,
    /// Posterior predictive variances (noise included) at the first `var_points` test points.
    pub var: Vec<f64>,
    /// CG iterations of the means' solve.
    pub mean_iterations: usize,
    /// Block-CG iterations of the variances' solve (0 without variance points).
    pub var_iterations: usize,
}

/// A dense column-major `n×n` matrix in one allocation (faer views over it).
struct Square {
    n: usize,
    data: Vec<f64>,
}

impl Square {
    fn as_ref(&self) -> MatRef<'_, f64> {
        MatRef::from_column_major_slice(&self.data, self.n, self.n)
    }
    fn as_mut(&mut self) -> MatMut<'_, f64> {
        MatMut::from_column_major_slice_mut(&mut self.data, self.n, self.n)
    }
}

/// `Ok` if every right-hand side of a CG solve converged, else the first one that did not.
pub(crate) fn check_converged(
    info: &gradmat_krylov::cg::CgInfo<f64>,
    rtol: f64,
    atol: f64,
) -> Result<(), GpError> {
    match info.converged.iter().position(|c| !c) {
        None => Ok(()),
        Some(j) => Err(GpError::CgNotConverged {
            iterations: info.iterations[j],
            residual: info.residual_norms[j],
            rhs_norm: info.rhs_norms[j],
            rtol,
            atol,
        }),
    }
}

/// Test metrics: root-mean-square error and mean negative log predictive density (Gaussian
/// predictive distribution), both in the units of `y`.
pub fn metrics(y: &[f64], mean: &[f64], var: &[f64]) -> (f64, f64) {
    let m = y.len() as f64;
    let mse = y
        .iter()
        .zip(mean)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / m;
    let nlpd = y
        .iter()
        .zip(mean)
        .zip(var)
        .map(|((a, b), v)| 0.5 * (LN_2PI + v.ln() + (a - b) * (a - b) / v))
        .sum::<f64>()
        / m;
    (mse.sqrt(), nlpd)
}

/// The settings of the stochastic loss's joint solve and log-determinant for `n` points
/// (shared by the serial and the distributed loss, so that both run the same algorithm).
pub(crate) fn solve_logdet_params(
    settings: &Stochastic,
    seed: u64,
    n: usize,
) -> SolveLogdetParams<f64> {
    let nf = n as f64;
    SolveLogdetParams {
        slq: SlqParams {
            num_probes: settings.probes,
            depth: settings.depth,
            seed,
            reorthogonalize: Reorthogonalize::Full,
            ..SlqParams::default()
        },
        cg: CgParams {
            atol: settings.cg_atol,
            rtol: Some(settings.cg_tol),
            max_iters: Some(n.max(1000)),
            ..CgParams::default()
        },
        weight_logdet: 0.5 / nf,
        weight_quad: 0.5 / nf,
        ..SolveLogdetParams::default()
    }
}
