//! The SIMD kernel engine against a straightforward scalar reference, on every instruction set
//! this CPU supports (forced with `with_simd_level`), for every kernel and both scalars: block
//! products and block VJPs for blocks of 1 to 17 vectors, the fused apply + VJP, cross products
//! and columns; sizes that are not multiples of the tile or of the lane counts, `n = 1`, and
//! coincident points (duplicate rows), whose values and gradients must be finite and agree with
//! finite differences and the closed form. Results are bit-identical for 1, 2 and 3 threads.
//!
//! Tolerances are derived, not measured. With `ε` the unit roundoff of `T`, `ρ` the magnitude of
//! the `exp` argument (`r²/2` for SE, `r`, `√3 r`, `√5 r` for Matérn), a kernel value or
//! derivative computed by the engine from the same scaled inputs has relative error at most
//! `γ = (d + 4)·ρ + 8` times `ε` (the squared distance carries `(d + 2)ε` relative error,
//! which the `exp` argument inherits, plus 1 ulp of `exp` and a few roundings). A product sums
//! `n` such terms in a chain of at most `n + 8` roundings, so entry `i` may differ from the
//! exact sum by `ε·Σ_j (γ_ij + n + 8)|K_ij x_j|`; a gradient sum adds `2k` roundings for the
//! weights, 5 for the products and at most `tile + nt(nt + 1)/2 + 8` in its accumulation chain.
//! The reference (in `f64`) has errors of the same form, so the checks allow twice that.

use gradmat_operators::kernel::{KernelKind, KernelMatrix, SimdLevel};
use gradmat_operators::testing::{self, random_vector};
use gradmat_operators::{ColumnAccess, Operator, ParamVjp, Scalar, SetParams};
use proptest::prelude::*;

fn levels() -> Vec<SimdLevel> {
    SimdLevel::ALL
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

#[test]
fn every_level_of_this_cpu_is_exercised() {
    // On x86-64 with AVX-512 (this project's reference machine) all three levels run.
    let l = levels();
    assert!(l.contains(&SimdLevel::Scalar));
    assert_eq!(*l.last().unwrap(), SimdLevel::best());
    eprintln!("levels tested: {l:?}");
}

/// Value, `dk/d(r²)` and the magnitude `ρ` of the `exp` argument, from the textbook formulas.
fn profile(kind: KernelKind, r2: f64, s: f64) -> (f64, f64, f64) {
    let r = r2.sqrt();
    match kind {
        KernelKind::SquaredExponential => {
            let k = s * (-0.5 * r2).exp();
            (k, -0.5 * k, 0.5 * r2)
        }
        KernelKind::Matern12 => {
            let k = s * (-r).exp();
            (k, if r > 0.0 { -k / (2.0 * r) } else { 0.0 }, r)
        }
        KernelKind::Matern32 => {
            let a = 3f64.sqrt() * r;
            let e = s * (-a).exp();
            (e * (1.0 + a), -1.5 * e, a)
        }
        KernelKind::Matern52 => {
            let a = 5f64.sqrt() * r;
            let e = s * (-a).exp();
            (e * (1.0 + a + a * a / 3.0), -5.0 / 6.0 * (1.0 + a) * e, a)
        }
    }
}

/// The scaled inputs exactly as the engine forms them (in `T`), widened.
fn scaled<T: Scalar>(op: &KernelMatrix<T>) -> Vec<f64> {
    let d = op.input_dim();
    op.inputs()
        .iter()
        .enumerate()
        .map(|(i, x)| (*x / op.lengthscales()[i % d]).to_f64())
        .collect()
}

fn r2_between(za: &[f64], zb: &[f64]) -> f64 {
    za.iter().zip(zb).map(|(p, q)| (p - q) * (p - q)).sum()
}

/// Reference products `Y = K X` (`k` columns) with per-entry tolerances.
fn reference_apply<T: Scalar>(op: &KernelMatrix<T>, x: &[T], k: usize) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (op.num_points(), op.input_dim());
    let z = scaled(op);
    let s = op.scale().to_f64();
    let eps = T::EPS.to_f64();
    let mut y = vec![0.0; n * k];
    let mut tol = vec![0.0; n * k];
    for i in 0..n {
        for j in 0..n {
            let r2 = r2_between(&z[i * d..(i + 1) * d], &z[j * d..(j + 1) * d]);
            let (kv, _, rho) = profile(op.kind(), r2, s);
            let gamma = (d as f64 + 4.0) * rho + 8.0 + n as f64 + 8.0;
            for c in 0..k {
                let t = kv * x[c * n + j].to_f64();
                y[c * n + i] += t;
                tol[c * n + i] += 2.0 * eps * gamma * t.abs();
            }
        }
    }
    (y, tol)
}

