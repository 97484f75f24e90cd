//! CG implicit differentiation against the dense closed form and finite differences, and a
//! minimal downstream operator (only the required trait methods) getting exact gradients.

mod common;
use common::*;

use gradmat_adjoint::{cg_vjp, lanczos_vjp, AdjointParams, LanczosCotangent};
use gradmat_krylov::cg::{solve, CgParams};
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_krylov::precond::IdentityPreconditioner;
use gradmat_operators::dense::SymmetricDense;
use gradmat_operators::testing::{matrix_with_spectrum, random_vector};
use gradmat_operators::{Operator, ParamVjp, SelfAdjoint, SetParams};

/// ρ(θ, b) = ⟨w, A(θ)⁻¹ b⟩ for two right-hand sides: gradient by CG-VJP vs central differences
/// of tightly converged solves (tolerance 1e-13 ⇒ FD noise ≈ 1e-13/1e-5 = 1e-8 relative).
#[test]
fn cg_vjp_matches_finite_differences() {
    let n = 30;
    let lam: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 / 3.0).collect();
    let a = SymmetricDense::from_col_major(n, matrix_with_spectrum(&lam, 1)).unwrap();
    let b = random_vector::<f64>(2 * n, 2);
    let w = random_vector::<f64>(2 * n, 3);
    let params = CgParams {
        rtol: Some(1e-14),
        atol: 0.0,
        ..CgParams::default()
    };
    let x = solve(&a, &b, 2, &params).unwrap();
    let mut grad = vec![0.0; a.num_params()];
    let (bbar, info) = cg_vjp(
        &a,
        &IdentityPreconditioner,
        x.solution(),
        &w,
        2,
        &params,
        &mut grad,
    )
    .unwrap();
    assert!(info.all_converged());
    let theta = a.params_vec();
    let dt = random_vector::<f64>(theta.len(), 4);
    let mut work = a.clone();
    let h = 1e-5;
    let fd = central(
        &mut |t| {
            work.set_params(t).unwrap();
            dotp(&w, solve(&work, &b, 2, &params).unwrap().solution())
        },
        &theta,
        &dt,
        h,
    );
    let an = dotp(&grad, &dt);
    assert!(rel_err(fd, an, 1e-6) < 1e-6, "θ: {fd} vs {an}");
    // b̄ = A⁻¹ w: ⟨b̄, db⟩ is exact for the linear map b ↦ ⟨w, A⁻¹b⟩.
    let db = random_vector::<f64>(2 * n, 5);
    let fdb = central(
        &mut |bb| dotp(&w, solve(&a, bb, 2, &params).unwrap().solution()),
        &b,
        &db,
        1.0,
    );
    assert!(rel_err(fdb, dotp(&bbar, &db), 1e-6) < 1e-10);
}

/// A user's operator with only the required methods: `M(θ) = diag(θ) + tridiag(−1, 0, −1)`.
struct Minimal {
    d: Vec<f64>,
}
impl Operator<f64> for Minimal {
    fn nrows(&self) -> usize {
        self.d.len()
    }
    fn ncols(&self) -> usize {
        self.d.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let n = x.len();
        for i in 0..n {
            y[i] = self.d[i] * x[i];
            if i > 0 {
                y[i] -= x[i - 1];
            }
            if i + 1 < n {
                y[i] -= x[i + 1];
            }
        }
    }
}
impl SelfAdjoint<f64> for Minimal {}
impl ParamVjp<f64> for Minimal {
    fn num_params(&self) -> usize {
        self.d.len()
    }
    fn vjp_params(&self, u: &[f64], x: &[f64], grad: &mut [f64]) {
        for i in 0..x.len() {
            grad[i] += u[i] * x[i];
        }
    }
}

#[test]
fn minimal_downstream_operator_gets_exact_gradients() {
    let n = 40;
    let d: Vec<f64> = (0..n).map(|i| 3.0 + (i as f64 * 0.37).sin()).collect();
    let v = random_vector::<f64>(n, 9);
    let k = 12;
    let cot = LanczosCot::random(n, k, 77);
    let rho = |dd: &[f64]| {
        cot.rho(&lanczos(&Minimal { d: dd.to_vec() }, &v, &LanczosParams::new(k)).unwrap())
    };
    let op = Minimal { d: d.clone() };
    let dec = lanczos(&op, &v, &LanczosParams::new(k)).unwrap();
    let mut grad = vec![0.0; n];
    lanczos_vjp(
        &op,
        &dec,
        &LanczosCotangent {
            basis: Some(&cot.q),
            diagonal: Some(&cot.a),
            off_diagonal: Some(&cot.b),
            residual: Some(&cot.r),
            inv_norm: cot.c,
        },
        &AdjointParams::default(),
        &mut grad,
    )
    .unwrap();
    let dd = random_vector::<f64>(n, 10);
    let fd = central(&mut |t| rho(t), &d, &dd, 1e-6);
    let an = dotp(&grad, &dd);
    assert!(rel_err(fd, an, 1e-3) < 1e-6, "{fd} vs {an}");
}

