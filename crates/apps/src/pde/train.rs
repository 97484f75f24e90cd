//! The learning problem: an MLP field model, the three solvers with their gradients, the
//! losses (the paper's relative MSE and a relative squared norm), the training loop and the
//! work–precision study.

use super::data::{rel_err, Dataset, REFERENCE_DEPTH};
use super::operator::WaveOperator;
use super::rk;
use crate::nn::{Activation, Mlp, MlpBatch};
use crate::optim::{softplus, Adam};
use crate::pipeline::{ensure, PipelineError, StageContext};
use crate::report::Progress;
use gradmat_matfun::dense::MatrixFunction;
use gradmat_matfun::krylov::{apply_arnoldi, KrylovParams};
use gradmat_operators::ggn::Model;
use rayon::prelude::*;
use std::time::Instant;

type Result<T> = std::result::Result<T, PipelineError>;

/// The raw output scale of the model: `ω = softplus(−5)·MLP(x)` (softplus(−5) ≈ 6.7e-3).
pub const OUTPUT_SCALE_RAW: f64 = -5.0;

/// The nugget `ε` of the paper's relative MSE `mean((ŷ − y)²/(ε + |y|))`: the paper's JAX code
/// uses the machine epsilon of its (single-precision) parameters, `2⁻²³ ≈ 1.19e-7`.
pub const PAPER_NUGGET: f64 = f32::EPSILON as f64;

/// The coefficient field model `ω(x₁, x₂) = softplus(−5)·MLP(x₁, x₂)` (ReLU hidden layers,
/// linear output) evaluated on the grid nodes. Parameters: those of the [`Mlp`] (its layout).
#[derive(Debug, Clone)]
pub struct FieldModel {
    mlp: Mlp<f64>,
    points: Vec<f64>,
    n: usize,
    scale: f64,
}

impl FieldModel {
    /// An MLP `2 → hidden… → 1` with LeCun-normal initial weights from `seed`, on the nodes of a
    /// `g×g` grid.
    pub fn new(g: usize, hidden: &[usize], activation: Activation, seed: u64) -> Result<Self> {
        ensure(g >= 2, || {
            format!("the grid needs at least 2×2 nodes, got {g}×{g}")
        })?;
        let mut sizes = vec![2];
        sizes.extend_from_slice(hidden);
        sizes.push(1);
        let mlp = Mlp::random(&sizes, activation, seed).stage(|| "field model".into())?;
        Ok(Self {
            mlp,
            points: super::data::grid_points(g),
            n: g * g,
            scale: softplus(OUTPUT_SCALE_RAW),
        })
    }
    /// Number of MLP parameters.
    pub fn num_params(&self) -> usize {
        self.mlp.num_params()
    }
    /// The MLP parameters.
    pub fn params(&self) -> &[f64] {
        self.mlp.params()
    }
    /// Replaces the MLP parameters (errors on a length mismatch or non-finite values).
    pub fn set_params(&mut self, theta: &[f64]) -> Result<()> {
        self.mlp
            .set_params(theta)
            .stage(|| "field model parameters".into())
    }
    /// The field `ω` on the grid.
    pub fn omega(&self) -> Result<Vec<f64>> {
        let mut w = self.mlp.predict(&self.points, self.n)?;
        w.iter_mut().for_each(|v| *v *= self.scale);
        Ok(w)
    }
    /// The field and the evaluated network; pass the latter to [`pullback`](Self::pullback)
    /// with `ω̄` for the parameter gradient.
    pub fn omega_with_pullback(&self) -> Result<(Vec<f64>, MlpBatch<f64>)> {
        let batch = self.mlp.forward(&self.points, self.n)?;
        let w = batch.outputs().iter().map(|v| v * self.scale).collect();
        Ok((w, batch))
    }
    /// `∇_θ` of `⟨ω̄, ω(θ)⟩` through the network of [`omega_with_pullback`](Self::omega_with_pullback).
    pub fn pullback(&self, batch: &MlpBatch<f64>, omega_bar: &[f64]) -> Vec<f64> {
        let scaled: Vec<f64> = omega_bar.iter().map(|v| v * self.scale).collect();
        let mut g = vec![0.0; self.num_params()];
        batch.vjp(&scaled, &mut g);
        g
    }
}

