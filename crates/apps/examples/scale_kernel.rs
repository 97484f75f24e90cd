//! Scale check: one block apply `Y = K X` of a matrix-free kernel operator with `n` points in
//! `d` dimensions to `k` vectors, reporting the time and the memory the operator and its
//! buffers need. Peak resident memory is measured from outside (docs/reliability.md):
//!
//! ```text
//! cargo build --release -p gradmat-apps --example scale_kernel
//! /usr/bin/time -v target/release/examples/scale_kernel --n 100000 --d 8 --k 16
//! ```
//!
//! The dense matrix would need `8·n²` bytes (80 GB at n = 100,000); the operator stores the
//! inputs (`8·n·d`) and evaluates tiles of `128×128` entries per thread.

use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::Operator;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--n", 100_000);
    let d = arg(&args, "--d", 8);
    let k = arg(&args, "--k", 16);
    // Deterministic inputs in [0, 1)^d.
    let x: Vec<f64> = (0..n * d)
        .map(|i| {
            ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect();
    let op = KernelMatrix::isotropic(KernelKind::Matern32, n, d, x, 0.5, 1.0).expect("kernel");
    let v: Vec<f64> = (0..n * k)
        .map(|i| ((i * 7919) % 1013) as f64 / 1013.0 - 0.5)
        .collect();
    let mut y = vec![0.0; n * k];
    let t = Instant::now();
    op.apply_block(&v, &mut y, k);
    let secs = t.elapsed().as_secs_f64();
    let checksum: f64 = y.iter().map(|t| t.abs()).sum();
    let mb = |b: f64| b / 1e6;
    println!(
        "kernel Matérn-3/2, n = {n}, d = {d}, block of k = {k}: {secs:.2} s, threads = {}, \
         checksum {checksum:.6e}",
        rayon::current_num_threads()
    );
    println!(
        "inputs {:.1} MB, X and Y {:.1} MB each; the dense n×n matrix would be {:.1} MB",
        mb(8.0 * (n * d) as f64),
        mb(8.0 * (n * k) as f64),
        mb(8.0 * (n as f64) * (n as f64))
    );
    assert!(y.iter().all(|t| t.is_finite()));
}