/// `ParamAccumulation::Auto` follows the operator's preference, and the lanczos adjoint gives
/// the same gradient (to rounding) in every mode.
#[test]
fn accumulation_modes_agree_and_auto_resolves() {
    use gradmat_adjoint::ParamAccumulation;
    use gradmat_operators::csr::SymCsrMatrix;
    let n = 50;
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        r.push(i);
        c.push(i);
        v.push(4.0 + (i as f64).cos());
        if i > 0 {
            r.push(i);
            c.push(i - 1);
            v.push(-1.0);
        }
    }
    let a = SymCsrMatrix::from_triplets(n, &r, &c, &v).unwrap();
    assert_eq!(
        ParamAccumulation::Auto.resolve(&a),
        ParamAccumulation::Fused
    );
    let diag = gradmat_operators::algebra::Diagonal::new(vec![2.0; n]).unwrap();
    assert_eq!(
        ParamAccumulation::Auto.resolve(&diag),
        ParamAccumulation::Online
    );
    let dense = SymmetricDense::from_col_major(n, a.to_dense().into_vec()).unwrap();
    assert_eq!(
        ParamAccumulation::Auto.resolve(&dense),
        ParamAccumulation::Fused
    );
    let x = random_vector::<f64>(n, 1);
    let k = 15;
    let cot = LanczosCot::random(n, k, 5);
    for reorth in [
        gradmat_krylov::arnoldi::Reorthogonalize::None,
        gradmat_krylov::arnoldi::Reorthogonalize::Full,
    ] {
        let dec = lanczos(
            &a,
            &x,
            &LanczosParams {
                reorthogonalize: reorth,
                ..LanczosParams::new(k)
            },
        )
        .unwrap();
        let grads: Vec<Vec<f64>> = [
            ParamAccumulation::Auto,
            ParamAccumulation::Online,
            ParamAccumulation::Fused,
        ]
        .iter()
        .map(|acc| {
            let mut g = vec![0.0; a.num_params()];
            lanczos_vjp(
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
                    accumulation: *acc,
                    ..AdjointParams::default()
                },
                &mut g,
            )
            .unwrap();
            g
        })
        .collect();
        let scale = grads[0].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for g in &grads[1..] {
            for (p, q) in g.iter().zip(&grads[0]) {
                assert!((p - q).abs() <= 1e-12 * scale, "{reorth:?}: {p} vs {q}");
            }
        }
    }
}

/// The two Lanczos adjoints agree where both are exact: on a well-conditioned problem whose
/// plain Lanczos basis is still orthonormal to ~1e-14, the three-term adjoint and the projected
/// Arnoldi adjoint of the fully reorthogonalised decomposition (which skips the terms of H and
/// Γ + Γᵀ below one rounding unit, here all but a band) give the same v̄ and θ̄. Cotangents on
/// T only (the stochastic-trace case) and on every output.
#[test]
fn three_term_and_projected_lanczos_adjoints_agree() {
    use gradmat_krylov::arnoldi::Reorthogonalize;
    use gradmat_operators::algebra::Shifted;
    use gradmat_operators::csr::SymCsrMatrix;
    let a = Shifted::new(SymCsrMatrix::<f64>::laplacian_2d(12).unwrap(), 0.5).unwrap();
    let n = a.nrows();
    let x = random_vector::<f64>(n, 11);
    let k = 10;
    let plain = lanczos(&a, &x, &LanczosParams::new(k)).unwrap();
    let full = lanczos(
        &a,
        &x,
        &LanczosParams {
            reorthogonalize: Reorthogonalize::Full,
            ..LanczosParams::new(k)
        },
    )
    .unwrap();
    let cot = LanczosCot::random(n, k, 7);
    let t_only = LanczosCotangent {
        diagonal: Some(&cot.a),
        off_diagonal: Some(&cot.b),
        ..Default::default()
    };
    let every = LanczosCotangent {
        basis: Some(&cot.q),
        diagonal: Some(&cot.a),
        off_diagonal: Some(&cot.b),
        residual: Some(&cot.r),
        inv_norm: cot.c,
    };
    for (label, c) in [("T only", t_only), ("every output", every)] {
        let run = |dec| {
            let mut g = vec![0.0; a.num_params()];
            let vb = lanczos_vjp(&a, dec, &c, &AdjointParams::default(), &mut g).unwrap();
            (vb, g)
        };
        let (v1, g1) = run(&plain);
        let (v2, g2) = run(&full);
        let rel = |x: &[f64], y: &[f64]| {
            let s = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            x.iter()
                .zip(y)
                .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
                / s
        };
        // Measured 2e-15 to 7e-15 (the bases agree to ~1e-15 at this depth). 1e-12 leaves
        // margin for other platforms; dropping the band term H[k,k+1]Λ_{k+1} gives O(1).
        assert!(rel(&v1, &v2) < 1e-12, "{label}: v̄ {:e}", rel(&v1, &v2));
        assert!(rel(&g1, &g2) < 1e-12, "{label}: θ̄ {:e}", rel(&g1, &g2));
    }
}

