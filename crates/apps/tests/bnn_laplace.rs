//! The Laplace objective of the BNN pipeline on a tiny network, against dense references built
//! independently of the code under test: an explicit, hand-derived Jacobian (itself checked by
//! central differences of the forward pass), `G = Σ_n J_nᵀ H_n J_n` assembled with faer, its
//! Cholesky log-determinant and its eigendecomposition.

use faer::{Mat, Side};
use gradmat_apps::bnn::laplace::{
    diagonal_logdet, evaluate, param_groups, LaplacePrecision, LaplaceTerms, LogdetMethod,
    Reorthogonalize,
};
use gradmat_apps::nn::{Activation, Mlp};
use gradmat_matfun::dense::MatrixFunction;
use gradmat_matfun::estimators::{probe_vector, Probe};
use gradmat_matfun::krylov::{quadform_lanczos, KrylovParams};
use gradmat_operators::ggn::{GaussNewton, OutputLoss};
use gradmat_operators::{Operator, SetParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const D: usize = 3;
const H: usize = 4;
const C: usize = 3;
const N: usize = 6;

fn setup(seed: u64) -> (Mlp<f64>, Vec<f64>) {
    let mlp = Mlp::<f64>::random(&[D, H, C], Activation::Tanh, seed).unwrap();
    let mut rng = StdRng::seed_from_u64(seed + 100);
    // Non-zero biases so that every parameter matters.
    let mut theta = mlp.params().to_vec();
    theta
        .iter_mut()
        .for_each(|t| *t += 0.3 * rng.random_range(-1.0..1.0));
    let mut mlp = mlp;
    mlp.set_params(&theta).unwrap();
    let x: Vec<f64> = (0..N * D).map(|_| rng.random_range(-1.5..1.5)).collect();
    (mlp, x)
}

/// The Jacobian `∂f_c/∂θ` of sample `n` (C×P, row-major), derived by hand for
/// `f = W2 tanh(W1 x + b1) + b2` in the MLP's parameter layout (W row-major, then b).
fn explicit_jacobian(theta: &[f64], x: &[f64]) -> Vec<f64> {
    let p = theta.len();
    let (w1, b1) = (&theta[..H * D], &theta[H * D..H * D + H]);
    let o2 = H * D + H;
    let w2 = &theta[o2..o2 + C * H];
    let a: Vec<f64> = (0..H)
        .map(|j| (b1[j] + (0..D).map(|i| w1[j * D + i] * x[i]).sum::<f64>()).tanh())
        .collect();
    let mut jac = vec![0.0; C * p];
    for c in 0..C {
        let row = &mut jac[c * p..(c + 1) * p];
        for j in 0..H {
            let s = w2[c * H + j] * (1.0 - a[j] * a[j]);
            for i in 0..D {
                row[j * D + i] = s * x[i];
            }
            row[H * D + j] = s;
            row[o2 + c * H + j] = a[j];
        }
        row[o2 + C * H + c] = 1.0;
    }
    jac
}

fn softmax(f: &[f64]) -> Vec<f64> {
    let m = f.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let e: Vec<f64> = f.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// `scale · Σ_n J_nᵀ (diag p − p pᵀ) J_n + α I` as a dense faer matrix.
fn dense_precision(mlp: &Mlp<f64>, x: &[f64], scale: f64, alpha: &[f64]) -> Mat<f64> {
    let p = mlp.num_params();
    let theta = mlp.params();
    let f = mlp.predict(x, N).unwrap();
    let mut g = Mat::<f64>::zeros(p, p);
    for n in 0..N {
        let jac = explicit_jacobian(theta, &x[n * D..(n + 1) * D]);
        let pr = softmax(&f[n * C..(n + 1) * C]);
        let hess = Mat::from_fn(C, C, |a, b| {
            f64::from(u8::from(a == b)) * pr[a] - pr[a] * pr[b]
        });
        let j = Mat::from_fn(C, p, |c, k| jac[c * p + k]);
        g += j.transpose() * &hess * &j;
    }
    let groups = param_groups(mlp, alpha.len() > 1);
    Mat::from_fn(p, p, |i, j| {
        let mut v = scale * g[(i, j)];
        if i == j {
            let gi = groups.iter().position(|r| r.contains(&i)).unwrap();
            v += alpha[gi];
        }
        v
    })
}

fn matvec(a: &Mat<f64>, v: &[f64]) -> Vec<f64> {
    (0..a.nrows())
        .map(|i| (0..a.ncols()).map(|j| a[(i, j)] * v[j]).sum())
        .collect()
}

fn logdet_dense(a: &Mat<f64>) -> f64 {
    let l = a.llt(Side::Lower).expect("SPD");
    let l = l.L();
    (0..a.nrows()).map(|i| 2.0 * l[(i, i)].ln()).sum()
}

#[test]
fn explicit_jacobian_matches_finite_differences() {
    // Guards the reference itself. Central differences with h = 1e-5: truncation error
    // h²/6·|f'''| ≲ 1e-10 for these O(1) tanh networks, rounding eps·|f|/h ≲ 1e-10; 1e-8 leaves
    // a margin of 100 and still catches any wrong entry (entries are O(0.1–1)).
    let (mlp, x) = setup(1);
    let p = mlp.num_params();
    let theta = mlp.params().to_vec();
    let h = 1e-5;
    for n in 0..N {
        let xs = &x[n * D..(n + 1) * D];
        let jac = explicit_jacobian(&theta, xs);
        for k in 0..p {
            let mut tp = theta.clone();
            tp[k] += h;
            let mut tm = theta.clone();
            tm[k] -= h;
            let mut mp = mlp.clone();
            mp.set_params(&tp).unwrap();
            let mut mm = mlp.clone();
            mm.set_params(&tm).unwrap();
            let (fp, fm) = (mp.predict(xs, 1).unwrap(), mm.predict(xs, 1).unwrap());
            for c in 0..C {
                let fd = (fp[c] - fm[c]) / (2.0 * h);
                assert!(
                    (fd - jac[c * p + k]).abs() < 1e-8,
                    "n {n} c {c} k {k}: {fd} vs {}",
                    jac[c * p + k]
                );
            }
        }
    }
}

#[test]
fn ggn_products_equal_explicit_jt_h_j() {
    // G v through one JVP and one VJP (operators crate) and through the pipeline's chunked,
    // scaled operator, against the explicit dense matrix. Both are sums of O(N·C·P) products of
    // O(1) numbers: agreement to 1e-12·(‖A‖_max·‖v‖₁) is c·eps·n with c·n ≈ 4500.
    let (mlp, x) = setup(2);
    let p = mlp.num_params();
    let mut rng = StdRng::seed_from_u64(9);
    for (per_layer, alpha) in [(false, vec![0.7]), (true, vec![0.3, 2.0])] {
        let scale = 2.5;
        let dense = dense_precision(&mlp, &x, scale, &alpha);
        let dense_g = dense_precision(&mlp, &x, 1.0, &vec![0.0; alpha.len()]);
        let op = LaplacePrecision::new(
            &mlp,
            &x,
            N,
            4,
            scale,
            param_groups(&mlp, per_layer),
            alpha.clone(),
        )
        .unwrap();
        let ggn =
            GaussNewton::new(mlp.forward(&x, N).unwrap(), OutputLoss::SoftmaxCrossEntropy).unwrap();
        let amax = (0..p)
            .flat_map(|i| (0..p).map(move |j| (i, j)))
            .map(|(i, j)| dense[(i, j)].abs())
            .fold(0.0, f64::max);
        for _ in 0..5 {
            let v: Vec<f64> = (0..p).map(|_| rng.random_range(-1.0..1.0)).collect();
            let l1: f64 = v.iter().map(|a| a.abs()).sum();
            let tol = 1e-12 * amax * l1;
            let want = matvec(&dense, &v);
            let mut got = vec![0.0; p];
            op.apply(&v, &mut got);
            let want_g = matvec(&dense_g, &v);
            let mut got_g = vec![0.0; p];
            ggn.apply(&v, &mut got_g);
            for i in 0..p {
                assert!(
                    (got[i] - want[i]).abs() < tol,
                    "{i}: {} vs {}",
                    got[i],
                    want[i]
                );
                assert!(
                    (got_g[i] - want_g[i]).abs() < tol,
                    "{i}: {} vs {}",
                    got_g[i],
                    want_g[i]
                );
            }
        }
    }
}

#[test]
fn full_depth_lanczos_logdet_equals_dense_logdet() {
    // At depth K = P the Lanczos quadrature of eᵢᵀ log(A) eᵢ is exact, so Σᵢ over the unit
    // vectors is log det A. A = 3·G + 0.5·I has condition number ≈ 10² here; the quadrature
    // of a fully reorthogonalised Lanczos run is backward stable, so the error is
    // O(P·κ·eps) ≈ 1e-11 relative; we allow 1e-9.
    let (mlp, x) = setup(3);
    let p = mlp.num_params();
    let op =
        LaplacePrecision::new(&mlp, &x, N, 2, 3.0, param_groups(&mlp, false), vec![0.5]).unwrap();
    let dense = dense_precision(&mlp, &x, 3.0, &[0.5]);
    let want = logdet_dense(&dense);
    let mut sum = 0.0;
    for i in 0..p {
        let mut e = vec![0.0; p];
        e[i] = 1.0;
        sum += quadform_lanczos(&op, &e, &MatrixFunction::Log, &KrylovParams::new(p))
            .unwrap()
            .value();
    }
    assert!(
        (sum - want).abs() < 1e-9 * want.abs().max(1.0),
        "{sum} vs {want}"
    );

    // The pipeline's SLQ estimate at full depth equals the dense (1/L) Σ v_ℓᵀ log(A) v_ℓ with
    // the same probes (eigendecomposition of the explicit matrix).
    let e = dense.self_adjoint_eigen(Side::Lower).unwrap();
    let (s, u) = (e.S(), e.U());
    let quad = |v: &[f64]| -> f64 {
        (0..p)
            .map(|i| {
                let c: f64 = (0..p).map(|r| u[(r, i)] * v[r]).sum();
                c * c * s.column_vector()[i].ln()
            })
            .sum()
    };
    let (probes, seed) = (4, 11);
    let dense_est: f64 = (0..probes)
        .map(|l| quad(&probe_vector::<f64>(Probe::Rademacher, seed, l, p)))
        .sum::<f64>()
        / probes as f64;
    let terms = LaplaceTerms::new(mlp.params(), op.groups(), 1.0);
    let ev = evaluate(
        &op,
        &terms,
        &LogdetMethod::Lanczos {
            probes,
            depth: p,
            reorthogonalize: Reorthogonalize::Full,
        },
        seed,
    )
    .unwrap();
    assert!(
        (ev.logdet - dense_est).abs() < 1e-9 * dense_est.abs().max(1.0),
        "{} vs {dense_est}",
        ev.logdet
    );
    // And its gradient in α is the dense (1/L) Σ v_ℓᵀ A⁻¹ v_ℓ (∂ log A/∂α = A⁻¹ for A + αI),
    // recovered from the objective's gradient: ∂obj/∂α = −‖θ‖²/2 + P/(2α) − ½ ∂logdet/∂α.
    let quad_inv = |v: &[f64]| -> f64 {
        (0..p)
            .map(|i| {
                let c: f64 = (0..p).map(|r| u[(r, i)] * v[r]).sum();
                c * c / s.column_vector()[i]
            })
            .sum()
    };
    let dense_grad: f64 = (0..probes)
        .map(|l| quad_inv(&probe_vector::<f64>(Probe::Rademacher, seed, l, p)))
        .sum::<f64>()
        / probes as f64;
    let dlogdet = -2.0 * (ev.grad[0] + 0.5 * terms.sq_norms[0] - 0.5 * p as f64 / 0.5);
    assert!(
        (dlogdet - dense_grad).abs() < 1e-8 * dense_grad.abs(),
        "{dlogdet} vs {dense_grad}"
    );
}

/// Central difference of the objective in α_g with the same probes.
fn fd_objective(
    op: &mut LaplacePrecision,
    terms: &LaplaceTerms,
    method: &LogdetMethod,
    seed: u64,
    g: usize,
    h: f64,
) -> f64 {
    let base = op.alpha().to_vec();
    let mut eval_at = |d: f64| {
        let mut a = base.clone();
        a[g] += d;
        op.set_params(&a).unwrap();
        evaluate(op, terms, method, seed).unwrap().value
    };
    let (fp, fm) = (eval_at(h), eval_at(-h));
    op.set_params(&base).unwrap();
    (fp - fm) / (2.0 * h)
}

#[test]
fn objective_gradient_matches_finite_differences_with_same_probes() {
    // The SLQ objective at a depth below P (K = 12 < P = 31, so the quadrature is not exact) is
    // a smooth function of α for fixed probes; its gradient through the Lanczos adjoint must
    // match central differences. Step h = 1e-4·α: the third derivative of the objective in α is
    // O(P/α³) ≈ 31/0.3³ ≈ 1e3, so truncation ≈ h²/6·1e3 ≈ 2e-6·α² ≤ 1e-6; rounding ≈
    // eps·|obj|/h ≈ 1e-16·1e2/3e-5 ≈ 3e-10. Tolerance 1e-5 relative to max(|grad|, 1).
    let (mlp, x) = setup(4);
    for (per_layer, alpha) in [(false, vec![0.8]), (true, vec![0.3, 1.7])] {
        let groups = param_groups(&mlp, per_layer);
        let mut op =
            LaplacePrecision::new(&mlp, &x, N, 3, 5.0, groups.clone(), alpha.clone()).unwrap();
        let terms = LaplaceTerms::new(mlp.params(), &groups, 2.0);
        for method in [
            LogdetMethod::Lanczos {
                probes: 3,
                depth: 12,
                reorthogonalize: Reorthogonalize::Full,
            },
            // Plain Lanczos: the adjoint differentiates the three-term recurrence as computed.
            LogdetMethod::Lanczos {
                probes: 3,
                depth: 12,
                reorthogonalize: Reorthogonalize::None,
            },
            LogdetMethod::Diagonal { probes: 20 },
        ] {
            let seed = 5;
            let ev = evaluate(&op, &terms, &method, seed).unwrap();
            assert_eq!(ev.grad.len(), alpha.len());
            for g in 0..alpha.len() {
                let h = 1e-4 * alpha[g];
                let fd = fd_objective(&mut op, &terms, &method, seed, g, h);
                let tol = 1e-5 * ev.grad[g].abs().max(1.0);
                assert!(
                    (fd - ev.grad[g]).abs() < tol,
                    "{method:?} group {g}: adjoint {} vs FD {fd}",
                    ev.grad[g]
                );
            }
        }
    }
}

#[test]
fn diagonal_logdet_is_closed_form() {
    // log det(diag(d) + α) and its α-gradient, by hand for two groups.
    let d = [1.0, 2.0, 0.0, 4.0];
    let groups = vec![0..1, 1..4];
    let (ld, g) = diagonal_logdet(&d, &groups, &[1.0, 2.0]);
    let want = 2f64.ln() + 4f64.ln() + 2f64.ln() + 6f64.ln();
    assert!((ld - want).abs() < 1e-14);
    assert!((g[0] - 0.5).abs() < 1e-15);
    assert!((g[1] - (0.25 + 0.5 + 1.0 / 6.0)).abs() < 1e-15);
}

#[test]
fn invalid_precisions_are_rejected() {
    let (mlp, x) = setup(5);
    let groups = param_groups(&mlp, false);
    assert!(LaplacePrecision::new(&mlp, &x, N, 2, 1.0, groups.clone(), vec![0.0]).is_err());
    assert!(LaplacePrecision::new(&mlp, &x, N, 2, 1.0, groups.clone(), vec![1.0, 2.0]).is_err());
    assert!(LaplacePrecision::new(&mlp, &x[1..], N, 2, 1.0, groups.clone(), vec![1.0]).is_err());
    let mut op = LaplacePrecision::new(&mlp, &x, N, 2, 1.0, groups, vec![1.0]).unwrap();
    assert!(op.set_params(&[f64::NAN]).is_err());
    assert_eq!(op.params_vec(), vec![1.0]);
}
