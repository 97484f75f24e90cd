//! Distributed estimators (ranks as threads, `ThreadComm`) against the serial ones:
//! SLQ on a row-distributed CSR matrix (bit-identical for aligned partitions), lock-step SLQ
//! and the GP's lock-step CG + whitened SLQ on a row-distributed kernel matrix (within 1e-12),
//! and probes split across ranks on a replicated operator (bit-identical).

use gradmat_krylov::cg::CgParams;
use gradmat_krylov::distributed::Distributed;
use gradmat_krylov::precond::{PartialCholesky, PartialCholeskyParams};
use gradmat_matfun::estimators::{logdet, logdet_with_grad, SlqParams};
use gradmat_matfun::preconditioned::{logdet_and_solve_with_grad, SolveLogdetParams};
use gradmat_matfun::split::{logdet_split, logdet_with_grad_split};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::comm::{RowPartition, ThreadComm, REDUCTION_ALIGN};
use gradmat_operators::csr::{CsrMatrix, SymCsrMatrix};
use gradmat_operators::dist::{allgather_vector, local_rows, DistCsr, DistKernel};
use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::testing::random_vector;
use gradmat_operators::{Operator, ParamVjp, SelfAdjoint};

/// The full (both triangles) CSR matrix of a symmetric matrix, as a self-adjoint operator whose
/// parameters are the full matrix's entries: the serial twin of `DistCsr`.
struct Full(CsrMatrix<f64>);
impl Operator<f64> for Full {
    fn nrows(&self) -> usize {
        self.0.nrows()
    }
    fn ncols(&self) -> usize {
        self.0.ncols()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.0.apply(x, y)
    }
    fn apply_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        self.0.apply_block(x, y, k)
    }
}
impl SelfAdjoint<f64> for Full {}
impl ParamVjp<f64> for Full {
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    fn vjp_params(&self, u: &[f64], x: &[f64], g: &mut [f64]) {
        self.0.vjp_params(u, x, g)
    }
    fn vjp_params_block(&self, u: &[f64], x: &[f64], k: usize, g: &mut [f64]) {
        self.0.vjp_params_block(u, x, k, g)
    }
    fn apply_and_vjp_params(&self, x: &[f64], y: &mut [f64], u: &[f64], g: &mut [f64]) {
        self.0.apply_and_vjp_params(x, y, u, g)
    }
    fn vjp_block_size(&self) -> usize {
        self.0.vjp_block_size()
    }
}

