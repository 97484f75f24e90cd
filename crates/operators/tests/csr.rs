//! Integration tests of the sparse CSR operators: conformance kit (adjoint, self-adjointness,
//! block consistency, VJP block consistency, VJP against finite differences) for f32 and f64,
//! sparse-vs-dense oracles, constructors and their errors, determinism across thread counts.
//!
//! Tolerances (stated with each check):
//! * products: a sparse dot product of length `r` (entries per row) has error `≤ r·eps·Σ|a||x|`;
//!   relative to norms we allow `c·eps·r_max` with `c = 8` (and at least `50·eps` for tiny rows).
//! * block vs column-by-column `apply`/`apply_transpose`: bit-identical by construction (same
//!   summation order), checked with a tolerance of `eps` to stay robust.
//! * fused VJP block vs per-column: sums `k` products in a different order, `c·eps·k`; but the kit
//!   compares *increments* `(start + inc) − start` against a random non-zero start, so rounding
//!   of `start + inc` is amplified by `‖start‖/‖inc‖` when the increments nearly cancel (tiny
//!   matrices, `Σ_c u_c x_c ≈ 0`). We allow `VJP_C·eps·k` with `VJP_C = 1000` (worst observed
//!   over 400 proptest cases: ~320·eps for f32, ~280·eps for f64).
//! * finite differences: `⟨u, A(θ) x⟩` is **linear** in the stored values, so the central
//!   difference has no truncation error for any step `h`; only rounding remains: the unperturbed
//!   part contributes `~eps·‖u‖‖A‖‖x‖/h`, the perturbation `~eps·‖u‖‖D‖‖x‖` (independent of
//!   `h`). Large steps are therefore best: `h = 1` with tol `1e-8` for f64 (observed ~1e-12) and
//!   `h = 10` with tol `1e-2` for f32 (a coordinate direction whose gradient `u_i x_j` is ~1e-3
//!   still gives ~1e-4 relative error).

use gradmat_operators::csr::{CsrMatrix, SymCsrMatrix};
use gradmat_operators::dense::DenseMatrix;
use gradmat_operators::testing::{self, random_vector, strategies};
use gradmat_operators::{
    AdjointOperator, ColumnAccess, Operator, OperatorError, ParamVjp, Scalar, SetParams,
};
use proptest::prelude::*;

/// Cancellation allowance of the VJP block-consistency checks (see the module comment).
const VJP_C: f64 = 1000.0;

/// `c·eps·r` with `r` the largest number of entries in a row, floored at `50·eps`.
fn prod_tol<T: Scalar>(row_len: usize) -> f64 {
    T::EPS.to_f64() * (8.0 * row_len as f64).max(50.0)
}

fn max_row_len<T: Scalar>(a: &CsrMatrix<T>) -> usize {
    a.row_ptr()
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(0)
}

fn conv<T: Scalar>(v: &[f64]) -> Vec<T> {
    v.iter().map(|x| T::from_f64(*x)).collect()
}

/// FD step and tolerance per scalar (see the module comment).
fn fd_params<T: Scalar>() -> (f64, f64) {
    if std::mem::size_of::<T>() == 4 {
        (10.0, 1e-2)
    } else {
        (1.0, 1e-8)
    }
}

/// Relative max-norm distance.
fn rel_err<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.to_f64().abs()))
        .max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x.to_f64() - y.to_f64()).abs()))
        / scale
}

/// The 2-D five-point Laplacian on a `g×g` grid (shifted by `shift`), as triplets.
fn laplacian_triplets(g: usize, shift: f64) -> (usize, Vec<usize>, Vec<usize>, Vec<f64>) {
    let n = g * g;
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..g {
        for j in 0..g {
            let p = i * g + j;
            r.push(p);
            c.push(p);
            v.push(4.0 + shift);
            let mut nb = |q: usize| {
                r.push(p);
                c.push(q);
                v.push(-1.0);
            };
            if i > 0 {
                nb(p - g);
            }
            if j > 0 {
                nb(p - 1);
            }
            if j + 1 < g {
                nb(p + 1);
            }
            if i + 1 < g {
                nb(p + g);
            }
        }
    }
    (n, r, c, v)
}

