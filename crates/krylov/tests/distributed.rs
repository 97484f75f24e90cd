//! Distributed Krylov methods (ranks as threads, `ThreadComm`) against the serial ones: Lanczos
//! (plain and fully reorthogonalised), Arnoldi and CG on a row-partitioned CSR matrix.
//! Bit-identical for partitions aligned to the reduction chunks (including a rank with no
//! rows); within 1e-12 for arbitrary splits. The same properties are tested under `mpirun` by
//! `gradmat-apps`' MPI tests.

use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams};
use gradmat_krylov::cg::{solve, CgParams};
use gradmat_krylov::distributed::{Distributed, ReductionOrder};
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_krylov::Reorthogonalize;
use gradmat_operators::comm::{RowPartition, ThreadComm, REDUCTION_ALIGN};
use gradmat_operators::csr::SymCsrMatrix;
use gradmat_operators::dist::DistCsr;

fn start(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 1.0 + ((i * 7919) % 101) as f64 / 50.0)
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn partitions(n: usize) -> Vec<(RowPartition, bool)> {
    let mut out = vec![
        (RowPartition::aligned(n, 1, REDUCTION_ALIGN), true),
        (RowPartition::aligned(n, 2, REDUCTION_ALIGN), true),
        (RowPartition::aligned(n, 3, REDUCTION_ALIGN), true),
        (RowPartition::balanced(n, 2), false),
        (RowPartition::balanced(n, 3), false),
    ];
    // A rank with no rows in the middle.
    let h = n / 2 / REDUCTION_ALIGN * REDUCTION_ALIGN;
    out.push((RowPartition::from_counts(&[h, 0, n - h]), true));
    out.push((RowPartition::from_counts(&[n / 3, 0, n - n / 3]), false));
    out
}

/// Compares a distributed decomposition (small matrix entries and basis rows) with the serial
/// one: bit for bit, or within `tol` relative.
fn check(what: &str, serial: (&[f64], &[f64]), dist: (&[f64], &[f64]), exact: bool, tol: f64) {
    for (name, s, d) in [("small", serial.0, dist.0), ("basis", serial.1, dist.1)] {
        assert_eq!(s.len(), d.len(), "{what}: {name} lengths");
        let scale = s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (i, (a, b)) in s.iter().zip(d).enumerate() {
            if exact {
                assert_eq!(a.to_bits(), b.to_bits(), "{what}: {name}[{i}] {a} vs {b}");
            } else {
                assert!(
                    (a - b).abs() <= tol * scale,
                    "{what}: {name}[{i}] {a} vs {b} (scale {scale})"
                );
            }
        }
    }
}

/// Gathers the basis rows of every rank into the global `N×K` column-major basis.
fn gather_basis(parts: &[(RowPartition, Vec<f64>)], n: usize, k: usize) -> Vec<f64> {
    let mut q = vec![0.0; n * k];
    for (q_idx, (part, local)) in parts.iter().enumerate() {
        let r = part.range(q_idx);
        let nl = r.len();
        for c in 0..k {
            q[c * n + r.start..c * n + r.end].copy_from_slice(&local[c * nl..(c + 1) * nl]);
        }
    }
    q
}

