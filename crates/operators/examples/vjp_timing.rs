//! Times the symmetric-CSR matvec and block parameter VJP on a Matrix Market file (medians).
//! `cargo run --release -p gradmat-operators --example vjp_timing -- data/matrices/copter2_laplacian.mtx.gz 8 51`
use gradmat_operators::{Operator, ParamVjp};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let k: usize = args.get(2).map_or(8, |s| s.parse().unwrap());
    let reps: usize = args.get(3).map_or(51, |s| s.parse().unwrap());
    let a = gradmat_operators::matrix_market::read_matrix_market::<f64>(path)
        .unwrap()
        .to_sym_csr()
        .unwrap();
    let n = a.dim();
    let u: Vec<f64> = (0..n * k)
        .map(|i| ((i * 7919) % 1013) as f64 / 1013.0 - 0.5)
        .collect();
    let x: Vec<f64> = (0..n * k)
        .map(|i| ((i * 104729) % 997) as f64 / 997.0 - 0.5)
        .collect();
    let mut y = vec![0.0; n];
    let mut g = vec![0.0; a.num_params()];
    let (mut tm, mut tv) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t0 = Instant::now();
        a.apply(&u[..n], &mut y);
        tm.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        a.vjp_params_block(&u, &x, k, &mut g);
        tv.push(t0.elapsed().as_secs_f64());
    }
    let (mm, vm) = (
        tm.iter().cloned().fold(f64::INFINITY, f64::min),
        tv.iter().cloned().fold(f64::INFINITY, f64::min),
    );
    let (m, v) = (median(tm), median(tv));
    println!(
        "min: matvec {:.3} ms, block VJP {:.3} ms = {:.2} matvec per pair",
        1e3 * mm,
        1e3 * vm,
        vm / k as f64 / mm
    );
    println!(
        "N = {n}, k = {k}: matvec {:.3} ms, block VJP {:.3} ms = {:.3} ms per pair = {:.2} matvec per pair; checksum {:e}",
        1e3 * m,
        1e3 * v,
        1e3 * v / k as f64,
        v / k as f64 / m,
        g.iter().sum::<f64>()
    );
}
