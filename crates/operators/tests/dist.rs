//! Row-distributed operators (ranks as threads, `ThreadComm`) against the serial ones.

use gradmat_operators::algebra::Shifted;
use gradmat_operators::comm::{RowPartition, ThreadComm};
use gradmat_operators::csr::{CsrMatrix, SymCsrMatrix};
use gradmat_operators::dist::{allgather_vector, local_rows, DistCsr, DistKernel};
use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::testing::random_vector;
use gradmat_operators::{AdjointOperator, Operator, ParamVjp};

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
    }
}

fn bits(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}[{i}]: {x} vs {y}");
    }
}

/// A random sparse symmetric matrix with a few long-range couplings (so that halos reach
/// every rank).
fn matrix(n: usize) -> SymCsrMatrix<f64> {
    let (mut r, mut c, mut v) = (vec![], vec![], vec![]);
    for i in 0..n {
        r.push(i);
        c.push(i);
        v.push(4.0 + (i % 7) as f64);
        for off in [1usize, 5, n / 2 + 1] {
            if i >= off {
                r.push(i);
                c.push(i - off);
                v.push(-1.0 / (1.0 + ((i * 31 + off) % 13) as f64));
            }
        }
    }
    SymCsrMatrix::from_triplets(n, &r, &c, &v).unwrap()
}

#[test]
fn dist_csr_products_and_vjp() {
    let n = 103;
    let a = matrix(n);
    let x: Vec<f64> = random_vector(n * 3, 1);
    let u: Vec<f64> = random_vector(n * 3, 2);
    let shifted = Shifted::new(a.clone(), 0.25).unwrap();
    let mut y1 = vec![0.0; n];
    shifted.apply(&x[..n], &mut y1);
    let mut y3 = vec![0.0; 3 * n];
    shifted.apply_block(&x, &mut y3, 3);
    let mut yt = vec![0.0; n];
    shifted.apply_transpose(&x[..n], &mut yt);
    // Reference gradient per full-matrix entry: u_i x_j (three columns), and σ̄ = ⟨u, x⟩.
    let full = a.full();
    let mut g_full = vec![0.0; full.nnz()];
    full.vjp_params_block(&u, &x, 3, &mut g_full);
    let sigma_bar: f64 = u.iter().zip(&x).map(|(p, q)| p * q).sum();
    for counts in [
        vec![103],
        vec![50, 53],
        vec![40, 0, 63],
        vec![1, 1, 101],
        vec![0, 103],
    ] {
        let part = RowPartition::from_counts(&counts);
        let p = counts.len();
        let res = ThreadComm::run(p, |comm| {
            let me = comm.rank();
            // Rank 0 scatters; the others get their rows through the exchange.
            let op =
                DistCsr::scatter_from((me == 0).then_some(full), 0, part.clone(), comm.clone())
                    .unwrap()
                    .with_shift(0.25)
                    .unwrap();
            let xl = local_rows(&part, me, &x, 3);
            let ul = local_rows(&part, me, &u, 3);
            let nl = part.count(me);
            let mut y1 = vec![0.0; nl];
            op.apply(&xl[..nl], &mut y1);
            let mut y3 = vec![0.0; 3 * nl];
            op.apply_block(&xl, &mut y3, 3);
            let mut yt = vec![0.0; nl];
            op.apply_transpose(&xl[..nl], &mut yt);
            let mut g = vec![0.0; op.num_params()];
            op.vjp_params_block(&ul, &xl, 3, &mut g);
            let entries = op.gather_entries(&g);
            let sigma = g[op.local_nnz()];
            // The fused product-and-VJP equals the two calls.
            let mut g2 = vec![0.0; op.num_params()];
            let mut y2 = vec![0.0; nl];
            op.apply_and_vjp_params(&xl[..nl], &mut y2, &ul[..nl], &mut g2);
            let mut g3 = vec![0.0; op.num_params()];
            op.vjp_params(&ul[..nl], &xl[..nl], &mut g3);
            (
                allgather_vector(&*comm, &part, &y1),
                (0..3)
                    .flat_map(|c| allgather_vector(&*comm, &part, &y3[c * nl..(c + 1) * nl]))
                    .collect::<Vec<_>>(),
                allgather_vector(&*comm, &part, &yt),
                entries,
                sigma,
                (y2 == y1, g2 == g3),
            )
        });
        for (q, (d1, d3, dt, ge, sg, fused)) in res.iter().enumerate() {
            let what = format!("{counts:?} rank {q}");
            bits(&y1, d1, &format!("{what} apply"));
            bits(&y3, d3, &format!("{what} apply_block"));
            close(&yt, dt, 1e-14, &format!("{what} apply_transpose"));
            bits(&g_full, ge, &format!("{what} entry gradient"));
            assert!(
                (sg - sigma_bar).abs() <= 1e-13 * sigma_bar.abs(),
                "{what}: σ̄ {sg} vs {sigma_bar}"
            );
            assert_eq!(*fused, (true, true), "{what}: fused product and VJP");
        }
    }
}

