//! Golub–Kahan bidiagonalisation: the relations `A V = U B + r e_{K−1}ᵀ`, `Aᵀ U = V Bᵀ`,
//! orthogonality, singular values at full depth, breakdown on rank-deficient matrices and errors.

use faer::{MatRef, Par};
use gradmat_krylov::golub_kahan::{golub_kahan, GkParams};
use gradmat_krylov::{BreakdownKind, KrylovError, Reorthogonalize};
use gradmat_operators::dense::DenseMatrix;
use gradmat_operators::testing::{random_vector, strategies};
use gradmat_operators::{AdjointOperator, Operator, Scalar};
use proptest::prelude::*;

fn to64<T: Scalar>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

/// `C = A·B` for column-major `A (m×p)`, `B (p×n)` in f64.
fn matmul(a: &[f64], b: &[f64], m: usize, p: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for j in 0..n {
        for l in 0..p {
            let blj = b[l + j * p];
            for i in 0..m {
                c[i + j * m] += a[i + l * m] * blj;
            }
        }
    }
    c
}

fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    let mut t = vec![0.0; m * n];
    for j in 0..n {
        for i in 0..m {
            t[j + i * n] = a[i + j * m];
        }
    }
    t
}

fn fro(a: &[f64]) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// `‖QᵀQ − I‖_F` for an `n×k` column-major `Q`.
fn orth_err(q: &[f64], n: usize, k: usize) -> f64 {
    let g = matmul(&transpose(q, n, k), q, k, n, k);
    let mut e = 0.0;
    for j in 0..k {
        for i in 0..k {
            let d = g[i + j * k] - if i == j { 1.0 } else { 0.0 };
            e += d * d;
        }
    }
    e.sqrt()
}

fn singular_values(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    faer::set_global_parallelism(Par::Seq);
    let mut s = MatRef::from_column_major_slice(a, m, n)
        .to_owned()
        .singular_values()
        .unwrap();
    s.sort_by(|x, y| y.partial_cmp(x).unwrap());
    s
}

/// Checks `A V = U B + r e_{K−1}ᵀ`, `Aᵀ U = V Bᵀ`, `U e_0 = b/‖b‖` and (if `orth`) `UᵀU = I`,
/// `VᵀV = I`, `Uᵀr = 0`. Returns the largest error relative to `‖A‖_F`.
fn check_relations<T: Scalar>(
    a: &DenseMatrix<T>,
    b: &[T],
    gk: &gradmat_krylov::golub_kahan::Bidiagonalization<T>,
    orth: bool,
    tol: f64,
) -> Result<(), String> {
    let (m, n, k) = (a.nrows(), a.ncols(), gk.depth());
    let a64 = to64(a.as_slice());
    let anorm = fro(&a64);
    let u = to64(gk.left_basis());
    let v = to64(gk.right_basis());
    let bb = to64(&gk.small_matrix());
    let r = to64(gk.residual());
    // A V − U B − r e_{K−1}ᵀ
    let mut lhs = matmul(&a64, &v, m, n, k);
    let ub = matmul(&u, &bb, m, k, k);
    for (l, x) in lhs.iter_mut().zip(&ub) {
        *l -= x;
    }
    if k > 0 {
        for i in 0..m {
            lhs[i + (k - 1) * m] -= r[i];
        }
    }
    let e1 = fro(&lhs) / anorm;
    // Aᵀ U − V Bᵀ
    let atu = matmul(&transpose(&a64, m, n), &u, n, m, k);
    let vbt = matmul(&v, &transpose(&bb, k, k), n, k, k);
    let e2 = fro(&diff(&atu, &vbt)) / anorm;
    // U e_0 = b/‖b‖ and the inverse norm
    let b64 = to64(b);
    let bn = fro(&b64);
    let e3 = if k > 0 {
        fro(&diff(
            &u[..m],
            &b64.iter().map(|x| x / bn).collect::<Vec<_>>(),
        ))
    } else {
        0.0
    };
    let e4 = (gk.inv_norm().to_f64() * bn - 1.0).abs();
    let mut errs = vec![
        ("AV=UB+re", e1),
        ("AᵀU=VBᵀ", e2),
        ("Ue0", e3),
        ("1/‖b‖", e4),
    ];
    if orth {
        errs.push(("UᵀU=I", orth_err(&u, m, k)));
        errs.push(("VᵀV=I", orth_err(&v, n, k)));
        let utr = matmul(&transpose(&u, m, k), &r, k, m, 1);
        errs.push(("Uᵀr=0", fro(&utr) / anorm));
    }
    // ‖r‖ is reported consistently.
    errs.push(("‖r‖", (fro(&r) - gk.residual_norm().to_f64()).abs() / anorm));
    for (what, e) in errs {
        if e.is_nan() || e > tol {
            return Err(format!(
                "{what}: error {e:e} > {tol:e} (m={m}, n={n}, K={k})"
            ));
        }
    }
    Ok(())
}

