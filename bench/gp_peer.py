#!/usr/bin/env python3
"""GPyTorch beside `gradmat gp` on the same rows, same model, same machine, in one run.

Run by hand (not in CI). It needs a release build of gradmat and a Python environment with
torch and gpytorch (CPU is enough), e.g.

    python3 -m venv ../venv && ../venv/bin/pip install torch gpytorch
    cargo build --release -p gradmat-apps
    ../venv/bin/python bench/gp_peer.py --data elevators --drop-constant --subsample 2000 \
        --epochs 10 --out gradmat-out/peer-elevators-2000

What it does:

1. runs `gradmat gp --preset paper … --save-split OUT/split --out OUT/gradmat` (the paper's
   settings: Matérn-3/2 ARD, Adam 0.05, depth 10, 10 probes, rank-15 pivoted Cholesky), which
   also writes the prepared split (standardised inputs, scaled target) as CSV;
2. runs GPyTorch on exactly those rows in a separate process: ExactGP, ConstantMean,
   ScaleKernel(MaternKernel(nu=1.5, ard_num_dims=d)), GaussianLikelihood with the noise bounded
   below by 1e-4, float64, the same initial hyperparameters as gradmat (lengthscales 1, output
   scale 1, noise 0.1, mean 0), Adam 0.05, and the GPyTorch settings of the paper's experiment
   code (rank-15 preconditioner, 10 trace samples, 10 Lanczos quadrature steps, CG tolerance 1,
   random probes) — with the dense kernel on the CPU instead of KeOps on a GPU;
3. writes OUT/comparison.json and OUT/comparison.md: median seconds per epoch, peak resident
   memory of each process, final training loss (each library's own estimate), test RMSE, and
   the package versions.

Each library runs alone (the other process has finished), with the same number of threads
(`--threads`, default 2). Check `uptime` first: with other work on the machine the timings mean
little.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def peak_rss_children_mb():
    # ru_maxrss is in KiB on Linux: the largest child so far.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def run_gradmat(args, split_dir, out_dir):
    cmd = [
        args.gradmat,
        "gp",
        "--data",
        args.data,
        "--preset",
        "paper",
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--save-split",
        split_dir,
        "--out",
        out_dir,
        "--quiet",
    ]
    if args.subsample is not None:
        cmd += ["--subsample", str(args.subsample)]
    if args.drop_constant:
        cmd.append("--drop-constant")
    cmd += args.gradmat_arg
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    print("+", " ".join(cmd), file=sys.stderr)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    with open(os.path.join(out_dir, "summary.json")) as f:
        s = json.load(f)
    return {
        "library": "gradmat",
        "version": gradmat_version(args.gradmat),
        "n_train": s["n_train"],
        "n_test": s["n_test"],
        "d": s["d"],
        "epochs": len(s["history"]),
        "median_seconds_per_epoch": s["median_seconds_per_epoch"],
        "mean_seconds_per_epoch": s["seconds_per_epoch"],
        "seconds_per_epoch": [e["seconds"] for e in s["history"]],
        "final_train_loss": s["final_train_loss"],
        "final_train_loss_std_error": s["final_train_loss_std_error"],
        "exact_final_train_loss": s["exact_final_train_loss"],
        "test_rmse": s["test_rmse"],
        "passes_per_epoch": s.get("passes_per_epoch"),
        "kernel_products": s["settings"].get("kernel_products"),
        "wall_seconds_total": wall,
        "peak_rss_mb": None,  # filled in by the caller (RUSAGE_CHILDREN)
        "loss_history": [e["loss"] for e in s["history"]],
    }


def gradmat_version(binary):
    try:
        return subprocess.run(
            [binary, "--version"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except Exception:  # noqa: BLE001 - a missing --version is not fatal
        return "unknown"


def load_csv(path):
    import torch

    rows = []
    with open(path) as f:
        for line in f:
            rows.append([float(v) for v in line.split(",")])
    t = torch.tensor(rows, dtype=torch.float64)
    return t[:, :-1].contiguous(), t[:, -1].contiguous()


def gpytorch_worker(args):
    """Runs in its own process; prints one JSON line."""
    import gpytorch
    import gpytorch.settings as cfg
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, train_y = load_csv(os.path.join(args.split, "train.csv"))
    test_x, test_y = load_csv(os.path.join(args.split, "test.csv"))
    d = train_x.shape[1]

    class Model(gpytorch.models.ExactGP):
        def __init__(self, x, y, likelihood):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.MaternKernel(nu=1.5, ard_num_dims=d)
            )

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_constraint=gpytorch.constraints.GreaterThan(1e-4)
    ).double()
    model = Model(train_x, train_y, likelihood).double()
    # gradmat's initial hyperparameters.
    model.covar_module.base_kernel.lengthscale = torch.ones(d, dtype=torch.float64)
    model.covar_module.outputscale = torch.tensor(1.0, dtype=torch.float64)
    likelihood.noise = torch.tensor(0.1, dtype=torch.float64)
    model.mean_module.constant.data.fill_(0.0)

    settings = (
        cfg.max_preconditioner_size(15),
        cfg.cg_tolerance(1.0),
        cfg.num_trace_samples(10),
        cfg.max_lanczos_quadrature_iterations(10),
        cfg.ciq_samples(False),
        cfg.deterministic_probes(False),
        cfg.skip_logdet_forward(False),
        cfg.fast_computations(True, True, True),
        cfg.max_root_decomposition_size(10),
        cfg.min_preconditioning_size(10),
        cfg.tridiagonal_jitter(0.0),
    )
    model.train()
    likelihood.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    seconds, losses = [], []
    for s in settings:
        s.__enter__()
    try:
        for _ in range(args.epochs):
            t = time.perf_counter()
            optimizer.zero_grad()
            loss = -mll(model(train_x), train_y)
            loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - t)
            losses.append(loss.item())
            print(
                f"gpytorch epoch {len(seconds)}/{args.epochs}: loss {losses[-1]:.4f}, "
                f"{seconds[-1]:.3f} s",
                file=sys.stderr,
            )
        with torch.no_grad():
            final = (-mll(model(train_x), train_y)).item()
        model.eval()
        likelihood.eval()
        t = time.perf_counter()
        with torch.no_grad(), cfg.cg_tolerance(1e-4), cfg.skip_posterior_variances():
            mean = likelihood(model(test_x)).mean
        rmse = mean.sub(test_y).pow(2).mean().sqrt().item()
        predict_seconds = time.perf_counter() - t
    finally:
        for s in reversed(settings):
            s.__exit__(None, None, None)
    out = {
        "library": "gpytorch",
        "version": f"gpytorch {gpytorch.__version__}, torch {torch.__version__}",
        "n_train": int(train_x.shape[0]),
        "n_test": int(test_x.shape[0]),
        "d": d,
        "epochs": args.epochs,
        "median_seconds_per_epoch": statistics.median(seconds),
        "mean_seconds_per_epoch": statistics.fmean(seconds),
        "seconds_per_epoch": seconds,
        "final_train_loss": final,
        "test_rmse": rmse,
        "predict_seconds": predict_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loss_history": losses,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out))


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="elevators")
    p.add_argument("--subsample", type=int)
    p.add_argument("--drop-constant", action="store_true")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gradmat", default="target/release/gradmat")
    p.add_argument(
        "--gradmat-arg",
        action="append",
        default=[],
        help="extra argument for gradmat gp (repeat; e.g. --gradmat-arg=--kernel-cache=off)",
    )
    p.add_argument("--skip-gpytorch", action="store_true")
    p.add_argument("--out", default="gradmat-out/peer")
    # Internal: the GPyTorch process.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--split", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        gpytorch_worker(args)
        return

    os.makedirs(args.out, exist_ok=True)
    split_dir = os.path.join(args.out, "split")
    load = os.getloadavg()
    results = [run_gradmat(args, split_dir, os.path.join(args.out, "gradmat"))]
    results[0]["peak_rss_mb"] = peak_rss_children_mb()
    if not args.skip_gpytorch:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "--split",
            split_dir,
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "--threads",
            str(args.threads),
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        print("+ gpytorch on the same split", file=sys.stderr)
        t = time.perf_counter()
        r = subprocess.run(cmd, check=True, env=env, stdout=subprocess.PIPE, text=True)
        g = json.loads(r.stdout.strip().splitlines()[-1])
        g["wall_seconds_total"] = time.perf_counter() - t
        results.append(g)
    report = {
        "data": args.data,
        "subsample": args.subsample,
        "epochs": args.epochs,
        "seed": args.seed,
        "threads": args.threads,
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "results": results,
    }
    if len(results) == 2:
        report["gpytorch_over_gradmat_seconds_per_epoch"] = (
            results[1]["median_seconds_per_epoch"] / results[0]["median_seconds_per_epoch"]
        )
    with open(os.path.join(args.out, "comparison.json"), "w") as f:
        json.dump(report, f, indent=2)
    lines = [
        f"# {args.data}: n_train = {results[0]['n_train']}, d = {results[0]['d']}, "
        f"{args.epochs} epochs, {args.threads} threads",
        "",
        f"Load average before / after: {load[0]:.2f} / {report['load_average_after'][0]:.2f}",
        "",
        "| library | version | median s/epoch | peak RSS (MB) | final train loss | test RMSE (standardised) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        loss = fmt(r["final_train_loss"], ".4f")
        if r.get("exact_final_train_loss") is not None:
            loss += f" (exact {r['exact_final_train_loss']:.4f})"
        lines.append(
            f"| {r['library']} | {r['version']} | {r['median_seconds_per_epoch']:.3f} | "
            f"{fmt(r['peak_rss_mb'], '.0f')} | {loss} | {r['test_rmse']:.4f} |"
        )
    if "gpytorch_over_gradmat_seconds_per_epoch" in report:
        lines += [
            "",
            f"GPyTorch / gradmat, median seconds per epoch: "
            f"{report['gpytorch_over_gradmat_seconds_per_epoch']:.2f}",
        ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "comparison.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