fn run_kit_general<T: Scalar>(a: &CsrMatrix<T>, seed: u64) {
    let tol = prod_tol::<T>(max_row_len(a));
    testing::check_adjoint(a, seed, tol).unwrap();
    for k in [1, 2, 3, 5, 8, 13] {
        testing::check_block_consistency(a, k, seed, T::EPS.to_f64()).unwrap();
        testing::check_transpose_block_consistency(a, k, seed, T::EPS.to_f64()).unwrap();
        testing::check_vjp_block_consistency(a, k, seed, VJP_C * k as f64 * T::EPS.to_f64())
            .unwrap();
    }
    // Fused apply + VJP: same products per entry, same order ⇒ exact up to the increment
    // cancellation allowance used for the block VJP.
    testing::check_apply_and_vjp_consistency(a, seed, VJP_C * T::EPS.to_f64()).unwrap();
    testing::check_apply_and_vjp_consistency(a, seed, VJP_C * T::EPS.to_f64()).unwrap();
    let (h, fdtol) = fd_params::<T>();
    testing::check_vjp_params_fd(a, seed, h, fdtol).unwrap();
}

fn run_kit_sym<T: Scalar>(a: &SymCsrMatrix<T>, seed: u64) {
    let tol = prod_tol::<T>(max_row_len(a.full()));
    testing::check_adjoint(a, seed, tol).unwrap();
    testing::check_self_adjoint(a, seed, tol).unwrap();
    for k in [1, 2, 4, 7, 9] {
        testing::check_block_consistency(a, k, seed, T::EPS.to_f64()).unwrap();
        testing::check_transpose_block_consistency(a, k, seed, T::EPS.to_f64()).unwrap();
        // Per entry the block sums 2k products instead of 2 per call: c·eps·k.
        testing::check_vjp_block_consistency(a, k, seed, VJP_C * k as f64 * T::EPS.to_f64())
            .unwrap();
    }
    testing::check_apply_and_vjp_consistency(a, seed, VJP_C * T::EPS.to_f64()).unwrap();
    let (h, fdtol) = fd_params::<T>();
    testing::check_vjp_params_fd(a, seed, h, fdtol).unwrap();
}

/// `max|y − y_ref| / max(|A||x|)` for a block of `k` products (`|Aᵀ||x|` with `transpose`): the
/// scale of the rounding-error bound of a sum computed in a different order.
fn prod_err<T: Scalar>(
    d: &DenseMatrix<T>,
    x: &[T],
    y: &[T],
    y_ref: &[T],
    k: usize,
    transpose: bool,
) -> f64 {
    let (m, n) = (d.nrows(), d.ncols());
    let (rows, cols) = if transpose { (n, m) } else { (m, n) };
    let mut scale = 1e-300f64;
    for c in 0..k {
        for i in 0..rows {
            let s: f64 = (0..cols)
                .map(|j| {
                    let a = if transpose { d.get(j, i) } else { d.get(i, j) };
                    a.to_f64().abs() * x[c * cols + j].to_f64().abs()
                })
                .sum();
            scale = scale.max(s);
        }
    }
    let diff = y
        .iter()
        .zip(y_ref)
        .fold(0.0f64, |m, (a, b)| m.max((a.to_f64() - b.to_f64()).abs()));
    diff / scale
}