/// The training loss over `n` pairs `(ŵ_i(1), y_i)` of vectors of length `2G²`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// The paper's relative mean-squared error: `mean over all pairs and entries of
    /// (ŷ − y)²/(ε + |y|)`, `ε =` [`PAPER_NUGGET`].
    #[default]
    RelativeMse,
    /// The relative squared norm `(1/n) Σ_i ‖ŵ_i − y_i‖²/‖y_i‖²`.
    RelativeNorm,
}

impl Loss {
    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::RelativeMse => "relative-mse",
            Loss::RelativeNorm => "relative-norm",
        }
    }

    /// The contribution of one pair to the loss over `pairs` pairs, and its cotangent `∂/∂ŵ`.
    pub fn pair(&self, w: &[f64], y: &[f64], pairs: usize) -> Result<(f64, Vec<f64>)> {
        let (v, cot) = match self {
            Loss::RelativeMse => {
                let weight = 1.0 / (pairs as f64 * y.len() as f64);
                let mut v = 0.0;
                let cot = w
                    .iter()
                    .zip(y)
                    .map(|(a, b)| {
                        let (d, inv) = (a - b, 1.0 / (PAPER_NUGGET + b.abs()));
                        v += d * d * inv;
                        2.0 * weight * d * inv
                    })
                    .collect();
                (weight * v, cot)
            }
            Loss::RelativeNorm => {
                let ny: f64 = y.iter().map(|v| v * v).sum();
                if ny <= 0.0 {
                    return Err(PipelineError::Numerical(
                        "a target solution is identically zero".into(),
                    ));
                }
                let c = (1.0 / pairs as f64) / ny;
                let mut v = 0.0;
                let cot = w
                    .iter()
                    .zip(y)
                    .map(|(a, b)| {
                        let d = a - b;
                        v += d * d;
                        2.0 * c * d
                    })
                    .collect();
                (c * v, cot)
            }
        };
        if !v.is_finite() {
            return Err(PipelineError::Numerical(
                "the loss is not finite (the solver diverged)".into(),
            ));
        }
        Ok((v, cot))
    }

    /// The loss of one vector against a target (`pairs = 1`): the paper's "parameter RMSE"
    /// is [`Loss::RelativeMse`] of `|ω̂|` against `|ω|`.
    pub fn value(&self, w: &[f64], y: &[f64]) -> Result<f64> {
        Ok(self.pair(w, y, 1)?.0)
    }
}

/// A solver of `w(1) = exp(A) w₀` with its gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solver {
    /// Arnoldi of the given depth with full reorthogonalisation, `exp` of the Hessenberg matrix,
    /// gradient by the (projected) Arnoldi adjoint.
    Arnoldi {
        /// Krylov depth `K`.
        depth: usize,
    },
    /// Dopri5 with fixed steps and the continuous (backsolve) adjoint.
    Dopri5 {
        /// Number of steps on `[0, 1]`.
        steps: usize,
    },
    /// Tsit5 with fixed steps and the discrete (checkpointed) adjoint.
    Tsit5 {
        /// Number of steps on `[0, 1]`.
        steps: usize,
    },
}

