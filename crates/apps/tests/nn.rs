//! The dense network (`gradmat_apps::nn`) and the Gauss–Newton operator built on it: JVP/VJP
//! against finite differences, the dot-product test, the explicit `Jᵀ H J` oracle, the
//! conformance kit, block forms against column-by-column products, determinism across thread
//! counts, and typed errors. (Moved here from `gradmat-operators` with the MLP.)

use gradmat_apps::nn::{Activation, Mlp, MlpBatch, Targets};
use gradmat_operators::ggn::{softmax, GaussNewton, Model, OutputLoss};
use gradmat_operators::testing::{self, random_vector};
use gradmat_operators::{Operator, OperatorError};

const SIZES: [usize; 4] = [3, 5, 4, 3];
const N: usize = 7;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b).max(1e-300)
}

fn net(act: Activation, seed: u64) -> (Mlp<f64>, Vec<f64>) {
    let mut mlp = Mlp::<f64>::random(&SIZES, act, seed).unwrap();
    // Non-zero biases so every parameter matters.
    let mut p = mlp.params().to_vec();
    let b = random_vector::<f64>(p.len(), seed + 100);
    p.iter_mut().zip(&b).for_each(|(v, e)| *v += 0.1 * e);
    mlp.set_params(&p).unwrap();
    let x = random_vector::<f64>(N * SIZES[0], seed + 1);
    (mlp, x)
}

fn outputs_at(mlp: &Mlp<f64>, theta: &[f64], x: &[f64]) -> Vec<f64> {
    let mut m = mlp.clone();
    m.set_params(theta).unwrap();
    m.predict(x, N).unwrap()
}

const ACTS: [Activation; 2] = [Activation::Tanh, Activation::Relu];
const LOSSES: [OutputLoss; 2] = [OutputLoss::SquaredError, OutputLoss::SoftmaxCrossEntropy];

#[test]
fn jvp_and_vjp_match_finite_differences() {
    // Central differences with h = 1e-5 on a smooth (tanh) or piecewise-linear (ReLU; random
    // data cross no kink within ±h with overwhelming probability) map: truncation O(h²) ≈ 1e-10,
    // rounding O(eps/h) ≈ 1e-11 relative; tolerance 1e-7.
    let h = 1e-5;
    for (s, &act) in ACTS.iter().enumerate() {
        let (mlp, x) = net(act, 3 + s as u64);
        let batch = mlp.forward(&x, N).unwrap();
        let theta = mlp.params().to_vec();
        let p = theta.len();
        let nc = N * mlp.output_dim();
        for r in 0..3 {
            let v = random_vector::<f64>(p, 50 + r);
            let tp: Vec<f64> = theta.iter().zip(&v).map(|(t, d)| t + h * d).collect();
            let tm: Vec<f64> = theta.iter().zip(&v).map(|(t, d)| t - h * d).collect();
            let fd: Vec<f64> = outputs_at(&mlp, &tp, &x)
                .iter()
                .zip(outputs_at(&mlp, &tm, &x))
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            let mut jv = vec![0.0; nc];
            batch.jvp(&v, &mut jv);
            let e = rel_err(&jv, &fd);
            assert!(e < 1e-7, "{act:?} jvp: {e:e}");
            // VJP against FD of ⟨w, f(θ)⟩ along v.
            let w = random_vector::<f64>(nc, 60 + r);
            let mut jtw = vec![0.0; p];
            batch.vjp(&w, &mut jtw);
            let fdw = dot(&w, &fd);
            let an = dot(&jtw, &v);
            assert!(
                (fdw - an).abs() < 1e-7 * norm(&w) * norm(&fd),
                "{act:?} vjp: {fdw} vs {an}"
            );
        }
    }
}

