//! MAP training of the classifier: Adam on mini-batches of the regularised mean cross-entropy
//! `(1/N) [Σ_n −log p(y_n | x_n, θ) + α₀‖θ‖²/2]` (the negative log joint of a Gaussian prior
//! `N(0, α₀⁻¹ I)`, divided by `N`).

use super::idx::Dataset;
use crate::nn::{Activation, Mlp, Targets};
use crate::optim::Adam;
use crate::pipeline::{ensure, PipelineError};
use gradmat_operators::ggn::OutputLoss;
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

/// A fresh `D → hidden[0] → … → C` tanh MLP (LeCun initialisation from `seed`).
///
/// # Errors
/// Zero sizes.
pub fn new_mlp(
    input: usize,
    hidden: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Mlp<f64>, gradmat_operators::OperatorError> {
    let mut sizes = vec![input];
    sizes.extend_from_slice(hidden);
    sizes.push(classes);
    Mlp::random(&sizes, Activation::Tanh, seed)
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
) -> Result<Vec<f64>, PipelineError> {
    let n = data.len();
    ensure(n > 0, || "the training set is empty".into())?;
    ensure(opts.batch_size > 0, || {
        "--batch-size must be at least 1".into()
    })?;
    let d = data.dim;
    let p = mlp.num_params();
    let mut adam = Adam::new(opts.learning_rate, p);
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
            let (loss, mut grad) = mlp.loss_and_grad(
                &xb,
                chunk.len(),
                Targets::Classes(&yb),
                OutputLoss::SoftmaxCrossEntropy,
            )?;
            total += loss;
            batches += 1;
            // Weight decay of the prior: ∇ [α₀‖θ‖²/(2N)] = (α₀/N) θ.
            grad.iter_mut().zip(&theta).for_each(|(g, t)| *g += wd * t);
            adam.step(&mut theta, &grad);
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
pub fn summed_nll(mlp: &Mlp<f64>, data: &Dataset) -> Result<f64, PipelineError> {
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
