//! Matrix-free kernel products at scale, per core, beside the FMA peak of the same machine.
//!
//! * **Peak.** A micro-benchmark of independent fused multiply-adds (10 accumulator chains, more
//!   than FMA latency × ports) through pulp's AVX-512 and AVX2 tokens gives the machine's
//!   measured `f64` FMA throughput (GFlop/s, 2 flops per lane per FMA) and lane-operation rate.
//! * **Kernel.** Matérn-3/2 in `f64` at `d = 8` (`n = 20,000`) and `d = 18` (`n = 13,280`, the size
//!   of UCI elevators): block apply and block parameter VJP for blocks of 1, 11 and 16 vectors,
//!   the fused apply + VJP, the `f32` apply, and the scalar fallback. Everything runs in a
//!   one-thread rayon pool, so rates are **per core**; one two-thread line shows the scaling.
//! * **Rates.** `pairs/s` counts the `n²` entries of the product per second (the unit of the
//!   issue's figures); `evals/s` counts kernel evaluations (`n(n + tile)/2`: each symmetric tile
//!   pair is evaluated once). `ops/eval` is the engine's count of vector lane operations per
//!   evaluation (`2d + 27 + 2k` for the Matérn-3/2 product, `5d + 30 + 2k` for the VJP: distance,
//!   `sqrt` and `exp`, products or weights); `bound = peak lane-ops/s ÷ ops/eval` is the op-count
//!   bound and `ratio = evals/s ÷ bound` the fraction of the peak reached.
//!
//! Medians of 3 runs (wall time; CPU time beside it). Then criterion measures the main cases
//! with `n²` elements per iteration, so its `thrpt` is pairs/s per core.
//!
//! `cargo bench -p gradmat-operators --bench kernel` (check `uptime` first: with other work on
//! the cores the figures are meaningless).

use criterion::{Criterion, Throughput};
use gradmat_operators::kernel::{KernelKind, KernelMatrix, SimdLevel, DEFAULT_TILE};
use gradmat_operators::testing::random_vector;
use gradmat_operators::{Operator, ParamVjp, Scalar};
use pulp::{Simd, WithSimd};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn operator<T: Scalar>(n: usize, d: usize) -> KernelMatrix<T> {
    let x = random_vector::<T>(n * d, 1);
    let ell: Vec<T> = (0..d).map(|a| T::from_f64(0.5 + 0.05 * a as f64)).collect();
    KernelMatrix::new(KernelKind::Matern32, n, d, x, ell, T::ONE).expect("valid kernel")
}

/// CPU time (user + system) of this process in seconds, from `/proc/self/stat` (Linux; `NaN`
/// elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Median wall time and median CPU time of `reps` runs of `f`.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut wall = Vec::with_capacity(reps);
    let mut cpu = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (s, c) = (Instant::now(), cpu_seconds());
        f();
        wall.push(s.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - c);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall[reps / 2], cpu[reps / 2])
}

/// `ACC` independent FMA chains of `iters` steps on `f64` lanes.
struct FmaPeak {
    iters: u64,
}

const ACC: usize = 10;

impl WithSimd for FmaPeak {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> f64 {
        let a = s.splat_f64s(black_box(0.999_999_9));
        let b = s.splat_f64s(black_box(1e-7));
        let mut acc = [s.splat_f64s(1.0); ACC];
        for _ in 0..self.iters {
            for v in acc.iter_mut() {
                *v = s.mul_add_e_f64s(*v, a, b);
            }
        }
        acc.iter().map(|v| s.reduce_sum_f64s(*v)).sum()
    }
}

/// Measured `f64` FMA throughput of one core with token `s` (GFlop/s), median of 5.
fn fma_peak<S: Simd>(s: S) -> f64 {
    let iters = 20_000_000u64;
    let lanes = S::F64_LANES;
    let mut best = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        black_box(Simd::vectorize(
            s,
            FmaPeak {
                iters: black_box(iters),
            },
        ));
        let secs = t.elapsed().as_secs_f64();
        best.push(2.0 * (lanes * ACC) as f64 * iters as f64 / secs / 1e9);
    }
    best.sort_by(f64::total_cmp);
    best[2]
}

/// One measured case.
struct Case {
    name: String,
    n: usize,
    evals: f64,
    ops_per_eval: f64,
    wall: f64,
    cpu: f64,
}

impl Case {
    /// Prints the rates; `peak_lane_ops` is the measured peak for this case's lane width
    /// (`None`: no bound, e.g. for the scalar fallback).
    fn print(&self, peak_lane_ops: Option<f64>) {
        let pairs = (self.n * self.n) as f64 / self.wall;
        let evals = self.evals / self.wall;
        let bound = peak_lane_ops.map_or(String::new(), |p| {
            let b = p / self.ops_per_eval;
            format!("  bound {b:9.3e}  ratio {:5.1} %", 100.0 * evals / b)
        });
        println!(
            "  {:<36} wall {:7.3} s  cpu {:7.3} s  {:9.3e} pairs/s  {:9.3e} evals/s  {:4.0} ops/eval{bound}",
            self.name, self.wall, self.cpu, pairs, evals, self.ops_per_eval,
        );
    }
}

/// Kernel evaluations of one symmetric pass (every tile pair `I ≤ J` once, diagonal tiles in
/// full).
fn evals(n: usize, tile: usize) -> f64 {
    let full = n / tile;
    let rest = n % tile;
    // Off-diagonal pairs: (n² − Σ tile sizes²)/2; diagonal tiles: Σ sizes².
    let diag = (full * tile * tile + rest * rest) as f64;
    ((n * n) as f64 - diag) / 2.0 + diag
}

