//! Calibrating a Bayesian neural network by a Laplace approximation whose log-determinant is
//! estimated by stochastic Lanczos quadrature, differentiated through the Lanczos adjoint
//! (Krämer et al., NeurIPS 2024, §7).
//!
//! The pipeline ([`run`]):
//!
//! 1. load MNIST-style IDX(.gz) files ([`idx`]), train a `D → H → … → H → 10` tanh MLP
//!    ([`crate::nn`]; one hidden layer of 128 by default, `hidden_layers = 2` with `H = 1024`
//!    gives the 1.9M-parameter network) to a MAP estimate with Adam ([`train`]);
//! 2. build the posterior precision `G + diag α` of the Laplace approximation with the
//!    Jacobian-free Gauss–Newton operator on a training subsample ([`laplace`]);
//! 3. maximise the Laplace log marginal likelihood in `log α` by Adam, with `log det` from SLQ
//!    (exact gradient through the adjoint) or from a stochastic diagonal (baseline), fresh
//!    probes at every step;
//! 4. sample weights from `N(θ*, (G + diag α)⁻¹)` (Lanczos inverse square root, or the diagonal)
//!    and report accuracy, NLPD, joint log-likelihood, ECE on train and test, and the AUROC of
//!    telling test digits from pixel-shuffled ones ([`mod@predict`]);
//! 5. return a [`BnnOutcome`], which [`crate::report::bnn`] writes as `summary.json`,
//!    `table.md` and `objective.png`.

pub mod idx;
pub mod laplace;
pub mod predict;
pub mod train;

use crate::nn::Mlp;
use crate::optim::Adam;
use crate::pipeline::{ensure, PipelineError, StageContext};
use crate::report::Progress;
use gradmat_matfun::estimators::{logdet, SlqParams};
use gradmat_operators::SetParams as _;
use laplace::{
    evaluate, param_groups, LaplacePrecision, LaplaceTerms, LogdetMethod, Reorthogonalize,
};
use predict::{
    auroc, confidences, diagonal_offsets, lanczos_offsets, metrics, pixel_shuffled, predict,
    Metrics, Predictive,
};
use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use std::path::PathBuf;
use std::time::Instant;

/// One estimator configuration to compare (e.g. "lanczos-50").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSpec {
    /// Display name.
    pub name: String,
    /// The estimator.
    pub method: LogdetMethod,
    /// Matrix–vector products per objective evaluation (forward pass).
    pub matvecs: usize,
}

impl MethodSpec {
    /// SLQ with `matvecs = probes·depth` products (`probes` must divide `matvecs`; otherwise the
    /// depth is rounded down), fully reorthogonalised (named `lanczos-M`) or not
    /// (`lanczos-M-plain`).
    pub fn lanczos(matvecs: usize, probes: usize, reorthogonalize: Reorthogonalize) -> Self {
        let probes = probes.max(1);
        let depth = (matvecs / probes).max(1);
        let suffix = match reorthogonalize {
            Reorthogonalize::None => "-plain",
            _ => "",
        };
        Self {
            name: format!("lanczos-{}{suffix}", depth * probes),
            method: LogdetMethod::Lanczos {
                probes,
                depth,
                reorthogonalize,
            },
            matvecs: depth * probes,
        }
    }
    /// The diagonal baseline with `matvecs` probes.
    pub fn diagonal(matvecs: usize) -> Self {
        Self {
            name: format!("diagonal-{matvecs}"),
            method: LogdetMethod::Diagonal { probes: matvecs },
            matvecs,
        }
    }
}

