//! Strong scaling of the distributed operators and Krylov steps, with their communication
//! volume (feature `mpi`; issue "Beyond one machine").
//!
//! ```text
//! cargo build --release -p gradmat-apps --features mpi --example mpi_scaling
//! for p in 1 2; do
//!   RAYON_NUM_THREADS=1 mpirun -np $p -x RAYON_NUM_THREADS target/release/examples/mpi_scaling
//! done
//! ```
//!
//! * **Kernel:** `K = k(X, X) + σ²I`, Matérn-3/2, `n = 50,000` random points in `d = 8`
//!   (argument `--kernel-n`), a product with 1 column and with 11 (the GP's lock-step block:
//!   10 probes and the CG solve), and a block parameter VJP with 11 columns.
//! * **CSR:** the 7-point Laplacian of a `100³` grid (`N = 10⁶`, argument `--grid`) plus the
//!   identity, each rank building its own rows; one product, and 20 Lanczos steps with full
//!   reorthogonalisation (the SLQ setting) in a distributed scope.
//!
//! Rank 0 prints, per measurement, the median wall time over the repetitions (the slowest rank
//! counts: every measurement ends with a barrier), and what one rank sent (collectives and
//! bytes, from the communicator's counters).

use gradmat_krylov::distributed::Distributed;
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_krylov::Reorthogonalize;
use gradmat_operators::comm::{Comm, CommStats, MpiComm};
use gradmat_operators::dist::{DistCsr, DistKernel};
use gradmat_operators::kernel::{KernelKind, KernelMatrix, DEFAULT_TILE};
use gradmat_operators::{Operator, ParamVjp};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// Median seconds over `reps` runs of `f` (each ended by a barrier) and the traffic of one run.
fn measure(comm: &Arc<dyn Comm>, reps: usize, mut f: impl FnMut()) -> (f64, CommStats) {
    let mut times = Vec::with_capacity(reps);
    let mut traffic = CommStats::default();
    for _ in 0..reps {
        comm.barrier();
        let s0 = comm.stats();
        let t0 = Instant::now();
        f();
        comm.barrier();
        times.push(t0.elapsed().as_secs_f64());
        // Minus the barrier's own entry.
        traffic = comm.stats().since(&s0);
        traffic.collectives = traffic.collectives.saturating_sub(1);
    }
    times.sort_by(f64::total_cmp);
    (times[reps / 2], traffic)
}

fn report(comm: &Arc<dyn Comm>, what: &str, (t, s): (f64, CommStats), per: &str) {
    if comm.rank() == 0 {
        println!(
            "{what:<44} {t:>9.4} s   rank 0 sent {:>4} collectives, {:>12} bytes {per}",
            s.collectives, s.bytes_sent
        );
    }
}

fn main() {
    let (_universe, world) = MpiComm::init().expect("MPI");
    let comm: Arc<dyn Comm> = world;
    let (p, me) = (comm.size(), comm.rank());
    let threads = rayon::current_num_threads();
    if me == 0 {
        println!("ranks {p}, threads per rank {threads}");
    }

    // ---- kernel
    let n = arg("--kernel-n", 50_000);
    let d = 8;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let xs: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>()).collect();
    let kern = KernelMatrix::new(KernelKind::Matern32, n, d, xs, vec![0.5; d], 1.0).unwrap();
    let part = DistKernel::<f64>::tile_partition(n, p, DEFAULT_TILE);
    let op = DistKernel::new(kern, part.clone(), comm.clone())
        .unwrap()
        .with_noise(0.1)
        .unwrap();
    let nl = part.count(me);
    if me == 0 {
        println!(
            "kernel: n = {n}, d = {d}, Matern-3/2, rank 0 owns {nl} rows and evaluates {} of \
             the {} pairs",
            op.local_pairs(),
            n * (n + 1) / 2
        );
    }
    let x: Vec<f64> = (0..nl * 11).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
    let mut y = vec![0.0; nl * 11];
    let m = measure(&comm, 3, || op.apply(&x[..nl], &mut y[..nl]));
    report(&comm, "kernel product, 1 column", m, "per product");
    let m = measure(&comm, 3, || op.apply_block(&x, &mut y, 11));
    report(&comm, "kernel product, 11 columns", m, "per product");
    let mut g = vec![0.0; op.num_params()];
    let m = measure(&comm, 3, || op.vjp_params_block(&x, &y, 11, &mut g));
    report(&comm, "kernel parameter VJP, 11 columns", m, "per VJP");
    drop(op);

    // ---- CSR: 7-point Laplacian of a g³ grid + I, rows built where they are owned
    let gsz = arg("--grid", 100);
    let nn = gsz * gsz * gsz;
    let part = gradmat_operators::comm::RowPartition::balanced(nn, p);
    let r = part.range(me);
    let (mut rp, mut ci, mut vals) = (vec![0usize], Vec::new(), Vec::new());
    for row in r.clone() {
        let (i, j, k) = (row / (gsz * gsz), (row / gsz) % gsz, row % gsz);
        let mut push = |c: usize, v: f64| {
            ci.push(c);
            vals.push(v);
        };
        if i > 0 {
            push(row - gsz * gsz, -1.0);
        }
        if j > 0 {
            push(row - gsz, -1.0);
        }
        if k > 0 {
            push(row - 1, -1.0);
        }
        push(row, 7.0);
        if k + 1 < gsz {
            push(row + 1, -1.0);
        }
        if j + 1 < gsz {
            push(row + gsz, -1.0);
        }
        if i + 1 < gsz {
            push(row + gsz * gsz, -1.0);
        }
        rp.push(ci.len());
    }
    let a = DistCsr::from_local_rows(rp, ci, vals, part.clone(), comm.clone()).unwrap();
    let nl = a.local_rows();
    if me == 0 {
        println!(
            "csr: N = {nn} ({gsz}^3 grid, 7-point), rank 0 owns {nl} rows, halo {} entries, \
             sends {}",
            a.halo_len(),
            a.send_len()
        );
    }
    let x: Vec<f64> = (0..nl).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
    let mut y = vec![0.0; nl];
    let m = measure(&comm, 5, || a.apply(&x, &mut y));
    report(&comm, "csr product", m, "per product");
    let depth = 20;
    let scope = Distributed::new(comm.clone(), part);
    let params = LanczosParams {
        reorthogonalize: Reorthogonalize::Full,
        ..LanczosParams::new(depth)
    };
    let m = measure(&comm, 3, || {
        scope.run(|| lanczos(&a, &x, &params).unwrap());
    });
    report(
        &comm,
        &format!("csr Lanczos, {depth} steps, full reorth"),
        m,
        &format!("per run of {depth} steps"),
    );
    if me == 0 {
        println!(
            "per Lanczos step: {:.4} s, {:.1} collectives, {:.0} bytes sent by rank 0",
            m.0 / depth as f64,
            m.1.collectives as f64 / depth as f64,
            m.1.bytes_sent as f64 / depth as f64
        );
    }
}
