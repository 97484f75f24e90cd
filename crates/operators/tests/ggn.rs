//! The Gauss–Newton operator on a linear model `f = X θ` defined here: against the explicit
//! `Xᵀ H X`, the conformance kit, block products, scaling and typed errors. The dense network
//! of the BNN pipeline is tested with the operator in `gradmat-apps` (`tests/nn.rs`).

use gradmat_operators::ggn::{softmax, GaussNewton, Model, OutputLoss};
use gradmat_operators::testing::{self, random_vector};
use gradmat_operators::{Operator, OperatorError};

/// `f_n = X_n θ` with `X_n` a `C×P` block per data point (row-major `N·C × P` overall).
#[derive(Debug, Clone)]
struct Linear {
    x: Vec<f64>,
    n: usize,
    c: usize,
    p: usize,
    f: Vec<f64>,
}

impl Linear {
    fn new(n: usize, c: usize, p: usize, seed: u64) -> Self {
        let x = random_vector::<f64>(n * c * p, seed);
        let theta = random_vector::<f64>(p, seed + 1);
        let mut m = Self {
            x,
            n,
            c,
            p,
            f: vec![0.0; n * c],
        };
        let mut f = vec![0.0; n * c];
        m.jvp(&theta, &mut f);
        m.f = f;
        m
    }
}

impl Model<f64> for Linear {
    fn num_params(&self) -> usize {
        self.p
    }
    fn output_dim(&self) -> usize {
        self.c
    }
    fn num_data(&self) -> usize {
        self.n
    }
    fn outputs(&self) -> &[f64] {
        &self.f
    }
    fn jvp(&self, v: &[f64], out: &mut [f64]) {
        for (o, row) in out.iter_mut().zip(self.x.chunks(self.p)) {
            *o = row.iter().zip(v).map(|(a, b)| a * b).sum();
        }
    }
    fn vjp(&self, w: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (wi, row) in w.iter().zip(self.x.chunks(self.p)) {
            out.iter_mut().zip(row).for_each(|(o, a)| *o += wi * a);
        }
    }
}

/// Explicit `Σ_n X_nᵀ H_n X_n` (row-major `P×P`), `H_n` built independently per sample.
fn explicit_ggn(m: &Linear, loss: OutputLoss) -> Vec<f64> {
    let (n, c, p) = (m.n, m.c, m.p);
    let mut g = vec![0.0; p * p];
    for s in 0..n {
        let mut h = vec![0.0; c * c];
        match loss {
            OutputLoss::SquaredError => (0..c).for_each(|a| h[a * c + a] = 1.0),
            OutputLoss::SoftmaxCrossEntropy => {
                let fs = &m.f[s * c..(s + 1) * c];
                let mx = fs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = fs.iter().map(|v| (v - mx).exp()).sum();
                let pr: Vec<f64> = fs.iter().map(|v| (v - mx).exp() / z).collect();
                for a in 0..c {
                    for b in 0..c {
                        h[a * c + b] = if a == b { pr[a] } else { 0.0 } - pr[a] * pr[b];
                    }
                }
            }
        }
        let xs = |a: usize, q: usize| m.x[(s * c + a) * p + q];
        for q1 in 0..p {
            for q2 in 0..p {
                let mut acc = 0.0;
                for a in 0..c {
                    for b in 0..c {
                        acc += xs(a, q1) * h[a * c + b] * xs(b, q2);
                    }
                }
                g[q1 * p + q2] += acc;
            }
        }
    }
    g
}

const LOSSES: [OutputLoss; 2] = [OutputLoss::SquaredError, OutputLoss::SoftmaxCrossEntropy];

#[test]
fn ggn_equals_explicit_xthx_and_passes_the_kit() {
    for (s, &loss) in LOSSES.iter().enumerate() {
        let model = Linear::new(7, 3, 5, 10 + s as u64);
        let g_ref = explicit_ggn(&model, loss);
        let op = GaussNewton::new(model.clone(), loss).unwrap();
        let p = op.nrows();
        let mut col = vec![0.0; p];
        let mut err = 0.0f64;
        let mut scale = 0.0f64;
        for q in 0..p {
            let mut e = vec![0.0; p];
            e[q] = 1.0;
            op.apply(&e, &mut col);
            for r in 0..p {
                err = err.max((col[r] - g_ref[r * p + q]).abs());
                scale = scale.max(g_ref[r * p + q].abs());
            }
        }
        // Short sums of products of O(1) numbers: 1e-13 relative to the largest entry.
        assert!(err <= 1e-13 * scale, "{loss:?}: {err:e} vs {scale:e}");
        testing::check_self_adjoint(&op, 1, 1e-13).unwrap();
        testing::check_adjoint(&op, 2, 1e-13).unwrap();
        // The block product makes one block JVP/VJP; the default block forms of the model loop
        // over columns, so it equals column-by-column products exactly.
        testing::check_block_consistency(&op, 3, 4, 0.0).unwrap();
        let op2 = GaussNewton::new(model, loss)
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
        let dot: f64 = v.iter().zip(&a).map(|(x, y)| x * y).sum();
        assert!(dot >= -1e-12 * dot.abs().max(1.0));
    }
}

#[test]
fn sample_loss_gradients_match_finite_differences() {
    // Central differences, h = 1e-6 on O(1) outputs: error ≈ 1e-10; tolerance 1e-8.
    let f = [0.3f64, -1.2, 0.7];
    let y = [1.0f64, 0.5, -0.2];
    let h = 1e-6;
    for (loss, class) in [
        (OutputLoss::SquaredError, 0),
        (OutputLoss::SoftmaxCrossEntropy, 2),
    ] {
        let mut g = [0.0f64; 3];
        let v0 = loss.sample_value_and_grad(&f, &y, class, &mut g);
        for i in 0..3 {
            let (mut fp, mut fm) = (f, f);
            fp[i] += h;
            fm[i] -= h;
            let mut t = [0.0; 3];
            let fd = (loss.sample_value_and_grad(&fp, &y, class, &mut t)
                - loss.sample_value_and_grad(&fm, &y, class, &mut t))
                / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-8, "{loss:?} {i}: {fd} vs {}", g[i]);
        }
        assert!(v0.is_finite());
    }
    let mut pr = [0.0f64; 3];
    softmax(&[1000.0, 1000.0, -1000.0], &mut pr);
    assert!((pr[0] - 0.5).abs() < 1e-15 && pr[2].abs() < 1e-300);
}

#[test]
fn typed_errors() {
    let mut model = Linear::new(2, 2, 3, 1);
    model.f[1] = f64::NAN;
    assert!(matches!(
        GaussNewton::new(model.clone(), OutputLoss::SquaredError),
        Err(OperatorError::NonFinite { index: 1, .. })
    ));
    model.f.pop();
    assert!(matches!(
        GaussNewton::new(model, OutputLoss::SquaredError),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    let op = GaussNewton::new(Linear::new(2, 2, 3, 1), OutputLoss::SquaredError).unwrap();
    assert!(op.with_scale(f64::NAN).is_err());
}