/// Configuration of [`run`] (the CLI's options).
#[derive(Debug, Clone, PartialEq)]
pub struct BnnConfig {
    /// Directory with `train-*` and `t10k-*` IDX(.gz) files.
    pub data: PathBuf,
    /// Hidden width `H`.
    pub hidden: usize,
    /// Number of hidden layers of width `H` (1: `D-H-10`; 2: `D-H-H-10`).
    pub hidden_layers: usize,
    /// MAP training epochs.
    pub map_epochs: usize,
    /// Mini-batch size of MAP training.
    pub batch_size: usize,
    /// Adam step size of MAP training.
    pub learning_rate: f64,
    /// Prior precision `α₀` of MAP training (also the start of the α optimisation).
    pub prior_precision: f64,
    /// Use only the first this many training examples (0: all).
    pub train_limit: usize,
    /// Training points of the GGN subsample (`m`; the GGN is scaled by `N/m`).
    pub ggn_subsample: usize,
    /// Chunks of the GGN subsample, applied one after the other and added in order (each
    /// product is parallel inside; more chunks only bound the memory of the activations).
    pub ggn_chunks: usize,
    /// Estimators to compare.
    pub methods: Vec<MethodSpec>,
    /// Adam steps of the α optimisation.
    pub alpha_steps: usize,
    /// Adam step size in `log α`.
    pub alpha_lr: f64,
    /// One prior precision per layer instead of one for all parameters.
    pub per_layer: bool,
    /// Posterior samples for the predictive.
    pub samples: usize,
    /// Predictive (linearised or network).
    pub predictive: Predictive,
    /// Training points used for the train metrics (0: all).
    pub eval_train: usize,
    /// Matvecs of the common reference SLQ estimate of the final objective (0: skip).
    pub reference_matvecs: usize,
    /// Master seed.
    pub seed: u64,
}

impl Default for BnnConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("../shared/data/images"),
            hidden: 128,
            hidden_layers: 1,
            map_epochs: 3,
            batch_size: 128,
            learning_rate: 1e-3,
            prior_precision: 1.0,
            train_limit: 0,
            ggn_subsample: 1000,
            ggn_chunks: 1,
            methods: vec![
                MethodSpec::lanczos(50, 1, Reorthogonalize::Full),
                MethodSpec::lanczos(150, 1, Reorthogonalize::Full),
                MethodSpec::diagonal(150),
            ],
            alpha_steps: 20,
            alpha_lr: 0.3,
            per_layer: false,
            samples: 10,
            predictive: Predictive::Glm,
            eval_train: 10_000,
            reference_matvecs: 150,
            seed: 0,
        }
    }
}

impl BnnConfig {
    /// The layer widths `[D, H, …, H, 10]` for `D` input pixels.
    pub fn architecture(&self, input: usize) -> Vec<usize> {
        let mut sizes = vec![input];
        sizes.extend(std::iter::repeat_n(self.hidden, self.hidden_layers));
        sizes.push(idx::NUM_CLASSES);
        sizes
    }
}

/// The MAP network and its metrics.
#[derive(Debug, Clone)]
pub struct MapOutcome {
    /// Mean mini-batch loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Seconds of MAP training.
    pub seconds: f64,
    /// `L(θ*)`, the summed cross-entropy over the training set.
    pub train_nll_sum: f64,
    /// Metrics on the train evaluation subset.
    pub train: Metrics,
    /// Metrics on the test set.
    pub test: Metrics,
    /// AUROC of test vs pixel-shuffled test images.
    pub ood_auroc: f64,
}

/// One step of the α optimisation.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep {
    /// 0-based step.
    pub step: usize,
    /// The objective (approximate log marginal likelihood) at the step's α.
    pub objective: f64,
    /// The log-determinant estimate.
    pub logdet: f64,
    /// The prior precisions at which it was evaluated.
    pub alpha: Vec<f64>,
    /// Seconds of the evaluation (estimator forward + gradient).
    pub seconds: f64,
}