fn measure<T: Scalar>(
    pool: &rayon::ThreadPool,
    op: &KernelMatrix<T>,
    what: &str,
    k: usize,
    reps: usize,
) -> Case {
    let (n, d) = (op.num_points(), op.input_dim());
    let x = random_vector::<T>(n * k, 2);
    let u = random_vector::<T>(n * k, 3);
    let mut y = vec![T::ZERO; n * k];
    let mut g = vec![T::ZERO; d + 1];
    let (wall, cpu, ops) = match what {
        "apply" => {
            let t = time(reps, || {
                pool.install(|| op.apply_block(black_box(&x), &mut y, k))
            });
            (t.0, t.1, 2 * d + 27 + 2 * k)
        }
        "vjp" => {
            let t = time(reps, || {
                pool.install(|| op.vjp_params_block(black_box(&u), &x, k, &mut g))
            });
            (t.0, t.1, 5 * d + 30 + 2 * k)
        }
        _ => {
            let t = time(reps, || {
                pool.install(|| op.apply_and_vjp_params(black_box(&x), &mut y, &u, &mut g))
            });
            (t.0, t.1, 5 * d + 32)
        }
    };
    black_box((&y, &g));
    Case {
        name: format!(
            "{what} k={k} d={d} n={n} {} {}",
            T::NAME,
            op.simd_level().name()
        ),
        n,
        evals: evals(n, op.tile_size()),
        ops_per_eval: ops as f64,
        wall,
        cpu,
    }
}

fn main() {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");

    // Peak of this core, measured in this run.
    let best = SimdLevel::best();
    let mut peak_gflops = f64::NAN;
    let mut peak_lanes = 1;
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(s) = pulp::x86::V3::try_new() {
            let g = fma_peak(s);
            println!("FMA peak AVX2    (f64, 1 core): {g:7.2} GFlop/s");
            peak_gflops = g;
            peak_lanes = 4;
        }
        if let Some(s) = pulp::x86::V4::try_new() {
            let g = fma_peak(s);
            println!("FMA peak AVX-512 (f64, 1 core): {g:7.2} GFlop/s");
            peak_gflops = g;
            peak_lanes = 8;
        }
    }
    if peak_gflops.is_nan() {
        peak_gflops = fma_peak(pulp::Scalar::new());
        println!("FMA peak scalar  (f64, 1 core): {peak_gflops:7.2} GFlop/s (a·b + c)");
    }
    // Lane operations per second at the peak: one FMA = 2 flops on one lane.
    let peak_lane_ops = peak_gflops * 1e9 / 2.0;
    println!(
        "engine level {} ({} f64 lanes), peak {:.3e} lane-ops/s; Matérn-3/2, tile {DEFAULT_TILE}, medians of 3, 1 thread unless noted",
        best.name(),
        peak_lanes,
        peak_lane_ops
    );

    let d8 = operator::<f64>(20_000, 8);
    let d18 = operator::<f64>(13_280, 18);
    let mut cases = Vec::new();
    for k in [1, 16] {
        cases.push(measure(&one, &d8, "apply", k, 3));
    }
    for k in [1, 16] {
        cases.push(measure(&one, &d8, "vjp", k, 3));
    }
    for k in [1, 11, 16] {
        cases.push(measure(&one, &d18, "apply", k, 3));
    }
    for k in [1, 11, 16] {
        cases.push(measure(&one, &d18, "vjp", k, 3));
    }
    cases.push(measure(&one, &d18, "apply+vjp", 1, 3));
    let f32_op = operator::<f32>(13_280, 18);
    cases.push(measure(&one, &f32_op, "apply", 1, 3));
    for c in &cases {
        // f32 vectors have twice the lanes of f64 at the same instruction rate.
        let lanes = if c.name.contains("f32") { 2.0 } else { 1.0 };
        c.print(Some(lanes * peak_lane_ops));
    }
    // The scalar fallback, for comparison (no bound: LLVM may auto-vectorise parts of it).
    let scalar = d18
        .clone()
        .with_simd_level(SimdLevel::Scalar)
        .expect("scalar level");
    for (what, simd) in [("apply", &cases[4]), ("vjp", &cases[7])] {
        let c = measure(&one, &scalar, what, 1, 3);
        c.print(None);
        println!(
            "    {} engine / scalar fallback: {:.2}x",
            best.name(),
            c.wall / simd.wall
        );
    }
    // Two threads (the whole machine), per core = half.
    let c2 = measure(&two, &d18, "apply", 1, 3);
    println!(
        "  2 threads: apply k=1 d=18: wall {:.3} s = {:.3e} pairs/s per core ({:.2}x one thread)",
        c2.wall,
        (13_280f64 * 13_280.0) / c2.wall / 2.0,
        cases[4].wall / c2.wall
    );

    // Criterion: pairs/s per core (n² elements per iteration, one thread).
    let mut c = Criterion::default().configure_from_args();
    for (op, label) in [(&d8, "d8_n20000"), (&d18, "d18_n13280")] {
        let n = op.num_points();
        let mut g = c.benchmark_group(format!("kernel_matern32_{label}_1core"));
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
            .throughput(Throughput::Elements((n * n) as u64));
        for k in [1, 16] {
            let x = random_vector::<f64>(n * k, 2);
            let mut y = vec![0.0; n * k];
            g.bench_function(format!("apply_block_{k}"), |b| {
                b.iter(|| one.install(|| op.apply_block(black_box(&x), &mut y, k)))
            });
            let mut grad = vec![0.0; op.num_params()];
            g.bench_function(format!("vjp_params_block_{k}"), |b| {
                b.iter(|| one.install(|| op.vjp_params_block(black_box(&x), &x, k, &mut grad)))
            });
        }
        g.finish();
    }
    c.final_summary();
}