#[test]
fn dot_product_test() {
    // ⟨J v, w⟩ = ⟨v, Jᵀ w⟩ up to rounding of two sums of P·N·C products: 1e-13 relative.
    for (s, &act) in ACTS.iter().enumerate() {
        let (mlp, x) = net(act, 7 + s as u64);
        let batch = mlp.forward(&x, N).unwrap();
        let (p, nc) = (batch.num_params(), N * batch.output_dim());
        let v = random_vector::<f64>(p, 1);
        let w = random_vector::<f64>(nc, 2);
        let mut jv = vec![0.0; nc];
        let mut jtw = vec![0.0; p];
        batch.jvp(&v, &mut jv);
        batch.vjp(&w, &mut jtw);
        let (a, b) = (dot(&jv, &w), dot(&v, &jtw));
        assert!(
            (a - b).abs() <= 1e-13 * (norm(&jv) * norm(&w) + norm(&v) * norm(&jtw)),
            "{act:?}: {a} vs {b}"
        );
    }
}

/// Explicit `J` (row-major `NC×P`) from JVPs of unit vectors.
fn explicit_jacobian(batch: &MlpBatch<f64>) -> Vec<f64> {
    let (p, nc) = (batch.num_params(), batch.num_data() * batch.output_dim());
    let mut j = vec![0.0; nc * p];
    let mut col = vec![0.0; nc];
    for q in 0..p {
        let mut e = vec![0.0; p];
        e[q] = 1.0;
        batch.jvp(&e, &mut col);
        for r in 0..nc {
            j[r * p + q] = col[r];
        }
    }
    j
}

/// Explicit `Jᵀ H J` (row-major `P×P`), with `H` built independently per sample.
fn explicit_ggn(batch: &MlpBatch<f64>, loss: OutputLoss) -> Vec<f64> {
    let (p, n, c) = (batch.num_params(), batch.num_data(), batch.output_dim());
    let j = explicit_jacobian(batch);
    let f = batch.outputs();
    let mut g = vec![0.0; p * p];
    for s in 0..n {
        // H_s (c×c).
        let mut h = vec![0.0; c * c];
        match loss {
            OutputLoss::SquaredError => (0..c).for_each(|a| h[a * c + a] = 1.0),
            OutputLoss::SoftmaxCrossEntropy => {
                let fs = &f[s * c..(s + 1) * c];
                let m = fs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = fs.iter().map(|v| (v - m).exp()).sum();
                let pr: Vec<f64> = fs.iter().map(|v| (v - m).exp() / z).collect();
                for a in 0..c {
                    for b in 0..c {
                        h[a * c + b] = if a == b { pr[a] } else { 0.0 } - pr[a] * pr[b];
                    }
                }
            }
        }
        for q1 in 0..p {
            for q2 in 0..p {
                let mut acc = 0.0;
                for a in 0..c {
                    for b in 0..c {
                        acc += j[(s * c + a) * p + q1] * h[a * c + b] * j[(s * c + b) * p + q2];
                    }
                }
                g[q1 * p + q2] += acc;
            }
        }
    }
    g
}

#[test]
fn ggn_equals_explicit_jthj() {
    // Both sides are short sums of products of O(1) numbers: 1e-12 relative.
    for (s, &act) in ACTS.iter().enumerate() {
        for &loss in &LOSSES {
            let (mlp, x) = net(act, 20 + s as u64);
            let batch = mlp.forward(&x, N).unwrap();
            let g_ref = explicit_ggn(&batch, loss);
            let op = GaussNewton::new(batch, loss).unwrap();
            let p = op.nrows();
            // Full matrix, column by column.
            let mut col = vec![0.0; p];
            let mut g = vec![0.0; p * p];
            for q in 0..p {
                let mut e = vec![0.0; p];
                e[q] = 1.0;
                op.apply(&e, &mut col);
                for r in 0..p {
                    g[r * p + q] = col[r];
                }
            }
            let e = rel_err(&g, &g_ref);
            assert!(e < 1e-12, "{act:?} {loss:?}: {e:e}");
            // Scaled variant.
            let op2 = GaussNewton::new(op.model().clone(), loss)
                .unwrap()
                .with_scale(0.25)
                .unwrap();
            let v = random_vector::<f64>(p, 3);
            let (mut a, mut b) = (vec![0.0; p], vec![0.0; p]);
            op.apply(&v, &mut a);
            op2.apply(&v, &mut b);
            assert!(a
                .iter()
                .zip(&b)
                .all(|(x, y)| (0.25 * x - y).abs() <= 1e-15 * x.abs()));
        }
    }
}

