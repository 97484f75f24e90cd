//! Output of the BNN pipeline: `summary.json`, `table.md` (the paper's Table 5 columns) and
//! `objective.png` (objective/N vs α-step, the paper's Figure 6).

use super::{line_plot, Outputs, Scale, Series};
use crate::bnn::predict::{Metrics, Predictive};
use crate::bnn::{BnnConfig, BnnOutcome, MethodOutcome};
use serde_json::{json, Value};
use std::path::Path;

fn metrics_json(m: &Metrics) -> Value {
    json!({
        "accuracy": m.accuracy,
        "nlpd": m.nlpd,
        "joint_loglik": m.joint_loglik,
        "ece": m.ece,
    })
}

/// The median of the per-step seconds of a method's α optimisation (NaN without steps).
pub fn median_step_seconds(m: &MethodOutcome) -> f64 {
    let mut t: Vec<f64> = m.trace.iter().map(|s| s.seconds).collect();
    t.sort_by(f64::total_cmp);
    t.get(t.len() / 2).copied().unwrap_or(f64::NAN)
}

fn method_json(m: &MethodOutcome, n_train: usize) -> Value {
    let n = n_train as f64;
    json!({
        "method": m.name,
        "matvecs_per_evaluation": m.matvecs,
        "alpha": m.alpha,
        "optimisation_seconds": m.optimisation_seconds,
        "median_step_seconds": median_step_seconds(m),
        "sampling_seconds": m.sampling_seconds,
        "log_marginal_likelihood": m.log_marginal_likelihood,
        "log_marginal_likelihood_per_datum": m.log_marginal_likelihood / n,
        "reference_log_marginal_likelihood_per_datum":
            m.reference_log_marginal_likelihood.map(|v| v / n),
        "train": metrics_json(&m.train),
        "test": metrics_json(&m.test),
        "ood_auroc": m.ood_auroc,
        "trace": m.trace.iter().map(|s| json!({
            "step": s.step,
            "objective": s.objective,
            "objective_per_datum": s.objective / n,
            "logdet": s.logdet,
            "alpha": s.alpha,
            "seconds": s.seconds,
        })).collect::<Vec<_>>(),
    })
}

/// The full `summary.json` value.
pub fn summary(cfg: &BnnConfig, o: &BnnOutcome) -> Value {
    json!({
        "data": cfg.data.display().to_string(),
        "architecture": o.architecture,
        "activation": "tanh",
        "num_params": o.num_params,
        "num_train": o.num_train,
        "num_test": o.num_test,
        "num_eval_train": o.num_eval_train,
        "ggn_subsample": o.ggn_subsample,
        "ggn_scale": o.ggn_scale,
        "per_layer": cfg.per_layer,
        "samples": cfg.samples,
        "predictive": match cfg.predictive { Predictive::Glm => "glm", Predictive::Nn => "nn" },
        "ood": "pixel-shuffled test images",
        "seed": cfg.seed,
        "threads": rayon::current_num_threads(),
        "map": {
            "epochs": cfg.map_epochs,
            "prior_precision": cfg.prior_precision,
            "epoch_losses": o.map.epoch_losses,
            "seconds": o.map.seconds,
            "train_nll_sum": o.map.train_nll_sum,
            "train": metrics_json(&o.map.train),
            "test": metrics_json(&o.map.test),
            "ood_auroc": o.map.ood_auroc,
        },
        "methods": o.methods.iter().map(|m| method_json(m, o.num_train)).collect::<Vec<_>>(),
        "total_seconds": o.total_seconds,
    })
}

fn fmt4(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "–".into()
    }
}

/// The Table-5-like markdown table of a run.
pub fn markdown_table(o: &BnnOutcome) -> String {
    let n = o.num_train as f64;
    let mut s = String::from(
        "| method | α | runtime α-opt. (s) | s / α-step (median) | log marg. lik./N | ref. log marg. lik./N | joint LL/N train | joint LL/N test | NLPD test | acc. test | ECE train | ECE test | AUROC |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let (tr, te) = (&o.map.train, &o.map.test);
    s += &format!(
        "| MAP | – | – | – | – | – | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
        tr.joint_loglik, te.joint_loglik, te.nlpd, te.accuracy, tr.ece, te.ece, o.map.ood_auroc
    );
    for m in &o.methods {
        let alpha = m
            .alpha
            .iter()
            .map(|v| format!("{v:.3e}"))
            .collect::<Vec<_>>()
            .join(", ");
        s += &format!(
            "| {} | {} | {:.1} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.name,
            alpha,
            m.optimisation_seconds,
            median_step_seconds(m),
            fmt4(m.log_marginal_likelihood / n),
            fmt4(
                m.reference_log_marginal_likelihood
                    .map_or(f64::NAN, |v| v / n)
            ),
            fmt4(m.train.joint_loglik),
            fmt4(m.test.joint_loglik),
            fmt4(m.test.nlpd),
            fmt4(m.test.accuracy),
            fmt4(m.train.ece),
            fmt4(m.test.ece),
            fmt4(m.ood_auroc),
        );
    }
    s
}

/// Writes `summary.json`, `table.md` and (with at least one α-step) `objective.png` to `dir`
/// (created if missing) as one set ([`Outputs`]: they replace the previous ones together, or
/// none does), and returns the summary.
///
/// # Errors
/// Files that cannot be written.
pub fn write(cfg: &BnnConfig, o: &BnnOutcome, dir: &Path) -> anyhow::Result<Value> {
    let mut files = Outputs::new(dir)?;
    let n = o.num_train as f64;
    if cfg.alpha_steps > 0 {
        let series: Vec<Series> = o
            .methods
            .iter()
            .map(|m| {
                Series::line(
                    m.name.clone(),
                    m.trace
                        .iter()
                        .map(|s| (s.step as f64, s.objective / n))
                        .collect(),
                )
            })
            .collect();
        files.render("objective.png", |path| {
            line_plot(
                path,
                "Laplace log marginal likelihood vs. iteration (nats per training example)",
                "iteration",
                "objective / N",
                &series,
                Scale::Integer,
                Scale::Linear,
            )
        })?;
    }
    files.write("table.md", markdown_table(o).as_bytes())?;
    let summary = summary(cfg, o);
    files.write_json("summary.json", &summary)?;
    files.commit()?;
    Ok(summary)
}
