//! Calibrating a Bayesian neural network by a Laplace approximation whose log-determinant is
//! estimated by stochastic Lanczos quadrature, differentiated through the Lanczos adjoint
//! (Krämer et al., NeurIPS 2024, §7).
//!
//! The pipeline ([`run`]):
//!
//! 1. load MNIST-style IDX(.gz) files ([`idx`]), train a `D → H → 10` tanh MLP to a MAP
//!    estimate with Adam ([`train`]);
//! 2. build the posterior precision `G + diag α` of the Laplace approximation with the
//!    Jacobian-free Gauss–Newton operator on a training subsample ([`laplace`]);
//! 3. maximise the Laplace log marginal likelihood in `log α` by Adam, with `log det` from SLQ
//!    (exact gradient through the adjoint) or from a stochastic diagonal (baseline), fresh
//!    probes at every step;
//! 4. sample weights from `N(θ*, (G + diag α)⁻¹)` (Lanczos inverse square root, or the diagonal)
//!    and report accuracy, NLPD, joint log-likelihood, ECE on train and test, and the AUROC of
//!    telling test digits from pixel-shuffled ones ([`mod@predict`]);
//! 5. write `summary.json`, `table.md` and `objective.png` to the output directory.

pub mod idx;
pub mod laplace;
pub mod predict;
pub mod train;

