//! Times the pieces of one α step of `gradmat bnn` on MNIST: one GGN product, a block of 8, one
//! SLQ evaluation (forward + adjoint) and one diagonal evaluation.
//!
//! `cargo run --release -p gradmat-apps --example profile_bnn -- [H] [layers] [m] [K] [DIR]`
//! (defaults 128, 1, 1000, 150, `../shared/data/images`).
use gradmat_apps::bnn::laplace::{
    evaluate, param_groups, LaplacePrecision, LaplaceTerms, LogdetMethod, Reorthogonalize,
};
use gradmat_apps::bnn::{idx, train};
use gradmat_operators::Operator;
use std::time::Instant;

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (hidden, layers, m, depth): (usize, usize, usize, usize) =
        (arg(1, 128), arg(2, 1), arg(3, 1000), arg(4, 150));
    let dir: String = arg(5, "../shared/data/images".to_string());
    let train = idx::load_split(std::path::Path::new(&dir), "train")?.head(m);
    let mlp = train::new_mlp(train.dim, &vec![hidden; layers], 10, 0)?;
    let p = mlp.num_params();
    let groups = param_groups(&mlp, false);
    let terms = LaplaceTerms::new(mlp.params(), &groups, 1.0);
    let op = LaplacePrecision::new(&mlp, &train.images, m, 1, 60.0, groups, vec![1.0])?;
    let x: Vec<f64> = (0..8 * p).map(|i| ((i % 7) as f64) - 3.0).collect();
    let mut y = vec![0.0; 8 * p];
    op.apply(&x[..p], &mut y[..p]);
    let t1: Vec<f64> = (0..10)
        .map(|_| {
            let t = Instant::now();
            op.apply(&x[..p], &mut y[..p]);
            t.elapsed().as_secs_f64()
        })
        .collect();
    let t8: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            op.apply_block(&x, &mut y, 8);
            t.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "P = {p}, m = {m}: GGN product {:.4} s, block of 8 {:.4} s ({:.4} s per vector)",
        median(t1),
        median(t8.clone()),
        median(t8) / 8.0
    );
    if std::env::var_os("KRYLOV_ONLY").is_some() {
        use gradmat_matfun::estimators::{logdet, SlqParams};
        let d: Vec<f64> = (0..p).map(|i| 1.0 + (i as f64).sqrt()).collect();
        let dop = gradmat_operators::algebra::Diagonal::new(d)?;
        let params = SlqParams {
            num_probes: 1,
            depth,
            seed: 1,
            ..SlqParams::default()
        };
        let t = Instant::now();
        logdet(&dop, &params)?;
        println!("Krylov forward alone: {:.3} s", t.elapsed().as_secs_f64());
        return Ok(());
    }
    if std::env::var_os("GGN_ONLY").is_some() {
        let t = Instant::now();
        for _ in 0..100 {
            op.apply(&x[..p], &mut y[..p]);
        }
        println!("100 GGN products {:.3} s", t.elapsed().as_secs_f64());
        return Ok(());
    }
    for method in [
        LogdetMethod::Lanczos {
            probes: 1,
            depth,
            reorthogonalize: Reorthogonalize::Full,
        },
        LogdetMethod::Lanczos {
            probes: 1,
            depth,
            reorthogonalize: Reorthogonalize::None,
        },
        LogdetMethod::Diagonal { probes: depth },
    ] {
        let mut logdets = Vec::new();
        let times: Vec<f64> = (0..3)
            .map(|s| {
                let t = Instant::now();
                let ev = evaluate(&op, &terms, &method, s).expect("evaluation");
                logdets.push(ev.logdet);
                t.elapsed().as_secs_f64()
            })
            .collect();
        println!(
            "{method:?}: {:.3} s per α-step (median of 3: {times:.3?}); log det estimates \
             (probe seeds 0, 1, 2): {logdets:.7?}",
            median(times.clone())
        );
    }
    // The Krylov part alone: the same SLQ on a diagonal operator of the same size (products
    // cost nothing there).
    use gradmat_matfun::estimators::{logdet, logdet_with_grad, SlqParams};
    let d: Vec<f64> = (0..p).map(|i| 1.0 + (i as f64).sqrt()).collect();
    let dop = gradmat_operators::algebra::Diagonal::new(d)?;
    for reorthogonalize in [Reorthogonalize::Full, Reorthogonalize::None] {
        let params = SlqParams {
            num_probes: 1,
            depth,
            seed: 1,
            reorthogonalize,
            ..SlqParams::default()
        };
        let t = Instant::now();
        logdet(&dop, &params)?;
        let tf = t.elapsed().as_secs_f64();
        let mut g = vec![0.0; p];
        let t = Instant::now();
        logdet_with_grad(&dop, &params, &mut g)?;
        let tb = t.elapsed().as_secs_f64();
        println!(
            "Krylov work alone (diagonal operator, N = {p}, K = {depth}, {reorthogonalize:?} \
             reorthogonalisation): forward {tf:.3} s, forward + adjoint {tb:.3} s"
        );
    }
    Ok(())
}