/// Reference gradient of `Σ_c ⟨u_c, K x_c⟩` with per-parameter tolerances.
fn reference_vjp<T: Scalar>(
    op: &KernelMatrix<T>,
    u: &[T],
    x: &[T],
    k: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (op.num_points(), op.input_dim());
    let z = scaled(op);
    let s = op.scale().to_f64();
    let ell: Vec<f64> = op.lengthscales().iter().map(|v| v.to_f64()).collect();
    let eps = T::EPS.to_f64();
    let nt = n.div_ceil(op.tile_size());
    let depth = (op.tile_size() + nt * (nt + 1) / 2 + 8) as f64;
    let mut sums = vec![0.0; d + 1];
    let mut tol = vec![0.0; d + 1];
    for i in 0..n {
        for j in 0..n {
            let (zi, zj) = (&z[i * d..(i + 1) * d], &z[j * d..(j + 1) * d]);
            let (kv, g, rho) = profile(op.kind(), r2_between(zi, zj), s);
            let mut w = 0.0;
            let mut wabs = 0.0;
            for c in 0..k {
                let t = u[c * n + i].to_f64() * x[c * n + j].to_f64();
                w += t;
                wabs += t.abs();
            }
            let gamma = 2.0 * k as f64 + (d as f64 + 4.0) * rho + 8.0 + 5.0 + depth;
            for a in 0..d {
                let t = (zi[a] - zj[a]) * (zi[a] - zj[a]);
                sums[a] += w * g * t;
                tol[a] += 2.0 * eps * gamma * (wabs * g * t).abs();
            }
            sums[d] += w * kv;
            tol[d] += 2.0 * eps * gamma * (wabs * kv).abs();
        }
    }
    let mut grad = vec![0.0; d + 1];
    for a in 0..d {
        grad[a] = -2.0 / ell[a] * sums[a];
        tol[a] *= 2.0 / ell[a];
    }
    grad[d] = sums[d] / s;
    tol[d] /= s;
    (grad, tol)
}

fn assert_close<T: Scalar>(what: &str, got: &[T], want: &[f64], tol: &[f64]) {
    for (i, ((g, w), t)) in got.iter().zip(want).zip(tol).enumerate() {
        let g = g.to_f64();
        assert!(g.is_finite(), "{what}[{i}] = {g} is not finite");
        // A floor of one rounding of the largest term covers exact cancellation.
        let t = t.max(f64::MIN_POSITIVE);
        assert!(
            (g - w).abs() <= t,
            "{what}[{i}]: {g:e} vs reference {w:e}, |Δ| = {:e} > tol {t:e}",
            (g - w).abs()
        );
    }
}

/// Inputs with coincident points: every third row is repeated in the next one.
fn inputs_with_duplicates<T: Scalar>(n: usize, d: usize, seed: u64) -> Vec<T> {
    let mut x = random_vector::<T>(n * d, seed);
    for i in (0..n.saturating_sub(1)).step_by(3) {
        for a in 0..d {
            x[(i + 1) * d + a] = x[i * d + a];
        }
    }
    x
}

