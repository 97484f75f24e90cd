//! Pivoted partial Cholesky preconditioner: `P⁻¹ P x = x`, log-determinant and residual trace
//! against dense computations, full rank reproduces the matrix, early stopping, errors, and
//! fewer CG iterations on kernel matrices.

use faer::{MatRef, Par, Side};
use gradmat_krylov::cg::{self, CgParams};
use gradmat_krylov::precond::{
    IdentityPreconditioner, PartialCholesky, PartialCholeskyParams, Preconditioner, GEMM_MIN_COLS,
};
use gradmat_krylov::KrylovError;
use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::testing::{matrix_with_spectrum, random_vector};
use gradmat_operators::{ColumnAccess, Operator, Scalar, SelfAdjoint};
use proptest::prelude::*;

/// A dense symmetric matrix plus `shift·I` exposing its columns (test-only `ColumnAccess`).
/// `ColumnAccess` reports the entries of the matrix **without** the shift, so the same object
/// serves as `K` (for the factorisation) and, through `apply`, as the system `K + shift·I`.
struct DenseKernel<T: Scalar> {
    n: usize,
    k: Vec<T>,
    shift: T,
}

impl<T: Scalar> Operator<T> for DenseKernel<T> {
    fn nrows(&self) -> usize {
        self.n
    }
    fn ncols(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        let n = self.n;
        for i in 0..n {
            y[i] = self.shift * x[i];
        }
        for j in 0..n {
            let xj = x[j];
            for i in 0..n {
                y[i] += self.k[i + j * n] * xj;
            }
        }
    }
}
impl<T: Scalar> SelfAdjoint<T> for DenseKernel<T> {}
impl<T: Scalar> ColumnAccess<T> for DenseKernel<T> {
    fn diagonal(&self, out: &mut [T]) {
        for i in 0..self.n {
            out[i] = self.k[i + i * self.n];
        }
    }
    fn column(&self, j: usize, out: &mut [T]) {
        out.copy_from_slice(&self.k[j * self.n..(j + 1) * self.n]);
    }
}

/// Squared-exponential kernel matrix on `n` points in `d` dimensions (f64, column-major).
fn rbf(n: usize, d: usize, lengthscale: f64, seed: u64) -> Vec<f64> {
    let x = random_vector::<f64>(n * d, seed);
    let mut k = vec![0.0; n * n];
    for j in 0..n {
        for i in 0..n {
            let r2: f64 = (0..d)
                .map(|a| (x[i * d + a] - x[j * d + a]).powi(2))
                .sum::<f64>()
                / (lengthscale * lengthscale);
            k[i + j * n] = (-0.5 * r2).exp();
        }
    }
    k
}

/// Dense `P = L Lᵀ + σ² I` (f64) from a preconditioner.
fn dense_p<T: Scalar>(pc: &PartialCholesky<T>) -> Vec<f64> {
    let (n, r) = (pc.n(), pc.rank());
    let l: Vec<f64> = pc.factor().iter().map(|v| v.to_f64()).collect();
    let mut p = vec![0.0; n * n];
    for j in 0..n {
        for i in 0..n {
            p[i + j * n] = (0..r).map(|c| l[i + c * n] * l[j + c * n]).sum::<f64>();
        }
        p[j + j * n] += pc.sigma2().to_f64();
    }
    p
}

