//! `gradmat pde`: learn the coefficient field of a wave equation through differentiable
//! `exp(A)v` (Arnoldi adjoint) or Runge–Kutta baselines; writes `summary.json` and PNG plots.

use super::ops::{require_memory_parts, MemoryPart};
use crate::pde::{self, Loss, PdeConfig, Solver, Stencil};
use crate::report::{self, Progress};
use anyhow::{bail, Result};
use clap::ValueEnum;
use std::path::PathBuf;

/// The solver of `gradmat pde`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PdeSolver {
    /// Arnoldi exp(A)v with the Arnoldi adjoint (depth --depth, full reorthogonalisation).
    Arnoldi,
    /// Dopri5, --steps fixed steps, continuous (backsolve) adjoint.
    Dopri5,
    /// Tsit5, --steps fixed steps, discrete (checkpointed) adjoint.
    Tsit5,
    /// All three in turn from the same initial model (for the loss-vs-time comparison).
    All,
}

/// The training loss of `gradmat pde`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PdeLoss {
    /// The paper's relative MSE, mean((ŵ − y)²/(ε + |y|)) over all pairs and entries.
    RelativeMse,
    /// The relative squared norm (1/n) Σ ‖ŵ_i − y_i‖²/‖y_i‖².
    RelativeNorm,
}

/// The spatial operator of `gradmat pde`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PdeStencil {
    /// The five-point Neumann Laplacian (u_tt = ω² Δu, as the paper states the equation).
    Neumann,
    /// The stencil of the paper's experiment code, (0 1 0; 1 -2 1; 0 1 0)/h² on edge-padded
    /// values (= Laplacian + 2/h²; its solutions grow in time).
    PaperCode,
}

/// Arguments of `gradmat pde`.
#[derive(Debug, clap::Args)]
pub struct PdeArgs {
    /// Grid size G (G×G nodes; the operator has 2G² rows; the paper: 128).
    #[arg(long, value_name = "G", default_value_t = 32)]
    pub grid: usize,
    /// Training epochs (full-batch Adam steps).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub epochs: usize,
    /// Solver.
    #[arg(long, value_enum, default_value = "arnoldi")]
    pub solver: PdeSolver,
    /// Number of initial conditions (80/20 train/test split; the paper: 256).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub initial_conditions: usize,
    /// Seed of the data and of the model initialisation.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Output directory for summary.json and the PNG plots (created if missing).
    #[arg(long, value_name = "DIR", default_value = "pde-out")]
    pub out: PathBuf,
    /// Width of the MLP's two hidden layers (the paper: 500).
    #[arg(long, value_name = "H", default_value_t = 500)]
    pub hidden: usize,
    /// Adam learning rate (the paper: 2e-4).
    #[arg(long, value_name = "LR", default_value_t = 2e-4)]
    pub learning_rate: f64,
    /// Arnoldi depth K (forward matvecs per solve).
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub depth: usize,
    /// Runge–Kutta steps on [0, 1] (6 forward matvecs each).
    #[arg(long, value_name = "STEPS", default_value_t = 3)]
    pub steps: usize,
    /// Training loss (both are reported on the test set).
    #[arg(long, value_enum, default_value = "relative-mse")]
    pub loss: PdeLoss,
    /// Spatial operator.
    #[arg(long, value_enum, default_value = "neumann")]
    pub stencil: PdeStencil,
    /// Skip the work–precision study (Figure 5 A1/A2).
    #[arg(long)]
    pub no_work_precision: bool,
    /// No progress output on stderr.
    #[arg(long)]
    pub quiet: bool,
}

fn check(a: &PdeArgs) -> Result<()> {
    if !(4..=512).contains(&a.grid) {
        bail!(
            "--grid {} is out of range: it must be between 4 and 512",
            a.grid
        );
    }
    if a.initial_conditions < 5 {
        bail!(
            "--initial-conditions {} is too small: at least 5 are needed for the 80/20 split",
            a.initial_conditions
        );
    }
    if a.hidden == 0 {
        bail!("--hidden 0 is out of range: the hidden layers need at least one unit");
    }
    if !(a.learning_rate.is_finite() && a.learning_rate > 0.0) {
        bail!(
            "--learning-rate {} must be a positive finite number",
            a.learning_rate
        );
    }
    let n = 2 * a.grid * a.grid;
    if a.depth == 0 || a.depth > n {
        bail!(
            "--depth {} is out of range: it must be between 1 and the dimension {n}",
            a.depth
        );
    }
    if a.steps == 0 {
        bail!("--steps 0 is out of range: at least one Runge–Kutta step is needed");
    }
    check_memory(a)
}

