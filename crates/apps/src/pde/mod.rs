//! Learning the coefficient field of a wave equation through differentiable `exp(A)v`
//! (the PDE experiment of Krämer et al., NeurIPS 2024, §6), against Runge–Kutta baselines.
//!
//! * **PDE.** `u_tt = ω(x)² (u_{x₁x₁} + u_{x₂x₂})` on `[0,1]²` with Neumann boundaries, the
//!   five-point Laplacian `M` on a `G×G` node grid, and the first-order system `ẇ = A(ω) w`,
//!   `w = (u, u_t)`, `A(ω) = [[0, I], [diag(ω²) M, 0]]` ([`WaveOperator`], matrix-free, `2G²`
//!   rows, [`ParamVjp`](gradmat_operators::ParamVjp) in the grid values of `ω`).
//! * **Model.** `ω = softplus(−5)·MLP(x₁, x₂)` ([`FieldModel`]; the paper: two hidden layers of
//!   500, ReLU, ≈ 250k parameters; the network is [`crate::nn`]'s, one GEMM per layer over all
//!   grid points); gradients flow from the operator's parameter VJP through the MLP's reverse
//!   mode.
//! * **Data** ([`Dataset`]). A true `ω` and initial conditions `(u₀, u̇₀)` drawn from
//!   squared-exponential GPs on the grid with gradmat's Lanczos square-root action; targets
//!   `w(1) = exp(A) w₀` from a depth-80 Arnoldi reference, cross-checked against a fine-step
//!   Dopri5 solve. 80/20 train/test split.
//! * **Loss** ([`Loss`]). The paper's relative MSE `mean((ŷ − y)²/(ε + |y|))` over all pairs
//!   and entries (default), or `(1/n) Σ_i ‖ŵ_i(1) − y_i‖²/‖y_i‖²`; minimised with
//!   [`Adam`](crate::optim::Adam). Reports give both test losses and the paper's "parameter RMSE"
//!   (the relative MSE of `|ω̂|` against `|ω|`) beside the absolute RMSE.
//! * **Solvers** ([`Solver`]). Arnoldi (depth 10, full reorthogonalisation, gradient by the
//!   Arnoldi adjoint); Dopri5 with the continuous backsolve adjoint and Tsit5 with the discrete
//!   checkpointed adjoint ([`rk`]).

pub mod data;
pub mod operator;
pub mod rk;
pub mod train;

pub use data::Dataset;
pub use operator::{Stencil, WaveOperator};
pub use train::{FieldModel, Loss, Solver};

use crate::nn::Activation;
use crate::pipeline::{ensure, PipelineError};
use crate::report::Progress;
use std::time::Instant;
use train::{TrainReport, TrainSettings, WorkPrecision};

/// Configuration of [`run`] (the options of `gradmat pde`).
#[derive(Debug, Clone, PartialEq)]
pub struct PdeConfig {
    /// Grid size `G` (`G×G` nodes, `2G²` unknowns).
    pub grid: usize,
    /// Training epochs (full-batch Adam steps).
    pub epochs: usize,
    /// Solvers to train with, in turn, from the same initial model.
    pub solvers: Vec<Solver>,
    /// Initial conditions (80/20 train/test split).
    pub initial_conditions: usize,
    /// Seed of the data and of the model initialisation.
    pub seed: u64,
    /// Hidden widths of the MLP.
    pub hidden: Vec<usize>,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Training loss.
    pub loss: Loss,
    /// Run the work–precision study (Figure 5 A1/A2).
    pub work_precision: bool,
    /// The spatial operator (the Neumann Laplacian, or the paper code's stencil).
    pub stencil: Stencil,
}

impl Default for PdeConfig {
    /// The paper's problem at `G = 32`: 256 initial conditions, 2-500-500-1 ReLU MLP, Adam 2e-4,
    /// relative MSE, 50 epochs of Arnoldi (depth 10).
    fn default() -> Self {
        Self {
            grid: 32,
            epochs: 50,
            solvers: vec![Solver::Arnoldi { depth: 10 }],
            initial_conditions: 256,
            seed: 1,
            hidden: vec![500, 500],
            learning_rate: 2e-4,
            loss: Loss::RelativeMse,
            work_precision: true,
            stencil: Stencil::Neumann,
        }
    }
}

/// What [`run`] produces (written to disk by [`crate::report::pde`]).
#[derive(Debug, Clone)]
pub struct PdeOutcome {
    /// The data set (true field, initial conditions, targets).
    pub data: Dataset,
    /// Seconds spent generating it.
    pub data_seconds: f64,
    /// Parameters of the MLP.
    pub mlp_parameters: usize,
    /// One training run per solver.
    pub runs: Vec<TrainReport>,
    /// The work–precision curves (empty when not requested).
    pub work_precision: WorkPrecision,
    /// Relative difference of the reference gradient and a 256-step Tsit5 discrete adjoint
    /// (NaN when the study was not run).
    pub gradient_crosscheck: f64,
}

fn check(cfg: &PdeConfig) -> Result<(), PipelineError> {
    ensure(cfg.grid >= 2, || {
        format!("the grid needs at least 2×2 nodes, got {0}×{0}", cfg.grid)
    })?;
    ensure(cfg.initial_conditions >= 5, || {
        "at least 5 initial conditions are needed for an 80/20 split".into()
    })?;
    ensure(!cfg.hidden.is_empty() && !cfg.hidden.contains(&0), || {
        "the hidden layers need at least one unit".into()
    })?;
    ensure(!cfg.solvers.is_empty(), || "no solver to train with".into())?;
    Ok(())
}

/// Samples the data, trains the field model once per solver and runs the work–precision study.
///
/// # Errors
/// An invalid configuration, or a failed solve (non-finite loss, Krylov breakdown errors), as
/// a [`PipelineError`].
pub fn run(cfg: &PdeConfig, progress: &Progress) -> Result<PdeOutcome, PipelineError> {
    check(cfg)?;
    let t = Instant::now();
    progress.println(&format!(
        "gradmat pde: sampling {} initial conditions on a {g}×{g} grid …",
        cfg.initial_conditions,
        g = cfg.grid
    ));
    let data = Dataset::generate_with(cfg.grid, cfg.initial_conditions, cfg.seed, cfg.stencil)?;
    let data_seconds = t.elapsed().as_secs_f64();
    let init = FieldModel::new(cfg.grid, &cfg.hidden, Activation::Relu, cfg.seed ^ 0x00ff)?;
    let settings = TrainSettings {
        epochs: cfg.epochs,
        learning_rate: cfg.learning_rate,
        loss: cfg.loss,
    };
    let mut runs = Vec::with_capacity(cfg.solvers.len());
    for s in &cfg.solvers {
        let mut model = init.clone();
        let bar = progress.child(&format!("pde {}", s.name()), cfg.epochs as u64);
        let r = train::train(&mut model, s, &data, &settings, &bar)?;
        bar.finish();
        runs.push(r);
    }
    let (work_precision, gradient_crosscheck) = if cfg.work_precision {
        progress.println("gradmat pde: work–precision study …");
        train::work_precision(&data, cfg.seed)?
    } else {
        (Vec::new(), f64::NAN)
    };
    Ok(PdeOutcome {
        data,
        data_seconds,
        mlp_parameters: init.num_params(),
        runs,
        work_precision,
        gradient_crosscheck,
    })
}