fn dense_log_det(n: usize, a: &[f64]) -> f64 {
    faer::set_global_parallelism(Par::Seq);
    let llt = MatRef::from_column_major_slice(a, n, n)
        .to_owned()
        .llt(Side::Lower)
        .unwrap();
    let l = llt.L();
    (0..n).map(|i| 2.0 * l[(i, i)].ln()).sum()
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

macro_rules! precond_tests {
    ($m:ident, $t:ty) => {
        mod $m {
            use super::*;
            type T = $t;
            const EPS: f64 = <$t>::EPSILON as f64;

            fn kernel(n: usize, k: &[f64], shift: f64) -> DenseKernel<T> {
                DenseKernel { n, k: k.iter().map(|v| *v as T).collect(), shift: shift as T }
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

                /// `P⁻¹ (P x) = x`, `log det P` and `tr(K − L Lᵀ)` against dense f64 results.
                /// Woodbury applies `P⁻¹` backward-stably up to `cond(P)·c·n·eps`; with
                /// `σ² ≥ 1e-2` and `‖K‖ ≤ n`, `cond(P) ≤ 100(n+1)` for f64. For f32 we use
                /// `σ² ≥ 0.1`. `c = 10`.
                #[test]
                fn inverse_log_det_and_residual_trace(
                    n in 2usize..=30,
                    d in 1usize..=3,
                    rank_frac in 0.0f64..=1.0,
                    ls in 0.3f64..3.0,
                    sigma2 in 0.1f64..1.0,
                    seed in any::<u64>(),
                ) {
                    let kd = rbf(n, d, ls, seed);
                    let op = kernel(n, &kd, 0.0);
                    let rank = (n as f64 * rank_frac).round() as usize;
                    let pc = PartialCholesky::new(&op, sigma2 as T, &PartialCholeskyParams::new(rank)).unwrap();
                    prop_assert!(pc.rank() <= rank);
                    prop_assert_eq!(pc.pivots().len(), pc.rank());
                    // First pivot: the largest diagonal (all equal to 1 here, so index 0).
                    if pc.rank() > 0 {
                        prop_assert_eq!(pc.pivots()[0], 0);
                    }
                    let p = dense_p(&pc);
                    let cond = (n as f64 + sigma2) / sigma2;
                    let tol = 10.0 * cond * n as f64 * EPS;
                    // P⁻¹ (P x) = x, for a block of 2 vectors (column by column) and one of
                    // GEMM_MIN_COLS + 3 (by GEMMs).
                    for kb in [2, GEMM_MIN_COLS + 3] {
                        let x: Vec<T> = random_vector(kb * n, seed ^ kb as u64);
                        let mut px = vec![0.0 as T; kb * n];
                        for c in 0..kb {
                            pc.apply_matrix(&x[c * n..(c + 1) * n], &mut px[c * n..(c + 1) * n]);
                            // apply_matrix agrees with the dense P.
                            let xd: Vec<f64> = x[c * n..(c + 1) * n].iter().map(|v| v.to_f64()).collect();
                            let pxd: Vec<f64> = (0..n).map(|i| (0..n).map(|j| p[i + j * n] * xd[j]).sum()).collect();
                            let e: Vec<f64> = pxd.iter().zip(&px[c * n..(c + 1) * n]).map(|(a, b)| a - b.to_f64()).collect();
                            prop_assert!(norm(&e) <= 10.0 * n as f64 * EPS * norm(&pxd));
                        }
                        let mut z = vec![0.0 as T; kb * n];
                        let mut scratch = vec![0.0 as T; pc.scratch_len(kb)];
                        pc.apply_inverse_block(&px, &mut z, kb, &mut scratch);
                        let e: Vec<f64> = z.iter().zip(&x).map(|(a, b)| a.to_f64() - b.to_f64()).collect();
                        let xn: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
                        prop_assert!(norm(&e) <= tol * norm(&xn), "block {kb}: {} > {}", norm(&e) / norm(&xn), tol);
                    }
                    // log det: Σ log of eigenvalues, each with relative error ≈ c·n·eps·cond.
                    let ld = dense_log_det(n, &p);
                    prop_assert!((pc.log_det().to_f64() - ld).abs() <= tol * (1.0 + ld.abs()), "{} vs {ld}", pc.log_det());
                    // Residual trace: tr(K) − ‖L‖_F².
                    let lf2: f64 = pc.factor().iter().map(|v| v.to_f64().powi(2)).sum();
                    let rt = n as f64 - lf2;
                    prop_assert!((pc.residual_trace().to_f64() - rt).abs() <= 10.0 * n as f64 * EPS * n as f64);
                }
            }

            /// Full rank and a tiny `σ²`: `P = L Lᵀ + σ² I ≈ K` (`L` is a complete pivoted
            /// Cholesky factor of the SPD `K`; error ≈ c·n·eps·‖K‖ + σ²).
            #[test]
            fn full_rank_reproduces_the_matrix() {
                let n = 12;
                let lam: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
                let kd = matrix_with_spectrum(&lam, 5);
                let op = kernel(n, &kd, 0.0);
                let sigma2 = 1e-30;
                let pc = PartialCholesky::new(&op, sigma2 as T, &PartialCholeskyParams::new(n)).unwrap();
                assert_eq!(pc.rank(), n);
                let p = dense_p(&pc);
                let kt: Vec<f64> = op.k.iter().map(|v| v.to_f64()).collect();
                let e: Vec<f64> = p.iter().zip(&kt).map(|(a, b)| a - b).collect();
                assert!(norm(&e) <= 10.0 * n as f64 * EPS * norm(&kt) + n as f64 * sigma2, "{}", norm(&e));
                assert!(pc.residual_trace().to_f64() <= 10.0 * n as f64 * EPS * n as f64 * 12.0);
                // Pivots are a permutation, the first one the largest diagonal entry.
                let mut piv = pc.pivots().to_vec();
                let diag: Vec<f64> = (0..n).map(|i| kt[i + i * n]).collect();
                let imax = (0..n).max_by(|&a, &b| diag[a].partial_cmp(&diag[b]).unwrap()).unwrap();
                assert_eq!(piv[0], imax);
                piv.sort_unstable();
                assert_eq!(piv, (0..n).collect::<Vec<_>>());
            }

            /// A rank-3 PSD matrix: the factorisation stops at rank 3 (remaining diagonal at
            /// rounding level), and a tolerance stops it earlier.
            #[test]
            fn early_stop_on_rank_deficiency_and_tolerance() {
                let n = 15;
                let mut lam = vec![0.0; n];
                lam[..3].copy_from_slice(&[3.0, 2.0, 1.0]);
                let kd = matrix_with_spectrum(&lam, 6);
                let op = kernel(n, &kd, 0.0);
                let pc = PartialCholesky::new(&op, 0.5 as T, &PartialCholeskyParams::new(10)).unwrap();
                assert_eq!(pc.rank(), 3);
                assert!(pc.residual_trace().to_f64() <= 1e3 * EPS * 6.0);
                let pc = PartialCholesky::new(&op, 0.5 as T, &PartialCholeskyParams { tol: 10.0, ..PartialCholeskyParams::new(10) }).unwrap();
                assert_eq!(pc.rank(), 0);
                // Rank 0: P = σ² I, log det = n log σ².
                assert!((pc.log_det().to_f64() - n as f64 * 0.5f64.ln()).abs() <= 10.0 * n as f64 * EPS);
            }

            #[test]
            fn errors() {
                let kd = rbf(5, 2, 1.0, 1);
                let op = kernel(5, &kd, 0.0);
                let p = PartialCholeskyParams::new(3);
                for s in [0.0, -1.0, T::NAN as f64, f64::INFINITY] {
                    assert!(matches!(PartialCholesky::new(&op, s as T, &p), Err(KrylovError::InvalidParameter(_))));
                }
                assert!(matches!(
                    PartialCholesky::new(&op, 1.0 as T, &PartialCholeskyParams::new(6)),
                    Err(KrylovError::InvalidParameter(_))
                ));
                assert!(matches!(
                    PartialCholesky::new(&op, 1.0 as T, &PartialCholeskyParams { tol: -1.0, ..p.clone() }),
                    Err(KrylovError::InvalidParameter(_))
                ));
                let mut bad = kd.clone();
                bad[2 + 2 * 5] = -1.0;
                assert!(matches!(
                    PartialCholesky::new(&kernel(5, &bad, 0.0), 1.0 as T, &p),
                    Err(KrylovError::Preconditioner(_))
                ));
                let mut bad = kd.clone();
                bad[1] = f64::NAN;
                assert!(matches!(
                    PartialCholesky::new(&kernel(5, &bad, 0.0), 1.0 as T, &p),
                    Err(KrylovError::Preconditioner(_))
                ));
                assert!(matches!(
                    PartialCholesky::<T>::from_factor(3, 1, vec![1.0; 2], 1.0),
                    Err(KrylovError::DimensionMismatch { expected: 3, got: 2, .. })
                ));
            }

            /// On a dense RBF kernel system `(K + σ² I) x = b` the preconditioned CG needs far
            /// fewer iterations than plain CG.
            #[test]
            fn reduces_cg_iterations_dense_rbf() {
                let (n, d, sigma2) = (300, 2, 1e-2);
                let kd = rbf(n, d, 0.5, 7);
                let op = kernel(n, &kd, sigma2);
                let b: Vec<T> = random_vector(n, 8);
                let params = CgParams { rtol: Some(if EPS < 1e-10 { 1e-8 } else { 1e-3 }), ..CgParams::default() };
                let plain = cg::solve(&op, &b, 1, &params).unwrap();
                let pc = PartialCholesky::new(&op, sigma2 as T, &PartialCholeskyParams::new(40)).unwrap();
                let pre = cg::solve_preconditioned(&op, &pc, &b, 1, None, &params).unwrap();
                let (i0, i1) = (plain.info().iterations[0], pre.info().iterations[0]);
                println!("dense RBF n={n} {}: CG {i0} iterations, partial Cholesky (rank {}) PCG {i1} iterations", stringify!($t), pc.rank());
                assert!(plain.info().all_converged() && pre.info().all_converged());
                assert!(i1 < i0, "{i1} ≥ {i0}");
            }
        }
    };
}

precond_tests!(f64_tests, f64);
precond_tests!(f32_tests, f32);

/// The identity preconditioner is a plain copy and acts on any dimension.
#[test]
fn identity_preconditioner() {
    let r = [1.0_f64, -2.0, 3.0];
    let mut z = [0.0_f64; 3];
    let id = IdentityPreconditioner;
    assert_eq!(Preconditioner::<f64>::dim(&id), None);
    id.apply_inverse(&r, &mut z, &mut []);
    assert!(z.iter().zip(&r).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// `K + σ² I` for a matrix-free kernel matrix (the shift applied on top of its products).
struct Shifted<'a> {
    k: &'a KernelMatrix<f64>,
    sigma2: f64,
}
impl Operator<f64> for Shifted<'_> {
    fn nrows(&self) -> usize {
        self.k.nrows()
    }
    fn ncols(&self) -> usize {
        self.k.ncols()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.apply_block(x, y, 1)
    }
    fn apply_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        self.k.apply_block(x, y, k);
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi += self.sigma2 * xi;
        }
    }
}
impl SelfAdjoint<f64> for Shifted<'_> {}