macro_rules! gk_tests {
    ($m:ident, $t:ty) => {
        mod $m {
            use super::*;
            type T = $t;
            const EPS: f64 = <$t>::EPSILON as f64;

            fn dense(m: usize, n: usize, a: &[f64]) -> DenseMatrix<T> {
                DenseMatrix::from_col_major(m, n, a.iter().map(|x| *x as T).collect()).unwrap()
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

                /// With full reorthogonalisation every relation holds to rounding: each column is
                /// a few matvecs and Gram–Schmidt sweeps, error ≈ c·eps·max(m,n)·K relative to
                /// ‖A‖_F (c = 10; measured worst cases reach about c = 1, so a 10× margin).
                #[test]
                fn relations_and_orthogonality(
                    (m, n, a) in strategies::dense_matrix(1..=25, 1..=25),
                    seed in any::<u64>(),
                    frac in 0.0f64..=1.0,
                ) {
                    let op = dense(m, n, &a);
                    let kmax = m.min(n);
                    let depth = 1 + ((kmax - 1) as f64 * frac).round() as usize;
                    let b: Vec<T> = random_vector(m, seed);
                    let gk = golub_kahan(&op, &b, &GkParams::new(depth)).unwrap();
                    prop_assert!(gk.depth() <= depth);
                    if gk.depth() < depth {
                        prop_assert!(gk.info().breakdown.is_some());
                    }
                    let tol = 10.0 * EPS * (m.max(n) * depth) as f64;
                    check_relations(&op, &b, &gk, true, tol).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(gk.info().num_matvecs, gk.alpha().len());
                }

                /// Without reorthogonalisation the three-term relations still hold to rounding
                /// (orthogonality is not checked: it is lost gradually).
                #[test]
                fn relations_without_reorthogonalisation(
                    (m, n, a) in strategies::dense_matrix(1..=25, 1..=25),
                    seed in any::<u64>(),
                ) {
                    let op = dense(m, n, &a);
                    let depth = m.min(n).min(8);
                    let b: Vec<T> = random_vector(m, seed);
                    let gk = golub_kahan(&op, &b, &GkParams { reorthogonalize: Reorthogonalize::None, ..GkParams::new(depth) }).unwrap();
                    let tol = 10.0 * EPS * (m.max(n) * depth) as f64;
                    check_relations(&op, &b, &gk, false, tol).map_err(TestCaseError::fail)?;
                }

                /// At full depth `K = min(m, n)` the singular values of `B₊ = [B; ‖r‖e_{K−1}ᵀ]`
                /// equal those of `A` (`A V = U₊ B₊` with orthonormal `U₊` and square orthogonal
                /// `V`, or `Aᵀ U = V Bᵀ` with square orthogonal `U`). Error of backward-stable
                /// steps: c·eps·max(m,n)·K·‖A‖_F, c = 10.
                #[test]
                fn full_depth_singular_values(
                    (m, n, a) in strategies::dense_matrix(1..=20, 1..=20),
                    seed in any::<u64>(),
                ) {
                    let op = dense(m, n, &a);
                    let kmax = m.min(n);
                    let b: Vec<T> = random_vector(m, seed);
                    let gk = golub_kahan(&op, &b, &GkParams::new(kmax)).unwrap();
                    let k = gk.depth();
                    // Gaussian matrices have full rank: no early breakdown (only the expected
                    // β-breakdown at the last step when m ≤ n).
                    prop_assert_eq!(k, kmax);
                    if m <= n {
                        prop_assert_eq!(gk.info().breakdown.map(|b| (b.depth, b.kind)), Some((kmax, BreakdownKind::Residual)));
                    }
                    let a64 = to64(op.as_slice());
                    let sa = singular_values(&a64, m, n);
                    let sb = singular_values(&to64(&gk.bidiagonal_extended()), k + 1, k);
                    let tol = 10.0 * EPS * (m.max(n) * k) as f64 * fro(&a64);
                    for (x, y) in sa.iter().zip(&sb) {
                        prop_assert!((x - y).abs() <= tol, "σ(A) = {sa:?}\nσ(B₊) = {sb:?}");
                    }
                }
            }

            /// `A = X Yᵀ` of rank 3. From a generic `b` the right space saturates first
            /// (`v_j ∈ range(Aᵀ)`, 3-dimensional): α-breakdown at step 3, residual `β_3 u_3 ≠ 0`.
            /// From `b ∈ range(A)` the left space saturates: β-breakdown at depth 3, `r = 0`, and
            /// the singular values of `B` are the non-zero singular values of `A`.
            #[test]
            fn rank_deficient_breakdown() {
                let (m, n, r) = (20, 15, 3);
                let x = random_vector::<f64>(m * r, 1);
                let y = random_vector::<f64>(n * r, 2);
                let a64 = matmul(&x, &transpose(&y, n, r), m, r, n);
                let op = dense(m, n, &a64);
                let tol = 100.0 * EPS * (m * n) as f64;

                let b: Vec<T> = random_vector(m, 3);
                let gk = golub_kahan(&op, &b, &GkParams::new(10)).unwrap();
                assert_eq!(gk.depth(), r);
                let bd = gk.info().breakdown.unwrap();
                assert_eq!((bd.depth, bd.kind), (r, BreakdownKind::Alpha));
                assert!(gk.residual_norm() > 0.0);
                check_relations(&op, &b, &gk, true, tol).unwrap();

                // b = A c lies in range(A).
                let c = random_vector::<f64>(n, 4);
                let b2: Vec<T> = matmul(&a64, &c, m, n, 1).iter().map(|v| *v as T).collect();
                let gk2 = golub_kahan(&op, &b2, &GkParams::new(10)).unwrap();
                assert_eq!(gk2.depth(), r);
                let bd = gk2.info().breakdown.unwrap();
                assert_eq!((bd.depth, bd.kind), (r, BreakdownKind::Residual));
                assert!(gk2.residual().iter().all(|v| v.abs() <= 0.0));
                check_relations(&op, &b2, &gk2, true, tol).unwrap();
                let sa = singular_values(&to64(op.as_slice()), m, n);
                let sb = singular_values(&to64(&gk2.small_matrix()), r, r);
                let stol = tol * fro(&a64);
                for (x, y) in sa.iter().take(r).zip(&sb) {
                    assert!((x - y).abs() <= stol, "{sa:?} vs {sb:?}");
                }

                // Aᵀ b = 0: depth 0, residual = b.
                let z = DenseMatrix::<T>::from_fn(4, 3, |_, _| 0.0).unwrap();
                let gk0 = golub_kahan(&z, &[1.0, 2.0, 3.0, 4.0], &GkParams::new(2)).unwrap();
                assert_eq!(gk0.depth(), 0);
                assert_eq!(gk0.info().breakdown.map(|b| b.kind), Some(BreakdownKind::Alpha));
                assert!(gk0.left_basis().is_empty() && gk0.right_basis().is_empty());
                assert_eq!(gk0.residual(), &[1.0, 2.0, 3.0, 4.0]);
            }

            #[test]
            fn errors() {
                let op = DenseMatrix::<T>::from_fn(4, 3, |i, j| (i * 3 + j) as T).unwrap();
                let p = GkParams::default();
                assert!(matches!(golub_kahan(&op, &[1.0; 3], &GkParams { depth: 1, ..p.clone() }), Err(KrylovError::DimensionMismatch { expected: 4, got: 3, .. })));
                assert!(matches!(golub_kahan(&op, &[1.0; 4], &GkParams { depth: 0, ..p.clone() }), Err(KrylovError::DepthOutOfRange { depth: 0, max: 3 })));
                assert!(matches!(golub_kahan(&op, &[1.0; 4], &GkParams { depth: 4, ..p.clone() }), Err(KrylovError::DepthOutOfRange { depth: 4, max: 3 })));
                assert!(matches!(golub_kahan(&op, &[0.0; 4], &GkParams { depth: 2, ..p.clone() }), Err(KrylovError::ZeroStartVector)));
                assert!(matches!(golub_kahan(&op, &[1.0, 1.0, T::INFINITY, 1.0], &GkParams { depth: 2, ..p.clone() }), Err(KrylovError::NonFiniteStartVector { index: 2 })));
                assert!(matches!(golub_kahan(&op, &[1.0; 4], &GkParams { depth: 2, breakdown_tol: Some(-1.0), ..p.clone() }), Err(KrylovError::InvalidParameter(_))));
                struct Nan;
                impl Operator<T> for Nan {
                    fn nrows(&self) -> usize { 3 }
                    fn ncols(&self) -> usize { 2 }
                    fn apply(&self, _x: &[T], y: &mut [T]) { y.fill(T::NAN) }
                }
                impl AdjointOperator<T> for Nan {
                    fn apply_transpose(&self, _x: &[T], y: &mut [T]) { y.fill(1.0) }
                }
                assert!(matches!(golub_kahan(&Nan, &[1.0; 3], &GkParams { depth: 2, ..p.clone() }), Err(KrylovError::NonFinite { step: 0, .. })));
            }
        }
    };
}

gk_tests!(f64_tests, f64);
gk_tests!(f32_tests, f32);
