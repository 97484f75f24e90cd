//! `gradmat gp`: Gaussian-process hyperparameter fitting with progress, `summary.json` and
//! plots (see [`crate::gp`]).

use super::{GpArgs, GpCache, GpKernel, GpPreset};
use crate::gp::csv::{read_csv, read_csv_from, Table};
use crate::gp::data::{prepare_with, resolve_target};
use crate::gp::model::{default_cache_budget, Kernel, KernelCache, Stochastic};
use crate::gp::train::{train, TrainConfig};
use crate::report::{line_plot, scatter_plot, write_json, Progress, Scale, Series};
use anyhow::Context as _;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The bundled default dataset (ggplot2 `diamonds`, derived; see `data/gp/README.md`).
static DIAMONDS: &[u8] = include_bytes!("../../../../data/gp/diamonds.csv.gz");

/// Default subsample of the bundled dataset: 2,500 rows (2,000 for training), which keeps the
/// default run within about five minutes on two cores.
pub const DEFAULT_SUBSAMPLE: usize = 2_500;

/// The UCI sets of the paper's Table 3 and the other shared ones, looked up by name.
const UCI: [&str; 14] = [
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

/// Loads `--data`: `diamonds` (bundled), a UCI name (from `$GRADMAT_UCI_DIR`, default
/// `../shared/data/uci`), or a path.
fn load(spec: &str) -> anyhow::Result<(String, Table)> {
    if spec == "diamonds" {
        let r = std::io::BufReader::new(flate2::read::GzDecoder::new(DIAMONDS));
        let t = read_csv_from(r, Path::new("diamonds (bundled)"))?;
        return Ok(("diamonds".into(), t));
    }
    if UCI.contains(&spec) {
        let dir = std::env::var_os("GRADMAT_UCI_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared/data/uci"));
        let path = dir.join(format!("{spec}.csv.gz"));
        anyhow::ensure!(
            path.exists(),
            "{}: not found (the UCI sets are read from $GRADMAT_UCI_DIR, default ../shared/data/uci)",
            path.display()
        );
        return Ok((spec.to_string(), read_csv(&path)?));
    }
    let path = Path::new(spec);
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| spec.to_string());
    Ok((name, read_csv(path)?))
}

/// Writes `dir/train.csv` and `dir/test.csv`: one row per point, the `d` standardised inputs and
/// then the scaled target, `%.17e` (round-trips every `f64`).
fn save_split(dir: &Path, data: &crate::gp::data::GpData) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
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
        let path = dir.join(file);
        crate::report::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

