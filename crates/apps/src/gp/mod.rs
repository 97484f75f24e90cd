//! Gaussian-process hyperparameter fitting (the paper's §5): data, model, training.
//!
//! * [`csv`] — the strict numeric CSV reader (line and column in every error);
//! * [`data`] — target selection, seeded subsample and 80/20 split, standardisation;
//! * [`model`] — softplus parameters, the stochastic (CG + SLQ, exact adjoints) and exact
//!   (dense Cholesky) negative log marginal likelihood with gradients, predictions;
//! * [`mod@train`] — Adam and the training loop with progress and the final evaluation;
//! * [`run`] — the pipeline: load, prepare, train, evaluate (written to disk by
//!   [`crate::report::gp`]).

pub mod checkpoint;
pub mod csv;
pub mod data;
pub mod distributed;
pub mod model;
pub mod train;

use crate::pipeline::{ensure, PipelineError, StageContext as _};
use crate::report::Progress;
use csv::{read_csv, read_csv_from, Table};
use data::{prepare_with, resolve_target, GpData};
use std::path::{Path, PathBuf};
use train::{train, TrainConfig, TrainOutcome};

/// The bundled default dataset (ggplot2 `diamonds`, derived; see `data/gp/README.md`).
static DIAMONDS: &[u8] = include_bytes!("../../../../data/gp/diamonds.csv.gz");

/// Default subsample of the bundled dataset: 2,500 rows (2,000 for training), which keeps the
/// default run short on two cores.
pub const DEFAULT_SUBSAMPLE: usize = 2_500;

/// The UCI sets of the paper's Table 3 and the other shared ones, looked up by name.
pub const UCI: [&str; 14] = [
    "airfoil",
    "bike",
    "concrete",
    "elevators",
    "energy",
    "gas",
    "housing",
    "keggdirected",
    "kin40k",
    "parkinsons",
    "protein",
    "pumadyn32nm",
    "wine",
    "yacht",
];

/// The directory of the UCI sets: `$GRADMAT_UCI_DIR`, default `../shared/data/uci`.
pub fn uci_dir() -> PathBuf {
    std::env::var_os("GRADMAT_UCI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/uci"))
}

/// Loads a dataset: `diamonds` (bundled), a UCI name (from [`uci_dir`]), or a path to a
/// numeric CSV file (optionally gzipped, header optional). Returns its display name and table.
///
/// # Errors
/// A missing UCI file or any [`csv::CsvError`], as a [`PipelineError`].
pub fn load(spec: &str) -> Result<(String, Table), PipelineError> {
    if spec == "diamonds" {
        let r = std::io::BufReader::new(flate2::read::GzDecoder::new(DIAMONDS));
        let t = read_csv_from(r, Path::new("diamonds (bundled)"))?;
        return Ok(("diamonds".into(), t));
    }
    if UCI.contains(&spec) {
        let path = uci_dir().join(format!("{spec}.csv.gz"));
        ensure(path.exists(), || {
            format!(
                "{}: not found (the UCI sets are read from $GRADMAT_UCI_DIR, default \
                 ../shared/data/uci)",
                path.display()
            )
        })?;
        return Ok((spec.to_string(), read_csv(&path)?));
    }
    let path = Path::new(spec);
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| spec.to_string());
    Ok((name, read_csv(path)?))
}

/// What [`run`] does.
#[derive(Debug, Clone)]
pub struct GpConfig {
    /// The dataset (see [`load`]).
    pub data: String,
    /// Target column: a header name or a 1-based number (`None`: the last column).
    pub target: Option<String>,
    /// Rows drawn at random (`None`: all; `Some(0)` is `None`). The bundled `diamonds` default
    /// is resolved by the caller ([`DEFAULT_SUBSAMPLE`]).
    pub subsample: Option<usize>,
    /// Seed of the subsample and the 80/20 split (the probes' seed is `train.seed`).
    pub seed: u64,
    /// Drop input columns that are constant on the training split (otherwise an error).
    pub drop_constant: bool,
    /// Model, optimiser and loss settings.
    pub train: TrainConfig,
}

/// What [`run`] produces (written to disk by [`crate::report::gp`]).
#[derive(Debug, Clone)]
pub struct GpOutcome {
    /// The dataset's display name.
    pub dataset: String,
    /// The prepared data (split, standardised).
    pub data: GpData,
    /// Whether the epochs' kernel products went through a stored kernel matrix.
    pub kernel_stored: bool,
    /// Training history and final evaluation.
    pub train: TrainOutcome,
}

/// The largest `--lr` accepted: Adam's steps in the unconstrained (softplus) parameters are
/// about `lr` long, and a step of 10 already changes a lengthscale by a factor `e^10`.
pub const MAX_LR: f64 = 10.0;