impl Solver {
    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Solver::Arnoldi { .. } => "arnoldi",
            Solver::Dopri5 { .. } => "dopri5",
            Solver::Tsit5 { .. } => "tsit5",
        }
    }
    /// Products with `A` in one forward solve.
    pub fn forward_matvecs(&self) -> usize {
        match *self {
            Solver::Arnoldi { depth } => depth,
            Solver::Dopri5 { steps } | Solver::Tsit5 { steps } => rk::STAGES * steps,
        }
    }
    /// Products with `A` or `Aᵀ` in one backward pass (parameter VJPs not counted).
    pub fn backward_matvecs(&self) -> usize {
        match *self {
            // One Aᵀ per backward step.
            Solver::Arnoldi { depth } => depth,
            // Six A and six Aᵀ per step (backsolve: the reversed state and the adjoint;
            // discrete: the recomputed stages and the adjoint).
            Solver::Dopri5 { steps } | Solver::Tsit5 { steps } => 2 * rk::STAGES * steps,
        }
    }
    fn validate(&self, n: usize) -> Result<()> {
        match *self {
            Solver::Arnoldi { depth } => ensure((1..=n).contains(&depth), || {
                format!("Arnoldi depth {depth} out of range 1..={n}")
            }),
            Solver::Dopri5 { steps } | Solver::Tsit5 { steps } => ensure(steps >= 1, || {
                "the number of Runge–Kutta steps must be ≥ 1".into()
            }),
        }
    }
}

/// The prediction `w(1)` of a solver.
pub fn predict(solver: &Solver, op: &WaveOperator, w0: &[f64]) -> Result<Vec<f64>> {
    solver.validate(w0.len())?;
    Ok(match *solver {
        Solver::Arnoldi { depth } => {
            apply_arnoldi(op, w0, &MatrixFunction::Exp, &KrylovParams::new(depth))
                .stage(|| "Arnoldi exp(A)w₀".into())?
                .into_value()
        }
        Solver::Dopri5 { steps } => rk::solve(op, &rk::DOPRI5, w0, 1.0, steps),
        Solver::Tsit5 { steps } => rk::solve(op, &rk::TSIT5, w0, 1.0, steps),
    })
}

/// A scalar function of `w(1)` and its gradient, and the solver's gradient `∇_ω` of it
/// **accumulated** into `omega_bar`. `cot(w)` returns `(value, w̄)`.
pub fn value_and_vjp<F>(
    solver: &Solver,
    op: &WaveOperator,
    w0: &[f64],
    cot: F,
    omega_bar: &mut [f64],
) -> Result<f64>
where
    F: FnOnce(&[f64]) -> Result<(f64, Vec<f64>)>,
{
    solver.validate(w0.len())?;
    match *solver {
        Solver::Arnoldi { depth } => {
            let r = apply_arnoldi(op, w0, &MatrixFunction::Exp, &KrylovParams::new(depth))
                .stage(|| "Arnoldi exp(A)w₀".into())?;
            let (v, wbar) = cot(r.value())?;
            r.vjp(op, &wbar, omega_bar)
                .stage(|| "Arnoldi adjoint".into())?;
            Ok(v)
        }
        Solver::Dopri5 { steps } => {
            Ok(rk::backsolve_vjp(op, &rk::DOPRI5, w0, 1.0, steps, cot, omega_bar)?.0)
        }
        Solver::Tsit5 { steps } => {
            Ok(rk::discrete_vjp(op, &rk::TSIT5, w0, 1.0, steps, cot, omega_bar)?.0)
        }
    }
}

/// Initial conditions per parallel task (fixed, so sums are independent of the thread count).
const CHUNK: usize = 4;

/// The loss over the pairs `idx` and its gradient `∇_ω` (the per-pair solves and adjoints run
/// in parallel over fixed chunks of pairs; chunk results are added in order).
pub fn loss_and_omega_grad(
    solver: &Solver,
    op: &WaveOperator,
    loss: Loss,
    data: &Dataset,
    idx: std::ops::Range<usize>,
) -> Result<(f64, Vec<f64>)> {
    let n = idx.len();
    ensure(n >= 1, || {
        "the loss needs at least one initial condition".into()
    })?;
    let ids: Vec<usize> = idx.collect();
    let parts: Vec<Result<(f64, Vec<f64>)>> = ids
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut g = vec![0.0; op.num_nodes()];
            let mut l = 0.0;
            for &i in chunk {
                let y = &data.targets[i];
                l += value_and_vjp(solver, op, &data.inputs[i], |w| loss.pair(w, y, n), &mut g)?;
            }
            Ok((l, g))
        })
        .collect();
    let mut total = 0.0;
    let mut grad = vec![0.0; op.num_nodes()];
    for p in parts {
        let (l, g) = p?;
        total += l;
        grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
    }
    Ok((total, grad))
}