fn make<T: Scalar>(
    kind: KernelKind,
    n: usize,
    d: usize,
    tile: usize,
    level: SimdLevel,
    seed: u64,
) -> KernelMatrix<T> {
    let x = inputs_with_duplicates::<T>(n, d, seed);
    let ell: Vec<T> = (0..d).map(|a| T::from_f64(0.8 + 0.15 * a as f64)).collect();
    KernelMatrix::new(kind, n, d, x, ell, T::from_f64(1.3))
        .unwrap()
        .with_tile_size(tile)
        .unwrap()
        .with_simd_level(level)
        .unwrap()
}

/// Block apply, block VJP (and for `k = 1` the fused apply + VJP) against the reference.
fn check_products<T: Scalar>(op: &KernelMatrix<T>, k: usize, seed: u64) {
    let (n, d) = (op.num_points(), op.input_dim());
    let tag = format!(
        "{} {:?} {:?} n={n} d={d} tile={} k={k}",
        T::NAME,
        op.kind(),
        op.simd_level(),
        op.tile_size()
    );
    let x = random_vector::<T>(n * k, seed);
    let u = random_vector::<T>(n * k, seed + 1);
    let mut y = vec![T::ZERO; n * k];
    op.apply_block(&x, &mut y, k);
    let (y_ref, y_tol) = reference_apply(op, &x, k);
    assert_close(&format!("{tag} apply_block"), &y, &y_ref, &y_tol);
    let mut g = vec![T::ZERO; d + 1];
    op.vjp_params_block(&u, &x, k, &mut g);
    let (g_ref, g_tol) = reference_vjp(op, &u, &x, k);
    assert_close(&format!("{tag} vjp_params_block"), &g, &g_ref, &g_tol);
    if k == 1 {
        let mut y1 = vec![T::ZERO; n];
        let mut g1 = vec![T::ZERO; d + 1];
        op.apply_and_vjp_params(&x, &mut y1, &u, &mut g1);
        assert_close(&format!("{tag} apply_and_vjp y"), &y1, &y_ref, &y_tol);
        assert_close(&format!("{tag} apply_and_vjp grad"), &g1, &g_ref, &g_tol);
    }
}

fn products_suite<T: Scalar>() {
    // n = 1; n below, at and not a multiple of the tile and of the lane counts (4, 8, 16).
    let configs: [(usize, usize, usize, bool); 6] = [
        (1, 3, 128, true),
        (5, 2, 128, false),
        (37, 5, 16, true),
        (61, 18, 7, false),
        (130, 3, 128, false),
        (203, 4, 64, false),
    ];
    for level in levels() {
        for (ki, kind) in KernelKind::ALL.into_iter().enumerate() {
            for (ci, &(n, d, tile, all_k)) in configs.iter().enumerate() {
                let op = make::<T>(kind, n, d, tile, level, 10 * ci as u64 + ki as u64);
                let ks: Vec<usize> = if all_k {
                    (1..=17).collect()
                } else {
                    vec![1, 3, 11, 16]
                };
                for k in ks {
                    check_products(&op, k, 100 + k as u64);
                }
            }
        }
    }
}

#[test]
fn products_match_reference_f64() {
    products_suite::<f64>();
}

#[test]
fn products_match_reference_f32() {
    products_suite::<f32>();
}

