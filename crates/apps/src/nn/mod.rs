//! The dense neural network shared by the PDE field model and the BNN classifier: a
//! multilayer perceptron ([`Mlp`]) whose forward pass, Jacobian–vector products (JVP),
//! vector–Jacobian products (VJP) and parameter gradients are matrix–matrix products over the
//! whole batch of data points.
//!
//! * [`Mlp`]: layer widths, activation, flat parameters (layout in the type docs), random
//!   (LeCun-normal) initialisation, prediction and the mean loss with its gradient.
//! * [`MlpBatch`]: the network evaluated on a batch, with its activations cached; it implements
//!   [`Model`](gradmat_operators::ggn::Model) (the interface of the Jacobian-free [`GaussNewton`](gradmat_operators::ggn::GaussNewton)
//!   operator) including the block forms that serve `k` vectors with one pass of GEMMs.
//!
//! **Arithmetic.** Activations are stored column-major `width × N` (one point per column), so a
//! layer is `Z = W A + b 1ᵀ`: one GEMM per layer (faer, `Par::Seq`) on fixed blocks of columns
//! run in parallel with rayon; the weight gradient `∇W = Δ Aᵀ` is split over fixed blocks of
//! output units instead, so that no reduction crosses threads. The block boundaries depend only
//! on the sizes, never on the thread count: results are bit-identical for any
//! `RAYON_NUM_THREADS`. Scratch buffers come from a pool owned by the batch, so repeated
//! products do not allocate.
//!
//! ```
//! use gradmat_apps::nn::{Activation, Mlp};
//! use gradmat_operators::ggn::{GaussNewton, Model, OutputLoss};
//! use gradmat_operators::Operator;
//!
//! // 2 → 3 (tanh) → 2, on 4 data points (row-major 4×2 inputs).
//! let mlp = Mlp::<f64>::random(&[2, 3, 2], Activation::Tanh, 7).unwrap();
//! let x = [0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8];
//! let batch = mlp.forward(&x, 4).unwrap();
//! assert_eq!(batch.outputs().len(), 4 * 2);
//! let g = GaussNewton::new(batch, OutputLoss::SoftmaxCrossEntropy).unwrap();
//! let v = vec![1.0; g.ncols()];
//! let mut gv = vec![0.0; g.nrows()];
//! g.apply(&v, &mut gv);
//! // G is positive semi-definite.
//! assert!(v.iter().zip(&gv).map(|(a, b)| a * b).sum::<f64>() >= -1e-12);
//! ```

mod batch;
mod kernels;

pub use batch::MlpBatch;

use gradmat_operators::ggn::OutputLoss;
use gradmat_operators::{require_finite, require_len, OperatorError, Scalar};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Hidden-layer activation of an [`Mlp`] (the last layer is always linear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `tanh(z)`.
    Tanh,
    /// `max(z, 0)` (derivative taken as 0 at `z = 0`).
    Relu,
}

impl Activation {
    /// `σ(z)`.
    #[inline]
    pub fn eval<T: Scalar>(self, z: T) -> T {
        match self {
            Activation::Tanh => T::from_f64(z.to_f64().tanh()),
            Activation::Relu => z.max(T::ZERO),
        }
    }