/// The loss only (see [`loss_and_omega_grad`]).
pub fn loss_value(
    solver: &Solver,
    op: &WaveOperator,
    loss: Loss,
    data: &Dataset,
    idx: std::ops::Range<usize>,
) -> Result<f64> {
    let n = idx.len();
    ensure(n >= 1, || {
        "the loss needs at least one initial condition".into()
    })?;
    let ids: Vec<usize> = idx.collect();
    let parts: Vec<Result<f64>> = ids
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut l = 0.0;
            for &i in chunk {
                let w = predict(solver, op, &data.inputs[i])?;
                l += loss.pair(&w, &data.targets[i], n)?.0;
            }
            Ok(l)
        })
        .collect();
    parts.into_iter().sum()
}

/// The losses of one model on the pairs `idx`: the training loss and both kinds, so reports can
/// show the paper's loss beside the relative squared norm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossValues {
    /// The paper's relative MSE.
    pub relative_mse: f64,
    /// The relative squared norm.
    pub relative_norm: f64,
}

/// Both losses of the field `omega` on the pairs `idx` (one forward solve per pair).
pub fn loss_values(
    solver: &Solver,
    omega: &[f64],
    data: &Dataset,
    idx: std::ops::Range<usize>,
) -> Result<LossValues> {
    let op = data.operator(omega.to_vec())?;
    let n = idx.len();
    ensure(n >= 1, || {
        "the loss needs at least one initial condition".into()
    })?;
    let ids: Vec<usize> = idx.collect();
    let parts: Vec<Result<(f64, f64)>> = ids
        .par_chunks(CHUNK)
        .map(|chunk| {
            let (mut a, mut b) = (0.0, 0.0);
            for &i in chunk {
                let w = predict(solver, &op, &data.inputs[i])?;
                a += Loss::RelativeMse.pair(&w, &data.targets[i], n)?.0;
                b += Loss::RelativeNorm.pair(&w, &data.targets[i], n)?.0;
            }
            Ok((a, b))
        })
        .collect();
    let (mut relative_mse, mut relative_norm) = (0.0, 0.0);
    for p in parts {
        let (a, b) = p?;
        relative_mse += a;
        relative_norm += b;
    }
    Ok(LossValues {
        relative_mse,
        relative_norm,
    })
}

/// The loss as a function of the model parameters and its gradient (MLP → ω → A(ω) → w(1)).
pub fn loss_and_grad(
    model: &FieldModel,
    solver: &Solver,
    loss: Loss,
    data: &Dataset,
    idx: std::ops::Range<usize>,
) -> Result<(f64, Vec<f64>)> {
    let (omega, batch) = model.omega_with_pullback()?;
    let op = data.operator(omega)?;
    let (l, omega_bar) = loss_and_omega_grad(solver, &op, loss, data, idx)?;
    Ok((l, model.pullback(&batch, &omega_bar)))
}

/// Settings of [`train`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSettings {
    /// Full-batch Adam steps.
    pub epochs: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// The training loss.
    pub loss: Loss,
}

