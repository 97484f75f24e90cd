//! Training: Adam on the unconstrained parameters, fresh probes every epoch, a progress
//! display, and the final evaluation (stochastic and exact loss, test RMSE and NLPD).

use super::checkpoint::{self, CheckpointError, TrainState};
use super::data::GpData;
use super::model::{dense_fits, metrics, Gp, GpError, Hyper, Kernel, LossGrad, Stochastic};
use crate::report::Progress;
use std::path::PathBuf;
use std::time::Instant;

pub use crate::optim::Adam;

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Kernel family.
    pub kernel: Kernel,
    /// Epochs (full-batch gradient steps).
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Stochastic-loss settings (ignored with `exact`).
    pub stochastic: Stochastic,
    /// Seed of the probes (the data split has its own seed argument).
    pub seed: u64,
    /// Use the exact (dense Cholesky) loss and gradient.
    pub exact: bool,
    /// Bytes the end-of-run dense evaluation (exact loss and predictions, one `n×n` matrix)
    /// may use; `None`: [`dense_fits`] (a share of the available memory). Above it the
    /// predictions come from CG and the exact loss is not reported.
    pub dense_eval_budget: Option<f64>,
    /// A checkpoint file ([`checkpoint`]): written atomically after every
    /// epoch, and when it exists at the start, training continues from it (bit for bit as
    /// the uninterrupted run). Not under mpirun.
    pub checkpoint: Option<PathBuf>,
}

/// One epoch of the history.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Loss at the parameters before this epoch's step.
    pub loss: f64,
    /// Its standard error (0 for exact; NaN with one probe, where it is undefined).
    pub std_error: f64,
    /// Seconds of this epoch (loss, gradient and step).
    pub seconds: f64,
    /// Kernel matrix–vector products.
    pub matvecs: usize,
    /// CG iterations.
    pub cg_iterations: usize,
    /// Passes over the kernel (block products and block VJPs).
    pub passes: usize,
}

/// The outcome of training and evaluation.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Final unconstrained parameters.
    pub raw: Vec<f64>,
    /// Final hyperparameters.
    pub hyper: Hyper,
    /// Per-epoch history.
    pub history: Vec<Epoch>,
    /// The loss at the final parameters (stochastic with a fresh probe set, or exact).
    pub final_loss: f64,
    /// Its standard error.
    pub final_loss_std_error: f64,
    /// The exact loss at the final parameters (dense Cholesky), when the dense matrix fits the
    /// memory ([`dense_fits`]).
    pub exact_final_loss: Option<f64>,
    /// Seconds of the exact evaluation (one Cholesky factorisation: the exact loss and the
    /// exact predictions).
    pub exact_seconds: Option<f64>,
    /// Test RMSE (standardised target units).
    pub test_rmse: f64,
    /// Test mean NLPD (standardised target units), over the first `nlpd_points` test points.
    pub test_nlpd: f64,
    /// Number of test points of the NLPD (all, unless the dense matrix does not fit).
    pub nlpd_points: usize,
    /// Test predictions `(true, predicted mean)` in standardised units.
    pub test_pairs: Vec<(f64, f64)>,
    /// Seconds of the final evaluation (exact loss and predictions, or CG predictions).
    pub predict_seconds: f64,
    /// The CG predictions' work, when the dense matrix did not fit.
    pub predict_cg: Option<PredictCg>,
    /// Peak resident memory of the process at the end of training, before the final
    /// evaluation (bytes; `None` where it cannot be read).
    pub peak_rss_training: Option<u64>,
    /// The epochs read from the checkpoint when the run continued one (0 otherwise): their
    /// history entries (seconds included) come from the earlier process.
    pub resumed_epochs: usize,
}