#[test]
fn ggn_conformance_kit_and_psd() {
    for (s, &act) in ACTS.iter().enumerate() {
        for &loss in &LOSSES {
            let (mlp, x) = net(act, 30 + s as u64);
            let op = GaussNewton::new(mlp.forward(&x, N).unwrap(), loss).unwrap();
            // Symmetric by construction up to rounding of the JVP/VJP sums: 1e-13.
            testing::check_self_adjoint(&op, 1, 1e-13).unwrap();
            testing::check_adjoint(&op, 2, 1e-13).unwrap();
            // Block apply loops over apply: identical.
            testing::check_block_consistency(&op, 3, 3, 0.0).unwrap();
            let v = random_vector::<f64>(op.ncols(), 4);
            let mut gv = vec![0.0; op.nrows()];
            op.apply(&v, &mut gv);
            assert!(dot(&v, &gv) >= -1e-12 * norm(&v) * norm(&gv));
        }
    }
}

#[test]
fn f32_ggn_is_consistent() {
    // f32 smoke test: self-adjointness to 1e-5 (≈ 100·eps for these short sums).
    let mlp = Mlp::<f32>::random(&SIZES, Activation::Tanh, 5).unwrap();
    let x = random_vector::<f32>(N * SIZES[0], 6);
    let op =
        GaussNewton::new(mlp.forward(&x, N).unwrap(), OutputLoss::SoftmaxCrossEntropy).unwrap();
    testing::check_self_adjoint(&op, 1, 1e-5).unwrap();
}

#[test]
fn loss_gradient_matches_finite_differences() {
    // Central differences, h = 1e-6 relative to O(1) parameters: error ~1e-10; tolerance 1e-7.
    let h = 1e-6;
    for (s, &act) in ACTS.iter().enumerate() {
        let (mlp, x) = net(act, 40 + s as u64);
        let c = mlp.output_dim();
        let classes: Vec<usize> = (0..N).map(|i| (i * 7 + s) % c).collect();
        let values = random_vector::<f64>(N * c, 9);
        for (loss, targets) in [
            (OutputLoss::SquaredError, Targets::Values(&values)),
            (OutputLoss::SoftmaxCrossEntropy, Targets::Classes(&classes)),
        ] {
            let (val, grad) = mlp.loss_and_grad(&x, N, targets, loss).unwrap();
            let val2 = mlp.loss(&x, N, targets, loss).unwrap();
            assert_eq!(val.to_bits(), val2.to_bits());
            let theta = mlp.params().to_vec();
            for r in 0..3 {
                let d = random_vector::<f64>(theta.len(), 70 + r);
                let mut m = mlp.clone();
                let tp: Vec<f64> = theta.iter().zip(&d).map(|(t, e)| t + h * e).collect();
                m.set_params(&tp).unwrap();
                let lp = m.loss(&x, N, targets, loss).unwrap();
                let tm: Vec<f64> = theta.iter().zip(&d).map(|(t, e)| t - h * e).collect();
                m.set_params(&tm).unwrap();
                let lm = m.loss(&x, N, targets, loss).unwrap();
                let fd = (lp - lm) / (2.0 * h);
                let an = dot(&grad, &d);
                assert!(
                    (fd - an).abs() <= 1e-7 * (fd.abs() + norm(&grad) * norm(&d)),
                    "{act:?} {loss:?}: fd {fd} vs {an}"
                );
            }
        }
    }
}

