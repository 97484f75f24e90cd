//! `gradmat pde`: learn the coefficient field of a wave equation through differentiable
//! `exp(A)v` (Arnoldi adjoint) or Runge–Kutta baselines; writes `summary.json` and PNG plots.

use crate::pde::train::{self, FieldModel, Solver, TrainReport};
use crate::pde::Dataset;
use crate::report::{self, Field, Progress, Scale, Series};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use gradmat_operators::ggn::Activation;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

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
    Ok(())
}

fn run_json(r: &TrainReport) -> Value {
    json!({
        "solver": r.solver.name(),
        "test_loss": r.test_loss,
        "initial_test_loss": r.initial_test_loss,
        "final_train_loss": r.train_loss.last().copied(),
        "parameter_rmse": r.parameter_rmse,
        "parameter_rel_mse": r.parameter_rel_mse,
        "seconds_per_epoch": r.seconds_per_epoch,
        "matvecs_per_epoch": r.forward_matvecs_per_epoch,
        "matvecs_per_epoch_with_backward": r.total_matvecs_per_epoch,
        "train_loss": r.train_loss,
        "seconds": r.timestamps,
    })
}

/// Runs `pde` and returns the one-line JSON summary (the full summary goes to
/// `DIR/summary.json`, the plots to `DIR/*.png`).
pub fn run(a: &PdeArgs) -> Result<String> {
    check(a)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let t = Instant::now();
    eprintln!(
        "gradmat pde: sampling {} initial conditions on a {g}×{g} grid …",
        a.initial_conditions,
        g = a.grid
    );
    let data = Dataset::generate(a.grid, a.initial_conditions, a.seed)?;
    let data_seconds = t.elapsed().as_secs_f64();
    let solvers: Vec<Solver> = match a.solver {
        PdeSolver::Arnoldi => vec![Solver::Arnoldi { depth: a.depth }],
        PdeSolver::Dopri5 => vec![Solver::Dopri5 { steps: a.steps }],
        PdeSolver::Tsit5 => vec![Solver::Tsit5 { steps: a.steps }],
        PdeSolver::All => vec![
            Solver::Arnoldi { depth: a.depth },
            Solver::Dopri5 { steps: a.steps },
            Solver::Tsit5 { steps: a.steps },
        ],
    };
    let hidden = [a.hidden, a.hidden];
    let init = FieldModel::new(a.grid, &hidden, Activation::Relu, a.seed ^ 0x00ff)?;
    let mut reports = Vec::new();
    for s in &solvers {
        let mut model = init.clone();
        let progress = Progress::new(&format!("pde {}", s.name()), a.epochs as u64);
        let r = train::train(&mut model, s, &data, a.epochs, a.learning_rate, &progress)?;
        progress.finish();
        reports.push(r);
    }
    let (wp, grad_crosscheck) = train::work_precision(&data, a.seed)?;

    // Plots.
    let g = a.grid;
    let abs_true: Vec<f64> = data.omega.iter().map(|v| v.abs()).collect();
    let abs_learned: Vec<Vec<f64>> = reports
        .iter()
        .map(|r| r.omega.iter().map(|v| v.abs()).collect())
        .collect();
    let mut fields = vec![Field {
        title: "true |ω|".into(),
        rows: g,
        cols: g,
        values: &abs_true,
    }];
    for (r, v) in reports.iter().zip(&abs_learned) {
        fields.push(Field {
            title: format!("learned |ω| ({})", r.solver.name()),
            rows: g,
            cols: g,
            values: v,
        });
    }
    report::heatmaps(
        &a.out.join("fields.png"),
        &format!("Coefficient field, {g}×{g} grid"),
        &fields,
    )?;
    let fwd: Vec<Series> = wp
        .iter()
        .map(|(s, pts)| Series {
            name: s.name().into(),
            points: pts
                .iter()
                .map(|p| (p.matvecs as f64, p.forward_error))
                .collect(),
        })
        .collect();
    let rev: Vec<Series> = wp
        .iter()
        .map(|(s, pts)| Series {
            name: s.name().into(),
            points: pts
                .iter()
                .map(|p| (p.matvecs as f64, p.gradient_error))
                .collect(),
        })
        .collect();
    report::line_plot(
        &a.out.join("work_precision_forward.png"),
        "Forward error of w(1) vs matvecs",
        "matrix-vector products (forward)",
        "relative error",
        &fwd,
        Scale::Linear,
        Scale::Log,
    )?;
    report::line_plot(
        &a.out.join("work_precision_gradient.png"),
        "Gradient error vs matvecs",
        "matrix-vector products (forward)",
        "relative error of the gradient",
        &rev,
        Scale::Linear,
        Scale::Log,
    )?;
    let curves: Vec<Series> = reports
        .iter()
        .map(|r| Series {
            name: r.solver.name().into(),
            points: r
                .timestamps
                .iter()
                .copied()
                .zip(r.train_loss.iter().copied())
                .collect(),
        })
        .collect();
    if a.epochs > 0 {
        report::line_plot(
            &a.out.join("loss_vs_time.png"),
            "Training loss vs wall time",
            "seconds",
            "training loss (relative MSE)",
            &curves,
            Scale::Linear,
            Scale::Log,
        )?;
    }

    let wp_json: Vec<Value> = wp
        .iter()
        .map(|(s, pts)| {
            json!({
                "solver": s.name(),
                "matvecs": pts.iter().map(|p| p.matvecs).collect::<Vec<_>>(),
                "forward_error": pts.iter().map(|p| p.forward_error).collect::<Vec<_>>(),
                "gradient_error": pts.iter().map(|p| p.gradient_error).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (train_idx, test_idx) = data.split();
    let mut summary = json!({
        "grid": g,
        "dimension": 2 * g * g,
        "initial_conditions": a.initial_conditions,
        "train": train_idx.len(),
        "test": test_idx.len(),
        "epochs": a.epochs,
        "seed": a.seed,
        "hidden": [a.hidden, a.hidden],
        "mlp_parameters": init.num_params(),
        "learning_rate": a.learning_rate,
        "arnoldi_depth": a.depth,
        "rk_steps": a.steps,
        "data_seconds": data_seconds,
        "reference_crosscheck_dopri5_256": data.reference_crosscheck,
        "gradient_crosscheck_tsit5_256": grad_crosscheck,
        "runs": reports.iter().map(run_json).collect::<Vec<_>>(),
        "work_precision": wp_json,
    });
    if let ([r], Some(obj)) = (reports.as_slice(), summary.as_object_mut()) {
        for key in [
            "solver",
            "test_loss",
            "parameter_rmse",
            "parameter_rel_mse",
            "seconds_per_epoch",
            "matvecs_per_epoch",
        ] {
            obj.insert(key.into(), run_json(r)[key].clone());
        }
    }
    report::write_json(&a.out.join("summary.json"), &summary)?;
    let short: Vec<Value> = reports
        .iter()
        .map(|r| {
            json!({
                "solver": r.solver.name(),
                "test_loss": r.test_loss,
                "parameter_rmse": r.parameter_rmse,
                "seconds_per_epoch": r.seconds_per_epoch,
                "matvecs_per_epoch": r.forward_matvecs_per_epoch,
            })
        })
        .collect();
    Ok(json!({
        "grid": g,
        "epochs": a.epochs,
        "runs": short,
        "summary": a.out.join("summary.json").display().to_string(),
    })
    .to_string())
}
