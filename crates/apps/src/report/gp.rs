//! Output of the GP pipeline: `summary.json`, `loss.png` (loss vs epoch, with the exact loss at
//! the final parameters) and `predictions.png` (predicted vs true on the test set), and the
//! prepared split as CSV (`--save-split`).

use super::{line_plot, scatter_plot, Outputs, Scale, Series};
use crate::gp::{GpConfig, GpOutcome};
use serde_json::{json, Value};
use std::path::Path;

/// How the settings were chosen, for `summary.json` (the pipeline does not know about presets).
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// `"paper"` or `"default"`.
    pub preset: &'a str,
}

/// Mean, median and per-epoch averages of the training history.
struct EpochStats {
    mean_seconds: f64,
    median_seconds: f64,
    matvecs: f64,
    passes: f64,
}

fn epoch_stats(o: &GpOutcome) -> EpochStats {
    let h = &o.train.history;
    let epochs = h.len().max(1) as f64;
    let mut secs: Vec<f64> = h.iter().map(|e| e.seconds).collect();
    secs.sort_by(f64::total_cmp);
    EpochStats {
        mean_seconds: secs.iter().sum::<f64>() / epochs,
        median_seconds: secs.get(secs.len() / 2).copied().unwrap_or(f64::NAN),
        matvecs: h.iter().map(|e| e.matvecs).sum::<usize>() as f64 / epochs,
        passes: h.iter().map(|e| e.passes).sum::<usize>() as f64 / epochs,
    }
}

/// The full `summary.json` value.
pub fn summary(cfg: &GpConfig, o: &GpOutcome, labels: Labels<'_>) -> Value {
    let (data, out, t) = (&o.data, &o.train, &cfg.train);
    let st = &t.stochastic;
    let stats = epoch_stats(o);
    let h = &out.hyper;
    json!({
        "dataset": o.dataset,
        "target": data.target_name,
        "inputs": data.input_names,
        "dropped_constant_columns": data.dropped,
        "n": data.n_used,
        "n_file": data.n_file,
        "n_train": data.n_train(),
        "n_test": data.n_test(),
        "d": data.d,
        "settings": {
            "kernel": t.kernel.name(),
            "epochs": t.epochs,
            "lr": t.lr,
            "mode": if t.exact { "exact" } else { "stochastic" },
            "preset": labels.preset,
            "depth": st.depth,
            "probes": st.probes,
            "precond_rank": st.precond_rank,
            "cg_tol": st.cg_tol,
            "cg_atol": st.cg_atol,
            "kernel_products": if t.exact {
                "dense (exact mode)"
            } else if o.kernel_stored {
                "stored"
            } else {
                "matrix-free"
            },
            "subsample": cfg.subsample.filter(|&m| m > 0),
            "seed": cfg.seed,
            "threads": rayon::current_num_threads(),
        },
        "final_train_loss": out.final_loss,
        "final_train_loss_std_error": out.final_loss_std_error,
        "exact_final_train_loss": out.exact_final_loss,
        "exact_loss_seconds": out.exact_seconds,
        "test_rmse": out.test_rmse,
        "test_nlpd": out.test_nlpd,
        "test_nlpd_points": out.nlpd_points,
        "test_rmse_original_units": out.test_rmse * data.y_std,
        "test_nlpd_original_units": out.test_nlpd + data.y_std.ln(),
        "target_mean": data.y_mean,
        "target_std": data.y_std,
        "seconds_per_epoch": stats.mean_seconds,
        "median_seconds_per_epoch": stats.median_seconds,
        "matvecs_per_epoch": stats.matvecs,
        "passes_per_epoch": stats.passes,
        "predict_seconds": out.predict_seconds,
        "predict_cg": out.predict_cg.map(|p| json!({
            "precond_rank": p.precond_rank,
            "mean_iterations": p.mean_iterations,
            "var_iterations": p.var_iterations,
            "var_points": out.nlpd_points,
        })),
        "checkpoint": t.checkpoint.as_ref().map(|p| json!({
            "path": p.display().to_string(),
            "resumed_after_epoch": out.resumed_epochs,
        })),
        "peak_rss_training_mb": out.peak_rss_training.map(|b| b as f64 / 1e6),
        "peak_rss_mb": crate::cli::ops::peak_rss().map(|b| b as f64 / 1e6),
        "hyperparameters": {
            "lengthscales": h.lengthscales,
            "outputscale": h.outputscale,
            "noise": h.noise,
            "mean": h.mean,
        },
        "history": out.history.iter().map(|e| json!({
            "epoch": e.epoch,
            "loss": e.loss,
            "std_error": e.std_error,
            "seconds": e.seconds,
            "matvecs": e.matvecs,
            "cg_iterations": e.cg_iterations,
            "passes": e.passes,
        })).collect::<Vec<_>>(),
    })
}