#[test]
fn linear_model_ggn_is_the_loss_hessian() {
    // For a single linear layer the GGN of the summed loss is the exact Hessian; with
    // scale = 1/N it is the Hessian of the mean loss, checked against central differences of
    // the gradient (h = 1e-5: error ~1e-9 relative; tolerance 1e-6).
    let mlp = Mlp::<f64>::random(&[3, 4], Activation::Tanh, 2).unwrap();
    let x = random_vector::<f64>(N * 3, 3);
    let classes: Vec<usize> = (0..N).map(|i| i % 4).collect();
    let targets = Targets::Classes(&classes);
    let loss = OutputLoss::SoftmaxCrossEntropy;
    let op = GaussNewton::new(mlp.forward(&x, N).unwrap(), loss)
        .unwrap()
        .with_scale(1.0 / N as f64)
        .unwrap();
    let theta = mlp.params().to_vec();
    let v = random_vector::<f64>(theta.len(), 4);
    let mut gv = vec![0.0; theta.len()];
    op.apply(&v, &mut gv);
    let h = 1e-5;
    let mut m = mlp.clone();
    m.set_params(
        &theta
            .iter()
            .zip(&v)
            .map(|(t, e)| t + h * e)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let gp = m.loss_and_grad(&x, N, targets, loss).unwrap().1;
    m.set_params(
        &theta
            .iter()
            .zip(&v)
            .map(|(t, e)| t - h * e)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let gm = m.loss_and_grad(&x, N, targets, loss).unwrap().1;
    let fd: Vec<f64> = gp
        .iter()
        .zip(&gm)
        .map(|(a, b)| (a - b) / (2.0 * h))
        .collect();
    assert!(rel_err(&gv, &fd) < 1e-6, "{:e}", rel_err(&gv, &fd));
}

#[test]
fn predict_matches_manual_forward() {
    // 2 → 2 (ReLU) → 1 with hand-set weights; W row-major out×in, then b.
    let p: Vec<f64> = vec![
        1.0, -1.0, 0.5, 2.0, // W1
        0.1, -0.2, // b1
        3.0, -1.0, // W2
        0.5,  // b2
    ];
    let mlp = Mlp::new(&[2, 2, 1], Activation::Relu, p).unwrap();
    let out = mlp.predict(&[1.0, 2.0, -1.0, 0.0], 2).unwrap();
    // x = (1, 2): z1 = (1−2+0.1, 0.5+4−0.2) = (−0.9, 4.3) → (0, 4.3) → 3·0 − 4.3 + 0.5 = −3.8.
    // x = (−1, 0): z1 = (−1+0.1, −0.5−0.2) = (−0.9, −0.7) → (0, 0) → 0.5.
    assert!((out[0] + 3.8).abs() < 1e-14 && (out[1] - 0.5).abs() < 1e-14);
    let mut pr = [0.0f64; 3];
    softmax(&[1000.0, 1000.0, -1000.0], &mut pr);
    assert!((pr[0] - 0.5).abs() < 1e-15 && pr[2].abs() < 1e-300);
}

#[test]
fn typed_errors() {
    let e = |r: Result<Mlp<f64>, OperatorError>| r.unwrap_err();
    assert!(matches!(
        e(Mlp::new(&[3], Activation::Tanh, vec![])),
        OperatorError::InvalidArgument(_)
    ));
    assert!(matches!(
        e(Mlp::new(&[2, 0, 1], Activation::Tanh, vec![])),
        OperatorError::InvalidArgument(_)
    ));
    assert!(matches!(
        e(Mlp::new(&[2, 1], Activation::Tanh, vec![0.0; 2])),
        OperatorError::DimensionMismatch { .. }
    ));
    assert!(matches!(
        e(Mlp::new(
            &[2, 1],
            Activation::Tanh,
            vec![0.0, f64::NAN, 0.0]
        )),
        OperatorError::NonFinite { index: 1, .. }
    ));
    let mut mlp = Mlp::<f64>::random(&[2, 3, 2], Activation::Relu, 1).unwrap();
    let before = mlp.clone();
    assert!(mlp.set_params(&[0.0; 3]).is_err());
    assert_eq!(mlp, before);
    assert!(matches!(
        mlp.forward(&[0.0; 3], 2),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        mlp.forward(&[0.0, f64::INFINITY], 1),
        Err(OperatorError::NonFinite { .. })
    ));
    let x = [0.0, 1.0, 2.0, 3.0];
    assert!(mlp
        .loss(
            &x,
            2,
            Targets::Classes(&[0, 2]),
            OutputLoss::SoftmaxCrossEntropy
        )
        .is_err());
    assert!(mlp
        .loss(&x, 2, Targets::Classes(&[0, 1]), OutputLoss::SquaredError)
        .is_err());
    assert!(mlp
        .loss(&x, 2, Targets::Values(&[0.0; 3]), OutputLoss::SquaredError)
        .is_err());
    assert!(mlp
        .loss(&[], 0, Targets::Values(&[]), OutputLoss::SquaredError)
        .is_err());
    let op = GaussNewton::new(mlp.forward(&x, 2).unwrap(), OutputLoss::SquaredError).unwrap();
    assert!(op.with_scale(f64::NAN).is_err());
}

/// `f` for each point by plain loops over the layout of the type docs (the oracle of the GEMM
/// forward pass).
fn naive_forward(mlp: &Mlp<f64>, x: &[f64], n: usize) -> Vec<f64> {
    let sizes = mlp.layer_sizes();
    let theta = mlp.params();
    let mut out = Vec::new();
    for s in 0..n {
        let mut a = x[s * sizes[0]..(s + 1) * sizes[0]].to_vec();
        let mut off = 0;
        for l in 0..sizes.len() - 1 {
            let (fi, fo) = (sizes[l], sizes[l + 1]);
            let (w, b) = (
                &theta[off..off + fi * fo],
                &theta[off + fi * fo..off + fi * fo + fo],
            );
            let mut z: Vec<f64> = (0..fo)
                .map(|o| b[o] + (0..fi).map(|i| w[o * fi + i] * a[i]).sum::<f64>())
                .collect();
            if l + 2 < sizes.len() {
                z.iter_mut().for_each(|v| *v = mlp.activation().eval(*v));
            }
            a = z;
            off += fi * fo + fo;
        }
        out.extend(a);
    }
    out
}

/// A network and inputs large enough that every split of the batched kernels has several
/// blocks: `n` points (data blocks of `n/8`), hidden widths above 16 (several unit blocks).
fn wide(act: Activation, n: usize, seed: u64) -> (Mlp<f64>, Vec<f64>) {
    let mut mlp = Mlp::<f64>::random(&[3, 40, 24, 5], act, seed).unwrap();
    let mut p = mlp.params().to_vec();
    let b = random_vector::<f64>(p.len(), seed + 100);
    p.iter_mut().zip(&b).for_each(|(v, e)| *v += 0.1 * e);
    mlp.set_params(&p).unwrap();
    (mlp, random_vector::<f64>(n * 3, seed + 1))
}

#[test]
fn gemm_forward_matches_per_point_loops() {
    // Sums of ≤ 40 products of O(1) terms per layer: 1e-13 relative.
    for (s, &act) in ACTS.iter().enumerate() {
        for n in [1usize, 37, 300] {
            let (mlp, x) = wide(act, n, 80 + s as u64);
            let got = mlp.predict(&x, n).unwrap();
            let want = naive_forward(&mlp, &x, n);
            assert!(rel_err(&got, &want) < 1e-13, "{act:?} n = {n}");
        }
    }
}

#[test]
fn block_products_equal_column_by_column_products_exactly() {
    // The block forms run the same arithmetic per column: bit-identical results.
    for (s, &act) in ACTS.iter().enumerate() {
        for n in [5usize, 300, 4500] {
            let (mlp, x) = wide(act, n, 90 + s as u64);
            let batch = mlp.forward(&x, n).unwrap();
            let (p, nc, k) = (batch.num_params(), n * batch.output_dim(), 3);
            let v = random_vector::<f64>(p * k, 1);
            let w = random_vector::<f64>(nc * k, 2);
            let (mut jb, mut vb) = (vec![0.0; nc * k], vec![0.0; p * k]);
            batch.jvp_block(&v, k, &mut jb);
            batch.vjp_block(&w, k, &mut vb);
            for j in 0..k {
                let (mut jv, mut jtw) = (vec![0.0; nc], vec![0.0; p]);
                batch.jvp(&v[j * p..(j + 1) * p], &mut jv);
                batch.vjp(&w[j * nc..(j + 1) * nc], &mut jtw);
                let same =
                    |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same(&jv, &jb[j * nc..(j + 1) * nc]),
                    "{act:?} n = {n} jvp {j}"
                );
                assert!(
                    same(&jtw, &vb[j * p..(j + 1) * p]),
                    "{act:?} n = {n} vjp {j}"
                );
            }
            // The GGN's block product equals its column products exactly too.
            let op = GaussNewton::new(batch, OutputLoss::SoftmaxCrossEntropy).unwrap();
            testing::check_block_consistency(&op, 3, 5, 0.0).unwrap();
        }
    }
}

#[test]
fn large_batches_pass_the_dot_product_and_finite_difference_tests() {
    // n = 4500 takes the chunked weight-gradient path (partial sums over 2048-point chunks).
    // Dot-product test: two sums of ≈ P·N·C products, 1e-12 relative. Finite differences as in
    // `jvp_and_vjp_match_finite_differences` (tanh: smooth).
    let n = 4500;
    let (mlp, x) = wide(Activation::Tanh, n, 7);
    let batch = mlp.forward(&x, n).unwrap();
    let (p, nc) = (batch.num_params(), n * batch.output_dim());
    let v = random_vector::<f64>(p, 3);
    let w = random_vector::<f64>(nc, 4);
    let (mut jv, mut jtw) = (vec![0.0; nc], vec![0.0; p]);
    batch.jvp(&v, &mut jv);
    batch.vjp(&w, &mut jtw);
    let (a, b) = (dot(&jv, &w), dot(&v, &jtw));
    assert!(
        (a - b).abs() <= 1e-12 * (norm(&jv) * norm(&w) + norm(&v) * norm(&jtw)),
        "{a} vs {b}"
    );
    let h = 1e-5;
    let theta = mlp.params().to_vec();
    let at = |sgn: f64| {
        let mut m = mlp.clone();
        let t: Vec<f64> = theta.iter().zip(&v).map(|(t, d)| t + sgn * h * d).collect();
        m.set_params(&t).unwrap();
        m.predict(&x, n).unwrap()
    };
    let fd: Vec<f64> = at(1.0)
        .iter()
        .zip(at(-1.0))
        .map(|(a, b)| (a - b) / (2.0 * h))
        .collect();
    assert!(rel_err(&jv, &fd) < 1e-7, "{:e}", rel_err(&jv, &fd));
}

#[test]
fn products_are_bit_identical_for_any_thread_count() {
    // Every split depends on the sizes only: one and two threads give the same bits.
    let n = 4500;
    let (mlp, x) = wide(Activation::Relu, n, 11);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let batch = mlp.forward(&x, n).unwrap();
            let (p, nc) = (batch.num_params(), n * batch.output_dim());
            let (mut jv, mut jtw) = (vec![0.0; nc], vec![0.0; p]);
            batch.jvp(&random_vector::<f64>(p, 5), &mut jv);
            batch.vjp(&random_vector::<f64>(nc, 6), &mut jtw);
            (batch.outputs().to_vec(), jv, jtw)
        })
    };
    let (a, b) = (run(1), run(2));
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.0), bits(&b.0));
    assert_eq!(bits(&a.1), bits(&b.1));
    assert_eq!(bits(&a.2), bits(&b.2));
}
