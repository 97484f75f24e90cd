//! `gradmat gp`: Gaussian-process hyperparameter fitting with progress, `summary.json` and
//! plots (see [`crate::gp`]).

use super::{GpArgs, GpCache, GpKernel, GpPreset};
use crate::gp::model::{default_cache_budget, Kernel, KernelCache, Stochastic};
use crate::gp::train::TrainConfig;
use crate::gp::{GpConfig, DEFAULT_SUBSAMPLE};
use crate::report::{self, Progress};

/// Runs `gradmat gp`; returns the one-line JSON printed on stdout.
pub fn run(args: &GpArgs) -> anyhow::Result<String> {
    if let Some(g) = args.memory_budget {
        anyhow::ensure!(
            g.is_finite() && g >= 0.0,
            "--memory-budget must be a non-negative number of GB"
        );
    }
    let paper = args.preset == GpPreset::Paper;
    let stochastic = Stochastic {
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
    let kernel = match args.kernel {
        GpKernel::Matern12 => Kernel::Matern12,
        GpKernel::Matern32 => Kernel::Matern32,
        GpKernel::Matern52 => Kernel::Matern52,
        GpKernel::Rbf => Kernel::Rbf,
    };
    let cfg = GpConfig {
        data: args.data.clone(),
        target: args.target.clone(),
        subsample: match args.subsample {
            None if args.data == "diamonds" => Some(DEFAULT_SUBSAMPLE),
            other => other,
        },
        seed: args.seed,
        drop_constant: args.drop_constant,
        train: TrainConfig {
            kernel,
            epochs: args.epochs,
            lr: args.lr,
            stochastic,
            seed: args.seed,
            exact: args.exact,
            // An explicit --memory-budget bounds the end-of-run dense evaluation too.
            dense_eval_budget: args.memory_budget.map(|g| g * 1e9),
            checkpoint: args.checkpoint.clone(),
        },
    };
    // Under mpirun only rank 0 writes and reports (every rank trains on its rows).
    let root = crate::cluster::is_root();
    if root {
        report::prepare_output_dir(&args.out)?;
        if let Some(dir) = &args.save_split {
            report::prepare_output_dir(dir)?;
        }
    }
    let progress = if args.quiet || !root {
        Progress::quiet("epoch", args.epochs as u64)
    } else {
        Progress::new("epoch", args.epochs as u64)
    };
    let out = crate::gp::run(&cfg, &progress)?;
    if !root {
        return Ok(String::new());
    }
    if let Some(dir) = &args.save_split {
        report::gp::save_split(dir, &out.data)?;
    }
    let labels = report::gp::Labels {
        preset: if paper { "paper" } else { "default" },
    };
    report::gp::write(&cfg, &out, labels, &args.out)?;
    progress.println(&report::gp::final_line(&out, &args.out));
    Ok(serde_json::to_string(&report::gp::summary_line(
        &out, &args.out,
    ))?)
}
