//! Dense operators and the operator algebra against the conformance kit and dense oracles,
//! for f64 and f32.
//!
//! Tolerances: a dense product of length-n dot products has backward error ≤ n·eps per entry,
//! so the kit's relative checks use 10·n·eps (f64: ~1e-13 for n ≤ 40; f32 likewise in its eps).
//! ⟨u, A(θ)x⟩ is linear (dense, shift, diagonal) or quadratic (scale, product) in θ, so a central
//! difference has no truncation error at any step: only rounding, ≈ eps·(Σ|terms|)/h. We use
//! h = 1 (relative to max(1, |θ_i|)), which gives ~1e-14 (f64) and ~1e-5 (f32) relative error;
//! we allow 1e-8 and 2e-3. (A step of 0.1 for f32 measured up to 2.3e-3 on rare seeds.)

use gradmat_operators::algebra::{Diagonal, Identity, Product, Scaled, Shifted, Sum, Transposed};
use gradmat_operators::dense::{DenseMatrix, SymmetricDense};
use gradmat_operators::testing::{self, random_vector, strategies};
use gradmat_operators::{ColumnAccess, Operator, OperatorError, ParamVjp, Scalar, SetParams};
use proptest::prelude::*;

fn dense<T: Scalar>(m: usize, n: usize, seed: u64) -> DenseMatrix<T> {
    DenseMatrix::from_col_major(m, n, random_vector::<T>(m * n, seed)).unwrap()
}

/// Frobenius norm of an operator, column by column (test sizes only).
fn fro<T: Scalar, A: Operator<T>>(op: &A) -> f64 {
    let n = op.ncols();
    let mut e = vec![T::ZERO; n];
    let mut col = vec![T::ZERO; op.nrows()];
    let mut sq = 0.0;
    for j in 0..n {
        e.fill(T::ZERO);
        e[j] = T::ONE;
        op.apply(&e, &mut col);
        sq += col.iter().map(|c| c.to_f64() * c.to_f64()).sum::<f64>();
    }
    sq.sqrt()
}

/// Cancellation factor of a sum of operators: a product `(A + B)x` formed as `Ax + Bx` carries
/// rounding relative to `(‖A‖ + ‖B‖)‖x‖`, not `‖A + B‖‖x‖`, so relative checks on the sum are
/// scaled by `(‖A‖_F + ‖B‖_F) / ‖A + B‖_F` (≥ 1; unbounded when the terms nearly cancel, which
/// random 1×1 terms do: the CI failure of seed 9195962666243750142 at n = 1).
fn cancellation(parts: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (parts / whole).max(1.0)
    } else {
        f64::INFINITY
    }
}

fn sym<T: Scalar>(n: usize, seed: u64) -> SymmetricDense<T> {
    let lower = random_vector::<T>(n * (n + 1) / 2, seed);
    SymmetricDense::from_lower(n, &lower).unwrap()
}