/// The outcome of one method.
#[derive(Debug, Clone)]
pub struct MethodOutcome {
    /// Display name.
    pub name: String,
    /// Matvecs per objective evaluation.
    pub matvecs: usize,
    /// Final prior precisions.
    pub alpha: Vec<f64>,
    /// Seconds of the whole α optimisation.
    pub optimisation_seconds: f64,
    /// Seconds of drawing the posterior samples.
    pub sampling_seconds: f64,
    /// The final objective with the method's own estimator.
    pub log_marginal_likelihood: f64,
    /// The final objective on the common SLQ yardstick (None if skipped).
    pub reference_log_marginal_likelihood: Option<f64>,
    /// Metrics on the train evaluation subset.
    pub train: Metrics,
    /// Metrics on the test set.
    pub test: Metrics,
    /// AUROC of test vs pixel-shuffled test images.
    pub ood_auroc: f64,
    /// The optimisation trace.
    pub trace: Vec<TraceStep>,
}

/// What [`run`] produces (written by [`crate::report::bnn`]).
#[derive(Debug, Clone)]
pub struct BnnOutcome {
    /// Layer widths.
    pub architecture: Vec<usize>,
    /// Parameters `P`.
    pub num_params: usize,
    /// Training examples `N`.
    pub num_train: usize,
    /// Test examples.
    pub num_test: usize,
    /// Training examples of the train metrics.
    pub num_eval_train: usize,
    /// GGN subsample `m`.
    pub ggn_subsample: usize,
    /// GGN factor `N/m`.
    pub ggn_scale: f64,
    /// The MAP stage.
    pub map: MapOutcome,
    /// One entry per method.
    pub methods: Vec<MethodOutcome>,
    /// Seconds of the whole run.
    pub total_seconds: f64,
}

/// Evaluation data: train subset, test set, OOD inputs.
struct EvalSets {
    train: idx::Dataset,
    test: idx::Dataset,
    ood: Vec<f64>,
}

/// Metrics of one posterior (offsets) on the evaluation sets, and the OOD AUROC.
fn evaluate_posterior(
    mlp: &Mlp<f64>,
    sets: &EvalSets,
    offsets: &[Vec<f64>],
    predictive: Predictive,
) -> Result<(Metrics, Metrics, f64), PipelineError> {
    let (tr, te) = (&sets.train, &sets.test);
    let ptr = predict(
        mlp,
        &tr.images,
        tr.len(),
        Some(&tr.labels),
        offsets,
        predictive,
    )?;
    let pte = predict(
        mlp,
        &te.images,
        te.len(),
        Some(&te.labels),
        offsets,
        predictive,
    )?;
    let ood = predict(mlp, &sets.ood, te.len(), None, offsets, predictive)?;
    let au = auroc(
        &confidences(&pte.probs, pte.classes),
        &confidences(&ood.probs, ood.classes),
    );
    Ok((metrics(&ptr, &tr.labels), metrics(&pte, &te.labels), au))
}

fn check(cfg: &BnnConfig) -> Result<(), PipelineError> {
    ensure(cfg.hidden > 0, || "--hidden must be at least 1".into())?;
    ensure(cfg.hidden_layers > 0, || {
        "--hidden-layers must be at least 1".into()
    })?;
    ensure(!cfg.methods.is_empty(), || "no method to run".into())?;
    ensure(cfg.ggn_subsample > 0, || {
        "--ggn-subsample must be at least 1".into()
    })?;
    ensure(cfg.alpha_lr.is_finite() && cfg.alpha_lr > 0.0, || {
        "--alpha-lr must be positive".into()
    })?;
    ensure(
        cfg.prior_precision.is_finite() && cfg.prior_precision > 0.0,
        || "--prior-precision must be positive".into(),
    )
}