fn columns_and_cross_suite<T: Scalar>() {
    for level in levels() {
        for kind in KernelKind::ALL {
            for &(n, d, tile) in &[(1usize, 2usize, 128usize), (23, 3, 8), (45, 7, 128)] {
                let op = make::<T>(kind, n, d, tile, level, 5);
                let z = scaled(&op);
                let s = op.scale().to_f64();
                let eps = T::EPS.to_f64();
                let dense = op.to_dense().unwrap();
                let mut col = vec![T::ZERO; n];
                for j in 0..n {
                    op.column(j, &mut col);
                    for i in 0..n {
                        let r2 = r2_between(&z[i * d..(i + 1) * d], &z[j * d..(j + 1) * d]);
                        let (kv, _, rho) = profile(kind, r2, s);
                        let tol = 2.0 * eps * ((d as f64 + 4.0) * rho + 8.0) * kv;
                        let got = col[i].to_f64();
                        assert!(
                            (got - kv).abs() <= tol.max(f64::MIN_POSITIVE),
                            "{kind:?} {level:?} K[{i},{j}] = {got:e} vs {kv:e}"
                        );
                        assert_eq!(got.to_bits(), dense.get(i, j).to_f64().to_bits());
                        assert_eq!(
                            dense.get(i, j).to_f64().to_bits(),
                            dense.get(j, i).to_f64().to_bits()
                        );
                    }
                    assert_eq!(col[j].to_f64().to_bits(), s.to_bits(), "K_jj = s exactly");
                }
                // Cross products at new points and at the training points themselves.
                let m = 2 * n + 3;
                let mut q = random_vector::<T>(m * d, 77);
                q[..n * d].copy_from_slice(op.inputs());
                let v = random_vector::<T>(n, 78);
                let mut out = vec![T::ZERO; m];
                op.cross_apply(&q, m, &v, &mut out).unwrap();
                let ell: Vec<T> = op.lengthscales().to_vec();
                let mut want = vec![0.0; m];
                let mut tol = vec![0.0; m];
                for p in 0..m {
                    let zq: Vec<f64> = (0..d).map(|a| (q[p * d + a] / ell[a]).to_f64()).collect();
                    for j in 0..n {
                        let (kv, _, rho) =
                            profile(kind, r2_between(&zq, &z[j * d..(j + 1) * d]), s);
                        let t = kv * v[j].to_f64();
                        want[p] += t;
                        tol[p] +=
                            2.0 * eps * ((d as f64 + 4.0) * rho + 8.0 + n as f64 + 8.0) * t.abs();
                    }
                }
                assert_close(
                    &format!("{kind:?} {level:?} cross_apply"),
                    &out,
                    &want,
                    &tol,
                );
            }
        }
    }
}

#[test]
fn columns_dense_and_cross_match_reference() {
    columns_and_cross_suite::<f64>();
    columns_and_cross_suite::<f32>();
}

/// Coincident points: values and gradients finite, gradients equal to central finite
/// differences, and for a set of identical points the closed form (`∂/∂ℓ = 0`,
/// `∂/∂s = Σu·Σx`).
fn coincident_suite<T: Scalar>() {
    let eps = T::EPS.to_f64();
    for level in levels() {
        for kind in KernelKind::ALL {
            let n = 24;
            let op = make::<T>(kind, n, 3, 5, level, 21);
            // Central differences with h = ε^{1/3}: error O(h²) + O(ε·n/h), allow 100·n·ε^{2/3}
            // (as the conformance tests do).
            testing::check_vjp_params_fd(
                &op,
                7,
                eps.cbrt(),
                100.0 * n as f64 * eps.powf(2.0 / 3.0),
            )
            .unwrap_or_else(|e| panic!("{kind:?} {level:?}: {e}"));
            // All points identical: K = s·11ᵀ.
            let x = vec![T::from_f64(0.3); n * 3];
            let same = KernelMatrix::new(kind, n, 3, x, vec![T::ONE; 3], T::from_f64(2.0))
                .unwrap()
                .with_simd_level(level)
                .unwrap();
            let u = random_vector::<T>(n, 1);
            let v = random_vector::<T>(n, 2);
            let mut g = vec![T::ZERO; 4];
            let mut y = vec![T::ZERO; n];
            same.apply_and_vjp_params(&v, &mut y, &u, &mut g);
            for a in 0..3 {
                assert_eq!(
                    g[a].to_f64().abs().to_bits(),
                    0,
                    "{kind:?}: ∂/∂ℓ at r = 0 is exactly 0"
                );
            }
            let (g_ref, g_tol) = reference_vjp(&same, &u, &v, 1);
            let (y_ref, y_tol) = reference_apply(&same, &v, 1);
            // Closed form: ∂⟨u, K v⟩/∂s = Σu·Σv and K v = s·Σv.
            let su: f64 = u.iter().map(|t| t.to_f64()).sum();
            let sv: f64 = v.iter().map(|t| t.to_f64()).sum();
            assert!((g_ref[3] - su * sv).abs() <= 1e-12 * (1.0 + (su * sv).abs()));
            assert!((y_ref[0] - 2.0 * sv).abs() <= 1e-12 * (1.0 + sv.abs()));
            assert_close(
                &format!("{kind:?} {level:?} identical points grad"),
                &g,
                &g_ref,
                &g_tol,
            );
            assert_close(
                &format!("{kind:?} {level:?} identical points y"),
                &y,
                &y_ref,
                &y_tol,
            );
        }
    }
}