/// Fails, before the header line, when the run on `n` training points needs more memory than
/// is available: exact mode's two dense `n×n` matrices, or the stochastic mode's probe bases
/// (run together, up to [`gradmat_matfun::estimators::LOCKSTEP_GROUP`] at a time), its
/// preconditioner and the stored kernel matrix.
fn check_memory(cfg: &GpConfig, n: usize, kernel_stored: bool) -> Result<(), PipelineError> {
    use crate::cli::ops::{require_memory_parts, MemoryPart};
    let t = &cfg.train;
    if t.exact {
        return Ok(model::require_dense(n, 2)?);
    }
    let st = &t.stochastic;
    let nf = n as f64;
    let at_once = st.probes.min(gradmat_matfun::estimators::LOCKSTEP_GROUP) as f64;
    let depth = st.depth.min(n) as f64;
    let mut parts = vec![
        MemoryPart::new(
            format!(
                "--probes {} --depth {} (the Lanczos bases of the probes and their adjoints)",
                st.probes, st.depth
            ),
            at_once * 16.0 * nf * (depth + 2.0),
        ),
        MemoryPart::new(
            format!("--precond-rank {}", st.precond_rank),
            16.0 * nf * st.precond_rank.min(n) as f64,
        ),
    ];
    if kernel_stored {
        parts.push(MemoryPart::new(
            "the stored kernel matrix (--kernel-cache)",
            8.0 * nf * nf,
        ));
    }
    require_memory_parts("gp", &parts).map_err(|e| PipelineError::config(e.to_string()))
}

fn check(cfg: &GpConfig) -> Result<(), PipelineError> {
    let t = &cfg.train;
    let st = &t.stochastic;
    ensure(t.epochs >= 1, || "--epochs must be at least 1".into())?;
    ensure(t.lr.is_finite() && t.lr > 0.0, || {
        "--lr must be a positive number".into()
    })?;
    ensure(t.lr <= MAX_LR, || {
        format!(
            "--lr {} is too large: Adam moves each (softplus-transformed) hyperparameter by about \
             lr per epoch, and steps above {MAX_LR} can only diverge (the default is 0.05)",
            t.lr
        )
    })?;
    ensure(st.depth >= 1, || "--depth must be at least 1".into())?;
    ensure(st.probes >= 1, || "--probes must be at least 1".into())?;
    ensure(
        st.cg_tol.is_finite() && (0.0..1.0).contains(&st.cg_tol),
        || "--cg-tol must be in [0, 1)".into(),
    )?;
    ensure(st.cg_atol.is_finite() && st.cg_atol >= 0.0, || {
        "--cg-atol must be a non-negative number".into()
    })?;
    ensure(st.cg_tol > 0.0 || st.cg_atol > 0.0, || {
        "--cg-tol and --cg-atol cannot both be 0".into()
    })
}

/// Loads and prepares the data, prints the header line, trains and evaluates.
///
/// # Errors
/// An invalid configuration, unreadable or unusable data (named), or a failed loss evaluation,
/// as a [`PipelineError`].
pub fn run(cfg: &GpConfig, progress: &Progress) -> Result<GpOutcome, PipelineError> {
    check(cfg)?;
    let (dataset, table) = load(&cfg.data)?;
    let target = resolve_target(&table, cfg.target.as_deref()).stage(|| cfg.data.clone())?;
    let subsample = cfg.subsample.filter(|&m| m > 0);
    let data = prepare_with(&table, target, subsample, cfg.seed, cfg.drop_constant)
        .stage(|| cfg.data.clone())?;
    drop(table);
    if !data.dropped.is_empty() {
        progress.println(&format!(
            "dropped constant input columns: {}",
            data.dropped.join(", ")
        ));
    }
    let t = &cfg.train;
    let st = &t.stochastic;
    let kernel_stored = !t.exact && st.kernel_cache.dense_for(data.n_train());
    check_memory(cfg, data.n_train(), kernel_stored)?;
    let products = if kernel_stored {
        format!(
            "kernel stored for each epoch ({:.2} GB)",
            8.0 * (data.n_train() as f64).powi(2) / 1e9
        )
    } else {
        "kernel matrix-free".to_string()
    };
    progress.println(&format!(
        "gradmat gp: {dataset}, target {}, {} of {} rows ({} train / {} test), d = {}, kernel {}, {}",
        data.target_name,
        data.n_used,
        data.n_file,
        data.n_train(),
        data.n_test(),
        data.d,
        t.kernel.name(),
        if t.exact {
            "exact (dense Cholesky)".to_string()
        } else {
            format!(
                "CG (rank-{} pivoted Cholesky) + SLQ (depth {}, {} probes), {products}",
                st.precond_rank, st.depth, st.probes,
            )
        }
    ));
    let train = train(&data, t, progress)?;
    Ok(GpOutcome {
        dataset,
        data,
        kernel_stored,
        train,
    })
}