fn bits(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}[{i}]: {x} vs {y}");
    }
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn slq_on_distributed_csr() {
    let g = 190; // N = 36,100
    let a = SymCsrMatrix::<f64>::laplacian_2d(g).unwrap();
    let n = a.dim();
    let full = a.full().clone();
    let shift = 0.05;
    let params = SlqParams {
        num_probes: 3,
        depth: 10,
        seed: 11,
        ..SlqParams::default()
    };
    let serial = Shifted::new(Full(full.clone()), shift).unwrap();
    let mut g_serial = vec![0.0; serial.num_params()];
    let est = logdet_with_grad(&serial, &params, &mut g_serial).unwrap();
    let plain = SlqParams {
        reorthogonalize: gradmat_krylov::Reorthogonalize::None,
        ..params.clone()
    };
    let est_plain = logdet(&serial, &plain).unwrap();
    let nnz = full.nnz();
    for (part, aligned) in [
        (RowPartition::aligned(n, 2, REDUCTION_ALIGN), true),
        (RowPartition::aligned(n, 3, REDUCTION_ALIGN), true),
        (
            RowPartition::from_counts(&[REDUCTION_ALIGN, 0, n - REDUCTION_ALIGN]),
            true,
        ),
        (RowPartition::balanced(n, 3), false),
    ] {
        let p = part.num_ranks();
        let res = ThreadComm::run(p, |comm| {
            let op = DistCsr::from_replicated(&full, part.clone(), comm.clone())
                .unwrap()
                .with_shift(shift)
                .unwrap();
            let scope = Distributed::new(comm, part.clone());
            scope.run(|| {
                let mut g = vec![0.0; op.num_params()];
                let e = logdet_with_grad(&op, &params, &mut g).unwrap();
                let e2 = logdet(&op, &plain).unwrap();
                let entries = op.gather_entries(&g);
                (
                    e.value,
                    e.std_error,
                    e.per_probe,
                    entries,
                    g[op.local_nnz()],
                    e2.value,
                )
            })
        });
        let what = format!("{:?}", part.offsets());
        for (value, se, per, entries, sigma, plain_value) in res {
            let tol = if aligned { 0.0 } else { 1e-12 };
            assert!(
                (value - est.value).abs() <= tol * est.value.abs(),
                "{what}: {value} vs {}",
                est.value
            );
            assert!(
                (se - est.std_error).abs() <= 1e-9 * est.std_error.abs(),
                "{what}: se"
            );
            assert!(
                (plain_value - est_plain.value).abs() <= tol.max(1e-13) * est_plain.value.abs(),
                "{what}: plain"
            );
            assert_eq!(per.len(), 3);
            if aligned {
                bits(
                    &g_serial[..nnz],
                    &entries,
                    &format!("{what} entry gradient"),
                );
            } else {
                close(
                    &g_serial[..nnz],
                    &entries,
                    1e-10,
                    &format!("{what} entry gradient"),
                );
            }
            assert!(
                (sigma - g_serial[nnz]).abs() <= 1e-12 * g_serial[nnz].abs(),
                "{what}: σ̄"
            );
        }
    }
}

fn kernel(n: usize) -> KernelMatrix<f64> {
    let d = 2;
    let xs: Vec<f64> = random_vector(n * d, 3);
    KernelMatrix::new(KernelKind::Matern32, n, d, xs, vec![0.8, 1.2], 1.3)
        .unwrap()
        .with_tile_size(64)
        .unwrap()
}

