//! Matrix-free kernel products at scale: Matérn-3/2, `n = 20 000` points in `d = 8`
//! dimensions. Reports kernel pairs per second (`n²/time`) of a single apply, and the cost per
//! vector of a block apply of 16 vectors against 16 single applies.
//!
//! `cargo bench -p gradmat-operators --bench kernel`

use criterion::Criterion;
use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::testing::random_vector;
use gradmat_operators::{Operator, ParamVjp};
use std::hint::black_box;
use std::time::{Duration, Instant};

const N: usize = 20_000;
const D: usize = 8;
const K: usize = 16;

fn operator() -> KernelMatrix<f64> {
    let x = random_vector::<f64>(N * D, 1);
    let ell: Vec<f64> = (0..D).map(|a| 1.0 + 0.25 * a as f64).collect();
    KernelMatrix::new(KernelKind::Matern32, N, D, x, ell, 1.0).expect("valid kernel")
}

/// CPU time (user + system) of this process in seconds, from `/proc/self/stat` (Linux; `NaN`
/// elsewhere). Robust to other processes competing for the cores, unlike wall time.
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
    let mut t: Vec<(f64, f64)> = (0..reps)
        .map(|_| {
            let (s, c) = (Instant::now(), cpu_seconds());
            f();
            (s.elapsed().as_secs_f64(), cpu_seconds() - c)
        })
        .collect();
    let mut wall: Vec<f64> = t.iter().map(|p| p.0).collect();
    t.sort_by(|a, b| a.1.total_cmp(&b.1));
    wall.sort_by(f64::total_cmp);
    (wall[reps / 2], t[reps / 2].1)
}

fn main() {
    let op = operator();
    let x1 = random_vector::<f64>(N, 2);
    let xb = random_vector::<f64>(N * K, 3);
    let mut y1 = vec![0.0; N];
    let mut yb = vec![0.0; N * K];
    let mut grad = vec![0.0; D + 1];

    // Plain figures, measured in this run.
    let t1 = time(3, || op.apply(black_box(&x1), &mut y1));
    let tb = time(3, || op.apply_block(black_box(&xb), &mut yb, K));
    let tv1 = time(3, || op.vjp_params(black_box(&x1), &x1, &mut grad));
    let tvb = time(3, || op.vjp_params_block(black_box(&xb), &xb, K, &mut grad));
    let pairs = (N * N) as f64;
    let threads = rayon::current_num_threads();
    println!("kernel Matérn-3/2 n={N} d={D} threads={threads} (wall s, CPU s)");
    println!(
        "  apply:                 wall {:7.3} s  cpu {:7.3} s   {:.3e} pairs/s wall, {:.3e} pairs per CPU-s",
        t1.0,
        t1.1,
        pairs / t1.0,
        pairs / t1.1
    );
    println!(
        "  apply_block k={K}:      wall {:7.3} s  cpu {:7.3} s   16 single applies / block = {:.2}x wall, {:.2}x CPU",
        tb.0,
        tb.1,
        K as f64 * t1.0 / tb.0,
        K as f64 * t1.1 / tb.1
    );
    println!(
        "  vjp_params:            wall {:7.3} s  cpu {:7.3} s   {:.3e} pairs/s wall",
        tv1.0,
        tv1.1,
        pairs / tv1.0
    );
    println!(
        "  vjp_params_block k={K}: wall {:7.3} s  cpu {:7.3} s   16 single vjps / block = {:.2}x wall, {:.2}x CPU",
        tvb.0,
        tvb.1,
        K as f64 * tv1.0 / tvb.0,
        K as f64 * tv1.1 / tvb.1
    );

    // Criterion measurements of the same products.
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("kernel_matern32_n20000_d8");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("apply", |b| b.iter(|| op.apply(black_box(&x1), &mut y1)));
    g.bench_function("apply_block_16", |b| {
        b.iter(|| op.apply_block(black_box(&xb), &mut yb, K))
    });
    g.finish();
    c.final_summary();
}