/// Dense oracle: products, transposes and the VJP `u xᵀ` restricted to the pattern.
fn dense_oracle_general<T: Scalar>(a: &CsrMatrix<T>, seed: u64) {
    let d: DenseMatrix<T> = a.to_dense();
    let (m, n) = (a.nrows(), a.ncols());
    let tol = prod_tol::<T>(n.max(1));
    for k in [1, 3, 9] {
        let x = random_vector::<T>(n * k, seed);
        let (mut ys, mut yd) = (vec![T::ZERO; m * k], vec![T::ZERO; m * k]);
        a.apply_block(&x, &mut ys, k);
        d.apply_block(&x, &mut yd, k);
        // Summation order differs (CSR row order vs dense columns): the bound is relative to
        // |A||x|, not |Ax| (a row with cancellation, e.g. a 1×24 row of 5 entries, fails the
        // latter at 7.8e-14).
        let e = prod_err(&d, &x, &ys, &yd, k, false);
        assert!(e <= tol, "apply_block k={k}: {e}");
        let xt = random_vector::<T>(m * k, seed + 1);
        let (mut ts, mut td) = (vec![T::ZERO; n * k], vec![T::ZERO; n * k]);
        a.apply_transpose_block(&xt, &mut ts, k);
        d.apply_transpose_block(&xt, &mut td, k);
        let e = prod_err(&d, &xt, &ts, &td, k, true);
        assert!(e <= tol, "apply_transpose_block k={k}: {e}");
    }
    // VJP: grad[p] = u_i x_j; dense gradient is u xᵀ (column-major).
    let u = random_vector::<T>(m, seed + 2);
    let x = random_vector::<T>(n, seed + 3);
    let mut g = vec![T::ZERO; a.nnz()];
    a.vjp_params(&u, &x, &mut g);
    let mut gd = vec![T::ZERO; m * n];
    d.vjp_params(&u, &x, &mut gd);
    for i in 0..m {
        for p in a.row_ptr()[i]..a.row_ptr()[i + 1] {
            let j = a.col_idx()[p];
            assert!(
                (g[p].to_f64() - gd[i + j * m].to_f64()).abs()
                    <= tol * (1.0 + gd[i + j * m].to_f64().abs())
            );
        }
    }
    // Column access.
    let mut diag = vec![T::ZERO; m.min(n)];
    a.diagonal(&mut diag);
    for (i, v) in diag.iter().enumerate() {
        assert_eq!(v.to_f64().to_bits(), d.get(i, i).to_f64().to_bits());
    }
    let mut col = vec![T::ZERO; m];
    for j in 0..n {
        a.column(j, &mut col);
        for i in 0..m {
            assert_eq!(col[i].to_f64().to_bits(), d.get(i, j).to_f64().to_bits());
        }
    }
}

