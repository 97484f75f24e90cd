//! Posterior samples of the Laplace approximation, the predictive distribution and the
//! calibration metrics (accuracy, negative log predictive density, joint log-likelihood,
//! expected calibration error, out-of-distribution AUROC).
//!
//! * Lanczos: `θ_s = θ* + (G + diag α)^{-1/2} z_s`, `z_s ~ N(0, I)`, with the inverse square
//!   root applied by depth-`K` Lanczos ([`apply_lanczos`] with `f(x) = x^{-1/2}`).
//! * Diagonal: `θ_s = θ* + z_s / √(d + α)` with the estimated GGN diagonal `d`.
//! * Predictive (`S` samples): `p(y | x) ≈ (1/S) Σ_s softmax(f_s(x))_y` where `f_s` is the
//!   network linearised at `θ*` (`f(x, θ*) + J(x)(θ_s − θ*)`, the "GLM" predictive whose
//!   posterior the GGN Laplace approximation is; the default) or the network itself at `θ_s`.

use super::laplace::LaplacePrecision;
use crate::nn::Mlp;
use crate::pipeline::{ensure, PipelineError};
use gradmat_matfun::dense::MatrixFunction;
use gradmat_matfun::estimators::{probe_vector, Probe};
use gradmat_matfun::krylov::{apply_lanczos, KrylovParams};
use gradmat_operators::ggn::Model;
use gradmat_operators::Operator as _;
use std::ops::Range;

/// How a weight sample is turned into predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictive {
    /// The network linearised at the MAP estimate (one JVP per sample).
    Glm,
    /// The network at the sampled weights.
    Nn,
}

/// `S` posterior offsets `(G + diag α)^{-1/2} z_s` by depth-`depth` Lanczos, `z_s` Gaussian
/// probes `s = 0..samples` of seed `seed`.
///
/// # Errors
/// Errors of the Krylov approximation.
pub fn lanczos_offsets(
    op: &LaplacePrecision,
    samples: usize,
    depth: usize,
    seed: u64,
) -> Result<Vec<Vec<f64>>, gradmat_matfun::MatfunError> {
    let p = op.ncols();
    let params = KrylovParams::new(depth);
    (0..samples)
        .map(|s| {
            let z: Vec<f64> = probe_vector(Probe::Gaussian, seed, s, p);
            Ok(apply_lanczos(op, &z, &MatrixFunction::InvSqrt, &params)?.into_value())
        })
        .collect()
}

/// `S` posterior offsets `z_s / √(d + α_{g(i)})` of the diagonal approximation.
pub fn diagonal_offsets(
    d: &[f64],
    groups: &[Range<usize>],
    alpha: &[f64],
    samples: usize,
    seed: u64,
) -> Vec<Vec<f64>> {
    (0..samples)
        .map(|s| {
            let mut z: Vec<f64> = probe_vector(Probe::Gaussian, seed, s, d.len());
            for (g, a) in groups.iter().zip(alpha) {
                for i in g.clone() {
                    z[i] /= (d[i] + a).sqrt();
                }
            }
            z
        })
        .collect()
}

/// Predictions on a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Predictive probabilities, row-major `n×C`.
    pub probs: Vec<f64>,
    /// `log p(y_n | x_n)` of the predictive (empty without labels).
    pub log_pred: Vec<f64>,
    /// `Σ_n log p(y_n | x_n, θ_s)` per sample (empty without labels).
    pub sample_loglik: Vec<f64>,
    /// Classes `C`.
    pub classes: usize,
}

