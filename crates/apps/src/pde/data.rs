//! Data of the PDE problem: Gaussian-process samples on the grid (drawn with gradmat's Lanczos
//! square-root action), initial conditions and reference solutions `w(1) = exp(A) w₀`.

use super::operator::{Stencil, WaveOperator};
use super::rk;
use crate::pipeline::{ensure, PipelineError, StageContext};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use gradmat_matfun::dense::MatrixFunction;
use gradmat_matfun::krylov::{apply_arnoldi, apply_lanczos, KrylovParams};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::traits::check_len;
use gradmat_operators::{Operator, SelfAdjoint};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

pub use crate::optim::softplus;

type Result<T> = std::result::Result<T, PipelineError>;

/// Grid coordinates `(x₁, x₂) = (i h, j h)`, `h = 1/(G−1)`, row-major `G²×2` in node order
/// `p = i + j·G`.
pub fn grid_points(g: usize) -> Vec<f64> {
    let h = 1.0 / (g as f64 - 1.0);
    let mut x = Vec::with_capacity(2 * g * g);
    for j in 0..g {
        for i in 0..g {
            x.push(i as f64 * h);
            x.push(j as f64 * h);
        }
    }
    x
}

/// The squared-exponential kernel matrix `K_pq = s·exp(−‖x_p − x_q‖²/(2ℓ²))` on the `G×G` grid,
/// applied through its Kronecker structure `K = s·(K₁ ⊗ K₁)` (`K₁` the `G×G` one-dimensional
/// kernel matrix): a product costs `O(G³)` instead of `O(G⁴)`. Symmetric positive
/// semi-definite.
#[derive(Debug, Clone, PartialEq)]
pub struct GridKernel {
    g: usize,
    /// `K₁` (symmetric, row-major = column-major).
    k1: Vec<f64>,
    scale: f64,
}

impl GridKernel {
    /// The kernel with lengthscale `ell > 0` and output scale (variance) `scale > 0` on the
    /// `g×g` grid of [`grid_points`] (`g ≥ 2`).
    pub fn new(g: usize, ell: f64, scale: f64) -> Result<Self> {
        ensure(g >= 2, || {
            format!("the grid needs at least 2×2 nodes, got {g}×{g}")
        })?;
        ensure(
            ell.is_finite() && ell > 0.0 && scale.is_finite() && scale > 0.0,
            || format!("kernel lengthscale {ell} and scale {scale} must be positive and finite"),
        )?;
        let h = 1.0 / (g as f64 - 1.0);
        let mut k1 = vec![0.0; g * g];
        for a in 0..g {
            for b in 0..g {
                let d = (a as f64 - b as f64) * h;
                k1[a + b * g] = (-0.5 * d * d / (ell * ell)).exp();
            }
        }
        Ok(Self { g, k1, scale })
    }
}

impl Operator<f64> for GridKernel {
    fn nrows(&self) -> usize {
        self.g * self.g
    }
    fn ncols(&self) -> usize {
        self.g * self.g
    }
    #[track_caller]
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let g = self.g;
        check_len("GridKernel::apply x", x.len(), g * g);
        check_len("GridKernel::apply y", y.len(), g * g);
        // X[i, j] = x[i + j g] (column-major G×G); Y = s K₁ X K₁ (K₁ symmetric): two GEMMs.
        let k1 = MatRef::from_column_major_slice(&self.k1, g, g);
        let mut t = vec![0.0; g * g];
        matmul(
            MatMut::from_column_major_slice_mut(&mut t, g, g),
            Accum::Replace,
            MatRef::from_column_major_slice(x, g, g),
            k1,
            1.0,
            Par::Seq,
        );
        matmul(
            MatMut::from_column_major_slice_mut(y, g, g),
            Accum::Replace,
            k1,
            MatRef::from_column_major_slice(&t, g, g),
            self.scale,
            Par::Seq,
        );
    }
}

impl SelfAdjoint<f64> for GridKernel {}

/// Lanczos depth of the square-root action used for sampling (the paper's `lanczos_rank`).
pub const SAMPLE_DEPTH: usize = 32;

/// A sample `(K + δI)^{1/2} z`, `z ~ N(0, I)`, of the zero-mean GP with kernel `k`, with a
/// nugget `δ = 1e-8·scale` that keeps Ritz values positive. The square root is gradmat's
/// depth-[`SAMPLE_DEPTH`] Lanczos action `f(K)z`, `f = √·` (fully reorthogonalised).
pub fn gp_sample(k: &GridKernel, rng: &mut StdRng) -> Result<Vec<f64>> {
    let n = k.nrows();
    let z: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
    let shifted = Shifted::new(k.clone(), 1e-8 * k.scale).stage(|| "GP kernel".into())?;
    let s = apply_lanczos(
        &shifted,
        &z,
        &MatrixFunction::Sqrt,
        &KrylovParams::new(SAMPLE_DEPTH),
    )
    .stage(|| "Lanczos square root of the GP kernel".into())?;
    Ok(s.into_value())
}

