//! CSR SpMV/SpMM throughput on the 2-D five-point Laplacian with n = 10^6 (1000×1000 grid).
//!
//! Reports, besides criterion's timings, lines meant for the README:
//! * achieved SpMV bandwidth in GB/s, counting `values + col_idx + row_ptr + x + y` bytes, and its
//!   ratio to a parallel streaming copy of the same number of bytes (read + write) timed in the
//!   same run (floor in the issue: 60 %);
//! * one blocked SpMM of 16 vectors against 16 separate SpMVs.
//!
//! Run: `cargo bench -p gradmat-operators --bench spmv`.

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gradmat_operators::csr::CsrMatrix;
use gradmat_operators::testing::random_vector;
use gradmat_operators::Operator;
use rayon::prelude::*;
use std::time::{Duration, Instant};

const GRID: usize = 1000;
const K: usize = 16;

fn laplacian(g: usize) -> CsrMatrix<f64> {
    let n = g * g;
    let mut row_ptr = Vec::with_capacity(n + 1);
    let mut col_idx = Vec::with_capacity(5 * n);
    let mut values = Vec::with_capacity(5 * n);
    row_ptr.push(0);
    for i in 0..g {
        for j in 0..g {
            let p = i * g + j;
            let mut push = |q: usize, v: f64| {
                col_idx.push(q);
                values.push(v);
            };
            if i > 0 {
                push(p - g, -1.0);
            }
            if j > 0 {
                push(p - 1, -1.0);
            }
            push(p, 4.0);
            if j + 1 < g {
                push(p + 1, -1.0);
            }
            if i + 1 < g {
                push(p + g, -1.0);
            }
            row_ptr.push(col_idx.len());
        }
    }
    CsrMatrix::from_raw_parts(n, n, row_ptr, col_idx, values).expect("valid Laplacian")
}

/// Median wall time of `reps` runs of `f` (after one warm-up run).
fn median_time(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut t: Vec<Duration> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[reps / 2]
}

/// Parallel streaming copy (the bandwidth reference), in the same chunking style as the SpMV.
fn stream_copy(src: &[f64], dst: &mut [f64]) {
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

fn bench_spmv(c: &mut Criterion) {
    let a = laplacian(GRID);
    let n = a.nrows();
    let nnz = a.nnz();
    let x = random_vector::<f64>(n * K, 1);
    let mut y = vec![0.0; n * K];
    let usz = std::mem::size_of::<usize>();
    let bytes = nnz * (8 + usz) + (n + 1) * usz + n * 8 + n * 8;
    // A copy moving the same number of bytes: reads bytes/2 and writes bytes/2.
    let half = bytes / 2 / 8;
    let src = random_vector::<f64>(half, 2);
    let mut dst = vec![0.0; half];

    let reps = 30;
    let t_spmv = median_time(reps, || a.apply(black_box(&x[..n]), &mut y[..n]));
    let t_copy = median_time(reps, || stream_copy(black_box(&src), &mut dst));
    let gbs = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
    println!(
        "SpMV  n = {n}, nnz = {nnz}, {:.1} MB moved, threads = {}",
        bytes as f64 / 1e6,
        rayon::current_num_threads()
    );
    println!(
        "SpMV  {:.3} ms  {:.2} GB/s; stream copy {:.3} ms  {:.2} GB/s; ratio {:.0} % (floor 60 %)",
        t_spmv.as_secs_f64() * 1e3,
        gbs(t_spmv),
        t_copy.as_secs_f64() * 1e3,
        gbs(t_copy),
        100.0 * t_copy.as_secs_f64() / t_spmv.as_secs_f64()
    );
    let t_spmm = median_time(10, || a.apply_block(black_box(&x), &mut y, K));
    let t_16 = median_time(10, || {
        for col in 0..K {
            a.apply(
                black_box(&x[col * n..(col + 1) * n]),
                &mut y[col * n..(col + 1) * n],
            );
        }
    });
    println!(
        "SpMM  k = {K}: {:.2} ms vs {K} SpMVs {:.2} ms: speed-up {:.2}x",
        t_spmm.as_secs_f64() * 1e3,
        t_16.as_secs_f64() * 1e3,
        t_16.as_secs_f64() / t_spmm.as_secs_f64()
    );

    let mut g = c.benchmark_group("csr_laplacian_1e6");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("spmv", |b| {
        b.iter(|| a.apply(black_box(&x[..n]), &mut y[..n]))
    });
    g.bench_function("stream_copy_same_bytes", |b| {
        b.iter(|| stream_copy(black_box(&src), &mut dst))
    });
    g.bench_function("spmm_16", |b| {
        b.iter(|| a.apply_block(black_box(&x), &mut y, K))
    });
    g.bench_function("spmv_x16", |b| {
        b.iter(|| {
            for col in 0..K {
                a.apply(
                    black_box(&x[col * n..(col + 1) * n]),
                    &mut y[col * n..(col + 1) * n],
                );
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_spmv);
criterion_main!(benches);