/// The probe seed of epoch `e`: distinct per epoch (matfun mixes it again per probe).
pub fn epoch_seed(seed: u64, e: usize) -> u64 {
    seed.wrapping_add((e as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Evaluates the configured loss.
pub fn loss(
    gp: &Gp<'_>,
    raw: &[f64],
    cfg: &TrainConfig,
    seed: u64,
    warm: &mut Option<Vec<f64>>,
) -> Result<LossGrad, GpError> {
    if cfg.exact {
        gp.loss_exact(raw)
    } else if let Some(comm) = crate::cluster::world() {
        // Under mpirun: the kernel distributed by rows over the ranks.
        gp.loss_stochastic_distributed(raw, &cfg.stochastic, seed, warm, comm)
    } else {
        gp.loss_stochastic(raw, &cfg.stochastic, seed, warm)
    }
}

/// Trains on `data`'s training split and evaluates on its test split.
///
/// # Errors
/// [`GpError`] from the loss evaluations and predictions.
pub fn train(
    data: &GpData,
    cfg: &TrainConfig,
    progress: &Progress,
) -> Result<TrainOutcome, GpError> {
    let gp = Gp::new(cfg.kernel, data);
    // The whole training state, as a checkpoint holds it.
    let raw = Hyper::initial(data.d).to_raw();
    let mut st = TrainState {
        adam: Adam::new(cfg.lr, raw.len()),
        raw,
        warm: None,
        history: Vec::with_capacity(cfg.epochs),
    };
    let expect = checkpoint::Expected {
        fingerprint: checkpoint::fingerprint(data, cfg),
        params: st.raw.len(),
        points: gp.n(),
        lr: cfg.lr,
        max_epochs: cfg.epochs,
    };
    if let Some(path) = &cfg.checkpoint {
        if crate::cluster::world().is_some() {
            return Err(CheckpointError::Distributed.into());
        }
        if let Some(saved) = checkpoint::load(path, &expect)? {
            Hyper::from_raw(&saved.raw)?;
            progress.println(&format!(
                "continuing from {} after epoch {} of {}",
                path.display(),
                saved.history.len(),
                cfg.epochs
            ));
            st = saved;
            progress.step(st.history.len() as u64, "continued from the checkpoint");
        }
    }
    let resumed_epochs = st.history.len();
    let mut total: f64 = st.history.iter().map(|e| e.seconds).sum();
    for e in resumed_epochs..cfg.epochs {
        let t0 = Instant::now();
        let lg = loss(&gp, &st.raw, cfg, epoch_seed(cfg.seed, e), &mut st.warm)?;
        st.adam.step(&mut st.raw, &lg.grad);
        // A diverging optimisation stops here with a clear error (non-finite parameters, or
        // finite ones outside the model's domain).
        Hyper::from_raw(&st.raw)?;
        let seconds = t0.elapsed().as_secs_f64();
        total += seconds;
        st.history.push(Epoch {
            epoch: e + 1,
            loss: lg.loss,
            std_error: lg.std_error,
            seconds,
            matvecs: lg.matvecs,
            cg_iterations: lg.cg_iterations,
            passes: lg.passes,
        });
        if let Some(path) = &cfg.checkpoint {
            checkpoint::save(path, &st, expect.fingerprint)?;
        }
        let se = if lg.std_error.is_finite() {
            format!(" (±{:.4})", lg.std_error)
        } else {
            String::new()
        };
        progress.step(
            (e + 1) as u64,
            &format!(
                "loss {:.4}{se}, this epoch {seconds:.2} s, {total:.0} s total",
                lg.loss
            ),
        );
    }
    progress.finish();
    let TrainState {
        raw,
        mut warm,
        history,
        ..
    } = st;
    let peak_rss_training = crate::cli::ops::peak_rss();
    let fin = loss(&gp, &raw, cfg, epoch_seed(cfg.seed, cfg.epochs), &mut warm)?;
    let m = data.n_test();
    let rank = cfg.stochastic.precond_rank.max(1);
    // With the dense matrix in memory: the exact loss and exact predictions from one Cholesky
    // factorisation; otherwise the mean by CG and variances by block CG on the first
    // VAR_POINTS test points (the test split is already a random order).
    let t0 = Instant::now();
    let mut predict_cg = None;
    let dense_ok = match cfg.dense_eval_budget {
        Some(b) if !cfg.exact => 8.0 * (gp.n() as f64).powi(2) <= b,
        _ => true,
    };
    // Under mpirun only rank 0 evaluates (serially; it alone writes the outputs).
    let (exact_final_loss, exact_seconds, mean, var, var_points) = if !crate::cluster::is_root() {
        (None, None, vec![0.0; m], Vec::new(), 0)
    } else if dense_ok && dense_fits(gp.n(), 1) {
        if !cfg.exact {
            progress.println(&format!(
                "exact loss and predictions at the final parameters (dense Cholesky, n = {}) ...",
                gp.n()
            ));
        }
        let e = gp.evaluate_exact(&raw, &data.x_test, m)?;
        let secs = t0.elapsed().as_secs_f64();
        (Some(e.loss), Some(secs), e.mean, e.var, m)
    } else {
        // The training's last α (the solve at these parameters) starts the mean's solve.
        let rank = prediction_precond_rank(gp.n(), rank, cfg.dense_eval_budget);
        let k = m.min(VAR_POINTS);
        let p = gp.predict_cg(&raw, &data.x_test, m, k, rank, warm.as_deref())?;
        predict_cg = Some(PredictCg {
            precond_rank: rank,
            mean_iterations: p.mean_iterations,
            var_iterations: p.var_iterations,
        });
        (None, None, p.mean, p.var, k)
    };
    let predict_seconds = t0.elapsed().as_secs_f64();
    let (test_rmse, _) = metrics(&data.y_test, &mean, &mean);
    let (_, test_nlpd) = metrics(&data.y_test[..var_points], &mean[..var_points], &var);
    Ok(TrainOutcome {
        hyper: Hyper::from_raw(&raw)?,
        raw,
        history,
        final_loss: fin.loss,
        final_loss_std_error: fin.std_error,
        exact_final_loss,
        exact_seconds,
        test_rmse,
        test_nlpd,
        nlpd_points: var_points,
        test_pairs: data.y_test.iter().copied().zip(mean).collect(),
        predict_seconds,
        predict_cg,
        peak_rss_training,
        resumed_epochs,
    })
}

/// The work of the end-of-run CG predictions (matrix-free path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictCg {
    /// Rank of their pivoted partial Cholesky preconditioner
    /// ([`prediction_precond_rank`]).
    pub precond_rank: usize,
    /// CG iterations of the mean's solve (to relative residual 1e-8).
    pub mean_iterations: usize,
    /// Block-CG iterations of the variances' solves (to 1e-6; one kernel pass each).
    pub var_iterations: usize,
}

/// Largest preconditioner rank of the end-of-run CG predictions.
pub const PREDICT_RANK: usize = 512;

/// Rank of the pivoted partial Cholesky preconditioner of the end-of-run CG predictions: their
/// tolerances (1e-8 for the mean, 1e-6 for the variances) are far tighter than training's and
/// each iteration is a kernel pass (of [`VAR_POINTS`] columns for the variances), while the
/// factor is built once from `r` kernel columns (`O(n·r·d + n·r²)` work): up to
/// [`PREDICT_RANK`], never below the training's `train_rank`, at most `n`, and its `n·r`
/// values within a tenth of `budget` bytes when one is given.
pub fn prediction_precond_rank(n: usize, train_rank: usize, budget: Option<f64>) -> usize {
    let cap = budget.map_or(usize::MAX, |b| (0.1 * b / (8.0 * n.max(1) as f64)) as usize);
    PREDICT_RANK.min(cap).max(train_rank).clamp(1, n.max(1))
}

/// Test points whose predictive variance is computed by block CG (NLPD) when the training set
/// is too large for a dense Cholesky.
pub const VAR_POINTS: usize = 200;