use crate::report::{self, Progress, Scale, Series};
use anyhow::Context as _;
use gradmat_matfun::estimators::{logdet, SlqParams};
use gradmat_operators::SetParams as _;
use laplace::{evaluate, param_groups, LaplacePrecision, LaplaceTerms, LogdetMethod};
use predict::{
    auroc, confidences, diagonal_offsets, lanczos_offsets, metrics, pixel_shuffled, predict,
    Metrics, Predictive,
};
use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;
use serde_json::json;
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
    /// depth is rounded down).
    pub fn lanczos(matvecs: usize, probes: usize) -> Self {
        let probes = probes.max(1);
        let depth = (matvecs / probes).max(1);
        Self {
            name: format!("lanczos-{}", depth * probes),
            method: LogdetMethod::Lanczos { probes, depth },
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
    /// Output directory.
    pub out: PathBuf,
    /// Hidden width `H`.
    pub hidden: usize,
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
    /// Chunks of the GGN subsample applied in parallel (fixed for determinism).
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
    /// Suppress progress output.
    pub quiet: bool,
}

impl Default for BnnConfig {
    fn default() -> Self {
        Self {
            data: PathBuf::from("../shared/data/images"),
            out: PathBuf::from("bnn-out"),
            hidden: 128,
            map_epochs: 3,
            batch_size: 128,
            learning_rate: 1e-3,
            prior_precision: 1.0,
            train_limit: 0,
            ggn_subsample: 1000,
            ggn_chunks: 4,
            methods: vec![
                MethodSpec::lanczos(50, 1),
                MethodSpec::lanczos(150, 1),
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
            quiet: false,
        }
    }
}

fn progress(cfg: &BnnConfig, label: &str, total: u64) -> Progress {
    if cfg.quiet {
        Progress::quiet(label, total)
    } else {
        Progress::new(label, total)
    }
}

fn metrics_json(m: &Metrics) -> serde_json::Value {
    json!({
        "accuracy": m.accuracy,
        "nlpd": m.nlpd,
        "joint_loglik": m.joint_loglik,
        "ece": m.ece,
    })
}

/// Evaluation data: train subset, test set, OOD inputs.
struct EvalSets {
    train: idx::Dataset,
    test: idx::Dataset,
    ood: Vec<f64>,
}

/// Metrics of one posterior (offsets) on the evaluation sets, and the OOD AUROC.
fn evaluate_posterior(
    mlp: &gradmat_operators::ggn::Mlp<f64>,
    sets: &EvalSets,
    offsets: &[Vec<f64>],
    predictive: Predictive,
) -> anyhow::Result<(Metrics, Metrics, f64)> {
    let tr = predict(
        mlp,
        &sets.train.images,
        sets.train.len(),
        Some(&sets.train.labels),
        offsets,
        predictive,
    )?;
    let te = predict(
        mlp,
        &sets.test.images,
        sets.test.len(),
        Some(&sets.test.labels),
        offsets,
        predictive,
    )?;
    let ood = predict(mlp, &sets.ood, sets.test.len(), None, offsets, predictive)?;
    let au = auroc(
        &confidences(&te.probs, te.classes),
        &confidences(&ood.probs, ood.classes),
    );
    Ok((
        metrics(&tr, &sets.train.labels),
        metrics(&te, &sets.test.labels),
        au,
    ))
}

/// Runs the whole pipeline and returns the summary (also written to `out/summary.json`).
///
/// # Errors
/// Missing or malformed data (an [`idx::IdxError`] naming the file), invalid options, failures
/// of the estimators, or output files that cannot be written.
pub fn run(cfg: &BnnConfig) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(cfg.hidden > 0, "--hidden must be at least 1");
    anyhow::ensure!(!cfg.methods.is_empty(), "no method to run");
    anyhow::ensure!(cfg.ggn_subsample > 0, "--ggn-subsample must be at least 1");
    anyhow::ensure!(
        cfg.alpha_lr.is_finite() && cfg.alpha_lr > 0.0,
        "--alpha-lr must be positive"
    );
    anyhow::ensure!(
        cfg.prior_precision.is_finite() && cfg.prior_precision > 0.0,
        "--prior-precision must be positive"
    );
    let t_all = Instant::now();
    let mut train = idx::load_split(&cfg.data, "train")?;
    let test = idx::load_split(&cfg.data, "t10k")?;
    anyhow::ensure!(
        train.dim == test.dim,
        "{}: test images have {} pixels but training images have {}",
        cfg.data.display(),
        test.dim,
        train.dim
    );
    anyhow::ensure!(
        !train.is_empty(),
        "{}: the training set is empty",
        cfg.data.display()
    );
    anyhow::ensure!(
        !test.is_empty(),
        "{}: the test set is empty",
        cfg.data.display()
    );
    if cfg.train_limit > 0 && cfg.train_limit < train.len() {
        train = train.head(cfg.train_limit);
    }
    let n_train = train.len();
    let classes = idx::NUM_CLASSES;

    // 1. MAP training.
    let t_map = Instant::now();
    let mut mlp = train::new_mlp(train.dim, cfg.hidden, classes, cfg.seed)?;
    let opts = train::TrainOptions {
        epochs: cfg.map_epochs,
        batch_size: cfg.batch_size,
        learning_rate: cfg.learning_rate,
        prior_precision: cfg.prior_precision,
        seed: cfg.seed,
    };
    let bar = progress(cfg, "MAP epoch", cfg.map_epochs as u64);
    let history = train::train_map(&mut mlp, &train, &opts, |e, l| {
        bar.step(e as u64, &format!("loss {l:.4}"))
    })?;
    bar.finish();
    let map_seconds = t_map.elapsed().as_secs_f64();
    let nll = train::summed_nll(&mlp, &train)?;
    let p = mlp.num_params();

    // Evaluation sets.
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

    // 2. The GGN subsample (a second seeded permutation).
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

    // 3.–4. Each method.
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    for spec in &cfg.methods {
        op.set_params(&vec![cfg.prior_precision; groups.len()])?;
        let mut log_alpha: Vec<f64> = op.alpha().iter().map(|a| a.ln()).collect();
        let k = log_alpha.len();
        let (mut am, mut av) = (vec![0.0; k], vec![0.0; k]);
        let mut trace = Vec::with_capacity(cfg.alpha_steps);
        let bar = progress(
            cfg,
            &format!("{} α-step", spec.name),
            cfg.alpha_steps as u64,
        );
        let t_opt = Instant::now();
        for step in 0..cfg.alpha_steps {
            let seed = cfg.seed.wrapping_add(1 + step as u64);
            let ev = evaluate(&op, &terms, &spec.method, seed)
                .with_context(|| format!("{}: objective at step {}", spec.name, step + 1))?;
            trace.push(json!({
                "step": step,
                "objective": ev.value,
                "objective_per_datum": ev.value / n_train as f64,
                "logdet": ev.logdet,
                "alpha": op.alpha(),
            }));
            curves.push((spec.name.clone(), step, ev.value / n_train as f64));
            // Adam ascent in u = log α: ∂/∂u = α ∂/∂α.
            let t = (step + 1) as i32;
            for g in 0..k {
                let gu = ev.grad[g] * op.alpha()[g];
                am[g] = 0.9 * am[g] + 0.1 * gu;
                av[g] = 0.999 * av[g] + 0.001 * gu * gu;
                let mh = am[g] / (1.0 - 0.9f64.powi(t));
                let vh = av[g] / (1.0 - 0.999f64.powi(t));
                log_alpha[g] += cfg.alpha_lr * mh / (vh.sqrt() + 1e-12);
            }
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
        let opt_seconds = t_opt.elapsed().as_secs_f64();
        // Final objective with the method's own estimator (fixed seed), and a common reference.
        let final_seed = cfg.seed.wrapping_add(1_000_000);
        let fin = evaluate(&op, &terms, &spec.method, final_seed)?;
        let reference = if cfg.reference_matvecs > 0 {
            let est = logdet(
                &op,
                &SlqParams::new()
                    .num_probes(1)
                    .num_matvecs(cfg.reference_matvecs)
                    .seed(final_seed),
            )?;
            let mut g = vec![0.0; k];
            let v = terms.objective(op.alpha(), est.value, &vec![0.0; k], &mut g);
            Some(v)
        } else {
            None
        };
        // Posterior samples.
        let t_s = Instant::now();
        let sample_seed = cfg.seed.wrapping_add(2_000_000);
        let offsets = match &spec.method {
            LogdetMethod::Lanczos { probes, depth } => {
                lanczos_offsets(&op, cfg.samples, probes * depth, sample_seed)?
            }
            LogdetMethod::Diagonal { .. } => diagonal_offsets(
                fin.diagonal.as_deref().unwrap_or(&[]),
                &groups,
                op.alpha(),
                cfg.samples,
                sample_seed,
            ),
        };
        let sample_seconds = t_s.elapsed().as_secs_f64();
        let (tr, te, au) = evaluate_posterior(&mlp, &sets, &offsets, cfg.predictive)?;
        if !cfg.quiet {
            eprintln!(
                "{}: α = {:?}, log marginal likelihood/N = {:.5}, test acc {:.4}, ECE {:.4}, AUROC {:.4}",
                spec.name,
                op.alpha(),
                fin.value / n_train as f64,
                te.accuracy,
                te.ece,
                au
            );
        }
        rows.push(json!({
            "method": spec.name,
            "matvecs_per_evaluation": spec.matvecs,
            "alpha": op.alpha(),
            "optimisation_seconds": opt_seconds,
            "sampling_seconds": sample_seconds,
            "log_marginal_likelihood": fin.value,
            "log_marginal_likelihood_per_datum": fin.value / n_train as f64,
            "reference_log_marginal_likelihood_per_datum": reference.map(|v| v / n_train as f64),
            "train": metrics_json(&tr),
            "test": metrics_json(&te),
            "ood_auroc": au,
            "trace": trace,
        }));
    }

    // 5. Outputs.
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let series: Vec<Series> = cfg
        .methods
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: curves
                .iter()
                .filter(|c| c.0 == s.name)
                .map(|c| (c.1 as f64, c.2))
                .collect(),
        })
        .collect();
    let plot = cfg.out.join("objective.png");
    if cfg.alpha_steps > 0 {
        report::line_plot(
            &plot,
            "Laplace log marginal likelihood vs. iteration",
            "iteration",
            "objective / N",
            &series,
            Scale::Linear,
            Scale::Linear,
        )?;
    }
    let table = markdown_table(&rows, &map_tr, &map_te, map_au);
    std::fs::write(cfg.out.join("table.md"), &table)
        .with_context(|| format!("cannot write {}", cfg.out.join("table.md").display()))?;
    let summary = json!({
        "data": cfg.data.display().to_string(),
        "architecture": [sets.train.dim, cfg.hidden, classes],
        "activation": "tanh",
        "num_params": p,
        "num_train": n_train,
        "num_test": sets.test.len(),
        "num_eval_train": n_eval,
        "ggn_subsample": m,
        "ggn_scale": scale,
        "per_layer": cfg.per_layer,
        "samples": cfg.samples,
        "predictive": match cfg.predictive { Predictive::Glm => "glm", Predictive::Nn => "nn" },
        "ood": "pixel-shuffled test images",
        "seed": cfg.seed,
        "map": {
            "epochs": cfg.map_epochs,
            "prior_precision": cfg.prior_precision,
            "epoch_losses": history,
            "seconds": map_seconds,
            "train_nll_sum": nll,
            "train": metrics_json(&map_tr),
            "test": metrics_json(&map_te),
            "ood_auroc": map_au,
        },
        "methods": rows,
        "total_seconds": t_all.elapsed().as_secs_f64(),
    });
    report::write_json(&cfg.out.join("summary.json"), &summary)?;
    Ok(summary)
}