#[test]
fn lanczos_arnoldi_cg_match_serial() {
    let g = 200; // N = 40,000: above the aligned block of 16,384 rows
    let a = SymCsrMatrix::<f64>::laplacian_2d(g).unwrap();
    let n = a.dim();
    let v = start(n);
    let k = 12;
    let plain = LanczosParams::new(k);
    let full = LanczosParams {
        reorthogonalize: Reorthogonalize::Full,
        ..LanczosParams::new(k)
    };
    let arn = ArnoldiParams {
        reorthogonalize: Reorthogonalize::Full,
        ..ArnoldiParams::new(k)
    };
    let cgp = CgParams {
        rtol: Some(1e-10),
        ..CgParams::default()
    };
    let s_plain = lanczos(&a, &v, &plain).unwrap();
    let s_full = lanczos(&a, &v, &full).unwrap();
    let s_arn = arnoldi(&a, &v, &arn).unwrap();
    let s_cg = solve(&a, &v, 1, &cgp).unwrap();
    let small = |d: &gradmat_krylov::lanczos::Lanczos<f64>| {
        let mut t = d.diagonal().to_vec();
        t.extend_from_slice(d.off_diagonal());
        t
    };
    for (part, aligned) in partitions(n) {
        let p = part.num_ranks();
        for order in [ReductionOrder::Auto, ReductionOrder::Ranks] {
            let exact = aligned && order == ReductionOrder::Auto;
            let res = ThreadComm::run(p, |comm| {
                let op = DistCsr::from_replicated(a.full(), part.clone(), comm.clone()).unwrap();
                let r = part.range(comm.rank());
                let vl = &v[r.clone()];
                let scope = Distributed::new(comm, part.clone()).with_order(order);
                scope.run(|| {
                    let l1 = lanczos(&op, vl, &plain).unwrap();
                    let l2 = lanczos(&op, vl, &full).unwrap();
                    let a1 = arnoldi(&op, vl, &arn).unwrap();
                    let c1 = solve(&op, vl, 1, &cgp).unwrap();
                    (
                        (small(&l1), l1.basis().to_vec()),
                        (small(&l2), l2.basis().to_vec()),
                        (a1.hessenberg().to_vec(), a1.basis().to_vec()),
                        (c1.info().iterations[0], c1.solution().to_vec()),
                    )
                })
            });
            let what = format!("P = {p}, {:?}, {order:?}", part.offsets());
            let gather = |sel: &dyn Fn(usize) -> Vec<f64>| -> Vec<f64> {
                let parts: Vec<_> = (0..p).map(|q| (part.clone(), sel(q))).collect();
                gather_basis(&parts, n, k)
            };
            let q1 = gather(&|q| res[q].0 .1.clone());
            check(
                &format!("{what} plain Lanczos"),
                (&small(&s_plain), s_plain.basis()),
                (&res[0].0 .0, &q1),
                exact,
                1e-11,
            );
            let q2 = gather(&|q| res[q].1 .1.clone());
            check(
                &format!("{what} full Lanczos"),
                (&small(&s_full), s_full.basis()),
                (&res[0].1 .0, &q2),
                exact,
                1e-12,
            );
            let q3 = gather(&|q| res[q].2 .1.clone());
            check(
                &format!("{what} Arnoldi"),
                (s_arn.hessenberg(), s_arn.basis()),
                (&res[0].2 .0, &q3),
                exact,
                1e-12,
            );
            // Every rank holds the same small matrix.
            for r in &res {
                assert_eq!(r.0 .0, res[0].0 .0, "{what}: ranks disagree");
            }
            // CG: same iterations; the solution rows.
            let mut x = vec![0.0; n];
            for (q, r) in res.iter().enumerate() {
                x[part.range(q)].copy_from_slice(&r.3 .1);
            }
            assert_eq!(
                res[0].3 .0,
                s_cg.info().iterations[0],
                "{what}: CG iterations"
            );
            let xs = s_cg.solution();
            let scale = xs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (i, (a, b)) in xs.iter().zip(&x).enumerate() {
                if exact {
                    assert_eq!(a.to_bits(), b.to_bits(), "{what}: CG x[{i}]");
                } else {
                    assert!(
                        rel(*a, *b) < 1e-9 || (a - b).abs() < 1e-11 * scale,
                        "{what}: CG x[{i}] {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// `reduce::basis_t_mat` (`Qᵀ W`, the block form behind the preconditioner's GEMM path) and
/// `reduce::gram` in a distributed scope against serial: bit-identical for aligned partitions;
/// for arbitrary splits (other chunk sums) within `1e-13·Σ_i |q_i w_i|` (≈ 450 ε times the
/// sum of magnitudes: the √n·ε scale of rounding with random signs at n = 40,000, far inside
/// the worst case n·ε).
#[test]
fn basis_t_mat_and_gram_match_serial() {
    use gradmat_krylov::reduce::{basis_t_mat, gram};
    let (n, k, m) = (40_000, 5, 7);
    let q: Vec<f64> = (0..n * k)
        .map(|i| ((i * 7919) % 1013) as f64 / 1013.0 - 0.5)
        .collect();
    let w: Vec<f64> = (0..n * m)
        .map(|i| ((i * 104_729) % 997) as f64 / 997.0 - 0.5)
        .collect();
    let (s_qw, s_qq) = (basis_t_mat(&q, n, k, &w, m), gram(&q, n, k));
    for (part, aligned) in partitions(n) {
        let p = part.num_ranks();
        let res = ThreadComm::run(p, |comm| {
            let r = part.range(comm.rank());
            let nl = r.len();
            let local = |x: &[f64], c: usize| -> Vec<f64> {
                (0..c)
                    .flat_map(|j| x[j * n + r.start..j * n + r.end].to_vec())
                    .collect()
            };
            let (ql, wl) = (local(&q, k), local(&w, m));
            Distributed::new(comm, part.clone())
                .run(|| (basis_t_mat(&ql, nl, k, &wl, m), gram(&ql, nl, k)))
        });
        // Σ_i |q_i w_i| per entry of QᵀW and of QᵀQ.
        let mag = |x: &[f64], c: usize, y: &[f64], e: usize| -> Vec<f64> {
            let mut out = vec![0.0; c * e];
            for j in 0..e {
                for i in 0..c {
                    out[i + j * c] = (0..n).map(|r| (x[i * n + r] * y[j * n + r]).abs()).sum();
                }
            }
            out
        };
        let (m_qw, m_qq) = (mag(&q, k, &w, m), mag(&q, k, &q, k));
        for (d_qw, d_qq) in &res {
            for (s, d, mg) in [(&s_qw, d_qw, &m_qw), (&s_qq, d_qq, &m_qq)] {
                for ((a, b), g) in s.iter().zip(d.iter()).zip(mg) {
                    if aligned {
                        assert_eq!(a.to_bits(), b.to_bits(), "P = {p}: {a} vs {b}");
                    } else {
                        assert!((a - b).abs() <= 1e-13 * g, "P = {p}: {a} vs {b}");
                    }
                }
            }
        }
    }
}