    /// `σ'(z)` from the activation `a = σ(z)` alone: `1 − a²` (tanh), `[a > 0]` (ReLU, which is
    /// `[z > 0]`). The batch therefore stores activations only, not pre-activations.
    #[inline]
    pub fn deriv_from_output<T: Scalar>(self, a: T) -> T {
        match self {
            Activation::Tanh => T::ONE - a * a,
            Activation::Relu => {
                if a > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
        }
    }
}

/// Targets of a loss: real values (row-major `N×C`) for [`OutputLoss::SquaredError`], class
/// labels in `0..C` (one per data point) for [`OutputLoss::SoftmaxCrossEntropy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Targets<'a, T> {
    /// Regression targets, row-major `N×C`.
    Values(&'a [T]),
    /// Class labels, `N` values in `0..C`.
    Classes(&'a [usize]),
}

/// A multilayer perceptron `f = W_L σ(… σ(W_1 x + b_1) …) + b_L` with dense layers, a hidden
/// activation and a linear last layer.
///
/// **Parameter layout:** layer by layer (input side first); for a layer with `in` inputs and
/// `out` outputs, first the weights `W` **row-major** `out×in` (`W[o, i]` at `o·in + i`), then the
/// bias `b` (`out` values). `P = Σ_l (in_l·out_l + out_l)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp<T: Scalar> {
    sizes: Vec<usize>,
    activation: Activation,
    params: Vec<T>,
    /// Offset of `W_l` in `params`; the bias follows at `offsets[l] + in·out`.
    offsets: Vec<usize>,
}

/// `P` for the layer widths, or an error on overflow.
fn count_params(sizes: &[usize]) -> Result<usize, OperatorError> {
    sizes
        .windows(2)
        .try_fold(0usize, |acc, w| {
            w[0].checked_mul(w[1])?.checked_add(w[1])?.checked_add(acc)
        })
        .ok_or_else(|| OperatorError::InvalidArgument("MLP too large".into()))
}

impl<T: Scalar> Mlp<T> {
    /// An MLP with layer widths `sizes = [D, h_1, …, C]` (at least two entries, all positive) and
    /// the given parameters (layout in the type docs). Errors on invalid sizes, a parameter length
    /// mismatch or non-finite parameters.
    pub fn new(
        sizes: &[usize],
        activation: Activation,
        params: Vec<T>,
    ) -> Result<Self, OperatorError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(OperatorError::InvalidArgument(format!(
                "MLP layer sizes must have at least two positive entries, got {sizes:?}"
            )));
        }
        let p = count_params(sizes)?;
        let mut offsets = Vec::with_capacity(sizes.len() - 1);
        let mut o = 0usize;
        for w in sizes.windows(2) {
            offsets.push(o);
            o += w[0] * w[1] + w[1];
        }
        require_len("MLP parameters", params.len(), p)?;
        require_finite("MLP parameters", &params)?;
        Ok(Self {
            sizes: sizes.to_vec(),
            activation,
            params,
            offsets,
        })
    }

    /// An MLP with weights drawn from `N(0, 1/in)` (LeCun initialisation) and zero biases, from
    /// a seed (weights drawn layer by layer in the parameter order).
    pub fn random(
        sizes: &[usize],
        activation: Activation,
        seed: u64,
    ) -> Result<Self, OperatorError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(OperatorError::InvalidArgument(format!(
                "MLP layer sizes must have at least two positive entries, got {sizes:?}"
            )));
        }
        let p = count_params(sizes)?;
        let mut m = Self::new(sizes, activation, vec![T::ZERO; p])?;
        let mut rng = StdRng::seed_from_u64(seed);
        for l in 0..m.num_layers() {
            let (fan_in, out) = (m.sizes[l], m.sizes[l + 1]);
            let sd = (1.0 / fan_in as f64).sqrt();
            let o = m.offsets[l];
            for w in &mut m.params[o..o + fan_in * out] {
                *w = T::from_f64(sd * rng.sample::<f64, _>(StandardNormal));
            }
        }
        Ok(m)
    }

    /// Number of dense layers `L`.
    pub fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Layer widths `[D, h_1, …, C]`.
    pub fn layer_sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The hidden activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Number of parameters `P`.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// Input dimension `D`.
    pub fn input_dim(&self) -> usize {
        self.sizes[0]
    }

    /// Output dimension `C`.
    pub fn output_dim(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }

    /// The flat parameters (layout in the type docs).
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The parameter range of layer `l` (weights then bias) in the flat layout.
    pub fn layer_range(&self, l: usize) -> std::ops::Range<usize> {
        let o = self.offsets[l];
        o..o + self.sizes[l] * self.sizes[l + 1] + self.sizes[l + 1]
    }

    /// Replaces the parameters. Errors on a length mismatch or non-finite values (unchanged then).
    pub fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("MLP parameters", theta.len(), self.params.len())?;
        require_finite("MLP parameters", theta)?;
        self.params.copy_from_slice(theta);
        Ok(())
    }

    /// Weights of layer `l` (row-major `out×in`) within a flat parameter-shaped slice.
    pub(crate) fn w_of<'a>(&self, flat: &'a [T], l: usize) -> &'a [T] {
        let o = self.offsets[l];
        &flat[o..o + self.sizes[l] * self.sizes[l + 1]]
    }

    /// Bias of layer `l` within a flat parameter-shaped slice.
    pub(crate) fn b_of<'a>(&self, flat: &'a [T], l: usize) -> &'a [T] {
        let o = self.offsets[l] + self.sizes[l] * self.sizes[l + 1];
        &flat[o..o + self.sizes[l + 1]]
    }

    fn check_inputs(&self, x: &[T], n: usize) -> Result<(), OperatorError> {
        let len = n
            .checked_mul(self.input_dim())
            .ok_or_else(|| OperatorError::InvalidArgument("too many MLP inputs".into()))?;
        require_len("MLP inputs", x.len(), len)?;
        require_finite("MLP inputs", x)
    }

    /// Runs the forward pass on `n` inputs (row-major `n×D`) and caches the activations, giving
    /// the [`Model`](gradmat_operators::ggn::Model) view used by
    /// [`GaussNewton`](gradmat_operators::ggn::GaussNewton). The returned batch owns a copy of the
    /// network and of the inputs. Errors on a length mismatch or non-finite inputs.
    pub fn forward(&self, x: &[T], n: usize) -> Result<MlpBatch<T>, OperatorError> {
        self.check_inputs(x, n)?;
        Ok(MlpBatch::new(self.clone(), x, n))
    }

    /// The outputs for `n` inputs (row-major `n×D` in, row-major `n×C` out).
    pub fn predict(&self, x: &[T], n: usize) -> Result<Vec<T>, OperatorError> {
        Ok(self.forward(x, n)?.into_outputs())
    }

    /// The **mean** loss `(1/N) Σ_n ℓ(f_n)` over `n ≥ 1` inputs and its gradient with respect
    /// to the parameters. Note that [`GaussNewton`](gradmat_operators::ggn::GaussNewton)
    /// (scale 1) is the Gauss–Newton matrix of the **summed** loss; use `with_scale(1/N)` for the
    /// mean.
    ///
    /// Errors on length mismatches, non-finite inputs or targets, targets of the wrong kind for
    /// the loss, class labels out of range, or `n = 0`.
    pub fn loss_and_grad(
        &self,
        x: &[T],
        n: usize,
        targets: Targets<'_, T>,
        loss: OutputLoss,
    ) -> Result<(T, Vec<T>), OperatorError> {
        let batch = self.forward(x, n)?;
        let (value, cot) = batch.loss_cotangent(targets, loss)?;
        let mut grad = vec![T::ZERO; self.num_params()];
        gradmat_operators::ggn::Model::vjp(&batch, &cot, &mut grad);
        Ok((value, grad))
    }

    /// The mean loss only (see [`loss_and_grad`](Self::loss_and_grad)).
    pub fn loss(
        &self,
        x: &[T],
        n: usize,
        targets: Targets<'_, T>,
        loss: OutputLoss,
    ) -> Result<T, OperatorError> {
        Ok(self.forward(x, n)?.loss_cotangent(targets, loss)?.0)
    }
}
