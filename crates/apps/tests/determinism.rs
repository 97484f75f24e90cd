//! Determinism across thread counts: the same seed gives bit-identical results with 1 and with 2
//! rayon threads.
//!
//! * Library computations ([`COMPUTATIONS`], table-driven: one row per computation, returning
//!   the bit patterns of everything it produces) run inside a 1-thread and a 2-thread
//!   `rayon::ThreadPool` and are compared with `to_bits`. The SLQ log-det and its gradient on a
//!   CSR Laplacian with full reorthogonalisation is already covered by
//!   `crates/matfun/tests/slq.rs::deterministic_across_thread_counts`; the rows here add the
//!   matrix-free kernel operator (fused block parameter VJP), Gaussian probes without
//!   reorthogonalisation, and the Lanczos/Arnoldi quadratic-form gradients.
//! * The command itself runs with `RAYON_NUM_THREADS=1` and `=2`: `logdet` with its gradient
//!   file, on a matrix large enough (N = 40,000) for the parallel SpMV and reductions; stdout
//!   values and `d_matrix.mtx` must be byte-identical.
//!
//! The GP loss is the row `gp_loss` of [`COMPUTATIONS`] (`pde` and `bnn` losses: one row each).

use gradmat_krylov::arnoldi::Reorthogonalize;
use gradmat_matfun::dense::MatrixFunction;
use gradmat_matfun::estimators::Probe;
use gradmat_matfun::{
    logdet_with_grad, quadform_arnoldi, quadform_lanczos, KrylovParams, SlqParams,
};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::csr::{CsrMatrix, SymCsrMatrix};
use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::{Operator, ParamVjp};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Deterministic pseudo-random inputs in [0, 1) (no dependence on thread count or RNG crate).
fn inputs(n: usize, d: usize) -> Vec<f64> {
    (0..n * d)
        .map(|i| {
            ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// SLQ log-det + gradient of a Matérn-3/2 kernel matrix + noise (N = 2,500, d = 3), Gaussian
/// probes, no reorthogonalisation.
fn slq_kernel() -> Vec<u64> {
    let n = 2500;
    let k = KernelMatrix::isotropic(KernelKind::Matern32, n, 3, inputs(n, 3), 0.3, 1.2).unwrap();
    let op = Shifted::new(k, 0.05).unwrap();
    let params = SlqParams {
        num_probes: 4,
        depth: 12,
        seed: 11,
        probe: Probe::Gaussian,
        reorthogonalize: Reorthogonalize::None,
        ..SlqParams::default()
    };
    let mut g = vec![0.0; op.num_params()];
    let est = logdet_with_grad(&op, &params, &mut g).unwrap();
    let mut out = vec![est.value.to_bits(), est.std_error.to_bits()];
    out.extend(bits(&est.per_probe));
    out.extend(bits(&g));
    out
}

/// SLQ log-det + gradient of the 2-D Laplacian + 0.1 I (N = 40,000), full reorthogonalisation,
/// Rademacher probes, more probes than threads.
fn slq_laplacian() -> Vec<u64> {
    let op = Shifted::new(SymCsrMatrix::<f64>::laplacian_2d(200).unwrap(), 0.1).unwrap();
    let params = SlqParams {
        num_probes: 5,
        depth: 15,
        seed: 3,
        ..SlqParams::default()
    };
    let mut g = vec![0.0; op.num_params()];
    let est = logdet_with_grad(&op, &params, &mut g).unwrap();
    let mut out = vec![est.value.to_bits(), est.std_error.to_bits()];
    out.extend(bits(&g));
    out
}

/// `vᵀ log(A) v` by Lanczos and `vᵀ exp(A) v` by Arnoldi on a non-symmetric CSR matrix, with
/// gradients (N = 40,000).
fn quadforms() -> Vec<u64> {
    let lap = Shifted::new(SymCsrMatrix::<f64>::laplacian_2d(200).unwrap(), 0.1).unwrap();
    let n = lap.nrows();
    let v: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1013) as f64 / 1013.0 - 0.5)
        .collect();
    let q = quadform_lanczos(&lap, &v, &MatrixFunction::Log, &KrylovParams::new(20)).unwrap();
    let mut g = vec![0.0; lap.num_params()];
    let gr = q.gradient(&lap, &mut g).unwrap();
    let mut out = vec![q.value().to_bits()];
    out.extend(bits(&g));
    out.extend(bits(&gr.v));
    // A non-symmetric upwind convection–diffusion stencil on the same grid, scaled to norm ~1.
    let g2 = 200;
    let (mut r, mut c, mut x) = (vec![], vec![], vec![]);
    for i in 0..g2 * g2 {
        r.push(i);
        c.push(i);
        x.push(-0.4);
        if i % g2 > 0 {
            r.push(i);
            c.push(i - 1);
            x.push(0.15);
        }
        if i >= g2 {
            r.push(i);
            c.push(i - g2);
            x.push(0.05);
        }
    }
    let a = CsrMatrix::from_triplets(n, n, &r, &c, &x).unwrap();
    let qa = quadform_arnoldi(&a, &v, &MatrixFunction::Exp, &KrylovParams::new(15)).unwrap();
    let mut ga = vec![0.0; a.num_params()];
    let gra = qa.gradient(&a, &mut ga).unwrap();
    out.push(qa.value().to_bits());
    out.extend(bits(&ga));
    out.extend(bits(&gra.v));
    out
}

/// The GP training loss (stochastic: preconditioned CG + lock-step SLQ on the whitened matrix)
/// and its gradient at the initial hyperparameters, on a synthetic data set (n = 1,500, d = 3,
/// 80/20 split), fixed seeds.
fn gp_loss() -> Vec<u64> {
    use gradmat_apps::gp::csv::Table;
    use gradmat_apps::gp::data::prepare;
    use gradmat_apps::gp::model::{Gp, Hyper, Kernel, Stochastic};
    let (n, d) = (1500, 3);
    let x = inputs(n, d);
    let mut values = Vec::with_capacity(n * (d + 1));
    for i in 0..n {
        let row = &x[i * d..(i + 1) * d];
        values.extend_from_slice(row);
        values.push(
            (3.0 * row[0]).sin() + row[1] * row[2] + 0.1 * ((i * 37 % 11) as f64 - 5.0) / 5.0,
        );
    }
    let table = Table {
        names: (0..=d).map(|c| format!("c{c}")).collect(),
        has_header: false,
        rows: n,
        cols: d + 1,
        values,
    };
    let data = prepare(&table, d, None, 7).unwrap();
    let gp = Gp::new(Kernel::Matern32, &data);
    let raw = Hyper::initial(data.d).to_raw();
    let mut warm = None;
    let lg = gp
        .loss_stochastic(&raw, &Stochastic::default(), 13, &mut warm)
        .unwrap();
    let mut out = vec![lg.loss.to_bits(), lg.std_error.to_bits()];
    out.extend(bits(&lg.grad));
    out
}

/// Every computation whose results must not depend on the thread count (add a row per new one).
const COMPUTATIONS: &[(&str, Computation)] = &[
    (
        "SLQ log-det + gradient, Matérn kernel, Gaussian probes, no reorth.",
        slq_kernel,
    ),
    (
        "SLQ log-det + gradient, 2-D Laplacian, full reorth.",
        slq_laplacian,
    ),
    (
        "Lanczos log / Arnoldi exp quadratic forms + gradients",
        quadforms,
    ),
    (
        "GP stochastic loss + gradient (CG + lock-step SLQ)",
        gp_loss,
    ),
];

/// A computation returning the bit patterns of everything it produces.
type Computation = fn() -> Vec<u64>;

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn library_results_are_bit_identical_with_1_and_2_threads() {
    for (name, f) in COMPUTATIONS {
        let one = in_pool(1, || {
            assert_eq!(rayon::current_num_threads(), 1);
            f()
        });
        let two = in_pool(2, || {
            assert_eq!(rayon::current_num_threads(), 2);
            f()
        });
        assert!(!one.is_empty(), "{name}: nothing compared");
        assert_eq!(one.len(), two.len(), "{name}");
        let diff = one.iter().zip(&two).filter(|(a, b)| a != b).count();
        assert_eq!(
            diff,
            0,
            "{name}: {diff} of {} values differ between 1 and 2 threads",
            one.len()
        );
    }
}

fn tmp() -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("determinism-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cli_logdet_is_bit_identical_with_rayon_num_threads_1_and_2() {
    use gradmat_operators::matrix_market::{write_matrix_market, MatrixMarketFile};
    let dir = tmp();
    let mpath = dir.join("lap200.mtx");
    let lap = SymCsrMatrix::<f64>::laplacian_2d(200).unwrap();
    write_matrix_market(&mpath, &MatrixMarketFile::from_sym_csr(&lap)).unwrap();
    let run = |threads: &str| {
        let gdir = dir.join(format!("grad-{threads}"));
        let o = Command::new(env!("CARGO_BIN_EXE_gradmat"))
            .args(["logdet", "--matrix"])
            .arg(&mpath)
            .args([
                "--probes", "4", "--depth", "12", "--seed", "5", "--shift", "0.1",
            ])
            .arg("--grad-dir")
            .arg(&gdir)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let grad = std::fs::read(gdir.join("d_matrix.mtx")).unwrap();
        (
            json["value"].to_string(),
            json["std_error"].to_string(),
            grad,
        )
    };
    let (v1, s1, g1) = run("1");
    let (v2, s2, g2) = run("2");
    assert_eq!(v1, v2, "value");
    assert_eq!(s1, s2, "std_error");
    assert!(g1.len() > 100_000);
    assert!(
        g1 == g2,
        "d_matrix.mtx differs between RAYON_NUM_THREADS=1 and 2"
    );
}