/// The outcome of one training run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The solver.
    pub solver: Solver,
    /// The training loss.
    pub loss: Loss,
    /// Training loss before each update (one per epoch).
    pub train_loss: Vec<f64>,
    /// Wall-clock seconds since the start at the end of each epoch.
    pub timestamps: Vec<f64>,
    /// Test loss of the final model (the training loss, with the same solver).
    pub test_loss: f64,
    /// Both test losses of the final model.
    pub test_losses: LossValues,
    /// Test loss of the initial model.
    pub initial_test_loss: f64,
    /// `√mean((|ω̂| − |ω|)²)` of the final field against the truth.
    pub parameter_rmse: f64,
    /// `mean((|ω̂| − |ω|)²)/mean(ω²)`.
    pub parameter_rel_mse: f64,
    /// The paper's "parameter RMSE": the relative MSE `mean((|ω̂| − |ω|)²/(ε + |ω|))`.
    pub paper_parameter_rmse: f64,
    /// Median seconds per epoch (loss + gradient + update).
    pub seconds_per_epoch: f64,
    /// Seconds of every epoch.
    pub epoch_seconds: Vec<f64>,
    /// Forward products with `A` per epoch (over the training pairs).
    pub forward_matvecs_per_epoch: usize,
    /// Forward plus backward products with `A`/`Aᵀ` per epoch.
    pub total_matvecs_per_epoch: usize,
    /// The learned field.
    pub omega: Vec<f64>,
}

/// Parameter metrics `(rmse, rel_mse)` of `|ω̂|` against `|ω|`.
pub fn parameter_metrics(learned: &[f64], truth: &[f64]) -> (f64, f64) {
    let n = truth.len() as f64;
    let mse = learned
        .iter()
        .zip(truth)
        .map(|(a, b)| (a.abs() - b.abs()).powi(2))
        .sum::<f64>()
        / n;
    let ms = truth.iter().map(|b| b * b).sum::<f64>() / n;
    (mse.sqrt(), if ms > 0.0 { mse / ms } else { mse })
}

/// The paper's "parameter RMSE": [`Loss::RelativeMse`] of `|ω̂|` against `|ω|`.
pub fn paper_parameter_rmse(learned: &[f64], truth: &[f64]) -> f64 {
    let a: Vec<f64> = learned.iter().map(|v| v.abs()).collect();
    let b: Vec<f64> = truth.iter().map(|v| v.abs()).collect();
    let weight = 1.0 / b.len().max(1) as f64;
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y) / (PAPER_NUGGET + y))
        .sum::<f64>()
        * weight
}

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut d = v.to_vec();
    d.sort_by(f64::total_cmp);
    d.get(d.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Trains `model` (in place) with full-batch Adam on the training split.
pub fn train(
    model: &mut FieldModel,
    solver: &Solver,
    data: &Dataset,
    settings: &TrainSettings,
    progress: &Progress,
) -> Result<TrainReport> {
    let lr = settings.learning_rate;
    ensure(lr.is_finite() && lr > 0.0, || {
        format!("the learning rate must be positive and finite, got {lr}")
    })?;
    let (train_idx, test_idx) = data.split();
    ensure(!test_idx.is_empty(), || {
        "at least 5 initial conditions are needed for an 80/20 split".into()
    })?;
    let loss = settings.loss;
    let initial_test_loss = {
        let op = data.operator(model.omega()?)?;
        loss_value(solver, &op, loss, data, test_idx.clone())?
    };
    let mut adam = Adam::new(lr, model.num_params());
    let mut theta = model.params().to_vec();
    let (mut train_loss, mut timestamps, mut epoch_seconds) = (vec![], vec![], vec![]);
    let t0 = Instant::now();
    for e in 0..settings.epochs {
        let te = Instant::now();
        let (l, g) = loss_and_grad(model, solver, loss, data, train_idx.clone())?;
        adam.step(&mut theta, &g);
        model.set_params(&theta)?;
        epoch_seconds.push(te.elapsed().as_secs_f64());
        train_loss.push(l);
        timestamps.push(t0.elapsed().as_secs_f64());
        progress.step(e as u64 + 1, &format!("{} loss {l:.3e}", solver.name()));
    }
    let omega = model.omega()?;
    let test_losses = loss_values(solver, &omega, data, test_idx)?;
    let test_loss = match loss {
        Loss::RelativeMse => test_losses.relative_mse,
        Loss::RelativeNorm => test_losses.relative_norm,
    };
    let (parameter_rmse, parameter_rel_mse) = parameter_metrics(&omega, &data.omega);
    let ntrain = train_idx.len();
    Ok(TrainReport {
        solver: *solver,
        loss,
        train_loss,
        timestamps,
        test_loss,
        test_losses,
        initial_test_loss,
        parameter_rmse,
        parameter_rel_mse,
        paper_parameter_rmse: paper_parameter_rmse(&omega, &data.omega),
        seconds_per_epoch: median(&epoch_seconds),
        epoch_seconds,
        forward_matvecs_per_epoch: ntrain * solver.forward_matvecs(),
        total_matvecs_per_epoch: ntrain * (solver.forward_matvecs() + solver.backward_matvecs()),
        omega,
    })
}

/// One point of the work–precision study.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkPrecisionPoint {
    /// Forward products with `A`.
    pub matvecs: usize,
    /// `‖ŵ(1) − w(1)‖/‖w(1)‖` against the reference.
    pub forward_error: f64,
    /// `‖∇̂ − ∇‖/‖∇‖` of `∇_ω ⟨u, w(1)⟩` against the reference.
    pub gradient_error: f64,
}