/// Fails, before the network is built, when the sizes asked for need more memory than is
/// available (a lower bound per size option; the message names the largest part). The
/// network's size depends on the images' (`dim` pixels), known once the data are read.
fn check_memory(
    cfg: &BnnConfig,
    dim: usize,
    n_train: usize,
    n_test: usize,
) -> Result<(), PipelineError> {
    use crate::cli::ops::{require_memory_parts, MemoryPart};
    let arch = cfg.architecture(dim);
    let p: f64 = arch
        .windows(2)
        .map(|w| w[0] as f64 * w[1] as f64 + w[1] as f64)
        .sum();
    let threads = rayon::current_num_threads().max(1) as f64;
    let net = format!(
        "--hidden {} --hidden-layers {}",
        cfg.hidden, cfg.hidden_layers
    );
    let units = cfg.hidden as f64 * cfg.hidden_layers as f64;
    let rows = cfg.ggn_subsample.min(n_train).max(cfg.batch_size) as f64;
    let depth = cfg
        .methods
        .iter()
        .map(|m| m.matvecs)
        .chain([cfg.reference_matvecs])
        .max()
        .unwrap_or(0) as f64;
    let parts = [
        MemoryPart::new(
            format!(
                "{net} (the network's {p:.2e} parameters with gradients, Adam state and copies)"
            ),
            8.0 * 8.0 * p,
        ),
        MemoryPart::new(
            format!("{net} (activations of the GGN subsample or a mini-batch)"),
            8.0 * 4.0 * rows * units,
        ),
        MemoryPart::new(
            format!("--samples {} (the posterior samples)", cfg.samples),
            8.0 * cfg.samples as f64 * p,
        ),
        MemoryPart::new(
            format!(
                "--matvecs {:.0} × {net} (the Lanczos bases and their adjoints, {p:.2e} rows)",
                depth
            ),
            threads.min(cfg.methods.len().max(1) as f64) * 16.0 * p * (depth.min(p) + 2.0),
        ),
        MemoryPart::new(
            "the images",
            8.0 * dim as f64 * (n_train as f64 + 2.0 * n_test as f64),
        ),
    ];
    require_memory_parts("bnn", &parts).map_err(|e| PipelineError::config(e.to_string()))
}

/// Loads the training (possibly truncated) and test splits.
fn load_data(cfg: &BnnConfig) -> Result<(idx::Dataset, idx::Dataset), PipelineError> {
    let mut train = idx::load_split(&cfg.data, "train")?;
    let test = idx::load_split(&cfg.data, "t10k")?;
    let dir = cfg.data.display();
    ensure(train.dim == test.dim, || {
        format!(
            "{dir}: test images have {} pixels but training images have {}",
            test.dim, train.dim
        )
    })?;
    ensure(!train.is_empty(), || {
        format!("{dir}: the training set is empty")
    })?;
    ensure(!test.is_empty(), || format!("{dir}: the test set is empty"))?;
    if cfg.train_limit > 0 && cfg.train_limit < train.len() {
        train = train.head(cfg.train_limit);
    }
    Ok((train, test))
}