/// Runs `gradmat gp`; returns the one-line JSON printed on stdout.
pub fn run(args: &GpArgs) -> anyhow::Result<String> {
    anyhow::ensure!(args.epochs >= 1, "--epochs must be at least 1");
    anyhow::ensure!(
        args.lr.is_finite() && args.lr > 0.0,
        "--lr must be a positive number"
    );
    let paper = args.preset == GpPreset::Paper;
    let st = Stochastic {
        depth: args.depth.unwrap_or(if paper { 10 } else { 30 }),
        probes: args.probes.unwrap_or(10),
        precond_rank: args.precond_rank.unwrap_or(15),
        cg_tol: args.cg_tol.unwrap_or(if paper { 0.0 } else { 1e-4 }),
        cg_atol: args.cg_atol.unwrap_or(if paper { 1.0 } else { 0.0 }),
        kernel_cache: match args.kernel_cache {
            GpCache::Off => KernelCache::MatrixFree,
            GpCache::Dense => KernelCache::Dense,
            GpCache::Auto => KernelCache::Auto {
                budget: args
                    .memory_budget
                    .map_or_else(default_cache_budget, |g| g * 1e9),
            },
        },
    };
    if let Some(g) = args.memory_budget {
        anyhow::ensure!(
            g.is_finite() && g >= 0.0,
            "--memory-budget must be a non-negative number of GB"
        );
    }
    anyhow::ensure!(st.depth >= 1, "--depth must be at least 1");
    anyhow::ensure!(st.probes >= 1, "--probes must be at least 1");
    anyhow::ensure!(
        st.cg_tol.is_finite() && (0.0..1.0).contains(&st.cg_tol),
        "--cg-tol must be in [0, 1)"
    );
    anyhow::ensure!(
        st.cg_atol.is_finite() && st.cg_atol >= 0.0,
        "--cg-atol must be a non-negative number"
    );
    anyhow::ensure!(
        st.cg_tol > 0.0 || st.cg_atol > 0.0,
        "--cg-tol and --cg-atol cannot both be 0"
    );
    let (name, table) = load(&args.data)?;
    let target = resolve_target(&table, args.target.as_deref()).context(args.data.clone())?;
    let subsample = match args.subsample {
        Some(0) => None,
        Some(m) => Some(m),
        None if name == "diamonds" => Some(DEFAULT_SUBSAMPLE),
        None => None,
    };
    let data = prepare_with(&table, target, subsample, args.seed, args.drop_constant)
        .context(args.data.clone())?;
    if !data.dropped.is_empty() && !args.quiet {
        eprintln!(
            "dropped constant input columns: {}",
            data.dropped.join(", ")
        );
    }
    if let Some(dir) = &args.save_split {
        save_split(dir, &data)?;
    }
    let kernel = match args.kernel {
        GpKernel::Matern12 => Kernel::Matern12,
        GpKernel::Matern32 => Kernel::Matern32,
        GpKernel::Matern52 => Kernel::Matern52,
        GpKernel::Rbf => Kernel::Rbf,
    };
    let cfg = TrainConfig {
        kernel,
        epochs: args.epochs,
        lr: args.lr,
        stochastic: st.clone(),
        seed: args.seed,
        exact: args.exact,
    };
    let cached = !args.exact && st.kernel_cache.dense_for(data.n_train());
    let products = if cached {
        format!(
            "kernel stored for each epoch ({:.2} GB)",
            8.0 * (data.n_train() as f64).powi(2) / 1e9
        )
    } else {
        "kernel matrix-free".to_string()
    };
    let progress = if args.quiet {
        Progress::quiet("epoch", args.epochs as u64)
    } else {
        Progress::new("epoch", args.epochs as u64)
    };
    progress.println(&format!(
        "gradmat gp: {name}, target {}, {} of {} rows ({} train / {} test), d = {}, kernel {}, {}",
        data.target_name,
        data.n_used,
        data.n_file,
        data.n_train(),
        data.n_test(),
        data.d,
        kernel.name(),
        if args.exact {
            "exact (dense Cholesky)".to_string()
        } else {
            format!(
                "CG (rank-{} pivoted Cholesky) + SLQ (depth {}, {} probes), preset {}, {products}",
                st.precond_rank,
                st.depth,
                st.probes,
                if paper { "paper" } else { "default" }
            )
        }
    ));
    let out = train(&data, &cfg, &progress)?;
    let epochs = out.history.len() as f64;
    let sec_per_epoch = out.history.iter().map(|e| e.seconds).sum::<f64>() / epochs;
    let matvecs_per_epoch = out.history.iter().map(|e| e.matvecs).sum::<usize>() as f64 / epochs;
    let passes_per_epoch = out.history.iter().map(|e| e.passes).sum::<usize>() as f64 / epochs;
    let mut median = out.history.iter().map(|e| e.seconds).collect::<Vec<_>>();
    median.sort_by(f64::total_cmp);
    let median_sec = median[median.len() / 2];
    let h = &out.hyper;
    let summary = json!({
        "dataset": name,
        "target": data.target_name,
        "inputs": data.input_names,
        "dropped_constant_columns": data.dropped,
        "n": data.n_used,
        "n_file": data.n_file,
        "n_train": data.n_train(),
        "n_test": data.n_test(),
        "d": data.d,
        "settings": {
            "kernel": kernel.name(),
            "epochs": args.epochs,
            "lr": args.lr,
            "mode": if args.exact { "exact" } else { "stochastic" },
            "preset": if paper { "paper" } else { "default" },
            "depth": st.depth,
            "probes": st.probes,
            "precond_rank": st.precond_rank,
            "cg_tol": st.cg_tol,
            "cg_atol": st.cg_atol,
            "kernel_products": if args.exact { "dense (exact mode)" } else if cached { "stored" } else { "matrix-free" },
            "subsample": subsample,
            "seed": args.seed,
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
        "seconds_per_epoch": sec_per_epoch,
        "median_seconds_per_epoch": median_sec,
        "matvecs_per_epoch": matvecs_per_epoch,
        "passes_per_epoch": passes_per_epoch,
        "predict_seconds": out.predict_seconds,
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
    });
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_json(&dir.join("summary.json"), &summary)?;
    let losses = Series {
        name: if args.exact {
            "exact loss".into()
        } else {
            "stochastic loss (CG + SLQ)".into()
        },
        points: out
            .history
            .iter()
            .map(|e| (e.epoch as f64, e.loss))
            .collect(),
    };
    let mut series = vec![losses];
    if let Some(x) = out.exact_final_loss {
        if !args.exact {
            series.push(Series {
                name: "exact loss at the final parameters".into(),
                points: vec![(epochs, x), (epochs + 0.01, x)],
            });
        }
    }
    line_plot(
        &dir.join("loss.png"),
        &format!("GP training on {name} ({} kernel)", kernel.name()),
        "epoch",
        "negative log marginal likelihood per point",
        &series,
        Scale::Linear,
        Scale::Linear,
    )?;
    let pairs: Vec<(f64, f64)> = out
        .test_pairs
        .iter()
        .map(|(t, p)| (t * data.y_std + data.y_mean, p * data.y_std + data.y_mean))
        .collect();
    scatter_plot(
        &dir.join("predictions.png"),
        &format!(
            "{name}: test set, RMSE {:.4} ({} points)",
            out.test_rmse * data.y_std,
            pairs.len()
        ),
        &format!("true {}", data.target_name),
        &format!("predicted {} (posterior mean)", data.target_name),
        &pairs,
    )?;
    progress.println(&format!(
        "final loss {:.4} ± {:.4}{}, test RMSE {:.4} (standardised; {:.4} in {} units), test NLPD {:.4}; {:.2} s/epoch, {:.0} matvecs/epoch; wrote {}",
        out.final_loss,
        out.final_loss_std_error,
        out.exact_final_loss
            .map(|x| format!(" (exact {x:.4})"))
            .unwrap_or_default(),
        out.test_rmse,
        out.test_rmse * data.y_std,
        data.target_name,
        out.test_nlpd,
        sec_per_epoch,
        matvecs_per_epoch,
        dir.display()
    ));
    Ok(serde_json::to_string(&json!({
        "dataset": name,
        "n_train": data.n_train(),
        "n_test": data.n_test(),
        "final_train_loss": out.final_loss,
        "exact_final_train_loss": out.exact_final_loss,
        "test_rmse": out.test_rmse,
        "test_nlpd": out.test_nlpd,
        "seconds_per_epoch": sec_per_epoch,
        "out": dir.display().to_string(),
    }))?)
}