/// The one-line JSON printed on stdout.
pub fn summary_line(o: &GpOutcome, dir: &Path) -> Value {
    let out = &o.train;
    json!({
        "dataset": o.dataset,
        "n_train": o.data.n_train(),
        "n_test": o.data.n_test(),
        "final_train_loss": out.final_loss,
        "exact_final_train_loss": out.exact_final_loss,
        "test_rmse": out.test_rmse,
        "test_nlpd": out.test_nlpd,
        "seconds_per_epoch": epoch_stats(o).mean_seconds,
        "out": dir.display().to_string(),
    })
}

/// The closing line of the progress output.
pub fn final_line(o: &GpOutcome, dir: &Path) -> String {
    let (out, data) = (&o.train, &o.data);
    let stats = epoch_stats(o);
    format!(
        "final loss {:.4}{}{}, test RMSE {:.4} (standardised; {:.4} in {} units), test NLPD \
         {:.4}; {:.2} s/epoch (mean over {} epochs; median {:.2}), {:.0} matvecs/epoch; wrote {}",
        out.final_loss,
        plus_minus(out.final_loss_std_error),
        out.exact_final_loss
            .map(|x| format!(" (exact {x:.4})"))
            .unwrap_or_default(),
        out.test_rmse,
        out.test_rmse * data.y_std,
        data.target_name,
        out.test_nlpd,
        stats.mean_seconds,
        out.history.len(),
        stats.median_seconds,
        stats.matvecs,
        dir.display()
    )
}

/// ` ± se` (4 decimals), or a note that there is none (one probe: the standard error is
/// undefined).
pub fn plus_minus(se: f64) -> String {
    if se.is_finite() {
        format!(" ± {se:.4}")
    } else {
        " (one probe: no standard error)".into()
    }
}

/// The exact loss at the final parameters as one point at the last epoch (a marker in the plot
/// and in its legend).
pub fn exact_loss_marker(epochs: usize, loss: f64) -> Series {
    Series::points(
        "exact loss at the final parameters",
        vec![(epochs as f64, loss)],
    )
}

/// Title of `loss.png`, naming the loss's unit (nats per training point).
pub fn loss_title(dataset: &str, kernel: &str) -> String {
    format!("GP training on {dataset} ({kernel} kernel): loss in nats per training point")
}

/// Title of `predictions.png`, with the RMSE in the target's units.
pub fn predictions_title(dataset: &str, rmse: f64, target: &str, points: usize) -> String {
    format!("{dataset}: test set, RMSE {rmse:.4} ({target} units, {points} points)")
}

/// Writes `summary.json`, `loss.png` and `predictions.png` into `dir` (created if missing) as
/// one set ([`Outputs`]: all three replace the previous ones together, or none does).
///
/// # Errors
/// The directory or a file cannot be written.
pub fn write(cfg: &GpConfig, o: &GpOutcome, labels: Labels<'_>, dir: &Path) -> anyhow::Result<()> {
    let mut files = Outputs::new(dir)?;
    files.write_json("summary.json", &summary(cfg, o, labels))?;
    let (out, data) = (&o.train, &o.data);
    let exact = cfg.train.exact;
    let losses = Series::line(
        if exact {
            "exact loss"
        } else {
            "stochastic loss (CG + SLQ)"
        },
        out.history
            .iter()
            .map(|e| (e.epoch as f64, e.loss))
            .collect(),
    );
    let mut series = vec![losses];
    if let Some(x) = out.exact_final_loss {
        if !exact {
            series.push(exact_loss_marker(out.history.len(), x));
        }
    }
    files.render("loss.png", |path| {
        line_plot(
            path,
            &loss_title(&o.dataset, cfg.train.kernel.name()),
            "epoch",
            "negative log marginal likelihood per point (nats)",
            &series,
            Scale::Integer,
            Scale::Linear,
        )
    })?;
    let pairs: Vec<(f64, f64)> = out
        .test_pairs
        .iter()
        .map(|(t, p)| (t * data.y_std + data.y_mean, p * data.y_std + data.y_mean))
        .collect();
    files.render("predictions.png", |path| {
        scatter_plot(
            path,
            &predictions_title(
                &o.dataset,
                out.test_rmse * data.y_std,
                &data.target_name,
                pairs.len(),
            ),
            &format!("true {}", data.target_name),
            &format!("predicted {} (posterior mean)", data.target_name),
            &pairs,
        )
    })?;
    files.commit()
}

/// Writes `dir/train.csv` and `dir/test.csv`: one row per point, the `d` standardised inputs and
/// then the scaled target, `%.17e` (round-trips every `f64`), so another library can be run on
/// exactly the same rows (`bench/gp_peer.py`).
///
/// # Errors
/// The directory or a file cannot be written.
pub fn save_split(dir: &Path, data: &crate::gp::data::GpData) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut files = Outputs::new(dir)?;
    for (file, x, y) in [
        ("train.csv", &data.x_train, &data.y_train),
        ("test.csv", &data.x_test, &data.y_test),
    ] {
        let mut text = String::with_capacity(y.len() * (data.d + 1) * 25);
        for (row, yi) in x.chunks_exact(data.d.max(1)).zip(y.iter()) {
            for v in row {
                write!(text, "{v:.17e},")?;
            }
            writeln!(text, "{yi:.17e}")?;
        }
        files.write(file, text.as_bytes())?;
    }
    files.commit()
}