/// Runs the whole pipeline.
///
/// # Errors
/// Missing or malformed data (an [`idx::IdxError`] naming the file), invalid options and
/// failures of the estimators, as a [`PipelineError`].
pub fn run(cfg: &BnnConfig, progress: &Progress) -> Result<BnnOutcome, PipelineError> {
    check(cfg)?;
    let t_all = Instant::now();
    let (train, test) = load_data(cfg)?;
    let n_train = train.len();
    check_memory(cfg, train.dim, n_train, test.len())?;

    // 1. MAP training.
    let t_map = Instant::now();
    let mut mlp = train::new_mlp(
        train.dim,
        &vec![cfg.hidden; cfg.hidden_layers],
        idx::NUM_CLASSES,
        cfg.seed,
    )?;
    let opts = train::TrainOptions {
        epochs: cfg.map_epochs,
        batch_size: cfg.batch_size,
        learning_rate: cfg.learning_rate,
        prior_precision: cfg.prior_precision,
        seed: cfg.seed,
    };
    let bar = progress.child("MAP epoch", cfg.map_epochs as u64);
    let history = train::train_map(&mut mlp, &train, &opts, |e, l| {
        bar.step(e as u64, &format!("loss {l:.4}"))
    })?;
    bar.finish();
    let map_seconds = t_map.elapsed().as_secs_f64();
    let nll = train::summed_nll(&mlp, &train)?;

    // Evaluation sets (a seeded permutation), then the GGN subsample (a second one).
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0xe7a1);
    let mut perm: Vec<usize> = (0..n_train).collect();
    perm.shuffle(&mut rng);
    let n_eval = if cfg.eval_train == 0 {
        n_train
    } else {
        cfg.eval_train.min(n_train)
    };
    let sets = EvalSets {
        train: train.subset(&perm[..n_eval]),
        ood: pixel_shuffled(&test.images, test.dim, cfg.seed),
        test,
    };
    let (map_tr, map_te, map_au) = evaluate_posterior(&mlp, &sets, &[], cfg.predictive)?;
    let mut perm2: Vec<usize> = (0..n_train).collect();
    perm2.shuffle(&mut rng);
    let m = cfg.ggn_subsample.min(n_train);
    let sub = train.subset(&perm2[..m]);
    let groups = param_groups(&mlp, cfg.per_layer);
    let terms = LaplaceTerms::new(mlp.params(), &groups, nll);
    let scale = n_train as f64 / m as f64;
    let mut op = LaplacePrecision::new(
        &mlp,
        &sub.images,
        m,
        cfg.ggn_chunks,
        scale,
        groups.clone(),
        vec![cfg.prior_precision; groups.len()],
    )?;

    // 2.–4. Each method.
    let mut methods = Vec::with_capacity(cfg.methods.len());
    for spec in &cfg.methods {
        let (mo, diagonal) = run_method(cfg, spec, &mut op, &terms, n_train, progress)?;
        let t_s = Instant::now();
        let offsets = posterior_offsets(cfg, spec, &op, diagonal.as_deref())?;
        let sampling_seconds = t_s.elapsed().as_secs_f64();
        let (tr, te, au) = evaluate_posterior(&mlp, &sets, &offsets, cfg.predictive)?;
        progress.println(&format!(
            "{}: α = {:?}, log marginal likelihood/N = {:.5}, test acc {:.4}, ECE {:.4}, AUROC {:.4}",
            spec.name,
            op.alpha(),
            mo.log_marginal_likelihood / n_train as f64,
            te.accuracy,
            te.ece,
            au
        ));
        methods.push(MethodOutcome {
            sampling_seconds,
            train: tr,
            test: te,
            ood_auroc: au,
            ..mo
        });
    }
    Ok(BnnOutcome {
        architecture: mlp.layer_sizes().to_vec(),
        num_params: mlp.num_params(),
        num_train: n_train,
        num_test: sets.test.len(),
        num_eval_train: n_eval,
        ggn_subsample: m,
        ggn_scale: scale,
        map: MapOutcome {
            epoch_losses: history,
            seconds: map_seconds,
            train_nll_sum: nll,
            train: map_tr,
            test: map_te,
            ood_auroc: map_au,
        },
        methods,
        total_seconds: t_all.elapsed().as_secs_f64(),
    })
}

/// The seed of the final objective evaluations (own estimator and the common reference).
fn final_seed(cfg: &BnnConfig) -> u64 {
    cfg.seed.wrapping_add(1_000_000)
}

