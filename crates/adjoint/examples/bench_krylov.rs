//! Forward and gradient timings of Lanczos / Arnoldi on the 2-D five-point Laplacian (symmetric
//! CSR, parameters = stored entries), the shape of the paper's Figure 3.
//!
//! For each depth K and variant it reports the median over `--reps` runs of: the forward
//! decomposition, the K matvecs alone (time per matvec and the share of the forward time spent
//! outside matvecs), and the backward pass (adjoint, with the fused parameter VJP), and the
//! ratios backward/forward (of the medians, and the median of the per-repetition ratios, each
//! backward timed right after its forward) and (forward+backward)/forward.
//!
//! Run: `cargo run --release -p gradmat-adjoint --example bench_krylov -- --grid 1000 --ks 10,25,50,100`
//! The same on a committed real matrix: `… --example bench_krylov -- --matrix data/matrices/4elt_laplacian.mtx.gz --shift 0.1 --ks 10,25,50,100`
//! `--forward-only` skips the backward pass (for the forward benchmark at large K).
//! Peak memory of one gradient: `/usr/bin/time -v target/release/examples/bench_krylov --grid 1000 --ks 100 --variants lanczos --reps 1`

use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointParams, ArnoldiCotangent, LanczosCotangent, ParamAccumulation,
};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_operators::csr::SymCsrMatrix;
use gradmat_operators::ParamVjp;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let g: usize = arg(&args, "--grid", "1000").parse().unwrap();
    let reps: usize = arg(&args, "--reps", "3").parse().unwrap();
    let ks: Vec<usize> = arg(&args, "--ks", "10,25,50,100")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let variants: Vec<String> = arg(&args, "--variants", "lanczos,lanczos-full,arnoldi-full")
        .split(',')
        .map(String::from)
        .collect();
    let acc = match arg(&args, "--accumulation", "auto").as_str() {
        "online" => ParamAccumulation::Online,
        "fused" => ParamAccumulation::Fused,
        _ => ParamAccumulation::Auto,
    };
    let adj = AdjointParams {
        accumulation: acc,
        ..AdjointParams::default()
    };
    let forward_only = args.iter().any(|a| a == "--forward-only");
    if let Some(path) = args
        .iter()
        .position(|a| a == "--matrix")
        .and_then(|i| args.get(i + 1))
    {
        let shift: f64 = arg(&args, "--shift", "0").parse().unwrap();
        let m = gradmat_operators::matrix_market::read_matrix_market::<f64>(path)
            .unwrap()
            .to_sym_csr()
            .unwrap();
        let label = format!(
            "{path} + {shift}·I, N = {}, nnz (full) = {}",
            m.dim(),
            m.full().nnz()
        );
        let a = gradmat_operators::algebra::Shifted::new(m, shift).unwrap();
        in_pool(|| run(&a, &label, &ks, &variants, reps, &adj, forward_only));
    } else {
        let a = SymCsrMatrix::laplacian_2d(g).unwrap();
        let label = format!(
            "2-D Laplacian, N = {}, nnz (full) = {}",
            g * g,
            a.full().nnz()
        );
        in_pool(|| run(&a, &label, &ks, &variants, reps, &adj, forward_only));
    }
}

/// Runs `f` on a worker of a rayon pool (of the default size): parallel loops inside it then run
/// on the calling worker's stack, so a profiler (`valgrind --tool=callgrind`, with
/// `RAYON_NUM_THREADS=1`) attributes their cost to the forward and backward calls that made
/// them. Timings are unaffected.
fn in_pool(f: impl FnOnce() + Send) {
    rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a thread pool")
        .install(f)
}