macro_rules! scalar_tests {
    ($mod:ident, $t:ty) => {
        mod $mod {
            use super::*;
            type T = $t;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(std::env::var("CSR_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)))]

                #[test]
                fn general_kit_and_dense_oracle(
                    (m, n, r, c, v) in strategies::sparse_triplets(1..=30, 1..=30, 0.2),
                    seed in any::<u64>(),
                ) {
                    let a = CsrMatrix::<T>::from_triplets(m, n, &r, &c, &conv(&v)).unwrap();
                    run_kit_general(&a, seed);
                    dense_oracle_general(&a, seed);
                }

                #[test]
                fn sym_kit_and_dense_oracle(
                    n in 1usize..=25,
                    (_, _, r2, c2, v2) in strategies::sparse_triplets(25..=25, 25..=25, 0.1),
                    seed in any::<u64>(),
                ) {
                    // Lower-triangle triplets of an n×n matrix from the 25×25 draw.
                    let (mut rr, mut cc, mut vv) = (vec![], vec![], vec![]);
                    for e in 0..r2.len() {
                        let (i, j) = (r2[e] % n, c2[e] % n);
                        rr.push(i.max(j));
                        cc.push(i.min(j));
                        vv.push(v2[e]);
                    }
                    let a = SymCsrMatrix::<T>::from_triplets(n, &rr, &cc, &conv(&vv)).unwrap();
                    run_kit_sym(&a, seed);
                    // Dense oracle of the full symmetric matrix, and the VJP rule.
                    let d = a.to_dense();
                    let tol = prod_tol::<T>(n);
                    let x = random_vector::<T>(n * 3, seed);
                    let (mut ys, mut yd) = (vec![T::ZERO; n * 3], vec![T::ZERO; n * 3]);
                    a.apply_block(&x, &mut ys, 3);
                    d.apply_block(&x, &mut yd, 3);
                    prop_assert!(rel_err(&ys, &yd) <= tol);
                    let u = random_vector::<T>(n, seed + 5);
                    let mut g = vec![T::ZERO; a.num_params()];
                    a.vjp_params(&u, &x[..n], &mut g);
                    let l = a.lower();
                    for i in 0..n {
                        for p in l.row_ptr()[i]..l.row_ptr()[i + 1] {
                            let j = l.col_idx()[p];
                            let want = if i == j {
                                u[i].to_f64() * x[i].to_f64()
                            } else {
                                u[i].to_f64() * x[j].to_f64() + u[j].to_f64() * x[i].to_f64()
                            };
                            prop_assert!((g[p].to_f64() - want).abs() <= tol * (1.0 + want.abs()));
                        }
                    }
                    // Upper-triangle input gives the same matrix and the same map.
                    let b = SymCsrMatrix::<T>::from_triplets(n, &cc, &rr, &conv(&vv)).unwrap();
                    prop_assert_eq!(b.lower(), a.lower());
                    prop_assert_eq!(b.triplet_to_stored(), a.triplet_to_stored());
                    // Column access against the dense matrix.
                    let mut col = vec![T::ZERO; n];
                    let mut diag = vec![T::ZERO; n];
                    a.diagonal(&mut diag);
                    for j in 0..n {
                        prop_assert_eq!(diag[j].to_bits(), d.get(j, j).to_bits());
                        a.column(j, &mut col);
                        for i in 0..n {
                            prop_assert_eq!(col[i].to_bits(), d.get(i, j).to_bits());
                        }
                    }
                }
            }

            /// Above the parallel threshold (Laplacian, 40 000 rows): parallel SpMV, SpMM and
            /// VJP paths against the sequential transpose scatter (A is symmetric) and the kit.
            #[test]
            fn parallel_paths_on_laplacian() {
                let (n, r, c, v) = laplacian_triplets(200, 0.5);
                let a = CsrMatrix::<T>::from_triplets(n, n, &r, &c, &conv(&v)).unwrap();
                assert_eq!(a.nnz(), 5 * n - 4 * 200);
                let x = random_vector::<T>(n * 11, 3);
                let (mut y, mut yt) = (vec![T::ZERO; n * 11], vec![T::ZERO; n * 11]);
                a.apply_block(&x, &mut y, 11);
                a.apply_transpose_block(&x, &mut yt, 11);
                // Same products, different summation order: ≤ c·eps·5.
                assert!(rel_err(&y, &yt) <= prod_tol::<T>(5));
                testing::check_block_consistency(&a, 11, 4, T::EPS.to_f64()).unwrap();
                testing::check_adjoint(&a, 5, prod_tol::<T>(5)).unwrap();
                testing::check_vjp_block_consistency(&a, 6, 6, 48.0 * T::EPS.to_f64()).unwrap();
                let s = SymCsrMatrix::<T>::from_full_csr(&a).unwrap();
                testing::check_self_adjoint(&s, 7, prod_tol::<T>(5)).unwrap();
                testing::check_vjp_block_consistency(&s, 6, 6, 96.0 * T::EPS.to_f64()).unwrap();
                // Large enough for the row-parallel fused path.
                testing::check_apply_and_vjp_consistency(&a, 9, 48.0 * T::EPS.to_f64()).unwrap();
                testing::check_apply_and_vjp_consistency(&s, 9, 96.0 * T::EPS.to_f64()).unwrap();
                let (h, fdtol) = fd_params::<T>();
                testing::check_vjp_params_fd(&s, 8, h, fdtol).unwrap();
                let mut ys = vec![T::ZERO; n];
                s.apply(&x[..n], &mut ys);
                assert!(rel_err(&ys, &y[..n]) <= prod_tol::<T>(5));
            }
        }
    };
}

scalar_tests!(f64_tests, f64);
scalar_tests!(f32_tests, f32);

#[test]
fn parallel_spmv_is_deterministic_across_thread_counts() {
    let (n, r, c, v) = laplacian_triplets(300, 0.1);
    let a = CsrMatrix::<f64>::from_triplets(n, n, &r, &c, &v).unwrap();
    let x = random_vector::<f64>(n * 3, 1);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut y = vec![0.0; n * 3];
            a.apply_block(&x, &mut y, 3);
            let mut y1 = vec![0.0; n];
            a.apply(&x[..n], &mut y1);
            let mut g = vec![0.0; a.nnz()];
            a.vjp_params_block(&x, &x, 3, &mut g);
            (y, y1, g)
        })
    };
    let (a1, b1, c1) = run(1);
    let (a3, b3, c3) = run(3);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a1), bits(&a3));
    assert_eq!(bits(&b1), bits(&b3));
    assert_eq!(bits(&c1), bits(&c3));
    // Block column 0 equals the single SpMV bit for bit.
    assert_eq!(bits(&a1[..n]), bits(&b1));
}