/// Fails, before anything is sampled or allocated, when the sizes asked for need more memory
/// than is available (a lower bound per size option; the message names the largest part).
fn check_memory(a: &PdeArgs) -> Result<()> {
    let g = a.grid as f64;
    let n = 2.0 * g * g;
    let h = a.hidden as f64;
    let threads = rayon::current_num_threads().max(1) as f64;
    // The 2-H-H-1 network: 2H + H + H² + H + H + 1 parameters.
    let params = h * h + 4.0 * h + 1.0;
    let solvers: &[PdeSolver] = match a.solver {
        PdeSolver::All => &[PdeSolver::Arnoldi, PdeSolver::Dopri5, PdeSolver::Tsit5],
        ref s => std::slice::from_ref(s),
    };
    let mut parts = vec![
        MemoryPart::new(
            format!(
                "--hidden {} (the network's {params:.2e} parameters with their gradients and \
                 Adam state)",
                a.hidden
            ),
            8.0 * 7.0 * params,
        ),
        MemoryPart::new(
            format!(
                "--hidden {} on the {}×{} grid (the network's activations)",
                a.hidden, a.grid, a.grid
            ),
            8.0 * 6.0 * g * g * h,
        ),
        MemoryPart::new(
            format!(
                "--initial-conditions {} (the initial conditions and their targets)",
                a.initial_conditions
            ),
            8.0 * a.initial_conditions as f64 * (2.0 * n + 1.0),
        ),
        MemoryPart::new(
            format!("--grid {} (the reference solutions)", a.grid),
            threads * 8.0 * n * (crate::pde::data::REFERENCE_DEPTH as f64 + 2.0),
        ),
    ];
    if solvers.contains(&PdeSolver::Arnoldi) {
        parts.push(MemoryPart::new(
            format!(
                "--depth {} (the Arnoldi bases and their adjoints, one per thread)",
                a.depth
            ),
            threads * 16.0 * n * (a.depth as f64 + 2.0),
        ));
    }
    if solvers.contains(&PdeSolver::Tsit5) {
        parts.push(MemoryPart::new(
            format!(
                "--steps {} (Tsit5's checkpoints, one set per thread)",
                a.steps
            ),
            threads * 8.0 * n * (a.steps as f64 + 8.0),
        ));
    }
    require_memory_parts("pde", &parts)
}

/// The pipeline configuration of the arguments.
pub fn config(a: &PdeArgs) -> PdeConfig {
    let solvers = match a.solver {
        PdeSolver::Arnoldi => vec![Solver::Arnoldi { depth: a.depth }],
        PdeSolver::Dopri5 => vec![Solver::Dopri5 { steps: a.steps }],
        PdeSolver::Tsit5 => vec![Solver::Tsit5 { steps: a.steps }],
        PdeSolver::All => vec![
            Solver::Arnoldi { depth: a.depth },
            Solver::Dopri5 { steps: a.steps },
            Solver::Tsit5 { steps: a.steps },
        ],
    };
    PdeConfig {
        grid: a.grid,
        epochs: a.epochs,
        solvers,
        initial_conditions: a.initial_conditions,
        seed: a.seed,
        hidden: vec![a.hidden, a.hidden],
        learning_rate: a.learning_rate,
        loss: match a.loss {
            PdeLoss::RelativeMse => Loss::RelativeMse,
            PdeLoss::RelativeNorm => Loss::RelativeNorm,
        },
        work_precision: !a.no_work_precision,
        stencil: match a.stencil {
            PdeStencil::Neumann => Stencil::Neumann,
            PdeStencil::PaperCode => Stencil::PaperCode,
        },
    }
}

/// Runs `pde` and returns the one-line JSON summary (the full summary goes to
/// `DIR/summary.json`, the plots to `DIR/*.png`).
pub fn run(a: &PdeArgs) -> Result<String> {
    check(a)?;
    report::prepare_output_dir(&a.out)?;
    let cfg = config(a);
    let progress = if a.quiet {
        Progress::quiet("pde", a.epochs as u64)
    } else {
        Progress::new("pde", a.epochs as u64)
    };
    let outcome = pde::run(&cfg, &progress)?;
    report::pde::write(&cfg, &outcome, &a.out)?;
    Ok(report::pde::summary_line(&cfg, &outcome, &a.out).to_string())
}
