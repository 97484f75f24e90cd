//! `gradmat bnn`: Laplace calibration of an MNIST MLP with a Lanczos (or diagonal) log
//! determinant of the Gauss–Newton matrix (see [`crate::bnn`]).

use crate::bnn::predict::Predictive;
use crate::bnn::{run as run_pipeline, BnnConfig, MethodSpec};
use crate::report::{self, Progress};
use clap::ValueEnum;
use std::path::PathBuf;

/// Environment variable giving the default data directory.
pub const DATA_ENV: &str = "GRADMAT_MNIST_DIR";

/// The log-determinant estimator(s) of `gradmat bnn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BnnMethod {
    /// Stochastic Lanczos quadrature, gradient through the adjoint.
    Lanczos,
    /// Stochastic diagonal of the GGN, closed-form log det (baseline).
    Diagonal,
    /// The paper's comparison: Lanczos-50, Lanczos-150 and diagonal-150 (or Lanczos-M and
    /// diagonal-M with --matvecs M).
    All,
}

/// The predictive distribution of `gradmat bnn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BnnPredictive {
    /// The network linearised at the MAP estimate.
    Glm,
    /// The network at the sampled weights.
    Nn,
}

/// Arguments of `gradmat bnn`.
#[derive(Debug, clap::Args)]
pub struct BnnArgs {
    /// Directory with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
    /// t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] [default: $GRADMAT_MNIST_DIR,
    /// else ../shared/data/images].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Hidden width H of the D-H-10 tanh MLP.
    #[arg(long, value_name = "H", default_value_t = 128)]
    pub hidden: usize,
    /// Number of hidden layers of width H (2 with --hidden 1024 gives the 784-1024-1024-10
    /// network with 1.86M parameters).
    #[arg(long, value_name = "L", default_value_t = 1)]
    pub hidden_layers: usize,
    /// Epochs of MAP training (Adam, mini-batches).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub map_epochs: usize,
    /// Estimator(s) of log det(GGN + αI).
    #[arg(long, value_enum, default_value = "all")]
    pub method: BnnMethod,
    /// Matrix-vector products per objective evaluation [default: 150 for one method; 50 and 150
    /// (Lanczos) and 150 (diagonal) for all].
    #[arg(long, value_name = "M")]
    pub matvecs: Option<usize>,
    /// SLQ probes per objective evaluation (the depth is M/probes).
    #[arg(long, value_name = "L", default_value_t = 1)]
    pub probes: usize,
    /// Lanczos reorthogonalisation: `full` (the whole basis at every step) or `none` (the
    /// three-term recurrence; far less memory traffic at large depth — methods are then named
    /// `lanczos-M-plain`).
    #[arg(long, value_enum, default_value = "full")]
    pub reorthogonalize: super::Reorth,
    /// Master seed (initialisation, shuffling, probes, samples).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Output directory (summary.json, table.md, objective.png).
    #[arg(long, value_name = "DIR", default_value = "bnn-out")]
    pub out: PathBuf,
    /// Training points of the GGN subsample (scaled by N/m).
    #[arg(long, value_name = "m", default_value_t = 1000)]
    pub ggn_subsample: usize,
    /// Use only the first N training examples (0: all 60000).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub train_limit: usize,
    /// Training points for the train metrics (0: all).
    #[arg(long, value_name = "N", default_value_t = 10000)]
    pub eval_train: usize,
    /// Adam steps of the prior-precision optimisation.
    #[arg(long, value_name = "T", default_value_t = 20)]
    pub alpha_steps: usize,
    /// Adam step size in log α.
    #[arg(long, value_name = "LR", default_value_t = 0.3)]
    pub alpha_lr: f64,
    /// Prior precision α₀ of MAP training and start of the optimisation.
    #[arg(long, value_name = "A", default_value_t = 1.0)]
    pub prior_precision: f64,
    /// One prior precision per layer instead of an isotropic one.
    #[arg(long)]
    pub per_layer: bool,
    /// Posterior samples of the predictive.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub samples: usize,
    /// Predictive distribution.
    #[arg(long, value_enum, default_value = "glm")]
    pub predictive: BnnPredictive,
    /// Matvecs of the common reference SLQ estimate of each final objective (0: skip).
    #[arg(long, value_name = "M", default_value_t = 150)]
    pub reference_matvecs: usize,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

/// The default data directory: `$GRADMAT_MNIST_DIR`, else `../shared/data/images`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os(DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/images"))
}

/// Runs `gradmat bnn` and returns the one-line JSON of the table rows.
///
/// # Errors
/// Missing data, malformed IDX files, invalid options, failed computations.
pub fn run(a: &BnnArgs) -> anyhow::Result<String> {
    if a.matvecs == Some(0) {
        anyhow::bail!("--matvecs must be at least 1");
    }
    if a.probes == 0 {
        anyhow::bail!("--probes must be at least 1");
    }
    if a.samples == 0 {
        anyhow::bail!("--samples must be at least 1");
    }
    let reorth = a.reorthogonalize.krylov();
    let lanczos = |m: usize| MethodSpec::lanczos(m, a.probes, reorth);
    let methods = match (a.method, a.matvecs) {
        (BnnMethod::Lanczos, m) => vec![lanczos(m.unwrap_or(150))],
        (BnnMethod::Diagonal, m) => vec![MethodSpec::diagonal(m.unwrap_or(150))],
        (BnnMethod::All, Some(m)) => vec![lanczos(m), MethodSpec::diagonal(m)],
        (BnnMethod::All, None) => vec![lanczos(50), lanczos(150), MethodSpec::diagonal(150)],
    };
    let cfg = BnnConfig {
        data: a.data.clone().unwrap_or_else(default_data_dir),
        hidden: a.hidden,
        hidden_layers: a.hidden_layers,
        map_epochs: a.map_epochs,
        train_limit: a.train_limit,
        ggn_subsample: a.ggn_subsample,
        methods,
        alpha_steps: a.alpha_steps,
        alpha_lr: a.alpha_lr,
        prior_precision: a.prior_precision,
        per_layer: a.per_layer,
        samples: a.samples,
        predictive: match a.predictive {
            BnnPredictive::Glm => Predictive::Glm,
            BnnPredictive::Nn => Predictive::Nn,
        },
        eval_train: a.eval_train,
        reference_matvecs: a.reference_matvecs,
        seed: a.seed,
        ..BnnConfig::default()
    };
    // Created and checked before the run (not after it).
    report::prepare_output_dir(&a.out)?;
    let progress = if a.quiet {
        Progress::quiet("bnn", 0)
    } else {
        Progress::new("bnn", 0)
    };
    let outcome = run_pipeline(&cfg, &progress)?;
    let summary = report::bnn::write(&cfg, &outcome, &a.out)?;
    let rows: Vec<serde_json::Value> = summary["methods"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|m| {
                    serde_json::json!({
                        "method": m["method"],
                        "alpha": m["alpha"],
                        "log_marginal_likelihood_per_datum": m["log_marginal_likelihood_per_datum"],
                        "median_step_seconds": m["median_step_seconds"],
                        "test_accuracy": m["test"]["accuracy"],
                        "test_ece": m["test"]["ece"],
                        "ood_auroc": m["ood_auroc"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(serde_json::json!({
        "summary": a.out.join("summary.json").display().to_string(),
        "methods": rows,
    })
    .to_string())
}