#[test]
fn triplets_sum_duplicates_and_keep_the_map() {
    // (1,2) given three times, (0,0) twice; unsorted input.
    let rows = [1, 0, 1, 1, 0, 2];
    let cols = [2, 0, 2, 0, 0, 1];
    let vals = [1.0, 2.0, 0.5, 3.0, -1.0, 4.0];
    let a = CsrMatrix::<f64>::from_triplets(3, 3, &rows, &cols, &vals).unwrap();
    assert_eq!(a.row_ptr(), &[0, 1, 3, 4]);
    assert_eq!(a.col_idx(), &[0, 0, 2, 1]);
    let want = [1.0f64, 3.0, 1.5, 4.0];
    for (x, y) in a.values().iter().zip(&want) {
        assert_eq!(x.to_bits(), y.to_bits());
    }
    assert_eq!(a.triplet_to_stored(), &[2, 0, 2, 1, 0, 3]);
    assert_eq!(a.get(1, 2).map(f64::to_bits), Some(1.5f64.to_bits()));
    assert_eq!(a.get(2, 2).map(f64::to_bits), Some(0.0f64.to_bits()));
    assert!(a.get(3, 0).is_none());
    // Gradient written back in input order: duplicates get the slot's gradient.
    let mut g = vec![0.0; a.nnz()];
    a.vjp_params(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0], &mut g);
    let per_input: Vec<f64> = a.triplet_to_stored().iter().map(|&p| g[p]).collect();
    let want = [60.0, 10.0, 60.0, 20.0, 10.0, 60.0];
    for (x, y) in per_input.iter().zip(&want) {
        assert!((x - y).abs() < 1e-12);
    }
    // Explicit zeros are kept as stored entries (parameters).
    let z = CsrMatrix::<f64>::from_triplets(2, 2, &[0], &[1], &[0.0]).unwrap();
    assert_eq!(z.nnz(), 1);
    // Empty matrices work.
    let e = CsrMatrix::<f64>::from_triplets(0, 4, &[], &[], &[]).unwrap();
    let mut y: [f64; 0] = [];
    e.apply(&[1.0; 4], &mut y);
    let mut yt = [7.0; 4];
    e.apply_transpose(&[], &mut yt);
    assert!(yt.iter().all(|v| v.to_bits() == 0f64.to_bits()));
}

