//! Conjugate gradients against dense Cholesky solves, multi-right-hand-side consistency, error
//! paths and a real SPD matrix (bcsstk14).

use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef, Par, Side};
use gradmat_krylov::cg::{self, CgParams, CgWorkspace};
use gradmat_krylov::precond::{IdentityPreconditioner, Preconditioner};
use gradmat_krylov::KrylovError;
use gradmat_operators::dense::{DenseMatrix, SymmetricDense};
use gradmat_operators::testing::{matrix_with_spectrum, random_vector, strategies};
use gradmat_operators::{Operator, Scalar, SelfAdjoint};
use proptest::prelude::*;

/// A deliberately minimal operator: only `apply` (the default, column-by-column `apply_block`),
/// proving that CG uses nothing but the trait, and making block and single solves bit-identical.
struct Minimal<T: Scalar>(SymmetricDense<T>);
impl<T: Scalar> Operator<T> for Minimal<T> {
    fn nrows(&self) -> usize {
        self.0.nrows()
    }
    fn ncols(&self) -> usize {
        self.0.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
}
impl<T: Scalar> SelfAdjoint<T> for Minimal<T> {}

fn to_t<T: Scalar>(v: &[f64]) -> Vec<T> {
    v.iter().map(|x| T::from_f64(*x)).collect()
}

fn sym<T: Scalar>(n: usize, a: &[f64]) -> SymmetricDense<T> {
    SymmetricDense::from_col_major(n, to_t(a)).unwrap()
}

/// Dense Cholesky solve in f64 (the oracle), faer with `Par::Seq`.
fn cholesky_solve(n: usize, a: &[f64], b: &[f64], k: usize) -> Vec<f64> {
    faer::set_global_parallelism(Par::Seq);
    let am = MatRef::from_column_major_slice(a, n, n).to_owned();
    let bm = MatRef::from_column_major_slice(b, n, k).to_owned();
    let llt = am.llt(Side::Lower).expect("SPD");
    let x: Mat<f64> = llt.solve(&bm);
    let mut out = vec![0.0; n * k];
    for c in 0..k {
        for i in 0..n {
            out[i + c * n] = x[(i, c)];
        }
    }
    out
}

fn rel_err<T: Scalar>(x: &[T], reference: &[f64]) -> f64 {
    let num: f64 = x
        .iter()
        .zip(reference)
        .map(|(a, b)| (a.to_f64() - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = reference.iter().map(|b| b * b).sum::<f64>().sqrt();
    num / den
}

fn true_residual<T: Scalar, A: Operator<T>>(a: &A, x: &[T], b: &[T]) -> f64 {
    let mut ax = vec![T::ZERO; b.len()];
    a.apply(x, &mut ax);
    ax.iter()
        .zip(b)
        .map(|(p, q)| (p.to_f64() - q.to_f64()).powi(2))
        .sum::<f64>()
        .sqrt()
}

macro_rules! cg_tests {
    ($m:ident, $t:ty, $cond:expr, $rtol:expr) => {
        mod $m {
            use super::*;
            type T = $t;
            const EPS: f64 = <$t>::EPSILON as f64;

            proptest! {
                #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

                /// CG matches a dense Cholesky solve. With `‖r‖ ≤ rtol‖b‖` the forward error is
                /// at most `cond·rtol`; rounding adds (recursive vs true residual drift and the
                /// rounding of `A` and `b` to `T`) about `cond·c·n·eps`, `c = 50` generous.
                #[test]
                fn matches_dense_cholesky(
                    (lam, a) in strategies::spd_with_spectrum(2..=30, $cond),
                    seed in any::<u64>(),
                ) {
                    let n = lam.len();
                    let k = 2;
                    let b64 = random_vector::<f64>(n * k, seed);
                    // Use the T-rounded matrix and rhs in the oracle.
                    let at: Vec<f64> = to_t::<T>(&a).iter().map(|v| v.to_f64()).collect();
                    let bt: Vec<T> = to_t(&b64);
                    let b_rounded: Vec<f64> = bt.iter().map(|v| v.to_f64()).collect();
                    let reference = cholesky_solve(n, &at, &b_rounded, k);
                    let op = sym::<T>(n, &a);
                    let rtol: T = $rtol;
                    let sol = cg::solve(&op, &bt, k, &CgParams { rtol: Some(rtol as f64), ..CgParams::default() }).unwrap();
                    let info = sol.info();
                    prop_assert!(info.all_converged(), "{info:?}");
                    let lmin = lam.iter().cloned().fold(f64::INFINITY, f64::min);
                    let lmax = lam.iter().cloned().fold(0.0, f64::max);
                    let cond = lmax / lmin;
                    let tol = cond * (rtol as f64 + 50.0 * n as f64 * EPS);
                    for c in 0..k {
                        let err = rel_err(sol.column(c), &reference[c * n..(c + 1) * n]);
                        prop_assert!(err <= tol, "column {c}: error {err:e} > {tol:e}");
                        prop_assert!(info.residual_norms[c] <= rtol * info.rhs_norms[c]);
                    }
                    // One block product per iteration: the matvec count is the sum of the
                    // per-rhs iteration counts (no initial guess, so no extra product).
                    prop_assert_eq!(info.num_matvecs, info.iterations.iter().sum::<usize>());
                    prop_assert_eq!(info.num_block_applies, info.max_iterations());
                }

                /// Several right-hand sides solved together give bit-identical results to
                /// solving each alone (the recursions are per column; `Minimal` applies column by
                /// column, so no GEMM-vs-GEMV rounding difference either).
                #[test]
                fn multi_rhs_equals_single(
                    (_lam, a) in strategies::spd_with_spectrum(2..=25, $cond),
                    seed in any::<u64>(),
                    k in 1usize..=4,
                ) {
                    let n = a.len().isqrt();
                    let op = Minimal(sym::<T>(n, &a));
                    let mut b: Vec<T> = random_vector(n * k, seed);
                    if k > 2 {
                        // A zero column in the middle.
                        b[n..2 * n].fill(0.0);
                    }
                    let params = CgParams { rtol: Some($rtol as f64), ..CgParams::default() };
                    let all = cg::solve(&op, &b, k, &params).unwrap();
                    let mut ws = CgWorkspace::new();
                    for c in 0..k {
                        let mut x = vec![0.0; n];
                        let info = cg::solve_in_place(
                            &op, &IdentityPreconditioner, &b[c * n..(c + 1) * n], 1, &mut x,
                            &mut ws, &params,
                        ).unwrap();
                        prop_assert_eq!(info.iterations[0], all.info().iterations[c]);
                        prop_assert_eq!(info.converged[0], all.info().converged[c]);
                        let same = x.iter().zip(all.column(c)).all(|(p, q)| p.to_bits() == q.to_bits());
                        prop_assert!(same, "column {c} differs");
                    }
                }
            }

            #[test]
            fn nonconvergence_is_reported_not_an_error() {
                let n = 60;
                let lam: Vec<f64> = (0..n).map(|i| 10f64.powf(-2.0 * i as f64 / n as f64)).collect();
                let op = sym::<T>(n, &matrix_with_spectrum(&lam, 1));
                let b: Vec<T> = random_vector(n, 2);
                let params = CgParams { max_iters: Some(3), ..CgParams::default() };
                let sol = cg::solve(&op, &b, 1, &params).unwrap();
                let info = sol.info();
                assert!(!info.converged[0]);
                assert_eq!(info.iterations[0], 3);
                assert_eq!(info.num_matvecs, 3);
                // CG residuals are not monotone, so only compare with the true residual: after 3
                // steps the recursion drift is a few eps·‖A‖‖x‖ ≪ 1e-3‖b‖ in both precisions.
                let tr = true_residual(&op, sol.solution(), &b);
                let rec = info.residual_norms[0] as f64;
                assert!(rec > 0.0 && (tr - rec).abs() <= 1e-3 * info.rhs_norms[0] as f64, "{tr} vs {rec}");
                let err = cg::solve(&op, &b, 1, &CgParams { error_on_nonconvergence: true, ..params });
                assert!(matches!(err, Err(KrylovError::InvalidParameter(ref m)) if m.contains("did not converge")), "{err:?}");
            }

            #[test]
            fn indefinite_matrix_gives_non_positive_curvature() {
                // Mostly negative spectrum: p₀ᵀAp₀ = bᵀAb < 0 for the second rhs.
                let lam = [-1.0, -2.0, -3.0, -0.5, -4.0, 0.1];
                let op = sym::<T>(6, &matrix_with_spectrum(&lam, 3));
                // First rhs: an eigen-direction-free vector with bᵀAb < 0 as well; use zero so
                // that the error is attributed to rhs 1.
                let mut b = vec![0.0 as T; 12];
                b[6..].copy_from_slice(&random_vector::<T>(6, 4));
                match cg::solve(&op, &b, 2, &CgParams::default()) {
                    Err(KrylovError::NonPositiveCurvature { iteration, rhs, curvature }) => {
                        assert_eq!((iteration, rhs), (0, 1));
                        assert!(curvature <= 0.0);
                    }
                    other => panic!("expected NonPositiveCurvature, got {other:?}"),
                }
            }

            #[test]
            fn zero_rhs_gives_zero_solution() {
                let op = sym::<T>(4, &matrix_with_spectrum(&[1.0, 2.0, 3.0, 4.0], 5));
                let b = vec![0.0 as T; 8];
                let x0: Vec<T> = random_vector(8, 6);
                let sol = cg::solve_preconditioned(
                    &op, &IdentityPreconditioner, &b, 2, Some(&x0), &CgParams::default(),
                ).unwrap();
                assert!(sol.solution().iter().all(|v| v.abs() <= 0.0));
                assert!(sol.info().all_converged());
                assert_eq!(sol.info().iterations, vec![0, 0]);
                assert_eq!(sol.info().num_matvecs, 0);
            }

            #[test]
            fn exact_initial_guess_needs_no_iteration() {
                let n = 10;
                let lam: Vec<f64> = (1..=n).map(|i| i as f64).collect();
                let a = matrix_with_spectrum(&lam, 7);
                let op = sym::<T>(n, &a);
                let b: Vec<T> = random_vector(n, 8);
                let b64: Vec<f64> = b.iter().map(|v| v.to_f64()).collect();
                let x = cholesky_solve(n, &a, &b64, 1);
                let x0: Vec<T> = to_t(&x);
                // Rounding of x* to T leaves ‖b − A x0‖ ≈ cond·eps‖b‖ ≪ 1e-2‖b‖.
                let params = CgParams { rtol: Some(1e-2), ..CgParams::default() };
                let sol = cg::solve_preconditioned(
                    &op, &IdentityPreconditioner, &b, 1, Some(&x0), &params,
                ).unwrap();
                assert_eq!(sol.info().iterations, vec![0]);
                assert_eq!(sol.info().num_matvecs, 1); // the initial residual only
            }

            #[test]
            fn workspace_reuse_gives_identical_results() {
                let n = 20;
                let lam: Vec<f64> = (1..=n).map(|i| i as f64).collect();
                let op = sym::<T>(n, &matrix_with_spectrum(&lam, 9));
                let b: Vec<T> = random_vector(3 * n, 10);
                let params = CgParams::default();
                let mut ws = CgWorkspace::new();
                let mut x1 = vec![0.0 as T; 3 * n];
                let i1 = cg::solve_in_place(&op, &IdentityPreconditioner, &b, 3, &mut x1, &mut ws, &params).unwrap();
                // A smaller solve in between must not disturb the next one.
                let mut xs = vec![0.0 as T; n];
                cg::solve_in_place(&op, &IdentityPreconditioner, &b[..n], 1, &mut xs, &mut ws, &params).unwrap();
                let mut x2 = vec![0.0 as T; 3 * n];
                let i2 = cg::solve_in_place(&op, &IdentityPreconditioner, &b, 3, &mut x2, &mut ws, &params).unwrap();
                assert_eq!(i1, i2);
                assert!(x1.iter().zip(&x2).all(|(p, q)| p.to_bits() == q.to_bits()));
            }

            #[test]
            fn errors() {
                let op = sym::<T>(3, &matrix_with_spectrum(&[1.0, 2.0, 3.0], 11));
                let p = CgParams::default();
                assert!(matches!(
                    cg::solve(&op, &[1.0; 5], 2, &p),
                    Err(KrylovError::DimensionMismatch { expected: 6, got: 5, .. })
                ));
                assert!(matches!(
                    cg::solve(&op, &[1.0, T::NAN, 1.0], 1, &p),
                    Err(KrylovError::NonFiniteStartVector { index: 1 })
                ));
                assert!(matches!(
                    cg::solve(&op, &[1.0; 3], 1, &CgParams { rtol: Some(-1.0), ..p.clone() }),
                    Err(KrylovError::InvalidParameter(_))
                ));
                assert!(matches!(
                    cg::solve_preconditioned(&op, &IdentityPreconditioner, &[1.0; 3], 1, Some(&[1.0; 2]), &p),
                    Err(KrylovError::DimensionMismatch { what: "initial guess", .. })
                ));
                // A preconditioner of the wrong size.
                let pc = gradmat_krylov::precond::PartialCholesky::<T>::from_factor(4, 0, vec![], 1.0).unwrap();
                assert_eq!(pc.dim(), Some(4));
                assert!(matches!(
                    cg::solve_preconditioned(&op, &pc, &[1.0; 3], 1, None, &p),
                    Err(KrylovError::DimensionMismatch { what: "preconditioner", expected: 3, got: 4 })
                ));
                // A non-square operator (lying about symmetry) is rejected.
                struct Rect(DenseMatrix<T>);
                impl Operator<T> for Rect {
                    fn nrows(&self) -> usize { self.0.nrows() }
                    fn ncols(&self) -> usize { self.0.ncols() }
                    fn apply(&self, x: &[T], y: &mut [T]) { self.0.apply(x, y) }
                }
                impl SelfAdjoint<T> for Rect {}
                let rect = Rect(DenseMatrix::from_fn(3, 2, |i, j| (i + j) as T).unwrap());
                assert!(matches!(
                    cg::solve(&rect, &[1.0; 3], 1, &p),
                    Err(KrylovError::NotSquare { nrows: 3, ncols: 2 })
                ));
                // NaN produced by the operator.
                struct Nan;
                impl Operator<T> for Nan {
                    fn nrows(&self) -> usize { 3 }
                    fn ncols(&self) -> usize { 3 }
                    fn apply(&self, _x: &[T], y: &mut [T]) { y.fill(T::NAN) }
                }
                impl SelfAdjoint<T> for Nan {}
                assert!(matches!(
                    cg::solve(&Nan, &[1.0; 3], 1, &p),
                    Err(KrylovError::NonFinite { step: 0, .. })
                ));
            }
        }
    };
}

// f64: cond up to 1e3, rtol 1e-10. f32: cond up to 1e2, rtol 1e-4 (≈ 1000·eps, reachable).
cg_tests!(f64_tests, f64, 1e3, 1e-10);
cg_tests!(f32_tests, f32, 1e2, 1e-4);

/// Jacobi (diagonal) preconditioner written downstream against the public trait.
struct Jacobi(Vec<f64>);
impl Preconditioner<f64> for Jacobi {
    fn dim(&self) -> Option<usize> {
        Some(self.0.len())
    }
    fn apply_inverse_block(&self, r: &[f64], z: &mut [f64], k: usize, _scratch: &mut [f64]) {
        let n = self.0.len();
        for c in 0..k {
            for i in 0..n {
                z[i + c * n] = r[i + c * n] / self.0[i];
            }
        }
    }
}

/// bcsstk14 (1806×1806 SPD stiffness matrix, condition ~1.2e10) read through the Matrix Market
/// reader. Jacobi-preconditioned and plain CG to `rtol = 1e-8` on two right-hand sides. The true
/// relative residual can exceed the recursive one by the drift `~ eps·cond·(iterations)`-ish in
/// the worst case; in practice it stays within 1e-6 (checked), far below what the condition
/// number would allow for the forward error.
#[test]
fn bcsstk14_real_spd_matrix() {
    use gradmat_operators::matrix_market::read_matrix_market;
    use gradmat_operators::ColumnAccess;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/matrices/bcsstk14.mtx.gz"
    );
    let a = read_matrix_market::<f64>(path)
        .unwrap()
        .to_sym_csr()
        .unwrap();
    let n = a.nrows();
    assert_eq!(n, 1806);
    let mut diag = vec![0.0; n];
    a.diagonal(&mut diag);
    assert!(diag.iter().all(|d| *d > 0.0));
    let k = 2;
    let b = random_vector::<f64>(n * k, 42);
    let params = CgParams {
        rtol: Some(1e-8),
        max_iters: Some(20 * n),
        ..CgParams::default()
    };
    let jac = cg::solve_preconditioned(&a, &Jacobi(diag), &b, k, None, &params).unwrap();
    let plain = cg::solve(&a, &b, k, &params).unwrap();
    println!(
        "bcsstk14: Jacobi-PCG iterations {:?} (converged {:?}), plain CG iterations {:?} \
         (converged {:?})",
        jac.info().iterations,
        jac.info().converged,
        plain.info().iterations,
        plain.info().converged
    );
    assert!(jac.info().all_converged());
    for c in 0..k {
        let bc = &b[c * n..(c + 1) * n];
        let bn = bc.iter().map(|v| v * v).sum::<f64>().sqrt();
        let tr = true_residual(&a, jac.column(c), bc) / bn;
        println!("bcsstk14 rhs {c}: Jacobi-PCG true relative residual {tr:.3e}");
        assert!(tr <= 1e-6, "true relative residual {tr:e}");
    }
    assert!(jac.info().max_iterations() < plain.info().max_iterations());
}