/// The GP of the true coefficient: lengthscale `softplus(−0.75) ≈ 0.386`, variance
/// `softplus(−10) ≈ 4.5e-5` (standard deviation ≈ 6.7e-3, the scale of the model's output).
pub fn coefficient_kernel(g: usize) -> Result<GridKernel> {
    GridKernel::new(g, softplus(-0.75), softplus(-10.0))
}

/// The GP of the initial conditions `u₀` and `u̇₀`: lengthscale and variance `softplus(0) = ln 2`.
pub fn initial_condition_kernel(g: usize) -> Result<GridKernel> {
    GridKernel::new(g, softplus(0.0), softplus(0.0))
}

/// Krylov depth of the reference solutions (clamped to the dimension).
pub const REFERENCE_DEPTH: usize = 80;

/// The reference `exp(A) w₀` by Arnoldi of depth [`REFERENCE_DEPTH`] with full
/// reorthogonalisation (for `‖A‖ ≲ 10` the Krylov error `‖A‖^K/K!` is far below rounding).
pub fn reference_solution(op: &WaveOperator, w0: &[f64]) -> Result<Vec<f64>> {
    let r = apply_arnoldi(
        op,
        w0,
        &MatrixFunction::Exp,
        &KrylovParams::new(REFERENCE_DEPTH),
    )
    .stage(|| "reference solution (Arnoldi)".into())?;
    Ok(r.into_value())
}

/// A data set: the true coefficient, initial conditions `w₀ = (u₀, u̇₀)` and targets `w(1)`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Grid size `G`.
    pub grid: usize,
    /// True coefficient values `ω` (length `G²`).
    pub omega: Vec<f64>,
    /// Initial conditions (each of length `2G²`).
    pub inputs: Vec<Vec<f64>>,
    /// Reference solutions at `t = 1`.
    pub targets: Vec<Vec<f64>>,
    /// Relative difference between the Arnoldi reference and a 256-step Dopri5 solution for the
    /// first initial condition (the cross-check of the reference).
    pub reference_crosscheck: f64,
    /// The spatial operator of the equation (the targets were computed with it).
    pub stencil: Stencil,
}

impl Dataset {
    /// Samples the true coefficient and `num` initial conditions from `seed` and solves for the
    /// targets. Deterministic for a given `(g, num, seed)` (independent of the thread count).
    pub fn generate(g: usize, num: usize, seed: u64) -> Result<Self> {
        Self::generate_with(g, num, seed, Stencil::Neumann)
    }

    /// The wave operator of this data set's equation with coefficient `omega`.
    pub fn operator(&self, omega: Vec<f64>) -> Result<WaveOperator> {
        Ok(WaveOperator::with_stencil(self.grid, omega, self.stencil)?)
    }

    /// [`generate`](Self::generate) for the equation with the given stencil.
    pub fn generate_with(g: usize, num: usize, seed: u64, stencil: Stencil) -> Result<Self> {
        ensure(num >= 1, || {
            "at least one initial condition is needed".into()
        })?;
        let mut rng = StdRng::seed_from_u64(seed);
        let omega = gp_sample(&coefficient_kernel(g)?, &mut rng)?;
        let op = WaveOperator::with_stencil(g, omega.clone(), stencil)?;
        let kic = initial_condition_kernel(g)?;
        let seeds: Vec<u64> = (0..num).map(|_| rng.random()).collect();
        let pairs: Vec<Result<(Vec<f64>, Vec<f64>)>> = seeds
            .par_iter()
            .map(|s| {
                let mut r = StdRng::seed_from_u64(*s);
                let mut w0 = gp_sample(&kic, &mut r)?;
                w0.extend(gp_sample(&kic, &mut r)?);
                let y = reference_solution(&op, &w0)?;
                Ok((w0, y))
            })
            .collect();
        let mut inputs = Vec::with_capacity(num);
        let mut targets = Vec::with_capacity(num);
        for p in pairs {
            let (a, b) = p?;
            inputs.push(a);
            targets.push(b);
        }
        let rk = rk::solve(&op, &rk::DOPRI5, &inputs[0], 1.0, 256);
        let reference_crosscheck = rel_err(&rk, &targets[0]);
        Ok(Self {
            grid: g,
            omega,
            inputs,
            targets,
            reference_crosscheck,
            stencil,
        })
    }

    /// Splits off the first `⌊num/5⌋` pairs as the test set (80/20), at least one training
    /// pair. Returns `(train, test)` index ranges.
    pub fn split(&self) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let n = self.inputs.len();
        let ntest = (n / 5).min(n.saturating_sub(1));
        (ntest..n, 0..ntest)
    }
}

/// `‖a − b‖/‖b‖` (or `‖a − b‖` for `b = 0`).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let s: f64 = b.iter().map(|y| y * y).sum();
    if s > 0.0 {
        (d / s).sqrt()
    } else {
        d.sqrt()
    }
}
