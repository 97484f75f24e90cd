//! Kernel matrices against an independent dense oracle, the conformance kit, tile boundaries and
//! typed errors.

use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::testing::{self, random_vector, strategies};
use gradmat_operators::{ColumnAccess, Operator, OperatorError, ParamVjp, Scalar, SetParams};
use proptest::prelude::*;

/// Independent `f64` oracle: kernel value and `dk/dr` written from the textbook formulas in `r`
/// (the library works in `r²`).
fn k_and_dkdr(kind: KernelKind, r: f64, s: f64) -> (f64, f64) {
    let (s3, s5) = (3f64.sqrt(), 5f64.sqrt());
    match kind {
        KernelKind::SquaredExponential => {
            let e = (-0.5 * r * r).exp();
            (s * e, -s * r * e)
        }
        KernelKind::Matern12 => (s * (-r).exp(), -s * (-r).exp()),
        KernelKind::Matern32 => {
            let e = (-s3 * r).exp();
            (s * (1.0 + s3 * r) * e, -3.0 * s * r * e)
        }
        KernelKind::Matern52 => {
            let e = (-s5 * r).exp();
            (
                s * (1.0 + s5 * r + 5.0 * r * r / 3.0) * e,
                -5.0 / 3.0 * s * r * (1.0 + s5 * r) * e,
            )
        }
    }
}

/// Dense `K` (column-major) and `∇θ ⟨u, K x⟩` in closed form:
/// `∂k/∂ℓ_a = dk/dr · ∂r/∂ℓ_a`, `∂r/∂ℓ_a = −Δ_a²/(ℓ_a³ r)`; `∂k/∂s = k/s`.
fn oracle(
    kind: KernelKind,
    n: usize,
    d: usize,
    x: &[f64],
    ell: &[f64],
    s: f64,
    u: &[f64],
    v: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let mut kmat = vec![0.0; n * n];
    let mut grad = vec![0.0; d + 1];
    for i in 0..n {
        for j in 0..n {
            let delta: Vec<f64> = (0..d).map(|a| x[i * d + a] - x[j * d + a]).collect();
            let r = delta
                .iter()
                .zip(ell)
                .map(|(t, l)| (t / l) * (t / l))
                .sum::<f64>()
                .sqrt();
            let (k, dkdr) = k_and_dkdr(kind, r, s);
            kmat[i + j * n] = k;
            let w = u[i] * v[j];
            if r > 0.0 {
                for a in 0..d {
                    grad[a] += w * dkdr * (-delta[a] * delta[a] / (ell[a].powi(3) * r));
                }
            }
            grad[d] += w * k / s;
        }
    }
    (kmat, grad)
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|q| q * q).sum::<f64>().sqrt().max(1e-300);
    num / den
}

fn to64<T: Scalar>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64()).collect()
}

fn make<T: Scalar>(
    kind: KernelKind,
    n: usize,
    d: usize,
    seed: u64,
    tile: usize,
) -> KernelMatrix<T> {
    let x = random_vector::<T>(n * d, seed);
    let ell: Vec<T> = (0..d).map(|a| T::from_f64(0.7 + 0.3 * a as f64)).collect();
    KernelMatrix::new(kind, n, d, x, ell, T::from_f64(1.3))
        .unwrap()
        .with_tile_size(tile)
        .unwrap()
}

