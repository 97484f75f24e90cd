//! The distributed GP loss (`mpirun -np P gradmat gp`) against the serial one, with ranks as
//! threads (`ThreadComm`; no MPI needed): loss and every component of the raw gradient within
//! 1e-12 relative (of the gradient's norm) for 1, 2 and 3 ranks, on a 700-point subsample of
//! the bundled diamonds set — 6 tiles of 128 points, whole tiles per rank, so the blocks are
//! uneven for 3 ranks (and for 2: the last tile has 60 points) — at the initial and at trained-looking hyperparameters, with a
//! converged solve (CG to 1e-12: the same iterate up to rounding, see docs/scale.md).
//!
//! Why 1e-12: the distributed kernel adds a row's tile contributions from several ranks and
//! the reductions split chunks at rank boundaries — rounding of order ε per operation — and a
//! converged CG solve and a fully reorthogonalised Lanczos run propagate it with a factor of
//! about the condition number of the preconditioned `K` (≈10³–10⁴ here): ~1e-16 · 1e4.

use gradmat_apps::gp::csv::read_csv;
use gradmat_apps::gp::data::prepare;
use gradmat_apps::gp::model::{Gp, Hyper, Kernel, KernelCache, Stochastic};
use gradmat_operators::comm::ThreadComm;
use std::path::Path;

#[test]
fn distributed_loss_and_gradient_match_serial() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/gp/diamonds.csv.gz");
    let t = read_csv(&path).unwrap();
    let data = prepare(&t, 9, Some(875), 3).unwrap();
    assert_eq!(data.y_train.len(), 700);
    let gp = Gp::new(Kernel::Matern32, &data);
    let d = data.d;
    let initial = Hyper {
        lengthscales: vec![1.0; d],
        outputscale: 1.0,
        noise: 0.1,
        mean: 0.0,
    }
    .to_raw();
    let trained = Hyper {
        lengthscales: (0..d).map(|i| 0.8 + 0.3 * i as f64).collect(),
        outputscale: 1.5,
        noise: 0.05,
        mean: 0.1,
    }
    .to_raw();
    let s = Stochastic {
        probes: 4,
        depth: 15,
        cg_tol: 1e-12,
        cg_atol: 0.0,
        // The distributed kernel is matrix-free; so is the reference.
        kernel_cache: KernelCache::MatrixFree,
        ..Stochastic::default()
    };
    for raw in [initial, trained] {
        let serial = gp.loss_stochastic(&raw, &s, 11, &mut None).unwrap();
        let gnorm = serial.grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        for p in [1, 2, 3] {
            let res = ThreadComm::run(p, |comm| {
                gp.loss_stochastic_distributed(&raw, &s, 11, &mut None, &comm)
                    .unwrap()
            });
            for (r, lg) in res.iter().enumerate() {
                let what = format!("{p} ranks, rank {r}");
                assert!(
                    (lg.loss - serial.loss).abs() <= 1e-12 * serial.loss.abs(),
                    "{what}: loss {} vs {}",
                    lg.loss,
                    serial.loss
                );
                for (i, (a, b)) in lg.grad.iter().zip(&serial.grad).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-12 * gnorm,
                        "{what}: gradient[{i}] {a} vs {b} (norm {gnorm})"
                    );
                }
                // Every rank returns the same bits.
                assert_eq!(lg.loss.to_bits(), res[0].loss.to_bits(), "{what}");
            }
        }
    }
}