#[test]
fn lockstep_slq_and_gp_solve_on_distributed_kernel() {
    let n = 700;
    let kern = kernel(n);
    let noise = 0.2;
    let serial = Shifted::new(kern.clone(), noise).unwrap();
    let slq = SlqParams {
        num_probes: 4,
        depth: 12,
        seed: 5,
        lockstep: true,
        ..SlqParams::default()
    };
    let mut g_slq = vec![0.0; serial.num_params()];
    let est = logdet_with_grad(&serial, &slq, &mut g_slq).unwrap();
    // The GP's shared pass: CG + whitened SLQ with a rank-8 partial Cholesky preconditioner.
    let pc = PartialCholesky::new(&kern, noise, &PartialCholeskyParams::new(8)).unwrap();
    let rhs: Vec<f64> = random_vector(n, 9);
    let sp = SolveLogdetParams {
        slq: slq.clone(),
        cg: CgParams {
            rtol: Some(1e-10),
            ..CgParams::default()
        },
        weight_logdet: 0.5,
        weight_quad: 0.5,
        ..SolveLogdetParams::default()
    };
    let mut g_gp = vec![0.0; serial.num_params()];
    let gp = logdet_and_solve_with_grad(&serial, &pc, &rhs, None, &sp, &mut g_gp).unwrap();
    for part in [
        RowPartition::aligned(n, 2, 64),
        RowPartition::aligned(n, 3, 64),
        RowPartition::from_counts(&[320, 0, 380]),
    ] {
        let p = part.num_ranks();
        let res = ThreadComm::run(p, |comm| {
            let me = comm.rank();
            let op = DistKernel::new(kern.clone(), part.clone(), comm.clone())
                .unwrap()
                .with_noise(noise)
                .unwrap();
            let scope = Distributed::new(comm.clone(), part.clone());
            scope.run(|| {
                let mut g1 = vec![0.0; op.num_params()];
                let e = logdet_with_grad(&op, &slq, &mut g1).unwrap();
                // The preconditioner's factor is computed on the replicated kernel (outside the
                // scope's reductions), then each rank keeps its rows.
                let pcl = gradmat_krylov::distributed::serially(|| {
                    PartialCholesky::new(op.kernel(), noise, &PartialCholeskyParams::new(8))
                        .unwrap()
                });
                let lrows = local_rows(&part, me, pcl.factor(), pcl.rank());
                let pcd =
                    PartialCholesky::from_factor(part.count(me), pcl.rank(), lrows, noise).unwrap();
                let rl = local_rows(&part, me, &rhs, 1);
                let mut g2 = vec![0.0; op.num_params()];
                let r = logdet_and_solve_with_grad(&op, &pcd, &rl, None, &sp, &mut g2).unwrap();
                let alpha = allgather_vector(&*comm, &part, &r.solution);
                (
                    e.value,
                    g1,
                    r.logdet.value,
                    r.quad,
                    g2,
                    alpha,
                    r.cg.iterations[0],
                )
            })
        });
        let what = format!("{:?}", part.offsets());
        for (v1, g1, v2, quad, g2, alpha, iters) in res {
            assert!(
                (v1 - est.value).abs() <= 1e-12 * est.value.abs(),
                "{what}: {v1} vs {}",
                est.value
            );
            close(&g_slq, &g1, 1e-11, &format!("{what} SLQ gradient"));
            assert!(
                (v2 - gp.logdet.value).abs() <= 1e-12 * gp.logdet.value.abs(),
                "{what}: {v2} vs {}",
                gp.logdet.value
            );
            assert!(
                (quad - gp.quad).abs() <= 1e-11 * gp.quad.abs(),
                "{what}: quad"
            );
            close(&g_gp, &g2, 1e-10, &format!("{what} GP gradient"));
            close(&gp.solution, &alpha, 1e-9, &format!("{what} α"));
            assert_eq!(iters, gp.cg.iterations[0], "{what}: CG iterations");
        }
    }
}

#[test]
fn probes_split_across_ranks_are_bit_identical() {
    let a = Shifted::new(SymCsrMatrix::<f64>::laplacian_2d(30).unwrap(), 0.1).unwrap();
    let params = SlqParams {
        num_probes: 5,
        depth: 15,
        seed: 3,
        ..SlqParams::default()
    };
    let mut g = vec![0.0; a.num_params()];
    let est = logdet_with_grad(&a, &params, &mut g).unwrap();
    let est0 = logdet(&a, &params).unwrap();
    for p in 1..=3 {
        let res = ThreadComm::run(p, |comm| {
            let mut gs = vec![0.0; a.num_params()];
            let e = logdet_with_grad_split(&a, &params, &*comm, &mut gs).unwrap();
            let e0 = logdet_split(&a, &params, &*comm).unwrap();
            (e, gs, e0)
        });
        for (e, gs, e0) in res {
            assert_eq!(e.value.to_bits(), est.value.to_bits(), "P = {p}");
            assert_eq!(e.std_error.to_bits(), est.std_error.to_bits(), "P = {p}");
            assert_eq!(e0.value.to_bits(), est0.value.to_bits(), "P = {p}");
            assert_eq!(e.num_matvecs, est.num_matvecs);
            bits(&g, &gs, &format!("P = {p} gradient"));
        }
    }
    // A failing probe (log of an indefinite matrix) fails on every rank, none hangs.
    let bad = Shifted::new(SymCsrMatrix::<f64>::laplacian_2d(10).unwrap(), -4.0).unwrap();
    let res = ThreadComm::run(3, |comm| {
        logdet_split(&bad, &params, &*comm).map(|e| e.value)
    });
    assert!(res.iter().all(|r| r.is_err()), "{res:?}");
}