/// Compares `apply`, `apply_block` and `vjp_params` of `op` with the oracle; returns the worst
/// relative error.
fn compare_with_oracle<T: Scalar>(op: &KernelMatrix<T>, seed: u64) -> f64 {
    let (n, d) = (op.num_points(), op.input_dim());
    let x64 = to64(op.inputs());
    let ell = to64(op.lengthscales());
    let s = op.scale().to_f64();
    let u = random_vector::<T>(n, seed);
    let v = random_vector::<T>(n, seed + 1);
    let (kmat, g_ref) = oracle(op.kind(), n, d, &x64, &ell, s, &to64(&u), &to64(&v));
    let mut y = vec![T::ZERO; n];
    op.apply(&v, &mut y);
    let v64 = to64(&v);
    let y_ref: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| kmat[i + j * n] * v64[j]).sum())
        .collect();
    let mut g = vec![T::ZERO; d + 1];
    op.vjp_params(&u, &v, &mut g);
    let dense = op.to_dense().unwrap();
    let e_dense = rel_err(&to64(dense.as_slice()), &kmat);
    rel_err(&to64(&y), &y_ref)
        .max(rel_err(&to64(&g), &g_ref))
        .max(e_dense)
}

macro_rules! kernel_suite {
    ($modname:ident, $t:ty) => {
        mod $modname {
            use super::*;
            type T = $t;
            const EPS: f64 = <T as Scalar>::EPS as f64;

            // Products sum n terms of size ≤ s|x_j|: backward error ≤ n·eps relative to
            // Σ|K_ij||x_j|, which for these well-spread random data is within a factor ~√n of
            // ‖Kx‖; 10·n·eps covers both.
            fn product_tol(n: usize) -> f64 {
                10.0 * n as f64 * EPS
            }

            #[test]
            fn conformance_kit_all_kernels() {
                for (ki, &kind) in KernelKind::ALL.iter().enumerate() {
                    for &(n, d, tile) in &[(1, 1, 128), (37, 3, 8), (150, 2, 64), (64, 4, 16)] {
                        let op = make::<T>(kind, n, d, 11 + ki as u64, tile);
                        let tol = product_tol(n);
                        testing::check_adjoint(&op, 3, tol).unwrap();
                        testing::check_self_adjoint(&op, 4, tol).unwrap();
                        testing::check_block_consistency(&op, 5, 5, tol).unwrap();
                        // The vjp sums n² terms W_ij D_ij of either sign: 100·n·eps relative.
                        testing::check_vjp_block_consistency(&op, 4, 6, 100.0 * product_tol(n))
                            .unwrap();
                    }
                }
            }

            #[test]
            fn vjp_matches_finite_differences() {
                // Central differences with h = eps^{1/3}: truncation O(h²) plus rounding
                // O(eps·n/h) relative (⟨u, K x⟩ sums n² terms with cancellation ~n); with n = 24
                // that is ~ 30·eps^{2/3}: 1e-9 for f64, 1e-3 for f32. Allow 100·n·eps^{2/3}.
                let h = EPS.cbrt();
                let n = 24;
                let tol = 100.0 * n as f64 * EPS.powf(2.0 / 3.0);
                for (ki, &kind) in KernelKind::ALL.iter().enumerate() {
                    let op = make::<T>(kind, n, 3, 21 + ki as u64, 5);
                    testing::check_vjp_params_fd(&op, 7, h, tol)
                        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
                }
            }

            #[test]
            fn dense_oracle_and_tile_boundaries() {
                // n = 1, n < tile, n = tile, n a multiple and not a multiple of the tile.
                for &kind in &KernelKind::ALL {
                    for &(n, tile) in &[(1, 7), (5, 7), (7, 7), (21, 7), (23, 7), (40, 128)] {
                        let op = make::<T>(kind, n, 3, 100 + n as u64, tile);
                        let err = compare_with_oracle(&op, 5);
                        // Oracle in f64; the library in T: 50·n·eps.
                        assert!(
                            err <= 50.0 * n.max(4) as f64 * EPS,
                            "{kind:?} n={n} tile={tile}: rel err {err:e}"
                        );
                    }
                }
            }

            #[test]
            fn column_access_matches_dense() {
                for &kind in &KernelKind::ALL {
                    let n = 19;
                    let op = make::<T>(kind, n, 2, 7, 4);
                    let dense = op.to_dense().unwrap();
                    let mut diag = vec![T::ZERO; n];
                    op.diagonal(&mut diag);
                    let mut col = vec![T::ZERO; n];
                    for j in 0..n {
                        assert!((diag[j] - dense.get(j, j)).abs() <= T::EPS * op.scale());
                        op.column(j, &mut col);
                        for i in 0..n {
                            // Same formula, same rounding: exact.
                            assert_eq!(col[i].to_bits(), dense.get(i, j).to_bits());
                            // Symmetric.
                            assert_eq!(dense.get(i, j).to_bits(), dense.get(j, i).to_bits());
                        }
                    }
                }
            }

            #[test]
            fn kernel_between_points_matches_columns() {
                let op = make::<T>(KernelKind::Matern52, 9, 3, 3, 4);
                let x = op.inputs().to_vec();
                let mut col = vec![T::ZERO; 9];
                op.column(4, &mut col);
                for i in 0..9 {
                    let k = op.kernel(&x[i * 3..i * 3 + 3], &x[12..15]);
                    assert!((k - col[i]).abs() <= T::from_f64(4.0) * T::EPS * op.scale());
                }
                // cross_apply at the training points equals apply.
                let v = random_vector::<T>(9, 1);
                let mut y = vec![T::ZERO; 9];
                let mut yc = vec![T::ZERO; 9];
                op.apply(&v, &mut y);
                op.cross_apply(&x, 9, &v, &mut yc).unwrap();
                assert!(rel_err(&to64(&yc), &to64(&y)) <= product_tol(9));
            }
        }
    };
}