/// The curves of [`work_precision`]: one list of points per solver (labelled by its default
/// configuration).
pub type WorkPrecision = Vec<(Solver, Vec<WorkPrecisionPoint>)>;

/// Forward and gradient errors of the three solvers at a range of budgets against the
/// reference (Arnoldi of depth [`REFERENCE_DEPTH`] and its adjoint), for `ρ(ω) = ⟨u, w(1)⟩`
/// with a fixed Gaussian `u`, at the true coefficient and the first initial condition. Also
/// returns the cross-check of the reference gradient against a 256-step Tsit5 discrete
/// adjoint (relative difference).
pub fn work_precision(data: &Dataset, seed: u64) -> Result<(WorkPrecision, f64)> {
    use rand::{Rng, SeedableRng};
    let op = data.operator(data.omega.clone())?;
    let w0 = &data.inputs[0];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let u: Vec<f64> = (0..w0.len())
        .map(|_| rng.sample(rand_distr::StandardNormal))
        .collect();
    let run = |s: &Solver| -> Result<(Vec<f64>, Vec<f64>)> {
        let mut g = vec![0.0; op.num_nodes()];
        let mut w1 = Vec::new();
        value_and_vjp(
            s,
            &op,
            w0,
            |w| {
                w1 = w.to_vec();
                Ok((w.iter().zip(&u).map(|(a, b)| a * b).sum(), u.clone()))
            },
            &mut g,
        )?;
        Ok((w1, g))
    };
    let n = w0.len();
    let (w_ref, g_ref) = run(&Solver::Arnoldi {
        depth: REFERENCE_DEPTH.min(n),
    })?;
    let (_, g_rk) = run(&Solver::Tsit5 { steps: 256 })?;
    let crosscheck = rel_err(&g_rk, &g_ref);
    let mut out = Vec::new();
    let depths: Vec<usize> = [2, 4, 6, 8, 10, 12, 15, 18, 24, 30]
        .into_iter()
        .filter(|d| *d <= n)
        .collect();
    let steps = [1usize, 2, 3, 4, 5];
    let mut solvers: Vec<(Solver, Vec<Solver>)> = vec![(
        Solver::Arnoldi { depth: 10 },
        depths
            .iter()
            .map(|&d| Solver::Arnoldi { depth: d })
            .collect(),
    )];
    solvers.push((
        Solver::Dopri5 { steps: 3 },
        steps.iter().map(|&s| Solver::Dopri5 { steps: s }).collect(),
    ));
    solvers.push((
        Solver::Tsit5 { steps: 3 },
        steps.iter().map(|&s| Solver::Tsit5 { steps: s }).collect(),
    ));
    for (label, list) in solvers {
        let mut pts = Vec::new();
        for s in list {
            let (w, g) = run(&s)?;
            pts.push(WorkPrecisionPoint {
                matvecs: s.forward_matvecs(),
                forward_error: rel_err(&w, &w_ref),
                gradient_error: rel_err(&g, &g_ref),
            });
        }
        out.push((label, pts));
    }
    Ok((out, crosscheck))
}