macro_rules! kit_suite {
    ($name:ident, $t:ty, $h:expr, $fdtol:expr) => {
        mod $name {
            use super::*;
            type T = $t;
            fn tol(n: usize) -> f64 {
                10.0 * (n as f64 + 1.0) * <T as Scalar>::EPS.to_f64()
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(32))]

                #[test]
                fn dense_passes_kit(m in 1usize..30, n in 1usize..30, k in 1usize..5, seed in any::<u64>()) {
                    let a = dense::<T>(m, n, seed);
                    testing::check_adjoint(&a, seed, tol(m.max(n))).unwrap();
                    testing::check_block_consistency(&a, k, seed, tol(n)).unwrap();
                    testing::check_transpose_block_consistency(&a, k, seed, tol(m)).unwrap();
                    testing::check_vjp_block_consistency(&a, k, seed, tol(k)).unwrap();
                    testing::check_vjp_params_fd(&a, seed, $h, $fdtol).unwrap();
                }

                #[test]
                fn symmetric_dense_passes_kit(n in 1usize..25, k in 1usize..5, seed in any::<u64>()) {
                    let a = sym::<T>(n, seed);
                    testing::check_adjoint(&a, seed, tol(n)).unwrap();
                    testing::check_self_adjoint(&a, seed, tol(n)).unwrap();
                    testing::check_block_consistency(&a, k, seed, tol(n)).unwrap();
                    testing::check_vjp_block_consistency(&a, k, seed, tol(k)).unwrap();
                    testing::check_vjp_params_fd(&a, seed, $h, $fdtol).unwrap();
                }

                #[test]
                fn combinators_pass_kit(n in 1usize..20, k in 1usize..4, seed in any::<u64>()) {
                    let a = sym::<T>(n, seed);
                    let b = sym::<T>(n, seed ^ 1);
                    let g = dense::<T>(n, n, seed ^ 2);
                    let h = dense::<T>(n, n, seed ^ 3);
                    let d = Diagonal::new(random_vector::<T>(n, seed ^ 4)).unwrap();
                    let two = <T as Scalar>::from_f64(1.7);

                    let s = Sum::new(a.clone(), b.clone()).unwrap();
                    let ks = cancellation(fro(&a) + fro(&b), fro(&s));
                    testing::check_self_adjoint(&s, seed, ks * tol(n)).unwrap();
                    testing::check_block_consistency(&s, k, seed, tol(n)).unwrap();
                    testing::check_vjp_block_consistency(&s, k, seed, tol(k)).unwrap();
                    testing::check_vjp_params_fd(&s, seed, $h, $fdtol).unwrap();

                    let sc = Scaled::new(g.clone(), two).unwrap();
                    testing::check_adjoint(&sc, seed, tol(n)).unwrap();
                    testing::check_vjp_block_consistency(&sc, k, seed, tol(n * k)).unwrap();
                    testing::check_vjp_params_fd(&sc, seed, $h, $fdtol).unwrap();
                    testing::check_apply_and_vjp_consistency(&sc, seed, tol(n)).unwrap();

                    let sh = Shifted::new(a.clone(), two).unwrap();
                    let kh = cancellation(fro(&a) + 1.7 * (n as f64).sqrt(), fro(&sh));
                    testing::check_self_adjoint(&sh, seed, kh * tol(n)).unwrap();
                    testing::check_block_consistency(&sh, k, seed, tol(n)).unwrap();
                    testing::check_vjp_block_consistency(&sh, k, seed, tol(n * k)).unwrap();
                    testing::check_vjp_params_fd(&sh, seed, $h, $fdtol).unwrap();
                    testing::check_apply_and_vjp_consistency(&sh, seed, kh * tol(n)).unwrap();
                    testing::check_apply_and_vjp_consistency(&s, seed, ks * tol(n)).unwrap();

                    let p = Product::new(g.clone(), h.clone()).unwrap();
                    testing::check_adjoint(&p, seed, tol(n * n)).unwrap();
                    testing::check_block_consistency(&p, k, seed, tol(n * n)).unwrap();
                    testing::check_vjp_block_consistency(&p, k, seed, tol(n * k)).unwrap();
                    testing::check_vjp_params_fd(&p, seed, $h, $fdtol).unwrap();

                    let t = Transposed(g.clone());
                    testing::check_adjoint(&t, seed, tol(n)).unwrap();
                    testing::check_vjp_params_fd(&t, seed, $h, $fdtol).unwrap();

                    testing::check_self_adjoint(&d, seed, tol(1)).unwrap();
                    testing::check_vjp_params_fd(&d, seed, $h, $fdtol).unwrap();
                    testing::check_self_adjoint::<T, _>(&Identity { n }, seed, 0.0).unwrap();
                }
            }
        }
    };
}