#[test]
fn triplet_errors() {
    let r = CsrMatrix::<f64>::from_triplets(2, 2, &[0, 2], &[0, 0], &[1.0, 1.0]);
    assert!(matches!(
        r,
        Err(OperatorError::IndexOutOfRange {
            entry: 1,
            row: 2,
            col: 0,
            ..
        })
    ));
    let r = CsrMatrix::<f64>::from_triplets(2, 2, &[0], &[5], &[1.0]);
    assert!(matches!(
        r,
        Err(OperatorError::IndexOutOfRange { col: 5, .. })
    ));
    let r = CsrMatrix::<f64>::from_triplets(2, 2, &[0, 1], &[0], &[1.0, 1.0]);
    assert!(matches!(r, Err(OperatorError::DimensionMismatch { .. })));
    let r = CsrMatrix::<f64>::from_triplets(2, 2, &[0], &[0], &[1.0, 1.0]);
    assert!(matches!(r, Err(OperatorError::DimensionMismatch { .. })));
    let r = CsrMatrix::<f64>::from_triplets(2, 2, &[0, 1], &[0, 1], &[1.0, f64::NAN]);
    assert!(matches!(r, Err(OperatorError::NonFinite { index: 1, .. })));
    // Duplicates summing to infinity.
    let r = CsrMatrix::<f64>::from_triplets(1, 1, &[0, 0], &[0, 0], &[f64::MAX, f64::MAX]);
    assert!(matches!(r, Err(OperatorError::NonFinite { .. })));
    // Absurd dimensions: an error, not an abort.
    let r = CsrMatrix::<f64>::from_triplets(usize::MAX, 1, &[], &[], &[]);
    assert!(r.is_err());
    let r = CsrMatrix::<f64>::from_triplets(usize::MAX / 4, 1, &[], &[], &[]);
    assert!(r.is_err());
}

#[test]
fn raw_parts_validation() {
    let ok =
        CsrMatrix::<f64>::from_raw_parts(2, 3, vec![0, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0])
            .unwrap();
    assert_eq!(ok.triplet_to_stored(), &[0, 1, 2]);
    let e = |rp: Vec<usize>, ci: Vec<usize>, v: Vec<f64>| {
        CsrMatrix::<f64>::from_raw_parts(2, 3, rp, ci, v).unwrap_err()
    };
    assert!(matches!(
        e(vec![0, 2], vec![0, 1], vec![1.0, 1.0]),
        OperatorError::DimensionMismatch {
            what: "row_ptr",
            ..
        }
    ));
    assert!(matches!(
        e(vec![1, 2, 3], vec![0, 1, 2], vec![1.0; 3]),
        OperatorError::InvalidStructure(_)
    ));
    assert!(matches!(
        e(vec![0, 3, 2], vec![0, 1], vec![1.0; 2]),
        OperatorError::InvalidStructure(_)
    ));
    assert!(matches!(
        e(vec![0, 2, 3], vec![1, 0, 2], vec![1.0; 3]),
        OperatorError::InvalidStructure(_)
    ));
    assert!(matches!(
        e(vec![0, 2, 3], vec![1, 1, 2], vec![1.0; 3]),
        OperatorError::InvalidStructure(_)
    ));
    assert!(matches!(
        e(vec![0, 2, 3], vec![0, 3, 2], vec![1.0; 3]),
        OperatorError::IndexOutOfRange { col: 3, .. }
    ));
    assert!(matches!(
        e(vec![0, 2, 3], vec![0, 1, 2], vec![1.0; 2]),
        OperatorError::DimensionMismatch { what: "values", .. }
    ));
    assert!(matches!(
        e(vec![0, 2, 3], vec![0, 1], vec![1.0; 3]),
        OperatorError::DimensionMismatch {
            what: "col_idx",
            ..
        }
    ));
    assert!(matches!(
        e(vec![0, 2, 3], vec![0, 1, 2], vec![1.0, f64::INFINITY, 1.0]),
        OperatorError::NonFinite { index: 1, .. }
    ));
}