fn run<A>(
    a: &A,
    label: &str,
    ks: &[usize],
    variants: &[String],
    reps: usize,
    adj: &AdjointParams,
    forward_only: bool,
) where
    A: gradmat_operators::SelfAdjoint<f64>
        + gradmat_operators::AdjointOperator<f64>
        + ParamVjp<f64>,
{
    let n = a.nrows();
    let v: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1013) as f64 / 1013.0 - 0.5)
        .collect();
    println!(
        "{label}, threads = {}, parameter VJP {:?}",
        rayon::current_num_threads(),
        adj.accumulation
    );
    println!("| variant | K | forward ms | per matvec ms | outside matvecs | backward ms | backward/forward | median per-rep ratio | (fwd+bwd)/fwd |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for variant in variants {
        for &k in ks {
            let (mut tf, mut tm, mut tb) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                // K matvecs alone.
                let mut x = v.clone();
                let mut y = vec![0.0; n];
                let t0 = Instant::now();
                for _ in 0..k {
                    a.apply(&x, &mut y);
                    std::mem::swap(&mut x, &mut y);
                }
                tm.push(t0.elapsed().as_secs_f64());
                let mut grad = vec![0.0; a.num_params()];
                match variant.as_str() {
                    "lanczos" | "lanczos-full" => {
                        let reorth = if variant == "lanczos" {
                            Reorthogonalize::None
                        } else {
                            Reorthogonalize::Full
                        };
                        let t0 = Instant::now();
                        let dec = lanczos(
                            a,
                            &v,
                            &LanczosParams {
                                reorthogonalize: reorth,
                                ..LanczosParams::new(k)
                            },
                        )
                        .unwrap();
                        tf.push(t0.elapsed().as_secs_f64());
                        if forward_only {
                            tb.push(0.0);
                            continue;
                        }
                        let abar = vec![1.0; dec.depth()];
                        let t0 = Instant::now();
                        let vbar = lanczos_vjp(
                            &a,
                            &dec,
                            &LanczosCotangent {
                                diagonal: Some(&abar),
                                ..Default::default()
                            },
                            adj,
                            &mut grad,
                        )
                        .unwrap();
                        tb.push(t0.elapsed().as_secs_f64());
                        std::hint::black_box(vbar);
                    }
                    "arnoldi-full" | "arnoldi" => {
                        let reorth = if variant == "arnoldi" {
                            Reorthogonalize::None
                        } else {
                            Reorthogonalize::Full
                        };
                        let t0 = Instant::now();
                        let dec = arnoldi(
                            a,
                            &v,
                            &ArnoldiParams {
                                reorthogonalize: reorth,
                                ..ArnoldiParams::new(k)
                            },
                        )
                        .unwrap();
                        tf.push(t0.elapsed().as_secs_f64());
                        if forward_only {
                            tb.push(0.0);
                            continue;
                        }
                        let kk = dec.depth();
                        let mut hbar = vec![0.0; kk * kk];
                        for i in 0..kk {
                            hbar[i + i * kk] = 1.0;
                        }
                        let t0 = Instant::now();
                        let vbar = arnoldi_vjp(
                            &a,
                            &dec,
                            &ArnoldiCotangent {
                                hessenberg: Some(&hbar),
                                ..Default::default()
                            },
                            adj,
                            &mut grad,
                        )
                        .unwrap();
                        tb.push(t0.elapsed().as_secs_f64());
                        std::hint::black_box(vbar);
                    }
                    other => panic!("unknown variant {other}"),
                }
            }
            // Each repetition's backward right after its forward: the median of the per-rep
            // ratios is less sensitive to a machine shared with other jobs than the ratio of
            // the medians.
            let paired = median(tb.iter().zip(&tf).map(|(b, f)| b / f).collect());
            let (f, m, b) = (median(tf), median(tm), median(tb));
            println!(
                "| {variant} | {k} | {:.2} | {:.2} | {:.0}% | {:.2} | {:.2} | {paired:.2} | {:.2} |",
                1e3 * f,
                1e3 * m / k as f64,
                100.0 * (f - m).max(0.0) / f,
                1e3 * b,
                b / f,
                (f + b) / f
            );
        }
    }
}