kit_suite!(f64_suite, f64, 1.0, 1e-8);
kit_suite!(f32_suite, f32, 1.0, 2e-3);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Combinator products against the explicit dense matrices they stand for.
    #[test]
    fn combinators_match_dense_oracle((n, _, data) in strategies::dense_matrix(1..=12, 1..=1), seed in any::<u64>()) {
        let _ = data;
        let a = dense::<f64>(n, n, seed);
        let b = dense::<f64>(n, n, seed ^ 7);
        let x = random_vector::<f64>(n, seed ^ 9);
        let (ad, bd) = (a.as_slice().to_vec(), b.as_slice().to_vec());
        let mut expect = vec![0.0; n];
        let mut got = vec![0.0; n];
        // (A B + 0.5 I)ᵀ x  computed densely.
        for i in 0..n {
            let mut s = 0.5 * x[i];
            for j in 0..n {
                let mut abji = 0.0;
                for l in 0..n {
                    abji += ad[j + l * n] * bd[l + i * n];
                }
                s += abji * x[j];
            }
            expect[i] = s;
        }
        let op = Transposed(Shifted::new(Product::new(a, b).unwrap(), 0.5).unwrap());
        op.apply(&x, &mut got);
        for i in 0..n {
            prop_assert!((got[i] - expect[i]).abs() <= 1e-12 * (1.0 + expect[i].abs()) * n as f64);
        }
    }
}

#[test]
fn parameter_layouts_are_as_documented() {
    // Symmetric dense: lower triangle column by column.
    let s = SymmetricDense::<f64>::from_lower(3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let full = s.as_dense();
    assert_eq!(full.get(1, 0).to_bits(), 2f64.to_bits());
    assert_eq!(full.get(0, 2).to_bits(), 3f64.to_bits());
    assert_eq!(full.get(2, 1).to_bits(), 5f64.to_bits());
    // ∇⟨u, A x⟩ for an off-diagonal parameter is u_i x_j + u_j x_i.
    let mut g = vec![0.0; 6];
    s.vjp_params(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], &mut g);
    let expect = [
        4.0,
        2.0 * 4.0 + 1.0 * 5.0,
        3.0 * 4.0 + 1.0 * 6.0,
        10.0,
        3.0 * 5.0 + 2.0 * 6.0,
        18.0,
    ];
    for (a, b) in g.iter().zip(expect) {
        assert!((a - b).abs() < 1e-14);
    }
    // Sum concatenates, Shifted appends σ.
    let op = Shifted::new(
        Sum::new(Diagonal::new(vec![1.0, 2.0]).unwrap(), Identity { n: 2 }).unwrap(),
        0.25,
    )
    .unwrap();
    assert_eq!(op.params_vec(), vec![1.0, 2.0, 0.25]);
    let mut col = [0.0; 2];
    op.column(1, &mut col);
    assert_eq!(col.map(f64::to_bits), [0.0f64, 3.25].map(f64::to_bits));
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(matches!(
        DenseMatrix::<f64>::from_col_major(2, 2, vec![1.0; 3]),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        DenseMatrix::from_col_major(1, 2, vec![1.0, f64::NAN]),
        Err(OperatorError::NonFinite { index: 1, .. })
    ));
    assert!(matches!(
        SymmetricDense::from_col_major(2, vec![1.0, 2.0, 3.0, 1.0]),
        Err(OperatorError::InvalidArgument(_))
    ));
    let g = dense::<f64>(2, 3, 1);
    assert!(matches!(
        Shifted::new(g.clone(), 1.0),
        Err(OperatorError::NotSquare { .. })
    ));
    assert!(matches!(
        Sum::new(g.clone(), dense::<f64>(3, 2, 2)),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    let mut s = Shifted::new(dense::<f64>(2, 2, 3), 1.0).unwrap();
    let before = s.params_vec();
    assert!(s.set_params(&[1.0, 2.0, 3.0, 4.0, f64::INFINITY]).is_err());
    assert_eq!(s.params_vec(), before);
}

#[test]
#[should_panic(expected = "expected 3")]
fn length_mismatch_in_apply_panics_with_both_sizes() {
    let g = dense::<f64>(2, 3, 1);
    g.apply(&[1.0, 2.0], &mut [0.0; 2]);
}