/// Adam ascent of the objective in `log α` from `α₀` with fresh probes at every step, then the
/// final objective with the method's estimator and on the common reference. Leaves `op` at the
/// final `α`. The metrics of the returned outcome are placeholders (filled in by [`run`]);
/// also returns the final GGN diagonal estimate of the diagonal method.
fn run_method(
    cfg: &BnnConfig,
    spec: &MethodSpec,
    op: &mut LaplacePrecision,
    terms: &LaplaceTerms,
    n_train: usize,
    progress: &Progress,
) -> Result<(MethodOutcome, Option<Vec<f64>>), PipelineError> {
    op.set_params(&vec![cfg.prior_precision; op.groups().len()])?;
    let mut log_alpha: Vec<f64> = op.alpha().iter().map(|a| a.ln()).collect();
    let mut adam = Adam::new(cfg.alpha_lr, log_alpha.len()).with_eps(1e-12);
    let mut trace = Vec::with_capacity(cfg.alpha_steps);
    let bar = progress.child(&format!("{} α-step", spec.name), cfg.alpha_steps as u64);
    let t_opt = Instant::now();
    for step in 0..cfg.alpha_steps {
        let seed = cfg.seed.wrapping_add(1 + step as u64);
        let t = Instant::now();
        let ev = evaluate(op, terms, &spec.method, seed)
            .stage(|| format!("{}: objective at step {}", spec.name, step + 1))?;
        trace.push(TraceStep {
            step,
            objective: ev.value,
            logdet: ev.logdet,
            alpha: op.alpha().to_vec(),
            seconds: t.elapsed().as_secs_f64(),
        });
        // Ascent in u = log α (∂/∂u = α ∂/∂α): a descent step on the negated gradient.
        let neg: Vec<f64> = ev
            .grad
            .iter()
            .zip(op.alpha())
            .map(|(g, a)| -g * a)
            .collect();
        adam.step(&mut log_alpha, &neg);
        let alpha: Vec<f64> = log_alpha.iter().map(|u| u.exp()).collect();
        op.set_params(&alpha)?;
        bar.step(
            step as u64 + 1,
            &format!(
                "objective/N {:.5}, α {:.4e}",
                ev.value / n_train as f64,
                alpha[0]
            ),
        );
    }
    bar.finish();
    let optimisation_seconds = t_opt.elapsed().as_secs_f64();
    let fin = evaluate(op, terms, &spec.method, final_seed(cfg))
        .stage(|| format!("{}: final objective", spec.name))?;
    let reference = if cfg.reference_matvecs > 0 {
        let params = SlqParams {
            num_probes: 1,
            depth: cfg.reference_matvecs,
            seed: final_seed(cfg),
            ..SlqParams::default()
        };
        let est = logdet(&*op, &params).stage(|| format!("{}: reference objective", spec.name))?;
        let k = op.alpha().len();
        let mut g = vec![0.0; k];
        Some(terms.objective(op.alpha(), est.value, &vec![0.0; k], &mut g))
    } else {
        None
    };
    let placeholder = Metrics {
        accuracy: f64::NAN,
        nlpd: f64::NAN,
        joint_loglik: f64::NAN,
        ece: f64::NAN,
    };
    let outcome = MethodOutcome {
        name: spec.name.clone(),
        matvecs: spec.matvecs,
        alpha: op.alpha().to_vec(),
        optimisation_seconds,
        sampling_seconds: f64::NAN,
        log_marginal_likelihood: fin.value,
        reference_log_marginal_likelihood: reference,
        train: placeholder.clone(),
        test: placeholder,
        ood_auroc: f64::NAN,
        trace,
    };
    Ok((outcome, fin.diagonal))
}

/// Posterior weight offsets for the method at the operator's current `α` (`diagonal`: the
/// diagonal method's final GGN diagonal estimate).
fn posterior_offsets(
    cfg: &BnnConfig,
    spec: &MethodSpec,
    op: &LaplacePrecision,
    diagonal: Option<&[f64]>,
) -> Result<Vec<Vec<f64>>, PipelineError> {
    let sample_seed = cfg.seed.wrapping_add(2_000_000);
    Ok(match &spec.method {
        LogdetMethod::Lanczos { probes, depth, .. } => {
            lanczos_offsets(op, cfg.samples, probes * depth, sample_seed)
                .stage(|| format!("{}: posterior samples", spec.name))?
        }
        LogdetMethod::Diagonal { .. } => diagonal_offsets(
            diagonal.unwrap_or(&[]),
            op.groups(),
            op.alpha(),
            cfg.samples,
            sample_seed,
        ),
    })
}