fn log_softmax(f: &[f64], out: &mut [f64]) {
    let m = f.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let lse = m + f.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    out.iter_mut().zip(f).for_each(|(o, v)| *o = v - lse);
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The predictive distribution of `mlp` with the posterior `offsets` (the MAP prediction when
/// `offsets` is empty) on `n` inputs `x`; `labels` (optional) for the log-likelihoods.
///
/// # Errors
/// Errors of the model (lengths, non-finite values).
pub fn predict(
    mlp: &Mlp<f64>,
    x: &[f64],
    n: usize,
    labels: Option<&[usize]>,
    offsets: &[Vec<f64>],
    predictive: Predictive,
) -> Result<Predictions, PipelineError> {
    let d = mlp.input_dim();
    let c = mlp.output_dim();
    let p = mlp.num_params();
    ensure(x.len() == n * d, || "inputs of the wrong length".into())?;
    if let Some(l) = labels {
        ensure(l.len() == n, || "labels of the wrong length".into())?;
    }
    let zero = vec![vec![0.0; p]];
    let offsets: &[Vec<f64>] = if offsets.is_empty() { &zero } else { offsets };
    let s_count = offsets.len();
    ensure(offsets.iter().all(|o| o.len() == p), || {
        "posterior offsets of the wrong length".into()
    })?;
    let nets: Vec<Mlp<f64>> = if predictive == Predictive::Nn {
        offsets
            .iter()
            .map(|o| {
                let theta: Vec<f64> = mlp.params().iter().zip(o).map(|(a, b)| a + b).collect();
                let mut m = mlp.clone();
                m.set_params(&theta)?;
                Ok(m)
            })
            .collect::<Result<_, PipelineError>>()?
    } else {
        Vec::new()
    };
    // The offsets as one column-major P×S block: the GLM predictive is one block JVP.
    let block: Vec<f64> = if predictive == Predictive::Glm {
        offsets.iter().flatten().copied().collect()
    } else {
        Vec::new()
    };
    const CHUNK: usize = 1000;
    let ranges: Vec<(usize, usize)> = (0..n.div_ceil(CHUNK))
        .map(|k| (k * CHUNK, ((k + 1) * CHUNK).min(n)))
        .collect();
    // Per chunk: probabilities, log predictive of the label, per-sample log-likelihood sums.
    type Part = (Vec<f64>, Vec<f64>, Vec<f64>);
    let parts: Vec<Result<Part, PipelineError>> = ranges
        .iter()
        .map(|&(a, b)| {
            let m = b - a;
            let xs = &x[a * d..b * d];
            // f[s] = outputs of sample s, row-major m×C, for all samples at once.
            let f: Vec<f64> = match predictive {
                Predictive::Glm => {
                    let batch = mlp.forward(xs, m)?;
                    let mut f = vec![0.0; m * c * s_count];
                    batch.jvp_block(&block, s_count, &mut f);
                    for fs in f.chunks_mut(m * c) {
                        fs.iter_mut()
                            .zip(batch.outputs())
                            .for_each(|(a, b)| *a += *b);
                    }
                    f
                }
                Predictive::Nn => {
                    let mut f = Vec::with_capacity(m * c * s_count);
                    for net in &nets {
                        f.extend(net.predict(xs, m)?);
                    }
                    f
                }
            };
            let mut probs = vec![0.0; m * c];
            let mut logp_samples = vec![0.0; m * s_count]; // [point][sample]
            let mut ll = vec![0.0; s_count];
            let mut lp = vec![0.0; c];
            for (s, fs) in f.chunks(m * c).enumerate() {
                for i in 0..m {
                    log_softmax(&fs[i * c..(i + 1) * c], &mut lp);
                    for k in 0..c {
                        probs[i * c + k] += lp[k].exp() / s_count as f64;
                    }
                    if let Some(l) = labels {
                        let v = lp[l[a + i]];
                        logp_samples[i * s_count + s] = v;
                        ll[s] += v;
                    }
                }
            }
            let log_pred = if labels.is_some() {
                (0..m)
                    .map(|i| {
                        logsumexp(&logp_samples[i * s_count..(i + 1) * s_count])
                            - (s_count as f64).ln()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Ok((probs, log_pred, ll))
        })
        .collect();
    let mut out = Predictions {
        probs: Vec::with_capacity(n * c),
        log_pred: Vec::new(),
        sample_loglik: if labels.is_some() {
            vec![0.0; s_count]
        } else {
            Vec::new()
        },
        classes: c,
    };
    for part in parts {
        let (p, lp, ll) = part?;
        out.probs.extend(p);
        out.log_pred.extend(lp);
        if labels.is_some() {
            out.sample_loglik
                .iter_mut()
                .zip(&ll)
                .for_each(|(a, b)| *a += b);
        }
    }
    Ok(out)
}

/// Metrics of a labelled prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Fraction of argmax predictions equal to the label.
    pub accuracy: f64,
    /// `−(1/n) Σ_n log p(y_n | x_n)` of the predictive.
    pub nlpd: f64,
    /// Joint log-likelihood per data point, `(1/n) log[(1/S) Σ_s Π_n p(y_n | x_n, θ_s)]`.
    pub joint_loglik: f64,
    /// Expected calibration error with 15 equal-width confidence bins.
    pub ece: f64,
}

/// Number of bins of [`expected_calibration_error`].
pub const ECE_BINS: usize = 15;

/// Maximum predictive probability of each row of row-major `n×c` probabilities.
pub fn confidences(probs: &[f64], c: usize) -> Vec<f64> {
    probs
        .chunks(c)
        .map(|r| r.iter().fold(0.0f64, |a, b| a.max(*b)))
        .collect()
}

fn argmax(r: &[f64]) -> usize {
    let mut best = 0;
    for (k, v) in r.iter().enumerate() {
        if *v > r[best] {
            best = k;
        }
    }
    best
}

/// Expected calibration error `Σ_b (n_b/n) |acc_b − conf_b|` over `bins` equal-width bins of the
/// confidence (a confidence of exactly 1 falls in the last bin).
pub fn expected_calibration_error(probs: &[f64], c: usize, labels: &[usize], bins: usize) -> f64 {
    let mut count = vec![0usize; bins];
    let mut conf = vec![0.0; bins];
    let mut acc = vec![0.0; bins];
    for (r, &y) in probs.chunks(c).zip(labels) {
        let k = argmax(r);
        let p = r[k];
        let b = ((p * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += p;
        acc[b] += f64::from(u8::from(k == y));
    }
    let n = labels.len() as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (acc[b] - conf[b]).abs() / n)
        .sum()
}

/// Area under the ROC curve of separating `positive` scores (higher) from `negative` ones:
/// `P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)` (the Mann–Whitney statistic with average ranks for ties).
/// NaN if either set is empty.
pub fn auroc(positive: &[f64], negative: &[f64]) -> f64 {
    if positive.is_empty() || negative.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = positive
        .iter()
        .map(|&s| (s, true))
        .chain(negative.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0.total_cmp(&all[i].0).is_eq() {
            j += 1;
        }
        // Ranks i+1..=j share the average rank.
        let avg = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg * all[i..j].iter().filter(|t| t.1).count() as f64;
        i = j;
    }
    let (np, nn) = (positive.len() as f64, negative.len() as f64);
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

/// Accuracy, NLPD, joint log-likelihood and ECE of labelled predictions.
pub fn metrics(pred: &Predictions, labels: &[usize]) -> Metrics {
    let c = pred.classes;
    let n = labels.len() as f64;
    let correct = pred
        .probs
        .chunks(c)
        .zip(labels)
        .filter(|(r, &y)| argmax(r) == y)
        .count();
    let s = pred.sample_loglik.len() as f64;
    Metrics {
        accuracy: correct as f64 / n,
        nlpd: -pred.log_pred.iter().sum::<f64>() / n,
        joint_loglik: (logsumexp(&pred.sample_loglik) - s.ln()) / n,
        ece: expected_calibration_error(&pred.probs, c, labels, ECE_BINS),
    }
}

/// Pixel-shuffled copies of `n` images of `dim` pixels: each image's pixels permuted by its own
/// seeded random permutation (the out-of-distribution set: same intensity histogram, no digit
/// structure).
pub fn pixel_shuffled(images: &[f64], dim: usize, seed: u64) -> Vec<f64> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x0dd_5eed);
    let mut out = images.to_vec();
    for img in out.chunks_mut(dim) {
        img.shuffle(&mut rng);
    }
    out
}