#[test]
fn set_params_validates_and_updates_sym_copies() {
    let mut a = CsrMatrix::<f64>::from_triplets(2, 2, &[0, 1], &[1, 0], &[1.0, 2.0]).unwrap();
    assert!(matches!(
        a.set_params(&[1.0]),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        a.set_params(&[1.0, f64::NAN]),
        Err(OperatorError::NonFinite { .. })
    ));
    assert_eq!(a.values()[0].to_bits(), 1.0f64.to_bits());
    a.set_params(&[5.0, 6.0]).unwrap();
    assert_eq!(a.params_vec(), vec![5.0, 6.0]);

    let mut s =
        SymCsrMatrix::<f64>::from_triplets(2, &[0, 1, 1], &[0, 0, 1], &[1.0, 2.0, 3.0]).unwrap();
    s.set_params(&[10.0, 20.0, 30.0]).unwrap();
    let mut y = [0.0; 2];
    s.apply(&[1.0, 1.0], &mut y);
    assert!((y[0] - 30.0).abs() < 1e-14 && (y[1] - 50.0).abs() < 1e-14);
    assert!(s.set_params(&[1.0, f64::INFINITY, 1.0]).is_err());
    // Unchanged on error.
    s.apply(&[1.0, 1.0], &mut y);
    assert!((y[0] - 30.0).abs() < 1e-14);
}

#[test]
fn sym_constructors() {
    // Mixed triangles are ambiguous.
    let r = SymCsrMatrix::<f64>::from_triplets(3, &[1, 0], &[0, 2], &[1.0, 1.0]);
    assert!(matches!(r, Err(OperatorError::InvalidArgument(_))));
    // Full symmetric triplets (both halves, a duplicate on (2,0)) keep the lower triangle;
    // mirror entries share a parameter.
    let rows = [0, 1, 0, 2, 2, 0, 2];
    let cols = [0, 0, 1, 0, 0, 2, 2];
    let vals = [4.0, -1.0, -1.0, 0.5, 0.5, 1.0, 3.0];
    let s = SymCsrMatrix::<f64>::from_full_triplets(3, &rows, &cols, &vals).unwrap();
    assert_eq!(s.nnz(), 4);
    assert_eq!(s.lower().col_idx(), &[0, 0, 0, 2]);
    assert_eq!(s.triplet_to_stored(), &[0, 1, 1, 2, 2, 2, 3]);
    // Not symmetric: values or pattern.
    let r = SymCsrMatrix::<f64>::from_full_triplets(2, &[0, 1], &[1, 0], &[1.0, 2.0]);
    assert!(matches!(r, Err(OperatorError::InvalidArgument(_))));
    let r = SymCsrMatrix::<f64>::from_full_triplets(2, &[0], &[1], &[1.0]);
    assert!(matches!(r, Err(OperatorError::InvalidArgument(_))));
    // Lower CSR: must be square and lower.
    let up = CsrMatrix::<f64>::from_triplets(2, 2, &[0], &[1], &[1.0]).unwrap();
    assert!(matches!(
        SymCsrMatrix::from_lower_csr(up),
        Err(OperatorError::InvalidStructure(_))
    ));
    let rect = CsrMatrix::<f64>::from_triplets(2, 3, &[1], &[0], &[1.0]).unwrap();
    assert!(matches!(
        SymCsrMatrix::from_lower_csr(rect),
        Err(OperatorError::NotSquare { .. })
    ));
    let low = CsrMatrix::<f64>::from_triplets(2, 2, &[1, 1], &[0, 1], &[1.0, 2.0]).unwrap();
    let s = SymCsrMatrix::from_lower_csr(low).unwrap();
    let mut d = [0.0; 2];
    s.diagonal(&mut d);
    assert_eq!(d.map(f64::to_bits), [0.0f64.to_bits(), 2.0f64.to_bits()]);
}

#[test]
fn objects_and_shared_references_work() {
    let (n, r, c, v) = laplacian_triplets(5, 1.0);
    let a = CsrMatrix::<f64>::from_triplets(n, n, &r, &c, &v).unwrap();
    let dynop: &dyn AdjointOperator<f64> = &a;
    testing::check_adjoint(dynop, 1, 1e-14).unwrap();
    let arc = std::sync::Arc::new(SymCsrMatrix::<f64>::from_full_csr(&a).unwrap());
    testing::check_self_adjoint(&arc, 2, 1e-14).unwrap();
}