#[test]
fn dist_csr_reports_bad_rows_on_every_rank() {
    // Rank 1's rows have a column out of range: every rank gets an error, none hangs.
    let part = RowPartition::from_counts(&[2, 2]);
    let res = ThreadComm::run(2, |comm| {
        let (rp, ci, v) = if comm.rank() == 1 {
            (vec![0, 1, 2], vec![2, 9], vec![1.0, 1.0])
        } else {
            (vec![0, 1, 2], vec![0, 1], vec![1.0, 1.0])
        };
        DistCsr::<f64>::from_local_rows(rp, ci, v, part.clone(), comm).map(|_| ())
    });
    for r in &res {
        let e = r.as_ref().unwrap_err().to_string();
        assert!(e.contains("col_idx") || e.contains("rank 1"), "{e}");
    }
    // A general (non-square) matrix is refused on every rank.
    let rect = CsrMatrix::<f64>::from_triplets(2, 3, &[0], &[2], &[1.0]).unwrap();
    let res = ThreadComm::run(2, |comm| {
        DistCsr::from_replicated(&rect, RowPartition::from_counts(&[1, 1]), comm).map(|_| ())
    });
    assert!(res.iter().all(|r| r.is_err()));
}

#[test]
fn dist_kernel_matches_serial() {
    let (n, d, tile) = (300, 3, 32);
    let xs: Vec<f64> = random_vector(n * d, 5);
    let kern = KernelMatrix::new(KernelKind::Matern32, n, d, xs, vec![0.7, 1.3, 0.9], 1.7)
        .unwrap()
        .with_tile_size(tile)
        .unwrap();
    let noise = 0.3;
    let serial = Shifted::new(kern.clone(), noise).unwrap();
    let k = 4;
    let x: Vec<f64> = random_vector(n * k, 6);
    let u: Vec<f64> = random_vector(n * k, 7);
    let mut y = vec![0.0; n * k];
    serial.apply_block(&x, &mut y, k);
    let mut g = vec![0.0; serial.num_params()];
    serial.vjp_params_block(&u, &x, k, &mut g);
    let mut y1 = vec![0.0; n];
    let mut g1 = vec![0.0; serial.num_params()];
    serial.apply_and_vjp_params(&x[..n], &mut y1, &u[..n], &mut g1);
    let parts = [
        RowPartition::aligned(n, 1, tile),
        RowPartition::aligned(n, 2, tile),
        RowPartition::aligned(n, 3, tile),
        RowPartition::from_counts(&[128, 0, 172]),
        RowPartition::from_counts(&[0, 32, 0, 268]),
    ];
    for part in parts {
        let p = part.num_ranks();
        let res = ThreadComm::run(p, |comm| {
            let me = comm.rank();
            let op = DistKernel::new(kern.clone(), part.clone(), comm.clone())
                .unwrap()
                .with_noise(noise)
                .unwrap();
            let nl = part.count(me);
            let (xl, ul) = (local_rows(&part, me, &x, k), local_rows(&part, me, &u, k));
            let mut yl = vec![0.0; nl * k];
            op.apply_block(&xl, &mut yl, k);
            let mut gl = vec![0.0; op.num_params()];
            op.vjp_params_block(&ul, &xl, k, &mut gl);
            let mut y1l = vec![0.0; nl];
            let mut g1l = vec![0.0; op.num_params()];
            op.apply_and_vjp_params(&xl[..nl], &mut y1l, &ul[..nl], &mut g1l);
            let yfull: Vec<f64> = (0..k)
                .flat_map(|c| allgather_vector(&*comm, &part, &yl[c * nl..(c + 1) * nl]))
                .collect();
            (yfull, gl, allgather_vector(&*comm, &part, &y1l), g1l)
        });
        for (q, (yd, gd, y1d, g1d)) in res.iter().enumerate() {
            let what = format!("{:?} rank {q}", part.offsets());
            if p == 1 {
                bits(&y, yd, &format!("{what} apply_block"));
                bits(&g, gd, &format!("{what} vjp"));
            }
            close(&y, yd, 1e-14, &format!("{what} apply_block"));
            close(&g, gd, 1e-13, &format!("{what} vjp"));
            close(&y1, y1d, 1e-14, &format!("{what} apply_and_vjp y"));
            close(&g1, g1d, 1e-13, &format!("{what} apply_and_vjp grad"));
            // θ̄ is the same on every rank.
            bits(&res[0].1, gd, &format!("{what} θ̄ replicated"));
        }
    }
}
