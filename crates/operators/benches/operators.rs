//! Vector kernels that every Krylov step pays for, against a plain streaming copy:
//! `cargo bench -p gradmat-operators --bench operators`.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use gradmat_operators::vector::{axpy, dot};
use std::hint::black_box;
use std::time::Duration;

fn vector_kernels(c: &mut Criterion) {
    let n = 1_000_000;
    let x: Vec<f64> = (0..n).map(|i| (i % 13) as f64).collect();
    let mut y: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
    let mut g = c.benchmark_group("vector_n1e6");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    g.bench_function("dot", |b| b.iter(|| black_box(dot(&x, &y))));
    g.bench_function("axpy", |b| b.iter(|| axpy(black_box(1e-9), &x, &mut y)));
    g.bench_function("copy", |b| b.iter(|| y.copy_from_slice(black_box(&x))));
    g.finish();
}

criterion_group!(benches, vector_kernels);
criterion_main!(benches);
