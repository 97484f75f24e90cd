//! The VJPs of Lanczos and Arnoldi against central finite differences on dense operators.
//!
//! Tolerance: the functional ρ is smooth away from breakdown; with step h (relative to
//! O(1) data) the central difference has truncation error O(h²·ρ''') ≈ 1e-12 and rounding error
//! O(eps·|ρ|/h) ≈ 1e-10·cond, so relative agreement 1e-6 leaves a margin of ~100 for the
//! conditioning of the Krylov basis on these well-separated spectra. Richardson extrapolation
//! on a ladder of steps 1e-2…1e-7, taking the plateau (see `common::central`), keeps both
//! errors near 1e-10 even when plain Lanczos/Arnoldi has lost orthogonality and ρ is steep.

mod common;
use common::*;

use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointParams, ArnoldiCotangent, LanczosCotangent, ParamAccumulation,
};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_operators::dense::{DenseMatrix, SymmetricDense};
use gradmat_operators::testing::{matrix_with_spectrum, random_vector};
use gradmat_operators::{ParamVjp, SetParams};
use proptest::prelude::*;

const H: f64 = 1e-2;
const TOL: f64 = 1e-6;

fn spd(n: usize, seed: u64) -> SymmetricDense<f64> {
    // Spectrum spread in [1, 10], well separated: the Krylov basis is well conditioned.
    let lam: Vec<f64> = (0..n).map(|i| 1.0 + 9.0 * i as f64 / n as f64).collect();
    SymmetricDense::from_col_major(n, matrix_with_spectrum(&lam, seed)).unwrap()
}

fn lanczos_case(n: usize, k: usize, seed: u64, reorth: Reorthogonalize, acc: ParamAccumulation) {
    let a = spd(n, seed);
    let v = random_vector::<f64>(n, seed + 100);
    let params = LanczosParams {
        reorthogonalize: reorth,
        ..LanczosParams::new(k)
    };
    let dec = lanczos(&a, &v, &params).unwrap();
    assert_eq!(dec.depth(), k);
    let cot = LanczosCot::random(n, k, seed + 200);
    let mut grad = vec![0.0; a.num_params()];
    let vbar = lanczos_vjp(
        &a,
        &dec,
        &LanczosCotangent {
            basis: Some(&cot.q),
            diagonal: Some(&cot.a),
            off_diagonal: Some(&cot.b),
            residual: Some(&cot.r),
            inv_norm: cot.c,
        },
        &AdjointParams {
            accumulation: acc,
            ..AdjointParams::default()
        },
        &mut grad,
    )
    .unwrap();
    // d/dθ along a random direction.
    let theta = a.params_vec();
    let dt = random_vector::<f64>(theta.len(), seed + 300);
    let mut work = a.clone();
    let fd_theta = central(
        &mut |t| {
            work.set_params(t).unwrap();
            cot.rho(&lanczos(&work, &v, &params).unwrap())
        },
        &theta,
        &dt,
        H,
    );
    let an_theta = dotp(&grad, &dt);
    let e = rel_err(fd_theta, an_theta, 1e-3);
    assert!(
        e < TOL,
        "θ: fd {fd_theta} vs adjoint {an_theta} (rel {e:.2e})"
    );
    // d/dv
    let dv = random_vector::<f64>(n, seed + 400);
    let fd_v = central(
        &mut |vv| cot.rho(&lanczos(&a, vv, &params).unwrap()),
        &v,
        &dv,
        H,
    );
    let an_v = dotp(&vbar, &dv);
    let e = rel_err(fd_v, an_v, 1e-3);
    assert!(e < TOL, "v: fd {fd_v} vs adjoint {an_v} (rel {e:.2e})");
}

fn arnoldi_case(n: usize, k: usize, seed: u64, reorth: Reorthogonalize, acc: ParamAccumulation) {
    let mut data = random_vector::<f64>(n * n, seed);
    for i in 0..n {
        data[i + i * n] += 3.0;
    }
    let a = DenseMatrix::from_col_major(n, n, data).unwrap();
    let v = random_vector::<f64>(n, seed + 100);
    let params = ArnoldiParams {
        reorthogonalize: reorth,
        ..ArnoldiParams::new(k)
    };
    let dec = arnoldi(&a, &v, &params).unwrap();
    assert_eq!(dec.depth(), k);
    let cot = ArnoldiCot::random(n, k, seed + 200);
    let mut grad = vec![0.0; a.num_params()];
    let vbar = arnoldi_vjp(
        &a,
        &dec,
        &ArnoldiCotangent {
            basis: Some(&cot.q),
            hessenberg: Some(&cot.h),
            residual: Some(&cot.r),
            inv_norm: cot.c,
        },
        &AdjointParams {
            accumulation: acc,
            ..AdjointParams::default()
        },
        &mut grad,
    )
    .unwrap();
    let theta = a.params_vec();
    let dt = random_vector::<f64>(theta.len(), seed + 300);
    let mut work = a.clone();
    let fd_theta = central(
        &mut |t| {
            work.set_params(t).unwrap();
            cot.rho(&arnoldi(&work, &v, &params).unwrap())
        },
        &theta,
        &dt,
        H,
    );
    let an_theta = dotp(&grad, &dt);
    let e = rel_err(fd_theta, an_theta, 1e-3);
    assert!(
        e < TOL,
        "θ: fd {fd_theta} vs adjoint {an_theta} (rel {e:.2e})"
    );
    let dv = random_vector::<f64>(n, seed + 400);
    let fd_v = central(
        &mut |vv| cot.rho(&arnoldi(&a, vv, &params).unwrap()),
        &v,
        &dv,
        H,
    );
    let an_v = dotp(&vbar, &dv);
    let e = rel_err(fd_v, an_v, 1e-3);
    assert!(e < TOL, "v: fd {fd_v} vs adjoint {an_v} (rel {e:.2e})");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn lanczos_plain_matches_fd(n in 4usize..24, kf in 0.2f64..0.8, seed in 0u64..10_000) {
        let k = ((n as f64 * kf) as usize).clamp(1, n - 1);
        lanczos_case(n, k, seed, Reorthogonalize::None, ParamAccumulation::Fused);
    }

    #[test]
    fn lanczos_full_reorth_matches_fd(n in 4usize..24, kf in 0.2f64..0.8, seed in 0u64..10_000) {
        let k = ((n as f64 * kf) as usize).clamp(1, n - 1);
        lanczos_case(n, k, seed, Reorthogonalize::Full, ParamAccumulation::Online);
    }

    #[test]
    fn arnoldi_plain_matches_fd(n in 4usize..20, kf in 0.2f64..0.8, seed in 0u64..10_000) {
        let k = ((n as f64 * kf) as usize).clamp(1, n - 1);
        arnoldi_case(n, k, seed, Reorthogonalize::None, ParamAccumulation::Online);
    }

    #[test]
    fn arnoldi_full_reorth_matches_fd(n in 4usize..20, kf in 0.2f64..0.8, seed in 0u64..10_000) {
        let k = ((n as f64 * kf) as usize).clamp(1, n - 1);
        arnoldi_case(n, k, seed, Reorthogonalize::Full, ParamAccumulation::Fused);
    }
}

#[test]
fn depth_one() {
    lanczos_case(5, 1, 1, Reorthogonalize::None, ParamAccumulation::Fused);
    arnoldi_case(5, 1, 1, Reorthogonalize::Full, ParamAccumulation::Fused);
}