#[test]
fn coincident_points_have_finite_exact_gradients() {
    coincident_suite::<f64>();
    coincident_suite::<f32>();
}

/// Bit patterns of every product of `op` (block apply, block VJP, fused apply + VJP, cross
/// product, dense matrix).
fn fingerprint(op: &KernelMatrix<f64>) -> Vec<u64> {
    let (n, d) = (op.num_points(), op.input_dim());
    let k = 3;
    let x = random_vector::<f64>(n * k, 5);
    let u = random_vector::<f64>(n * k, 6);
    let mut out = Vec::new();
    let mut y = vec![0.0; n * k];
    op.apply_block(&x, &mut y, k);
    out.extend(y.iter().map(|v| v.to_bits()));
    let mut g = vec![0.0; d + 1];
    op.vjp_params_block(&u, &x, k, &mut g);
    let mut y1 = vec![0.0; n];
    op.apply_and_vjp_params(&x[..n], &mut y1, &u[..n], &mut g);
    out.extend(g.iter().chain(&y1).map(|v| v.to_bits()));
    let m = 150;
    let q = random_vector::<f64>(m * d, 7);
    let mut c = vec![0.0; m];
    op.cross_apply(&q, m, &x[..n], &mut c).unwrap();
    out.extend(c.iter().map(|v| v.to_bits()));
    out.extend(
        op.to_dense()
            .unwrap()
            .as_slice()
            .iter()
            .map(|v| v.to_bits()),
    );
    out
}

#[test]
fn bit_identical_for_one_two_and_three_threads() {
    for level in levels() {
        for kind in [KernelKind::Matern32, KernelKind::Matern12] {
            // 11 tiles: 11 rounds of 6 pairs; n is not a multiple of the tile or the lanes.
            let op = make::<f64>(kind, 701, 5, 64, level, 3);
            let runs: Vec<Vec<u64>> = [1, 2, 3]
                .into_iter()
                .map(|t| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .unwrap()
                        .install(|| fingerprint(&op))
                })
                .collect();
            assert!(runs[0] == runs[1], "{kind:?} {level:?}: 1 vs 2 threads");
            assert!(runs[0] == runs[2], "{kind:?} {level:?}: 1 vs 3 threads");
        }
    }
}

/// Results of different levels agree to rounding (and set_params keeps the level).
#[test]
fn levels_agree_and_survive_set_params() {
    let n = 300;
    let base = make::<f64>(KernelKind::Matern52, n, 6, 128, SimdLevel::Scalar, 9);
    let x = random_vector::<f64>(n, 1);
    let (y_ref, tol) = reference_apply(&base, &x, 1);
    for level in levels() {
        let mut op = base.clone().with_simd_level(level).unwrap();
        op.set_params(&op.params_vec()).unwrap();
        assert_eq!(op.simd_level(), level);
        let mut y = vec![0.0; n];
        op.apply(&x, &mut y);
        assert_close(&format!("{level:?}"), &y, &y_ref, &tol);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_configurations_match_reference(
        n in 1usize..90,
        d in 1usize..7,
        tile in 1usize..40,
        k in 1usize..=17,
        kind_ix in 0usize..4,
        level_ix in 0usize..3,
        single in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let level = SimdLevel::ALL[level_ix];
        prop_assume!(level.is_supported());
        let kind = KernelKind::ALL[kind_ix];
        if single {
            let op = make::<f32>(kind, n, d, tile, level, seed);
            check_products(&op, k, seed);
        } else {
            let op = make::<f64>(kind, n, d, tile, level, seed);
            check_products(&op, k, seed);
        }
    }
}