/// Matérn-3/2 kernel matrix (matrix-free, n = 1000, d = 3) plus noise: pivoted partial
/// Cholesky of rank 50 cuts the CG iteration count, solving one data vector and 4 probes
/// together.
#[test]
fn reduces_cg_iterations_matern32_kernel_matrix() {
    let (n, d, sigma2) = (1000, 3, 1e-2);
    let x = random_vector::<f64>(n * d, 11);
    let km = KernelMatrix::isotropic(KernelKind::Matern32, n, d, x, 1.0, 1.0).unwrap();
    let op = Shifted { k: &km, sigma2 };
    let k = 5;
    let b = random_vector::<f64>(n * k, 12);
    let params = CgParams {
        rtol: Some(1e-6),
        ..CgParams::default()
    };
    let plain = cg::solve(&op, &b, k, &params).unwrap();
    let pc = PartialCholesky::new(&km, sigma2, &PartialCholeskyParams::new(50)).unwrap();
    let pre = cg::solve_preconditioned(&op, &pc, &b, k, None, &params).unwrap();
    let (i0, i1) = (plain.info().max_iterations(), pre.info().max_iterations());
    println!(
        "Matérn-3/2 n={n} d={d} σ²={sigma2} k={k}: CG {i0} iterations ({} matvecs), \
         partial Cholesky rank {} (residual trace {:.3e}) PCG {i1} iterations ({} matvecs)",
        plain.info().num_matvecs,
        pc.rank(),
        pc.residual_trace(),
        pre.info().num_matvecs
    );
    assert!(plain.info().all_converged() && pre.info().all_converged());
    assert!(i1 < i0, "{i1} ≥ {i0}");
    // Both solve the same system.
    for c in 0..k {
        let e: Vec<f64> = plain
            .column(c)
            .iter()
            .zip(pre.column(c))
            .map(|(a, b)| a - b)
            .collect();
        // cond(K + σ²I) ≤ (‖K‖ + σ²)/σ² ≈ 1e5 here; both residuals ≤ 1e-6‖b‖.
        assert!(norm(&e) <= 2.0 * 1e-6 * 1e5 * norm(plain.column(c)).max(1.0));
    }
}