kernel_suite!(f64_suite, f64);
kernel_suite!(f32_suite, f32);

#[test]
fn isotropic_repeats_lengthscale_and_params_round_trip() {
    let x = random_vector::<f64>(10 * 3, 1);
    let mut op = KernelMatrix::isotropic(KernelKind::Matern32, 10, 3, x, 0.8, 2.0).unwrap();
    assert_eq!(op.num_params(), 4);
    let p = op.params_vec();
    assert_eq!(
        p.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        [0.8f64, 0.8, 0.8, 2.0]
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
    op.set_params(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut d = vec![0.0; 10];
    op.diagonal(&mut d);
    assert!(d.iter().all(|v| (v - 4.0).abs() < 1e-15));
}

#[test]
fn typed_errors() {
    let x = random_vector::<f64>(4 * 2, 1);
    let k = KernelKind::SquaredExponential;
    assert!(matches!(
        KernelMatrix::new(k, 4, 2, x[..7].to_vec(), vec![1.0, 1.0], 1.0),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    let mut bad = x.clone();
    bad[3] = f64::NAN;
    assert!(matches!(
        KernelMatrix::new(k, 4, 2, bad, vec![1.0, 1.0], 1.0),
        Err(OperatorError::NonFinite { index: 3, .. })
    ));
    assert!(matches!(
        KernelMatrix::new(k, 4, 2, x.clone(), vec![1.0, -1.0], 1.0),
        Err(OperatorError::InvalidParameter { index: 1, .. })
    ));
    assert!(matches!(
        KernelMatrix::new(k, 4, 2, x.clone(), vec![1.0, 1.0], 0.0),
        Err(OperatorError::InvalidParameter { index: 2, .. })
    ));
    assert!(matches!(
        KernelMatrix::new(k, 4, 0, vec![], vec![], 1.0),
        Err(OperatorError::InvalidArgument(_))
    ));
    let mut op = KernelMatrix::new(k, 4, 2, x, vec![1.0, 1.0], 1.0).unwrap();
    let before = op.clone();
    assert!(matches!(
        op.set_params(&[1.0, f64::INFINITY, 1.0]),
        Err(OperatorError::InvalidParameter { index: 1, .. })
    ));
    assert!(matches!(
        op.set_params(&[1.0, 1.0]),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        op.set_params(&[1e-320, 1.0, 1.0]),
        Err(OperatorError::InvalidParameter { index: 0, .. })
    ));
    assert_eq!(op, before, "unchanged on error");
    assert!(op.clone().with_tile_size(0).is_err());
    let mut out = [0.0; 1];
    assert!(op.cross_apply(&[0.0; 3], 1, &[0.0; 4], &mut out).is_err());
}

#[test]
fn deterministic_across_thread_counts() {
    let op = make::<f64>(KernelKind::Matern32, 300, 4, 9, 32);
    let x = random_vector::<f64>(300 * 3, 2);
    let u = random_vector::<f64>(300 * 3, 3);
    let run = || {
        let mut y = vec![0.0; 900];
        op.apply_block(&x, &mut y, 3);
        let mut g = vec![0.0; 5];
        op.vjp_params_block(&u, &x, 3, &mut g);
        (y, g)
    };
    let (y, g) = run();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (y1, g1) = pool.install(run);
    assert!(y.iter().zip(&y1).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(g.iter().zip(&g1).all(|(a, b)| a.to_bits() == b.to_bits()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_data_matches_oracle(
        (n, d, x) in strategies::kernel_data(1..=30, 1..=4),
        kind_ix in 0usize..4,
        tile in 1usize..12,
        ell in 0.3f64..3.0,
        s in 0.2f64..5.0,
    ) {
        let kind = KernelKind::ALL[kind_ix];
        let op = KernelMatrix::isotropic(kind, n, d, x, ell, s)
            .unwrap()
            .with_tile_size(tile)
            .unwrap();
        let err = compare_with_oracle(&op, 17);
        // Both in f64; the closed-form oracle sums in a different order: 100·n·eps.
        prop_assert!(err <= 100.0 * n.max(4) as f64 * f64::EPSILON, "rel err {err:e}");
    }
}

/// Wrappers keep the kernel's preference for one fused block VJP over all pairs, and a sparse
/// matrix's for groups of 8 (otherwise an adjoint in `Auto` mode would fall back to per-step
/// VJPs, each a full pass over the kernel tiles or the pattern).
#[test]
fn wrappers_forward_block_vjp_preference() {
    use gradmat_operators::algebra::{Diagonal, Scaled, Shifted, Sum};
    use gradmat_operators::csr::SymCsrMatrix;
    let x: Vec<f64> = (0..27).map(|i| (i as f64 * 0.37).sin()).collect();
    let k = KernelMatrix::isotropic(KernelKind::Matern32, 9, 3, x, 0.8, 2.0).unwrap();
    let l = SymCsrMatrix::<f64>::laplacian_2d(3).unwrap();
    let d = Diagonal::new(vec![1.0; 9]).unwrap();
    // (prefers a block VJP, block size): the one hint `vjp_block_size`, above 1 = prefers.
    let pref = |s: usize| (s > 1, s);
    assert_eq!(pref(k.vjp_block_size()), (true, usize::MAX));
    assert_eq!(pref(l.vjp_block_size()), (true, 8));
    assert_eq!(pref(d.vjp_block_size()), (false, 1));
    let sk = Shifted::new(k.clone(), 0.1).unwrap();
    assert_eq!(pref(sk.vjp_block_size()), (true, usize::MAX));
    let sc = Scaled::new(l.clone(), 2.0).unwrap();
    assert_eq!(pref(sc.vjp_block_size()), (true, 8));
    let lk = Sum::new(l.clone(), k.clone()).unwrap();
    assert_eq!(pref(lk.vjp_block_size()), (true, usize::MAX));
    let dl = Sum::new(d.clone(), l).unwrap();
    assert_eq!(pref(dl.vjp_block_size()), (true, 8));
    assert_eq!(Shifted::new(d.clone(), 0.1).unwrap().vjp_block_size(), 1);
    assert_eq!(Sum::new(d.clone(), d).unwrap().vjp_block_size(), 1);
}
