//! Output of the PDE pipeline: `summary.json` and the PNG figures of the paper's §6
//! (Figure 4 `fields.png`, Figure 5 A1/A2 `work_precision_*.png`, Figure 5 B
//! `loss_vs_time.png`).

use super::{heatmaps, line_plot, Field, Outputs, Scale, Series};
use crate::pde::train::{TrainReport, PAPER_NUGGET};
use crate::pde::{PdeConfig, PdeOutcome, Solver};
use serde_json::{json, Value};
use std::path::Path;

fn run_json(r: &TrainReport) -> Value {
    json!({
        "solver": r.solver.name(),
        "depth": match r.solver { Solver::Arnoldi { depth } => Some(depth), _ => None },
        "steps": match r.solver {
            Solver::Dopri5 { steps } | Solver::Tsit5 { steps } => Some(steps),
            Solver::Arnoldi { .. } => None,
        },
        "loss": r.loss.name(),
        "test_loss": r.test_loss,
        "test_loss_relative_mse": r.test_losses.relative_mse,
        "test_loss_relative_norm": r.test_losses.relative_norm,
        "initial_test_loss": r.initial_test_loss,
        "final_train_loss": r.train_loss.last().copied(),
        "parameter_rmse": r.parameter_rmse,
        "parameter_rel_mse": r.parameter_rel_mse,
        "paper_parameter_rmse": r.paper_parameter_rmse,
        "seconds_per_epoch": r.seconds_per_epoch,
        "epoch_seconds": r.epoch_seconds,
        "matvecs_per_epoch": r.forward_matvecs_per_epoch,
        "matvecs_per_epoch_with_backward": r.total_matvecs_per_epoch,
        "train_loss": r.train_loss,
        "seconds": r.timestamps,
    })
}

/// The full `summary.json` value.
pub fn summary(cfg: &PdeConfig, o: &PdeOutcome) -> Value {
    let g = cfg.grid;
    let wp_json: Vec<Value> = o
        .work_precision
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
    let (train_idx, test_idx) = o.data.split();
    let depth = cfg.solvers.iter().find_map(|s| match s {
        Solver::Arnoldi { depth } => Some(*depth),
        _ => None,
    });
    let steps = cfg.solvers.iter().find_map(|s| match s {
        Solver::Dopri5 { steps } | Solver::Tsit5 { steps } => Some(*steps),
        Solver::Arnoldi { .. } => None,
    });
    let mut summary = json!({
        "grid": g,
        "dimension": 2 * g * g,
        "initial_conditions": cfg.initial_conditions,
        "train": train_idx.len(),
        "test": test_idx.len(),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "hidden": cfg.hidden,
        "mlp_parameters": o.mlp_parameters,
        "learning_rate": cfg.learning_rate,
        "loss": cfg.loss.name(),
        "stencil": cfg.stencil.name(),
        "paper_nugget": PAPER_NUGGET,
        "arnoldi_depth": depth,
        "rk_steps": steps,
        "threads": rayon::current_num_threads(),
        "data_seconds": o.data_seconds,
        "reference_crosscheck_dopri5_256": o.data.reference_crosscheck,
        "gradient_crosscheck_tsit5_256": o.gradient_crosscheck,
        "runs": o.runs.iter().map(run_json).collect::<Vec<_>>(),
        "work_precision": wp_json,
    });
    if let ([r], Some(obj)) = (o.runs.as_slice(), summary.as_object_mut()) {
        let rj = run_json(r);
        for key in [
            "solver",
            "test_loss",
            "test_loss_relative_mse",
            "test_loss_relative_norm",
            "parameter_rmse",
            "parameter_rel_mse",
            "paper_parameter_rmse",
            "seconds_per_epoch",
            "matvecs_per_epoch",
        ] {
            obj.insert(key.into(), rj[key].clone());
        }
    }
    summary
}

/// The one-line JSON printed on stdout.
pub fn summary_line(cfg: &PdeConfig, o: &PdeOutcome, dir: &Path) -> Value {
    let short: Vec<Value> = o
        .runs
        .iter()
        .map(|r| {
            json!({
                "solver": r.solver.name(),
                "test_loss": r.test_loss,
                "parameter_rmse": r.parameter_rmse,
                "paper_parameter_rmse": r.paper_parameter_rmse,
                "seconds_per_epoch": r.seconds_per_epoch,
                "matvecs_per_epoch": r.forward_matvecs_per_epoch,
            })
        })
        .collect();
    json!({
        "grid": cfg.grid,
        "epochs": cfg.epochs,
        "loss": cfg.loss.name(),
        "runs": short,
        "summary": dir.join("summary.json").display().to_string(),
    })
}

/// Writes `summary.json` and the figures to `dir` (created if missing) as one set
/// ([`Outputs`]: they replace the previous ones together, or none does).
///
/// # Errors
/// Files that cannot be written.
pub fn write(cfg: &PdeConfig, o: &PdeOutcome, dir: &Path) -> anyhow::Result<()> {
    let mut files = Outputs::new(dir)?;
    let g = cfg.grid;
    let abs_true: Vec<f64> = o.data.omega.iter().map(|v| v.abs()).collect();
    let abs_learned: Vec<Vec<f64>> = o
        .runs
        .iter()
        .map(|r| r.omega.iter().map(|v| v.abs()).collect())
        .collect();
    let mut fields = vec![Field {
        title: "true |ω|".into(),
        rows: g,
        cols: g,
        values: &abs_true,
    }];
    for (r, v) in o.runs.iter().zip(&abs_learned) {
        fields.push(Field {
            title: format!("learned |ω| ({})", r.solver.name()),
            rows: g,
            cols: g,
            values: v,
        });
    }
    files.render("fields.png", |path| {
        heatmaps(path, &format!("Coefficient field, {g}×{g} grid"), &fields)
    })?;
    if !o.work_precision.is_empty() {
        let curves = |pick: fn(&crate::pde::train::WorkPrecisionPoint) -> f64| -> Vec<Series> {
            o.work_precision
                .iter()
                .map(|(s, pts)| {
                    Series::line(
                        s.name(),
                        pts.iter().map(|p| (p.matvecs as f64, pick(p))).collect(),
                    )
                })
                .collect()
        };
        files.render("work_precision_forward.png", |path| {
            line_plot(
                path,
                "Forward error of w(1) vs matvecs (relative, 2-norm)",
                "matrix-vector products (forward)",
                "relative error",
                &curves(|p| p.forward_error),
                Scale::Integer,
                Scale::Log,
            )
        })?;
        files.render("work_precision_gradient.png", |path| {
            line_plot(
                path,
                "Gradient error vs matvecs (relative, 2-norm)",
                "matrix-vector products (forward)",
                "relative error of the gradient",
                &curves(|p| p.gradient_error),
                Scale::Integer,
                Scale::Log,
            )
        })?;
    }
    if cfg.epochs > 0 {
        let curves: Vec<Series> = o
            .runs
            .iter()
            .map(|r| {
                Series::line(
                    r.solver.name(),
                    r.timestamps
                        .iter()
                        .copied()
                        .zip(r.train_loss.iter().copied())
                        .collect(),
                )
            })
            .collect();
        files.render("loss_vs_time.png", |path| {
            line_plot(
                path,
                "Training loss vs wall time (seconds)",
                "seconds",
                &format!("training loss ({})", cfg.loss.name()),
                &curves,
                Scale::Linear,
                Scale::Log,
            )
        })?;
    }
    files.write_json("summary.json", &summary(cfg, o))?;
    files.commit()
}
