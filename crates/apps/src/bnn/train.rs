//! MAP training of the classifier: Adam on mini-batches of the regularised mean cross-entropy
//! `(1/N) [Σ_n −log p(y_n | x_n, θ) + α₀‖θ‖²/2]` (the negative log joint of a Gaussian prior
//! `N(0, α₀⁻¹ I)`, divided by `N`).

use super::idx::Dataset;
use gradmat_operators::ggn::{Activation, Mlp, OutputLoss, Targets};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Options of [`train_map`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Passes over the data.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// Prior precision `α₀` of the MAP objective.
    pub prior_precision: f64,
    /// Seed of the initialisation and the shuffling.
    pub seed: u64,
}

/// A fresh `D → hidden → C` tanh MLP (LeCun initialisation from `seed`).
///
/// # Errors
/// Zero sizes.
pub fn new_mlp(
    input: usize,
    hidden: usize,
    classes: usize,
    seed: u64,
) -> Result<Mlp<f64>, gradmat_operators::OperatorError> {
    Mlp::random(&[input, hidden, classes], Activation::Tanh, seed)
}

/// Trains `mlp` in place and calls `progress(epoch, mean_loss)` after each epoch; returns the
/// mean mini-batch loss of each epoch.
///
/// # Errors
/// Errors of the model (non-finite values, labels out of range), or an empty data set.
pub fn train_map(
    mlp: &mut Mlp<f64>,
    data: &Dataset,
    opts: &TrainOptions,
    mut progress: impl FnMut(usize, f64),
) -> anyhow::Result<Vec<f64>> {
    let n = data.len();
    anyhow::ensure!(n > 0, "the training set is empty");
    anyhow::ensure!(opts.batch_size > 0, "--batch-size must be at least 1");
    let d = data.dim;
    let p = mlp.num_params();
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut m = vec![0.0; p];
    let mut v = vec![0.0; p];
    let mut t = 0i32;
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x5eed_0001);
    let mut order: Vec<usize> = (0..n).collect();
    let mut theta = mlp.params().to_vec();
    let wd = opts.prior_precision / n as f64;
    let mut history = Vec::with_capacity(opts.epochs);
    let mut xb = Vec::with_capacity(opts.batch_size * d);
    let mut yb = Vec::with_capacity(opts.batch_size);
    for epoch in 0..opts.epochs {
        order.shuffle(&mut rng);
        let (mut total, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(opts.batch_size) {
            xb.clear();
            yb.clear();
            for &i in chunk {
                xb.extend_from_slice(&data.images[i * d..(i + 1) * d]);
                yb.push(data.labels[i]);
            }
            let (loss, grad) = mlp.loss_and_grad(
                &xb,
                chunk.len(),
                Targets::Classes(&yb),
                OutputLoss::SoftmaxCrossEntropy,
            )?;
            total += loss;
            batches += 1;
            t += 1;
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            for i in 0..p {
                let g = grad[i] + wd * theta[i];
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                theta[i] -= opts.learning_rate * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            }
            mlp.set_params(&theta)?;
        }
        let mean = total / batches as f64;
        history.push(mean);
        progress(epoch + 1, mean);
    }
    Ok(history)
}

/// The summed cross-entropy `Σ_n −log p(y_n | x_n, θ)` over `data`, in chunks.
///
/// # Errors
/// Errors of the model.
pub fn summed_nll(mlp: &Mlp<f64>, data: &Dataset) -> anyhow::Result<f64> {
    let d = data.dim;
    let mut total = 0.0;
    for (xc, yc) in data.images.chunks(4096 * d).zip(data.labels.chunks(4096)) {
        let l = mlp.loss(
            xc,
            yc.len(),
            Targets::Classes(yc),
            OutputLoss::SoftmaxCrossEntropy,
        )?;
        total += l * yc.len() as f64;
    }
    Ok(total)
}