/// The restructured backward passes against the recursion as written, on a problem large
/// enough for every parallel path (N = 260², above the vector and basis-product thresholds) and
/// deep enough for several look-ahead blocks: plain Lanczos (`A·λ_k` from `A·ζ_{k+1}` and the
/// three-term relation, one pass per step) and fully reorthogonalised Lanczos (projection folded
/// into the update pass, look-ahead product of the `Λ` terms) with block parameter VJPs agree
/// with the per-step (`Online`) forms to rounding, and every form gives the same bits on 1 and 3
/// threads.
#[test]
fn restructured_lanczos_adjoints_match_the_recursion_and_do_not_depend_on_threads() {
    use gradmat_adjoint::ParamAccumulation;
    use gradmat_krylov::arnoldi::Reorthogonalize;
    use gradmat_operators::algebra::Shifted;
    use gradmat_operators::csr::SymCsrMatrix;
    let a = Shifted::new(SymCsrMatrix::<f64>::laplacian_2d(260).unwrap(), 0.3).unwrap();
    let n = a.nrows();
    let x = random_vector::<f64>(n, 21);
    let k = 30;
    let cot = LanczosCot::random(n, k, 9);
    let every = LanczosCotangent {
        basis: Some(&cot.q),
        diagonal: Some(&cot.a),
        off_diagonal: Some(&cot.b),
        residual: Some(&cot.r),
        inv_norm: cot.c,
    };
    let t_only = LanczosCotangent {
        diagonal: Some(&cot.a),
        off_diagonal: Some(&cot.b),
        ..Default::default()
    };
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for reorth in [Reorthogonalize::None, Reorthogonalize::Full] {
        let params = LanczosParams {
            reorthogonalize: reorth,
            ..LanczosParams::new(k)
        };
        let dec = lanczos(&a, &x, &params).unwrap();
        for (label, c) in [("every output", every), ("T only", t_only)] {
            let run = |acc: ParamAccumulation, threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut g = vec![0.0; a.num_params()];
                    let params = AdjointParams {
                        accumulation: acc,
                        ..AdjointParams::default()
                    };
                    let vb = lanczos_vjp(&a, &dec, &c, &params, &mut g).unwrap();
                    (vb, g)
                })
            };
            let (vf, gf) = run(ParamAccumulation::Fused, 3);
            let (vo, go) = run(ParamAccumulation::Online, 3);
            for (what, p, q) in [("v̄", &vf, &vo), ("θ̄", &gf, &go)] {
                let s = q.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let d = p
                    .iter()
                    .zip(q.iter())
                    .fold(0.0f64, |m, (u, w)| m.max((u - w).abs()));
                eprintln!(
                    "{reorth:?}, {label}: {what} relative difference {:.1e}",
                    d / s
                );
                assert!(
                    d <= 1e-12 * s,
                    "{reorth:?}, {label}: {what} restructured vs recursion {d:e} (max {s:e})"
                );
            }
            for acc in [ParamAccumulation::Fused, ParamAccumulation::Online] {
                let (v1, g1) = run(acc, 1);
                let (v3, g3) = run(acc, 3);
                assert_eq!(bits(&v1), bits(&v3), "{reorth:?}, {label}, {acc:?}: v̄");
                assert_eq!(bits(&g1), bits(&g3), "{reorth:?}, {label}, {acc:?}: θ̄");
            }
        }
    }
}