fn fmt(v: &serde_json::Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.4}"))
}

/// The Table-5-like markdown table of a run.
fn markdown_table(rows: &[serde_json::Value], tr: &Metrics, te: &Metrics, au: f64) -> String {
    let mut s = String::from(
        "| method | α | runtime α-opt. (s) | log marg. lik./N | ref. log marg. lik./N | joint LL/N train | joint LL/N test | NLPD test | acc. test | ECE train | ECE test | AUROC |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    s += &format!(
        "| MAP | – | – | – | – | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
        tr.joint_loglik, te.joint_loglik, te.nlpd, te.accuracy, tr.ece, te.ece, au
    );
    for r in rows {
        let alpha = r["alpha"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| format!("{:.3e}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        s += &format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["method"].as_str().unwrap_or("?"),
            alpha,
            r["optimisation_seconds"].as_f64().unwrap_or(f64::NAN),
            fmt(&r["log_marginal_likelihood_per_datum"]),
            fmt(&r["reference_log_marginal_likelihood_per_datum"]),
            fmt(&r["train"]["joint_loglik"]),
            fmt(&r["test"]["joint_loglik"]),
            fmt(&r["test"]["nlpd"]),
            fmt(&r["test"]["accuracy"]),
            fmt(&r["train"]["ece"]),
            fmt(&r["test"]["ece"]),
            fmt(&r["ood_auroc"]),
        );
    }
    s
}
