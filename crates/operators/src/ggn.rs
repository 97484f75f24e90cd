//! Generalised Gauss–Newton matrices `G = Σ_n J_nᵀ H_n J_n` of a model, applied without ever
//! forming the Jacobian, and a multilayer perceptron ([`Mlp`]) with hand-written forward,
//! forward-mode (JVP) and reverse-mode (VJP) passes.
//!
//! * [`Model`]: a differentiable map from `P` parameters to `N×C` outputs (one row of `C` outputs
//!   per data point) at fixed parameters and data, given through `jvp` and `vjp`.
//! * [`OutputLoss`]: the per-sample loss `ℓ(f_n)` on the outputs and its Hessian `H_n`:
//!   squared error `ℓ = ½‖f − y‖²`, `H = I`; softmax cross-entropy `ℓ = −log softmax(f)_y`,
//!   `H = diag(p) − p pᵀ` with `p = softmax(f)`.
//! * [`GaussNewton`]: the `P×P` operator `G v = scale · Jᵀ H J v` (one JVP, a per-sample Hessian
//!   product and one VJP per application).
//!
//! Output arrays are row-major `N×C` (the `C` outputs of sample `n` are contiguous at
//! `[n·C, (n+1)·C)`); input arrays are row-major `N×D`.
//!
//! ```
//! use gradmat_operators::ggn::{Activation, GaussNewton, Mlp, OutputLoss};
//! use gradmat_operators::Operator;
//!
//! // 2 → 3 (tanh) → 2, on 4 data points.
//! let mlp = Mlp::<f64>::random(&[2, 3, 2], Activation::Tanh, 7).unwrap();
//! let x = [0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8];
//! let g = GaussNewton::new(mlp.forward(&x, 4).unwrap(), OutputLoss::SoftmaxCrossEntropy).unwrap();
//! assert_eq!(g.nrows(), mlp.num_params());
//! let v = vec![1.0; g.ncols()];
//! let mut gv = vec![0.0; g.nrows()];
//! g.apply(&v, &mut gv);
//! // G is positive semi-definite.
//! assert!(v.iter().zip(&gv).map(|(a, b)| a * b).sum::<f64>() >= -1e-12);
//! ```

use crate::error::{require_finite, require_len};
use crate::traits::check_len;
use crate::{AdjointOperator, Operator, OperatorError, Scalar, SelfAdjoint};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A differentiable model `θ ↦ f(θ) ∈ R^{N×C}` evaluated at fixed parameters and data.
///
/// Both products overwrite their output and may panic (with the lengths in the message) when the
/// slice lengths do not match.
pub trait Model<T: Scalar>: Send + Sync {
    /// Number of parameters `P`.
    fn num_params(&self) -> usize;
    /// Output dimension `C` per data point.
    fn output_dim(&self) -> usize;
    /// Number of data points `N`.
    fn num_data(&self) -> usize;
    /// The outputs `f` at the current parameters, row-major `N×C`.
    fn outputs(&self) -> &[T];
    /// Forward mode: `out = J v` (`v.len() == P`, `out.len() == N·C`, row-major).
    fn jvp(&self, v: &[T], out: &mut [T]);
    /// Reverse mode: `out = Jᵀ w` (`w.len() == N·C` row-major, `out.len() == P`).
    fn vjp(&self, w: &[T], out: &mut [T]);
}

/// A loss on the model outputs of one sample, with its output-space Hessian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputLoss {
    /// `ℓ(f) = ½‖f − y‖²`; gradient `f − y`; Hessian `I`.
    SquaredError,
    /// `ℓ(f) = −log softmax(f)_y = logsumexp(f) − f_y`; gradient `p − e_y`; Hessian
    /// `diag(p) − p pᵀ`, `p = softmax(f)`.
    SoftmaxCrossEntropy,
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

/// Numerically stable softmax of one row: `p = exp(f − max f) / Σ exp(f − max f)`.
///
/// # Panics
/// If `p.len() != f.len()`.
#[track_caller]
pub fn softmax<T: Scalar>(f: &[T], p: &mut [T]) {
    check_len("softmax", p.len(), f.len());
    let m = f
        .iter()
        .fold(T::from_f64(f64::NEG_INFINITY), |a, b| a.max(*b));
    let mut sum = T::ZERO;
    for (pi, fi) in p.iter_mut().zip(f) {
        *pi = (*fi - m).exp();
        sum += *pi;
    }
    p.iter_mut().for_each(|v| *v /= sum);
}

impl OutputLoss {
    /// The loss of one sample (`f` of length `C`) and its gradient with respect to `f` written to
    /// `grad`. `values` is the sample's row of targets (squared error); `class` its label
    /// (cross-entropy).
    fn sample<T2: Scalar>(self, f: &[T2], values: &[T2], class: usize, grad: &mut [T2]) -> T2 {
        match self {
            OutputLoss::SquaredError => {
                let mut l = T2::ZERO;
                for ((g, fi), yi) in grad.iter_mut().zip(f).zip(values) {
                    *g = *fi - *yi;
                    l += *g * *g;
                }
                T2::from_f64(0.5) * l
            }
            OutputLoss::SoftmaxCrossEntropy => {
                let m = f
                    .iter()
                    .fold(T2::from_f64(f64::NEG_INFINITY), |a, b| a.max(*b));
                let mut sum = T2::ZERO;
                for (g, fi) in grad.iter_mut().zip(f) {
                    *g = (*fi - m).exp();
                    sum += *g;
                }
                grad.iter_mut().for_each(|v| *v /= sum);
                grad[class] -= T2::ONE;
                m + sum.ln() - f[class]
            }
        }
    }
}

/// Hidden-layer activation of an [`Mlp`] (the last layer is always linear).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `tanh(z)`.
    Tanh,
    /// `max(z, 0)` (derivative taken as 0 at `z = 0`).
    Relu,
}

impl Activation {
    #[inline]
    fn eval<T: Scalar>(self, z: T) -> T {
        match self {
            Activation::Tanh => T::from_f64(z.to_f64().tanh()),
            Activation::Relu => z.max(T::ZERO),
        }
    }
    /// Derivative from the pre-activation `z` and the activation `a = σ(z)`.
    #[inline]
    fn deriv<T: Scalar>(self, z: T, a: T) -> T {
        match self {
            Activation::Tanh => T::ONE - a * a,
            Activation::Relu => {
                if z > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
        }
    }
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
        let mut offsets = Vec::with_capacity(sizes.len() - 1);
        let mut p = 0usize;
        for w in sizes.windows(2) {
            offsets.push(p);
            p = w[0]
                .checked_mul(w[1])
                .and_then(|v| v.checked_add(w[1]))
                .and_then(|v| v.checked_add(p))
                .ok_or_else(|| OperatorError::InvalidArgument("MLP too large".into()))?;
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
    /// a seed.
    pub fn random(
        sizes: &[usize],
        activation: Activation,
        seed: u64,
    ) -> Result<Self, OperatorError> {
        let p = sizes
            .windows(2)
            .try_fold(0usize, |acc, w| {
                w[0].checked_mul(w[1])?.checked_add(w[1])?.checked_add(acc)
            })
            .ok_or_else(|| OperatorError::InvalidArgument("MLP too large".into()))?;
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

    /// Replaces the parameters. Errors on a length mismatch or non-finite values (unchanged then).
    pub fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("MLP parameters", theta.len(), self.params.len())?;
        require_finite("MLP parameters", theta)?;
        self.params.copy_from_slice(theta);
        Ok(())
    }

    /// Weights of layer `l` (row-major `out×in`) within a flat parameter-shaped slice.
    fn w_of<'a>(&self, flat: &'a [T], l: usize) -> &'a [T] {
        let o = self.offsets[l];
        &flat[o..o + self.sizes[l] * self.sizes[l + 1]]
    }

    /// Bias of layer `l` within a flat parameter-shaped slice.
    fn b_of<'a>(&self, flat: &'a [T], l: usize) -> &'a [T] {
        let o = self.offsets[l] + self.sizes[l] * self.sizes[l + 1];
        &flat[o..o + self.sizes[l + 1]]
    }

    fn check_inputs(&self, x: &[T], n: usize) -> Result<(), OperatorError> {
        require_len("MLP inputs", x.len(), n * self.input_dim())?;
        require_finite("MLP inputs", x)
    }

    /// Runs the forward pass on `n` inputs (row-major `n×D`) and caches the activations, giving
    /// the [`Model`] view used by [`GaussNewton`]. The returned batch owns a copy of the network
    /// and of the inputs. Errors on a length mismatch or non-finite inputs.
    pub fn forward(&self, x: &[T], n: usize) -> Result<MlpBatch<T>, OperatorError> {
        self.check_inputs(x, n)?;
        let nl = self.num_layers();
        let mut acts = Vec::with_capacity(nl);
        let mut pre = Vec::with_capacity(nl);
        acts.push(x.to_vec());
        for l in 0..nl {
            let (fan_in, out) = (self.sizes[l], self.sizes[l + 1]);
            let mut z = vec![T::ZERO; out * n];
            let a = &acts[l];
            // Z (out×N, column-major) = W (out×in) A (in×N) + b 1ᵀ.
            matmul(
                MatMut::from_column_major_slice_mut(&mut z, out, n),
                Accum::Replace,
                MatRef::from_column_major_slice(self.w_of(&self.params, l), fan_in, out)
                    .transpose(),
                MatRef::from_column_major_slice(a, fan_in, n),
                T::ONE,
                Par::Seq,
            );
            let b = self.b_of(&self.params, l);
            for col in z.chunks_mut(out) {
                col.iter_mut().zip(b).for_each(|(v, bi)| *v += *bi);
            }
            if l + 1 < nl {
                acts.push(z.iter().map(|v| self.activation.eval(*v)).collect());
            }
            pre.push(z);
        }
        Ok(MlpBatch {
            mlp: self.clone(),
            n,
            acts,
            pre,
        })
    }

    /// The outputs for `n` inputs (row-major `n×D` in, row-major `n×C` out).
    pub fn predict(&self, x: &[T], n: usize) -> Result<Vec<T>, OperatorError> {
        let mut b = self.forward(x, n)?;
        Ok(b.pre.pop().unwrap_or_default())
    }

    /// The **mean** loss `(1/N) Σ_n ℓ(f_n)` over `n ≥ 1` inputs and its gradient with respect
    /// to the parameters. Note that [`GaussNewton`] (scale 1) is the Gauss–Newton matrix of the
    /// **summed** loss; use [`GaussNewton::with_scale`]`(1/N)` for the mean.
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
        batch.vjp(&cot, &mut grad);
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

/// An [`Mlp`] evaluated on a batch of data, with cached pre-activations and activations; the
/// [`Model`] that [`GaussNewton`] differentiates.
#[derive(Debug, Clone)]
pub struct MlpBatch<T: Scalar> {
    mlp: Mlp<T>,
    n: usize,
    /// `acts[l]` is the input of layer `l` (column-major `in_l×N`); `acts[0]` are the inputs.
    acts: Vec<Vec<T>>,
    /// `pre[l]` is the pre-activation output of layer `l` (column-major `out_l×N`).
    pre: Vec<Vec<T>>,
}

impl<T: Scalar> MlpBatch<T> {
    /// The network.
    pub fn mlp(&self) -> &Mlp<T> {
        &self.mlp
    }

    /// Mean loss and its gradient with respect to the outputs (row-major `N×C`).
    fn loss_cotangent(
        &self,
        targets: Targets<'_, T>,
        loss: OutputLoss,
    ) -> Result<(T, Vec<T>), OperatorError> {
        let (n, c) = (self.n, self.mlp.output_dim());
        if n == 0 {
            return Err(OperatorError::InvalidArgument(
                "loss of an empty batch".into(),
            ));
        }
        let f = self.outputs();
        let mut cot = vec![T::ZERO; n * c];
        let mut total = T::ZERO;
        match (loss, targets) {
            (OutputLoss::SquaredError, Targets::Values(y)) => {
                require_len("regression targets", y.len(), n * c)?;
                require_finite("regression targets", y)?;
                for s in 0..n {
                    let r = s * c..(s + 1) * c;
                    total += loss.sample(&f[r.clone()], &y[r.clone()], 0, &mut cot[r]);
                }
            }
            (OutputLoss::SoftmaxCrossEntropy, Targets::Classes(y)) => {
                require_len("class labels", y.len(), n)?;
                if let Some(i) = y.iter().position(|&k| k >= c) {
                    return Err(OperatorError::InvalidArgument(format!(
                        "class label {} at position {i} out of range 0..{c}",
                        y[i]
                    )));
                }
                for s in 0..n {
                    let r = s * c..(s + 1) * c;
                    total += loss.sample(&f[r.clone()], &[], y[s], &mut cot[r]);
                }
            }
            (l, _) => {
                return Err(OperatorError::InvalidArgument(format!(
                    "targets of the wrong kind for {l:?}"
                )))
            }
        }
        let inv = T::ONE / T::from_usize(n);
        cot.iter_mut().for_each(|v| *v *= inv);
        Ok((total * inv, cot))
    }
}

impl<T: Scalar> Model<T> for MlpBatch<T> {
    fn num_params(&self) -> usize {
        self.mlp.num_params()
    }
    fn output_dim(&self) -> usize {
        self.mlp.output_dim()
    }
    fn num_data(&self) -> usize {
        self.n
    }
    fn outputs(&self) -> &[T] {
        &self.pre[self.pre.len() - 1]
    }

    /// Forward mode: `ż_l = W_l ȧ_l + Ẇ_l a_l + ḃ_l`, `ȧ_{l+1} = σ'(z_l) ∘ ż_l`.
    #[track_caller]
    fn jvp(&self, v: &[T], out: &mut [T]) {
        let m = &self.mlp;
        check_len("MlpBatch::jvp v", v.len(), m.num_params());
        check_len("MlpBatch::jvp out", out.len(), self.n * m.output_dim());
        let (n, nl) = (self.n, m.num_layers());
        let mut adot: Vec<T> = Vec::new();
        for l in 0..nl {
            let (fan_in, fan_out) = (m.sizes[l], m.sizes[l + 1]);
            let mut zdot = vec![T::ZERO; fan_out * n];
            let mut zm = MatMut::from_column_major_slice_mut(&mut zdot, fan_out, n);
            matmul(
                zm.as_mut(),
                Accum::Replace,
                MatRef::from_column_major_slice(m.w_of(v, l), fan_in, fan_out).transpose(),
                MatRef::from_column_major_slice(&self.acts[l], fan_in, n),
                T::ONE,
                Par::Seq,
            );
            if l > 0 {
                matmul(
                    zm,
                    Accum::Add,
                    MatRef::from_column_major_slice(m.w_of(&m.params, l), fan_in, fan_out)
                        .transpose(),
                    MatRef::from_column_major_slice(&adot, fan_in, n),
                    T::ONE,
                    Par::Seq,
                );
            }
            let db = m.b_of(v, l);
            for col in zdot.chunks_mut(fan_out) {
                col.iter_mut().zip(db).for_each(|(z, b)| *z += *b);
            }
            if l + 1 < nl {
                let (z, a) = (&self.pre[l], &self.acts[l + 1]);
                for ((zd, zi), ai) in zdot.iter_mut().zip(z).zip(a) {
                    *zd *= m.activation.deriv(*zi, *ai);
                }
                adot = zdot;
            } else {
                out.copy_from_slice(&zdot);
            }
        }
    }

    /// Reverse mode: `δ_l = σ'(z_l) ∘ ḡ_l` (identity on the last layer), `∇W_l = δ_l a_lᵀ`,
    /// `∇b_l = δ_l 1`, `ḡ_{l−1} = W_lᵀ δ_l`.
    #[track_caller]
    fn vjp(&self, w: &[T], out: &mut [T]) {
        let m = &self.mlp;
        check_len("MlpBatch::vjp w", w.len(), self.n * m.output_dim());
        check_len("MlpBatch::vjp out", out.len(), m.num_params());
        let (n, nl) = (self.n, m.num_layers());
        let mut delta = w.to_vec();
        for l in (0..nl).rev() {
            let (fan_in, fan_out) = (m.sizes[l], m.sizes[l + 1]);
            if l + 1 < nl {
                let (z, a) = (&self.pre[l], &self.acts[l + 1]);
                for ((d, zi), ai) in delta.iter_mut().zip(z).zip(a) {
                    *d *= m.activation.deriv(*zi, *ai);
                }
            }
            let o = m.offsets[l];
            let (gw, gb) = out[o..o + fan_in * fan_out + fan_out].split_at_mut(fan_in * fan_out);
            // ∇W stored row-major out×in = column-major in×out: A (in×N) δᵀ (N×out).
            let dm = MatRef::from_column_major_slice(&delta, fan_out, n);
            matmul(
                MatMut::from_column_major_slice_mut(gw, fan_in, fan_out),
                Accum::Replace,
                MatRef::from_column_major_slice(&self.acts[l], fan_in, n),
                dm.transpose(),
                T::ONE,
                Par::Seq,
            );
            gb.fill(T::ZERO);
            for col in delta.chunks(fan_out) {
                gb.iter_mut().zip(col).for_each(|(g, d)| *g += *d);
            }
            if l > 0 {
                let mut prev = vec![T::ZERO; fan_in * n];
                matmul(
                    MatMut::from_column_major_slice_mut(&mut prev, fan_in, n),
                    Accum::Replace,
                    MatRef::from_column_major_slice(m.w_of(&m.params, l), fan_in, fan_out),
                    dm,
                    T::ONE,
                    Par::Seq,
                );
                delta = prev;
            }
        }
    }
}

/// The generalised Gauss–Newton matrix `G = scale · Σ_n J_nᵀ H_n J_n` (`P×P`, symmetric positive
/// semi-definite) of a [`Model`] and an [`OutputLoss`], over the data batch the model was
/// evaluated on (build it from [`Mlp::forward`] on a mini-batch for a stochastic GGN).
///
/// `apply` costs one JVP, `N` small output-space Hessian products and one VJP; the Jacobian is
/// never formed. Block products loop over columns. Everything runs sequentially with a fixed
/// order, so results are deterministic.
///
/// With `scale = 1` (the default) this is the GGN of the **summed** loss `Σ_n ℓ(f_n)`; use
/// `scale = 1/N` for the mean loss of [`Mlp::loss_and_grad`].
///
/// [`ParamVjp`](crate::ParamVjp) with respect to the network weights is **not** implemented
/// (it would need second derivatives of the model).
#[derive(Debug, Clone)]
pub struct GaussNewton<T: Scalar, M: Model<T>> {
    model: M,
    loss: OutputLoss,
    /// Softmax probabilities (row-major `N×C`) for cross-entropy; empty for squared error.
    probs: Vec<T>,
    scale: T,
}

impl<T: Scalar, M: Model<T>> GaussNewton<T, M> {
    /// The GGN of `model` under `loss`. Errors if the model's outputs have the wrong length or
    /// are not finite.
    pub fn new(model: M, loss: OutputLoss) -> Result<Self, OperatorError> {
        let (n, c) = (model.num_data(), model.output_dim());
        let f = model.outputs();
        require_len("model outputs", f.len(), n * c)?;
        require_finite("model outputs", f)?;
        let mut probs = Vec::new();
        if loss == OutputLoss::SoftmaxCrossEntropy {
            probs = vec![T::ZERO; n * c];
            if c > 0 {
                for (p, fr) in probs.chunks_mut(c).zip(f.chunks(c)) {
                    softmax(fr, p);
                }
            }
        }
        Ok(Self {
            model,
            loss,
            probs,
            scale: T::ONE,
        })
    }

    /// Sets the overall factor (e.g. `1/N` for a mean loss). Errors if not finite.
    pub fn with_scale(mut self, scale: T) -> Result<Self, OperatorError> {
        require_finite("GaussNewton scale", &[scale])?;
        self.scale = scale;
        Ok(self)
    }

    /// The overall factor.
    pub fn scale(&self) -> T {
        self.scale
    }

    /// The loss.
    pub fn loss(&self) -> OutputLoss {
        self.loss
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Consumes the operator and returns the model.
    pub fn into_model(self) -> M {
        self.model
    }

    /// `t ← H t` sample by sample (row-major `N×C`).
    fn output_hessian(&self, t: &mut [T]) {
        match self.loss {
            OutputLoss::SquaredError => {}
            OutputLoss::SoftmaxCrossEntropy => {
                let c = self.model.output_dim();
                if c == 0 {
                    return;
                }
                for (tr, pr) in t.chunks_mut(c).zip(self.probs.chunks(c)) {
                    let pt: T = tr.iter().zip(pr).map(|(a, b)| *a * *b).sum();
                    for (a, p) in tr.iter_mut().zip(pr) {
                        *a = *p * (*a - pt);
                    }
                }
            }
        }
    }
}

impl<T: Scalar, M: Model<T>> Operator<T> for GaussNewton<T, M> {
    fn nrows(&self) -> usize {
        self.model.num_params()
    }
    fn ncols(&self) -> usize {
        self.model.num_params()
    }
    /// `y = scale · Jᵀ H J x`.
    ///
    /// # Panics
    /// If `x.len() != P` or `y.len() != P`.
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        let p = self.model.num_params();
        check_len("GaussNewton::apply x", x.len(), p);
        check_len("GaussNewton::apply y", y.len(), p);
        let mut jv = vec![T::ZERO; self.model.num_data() * self.model.output_dim()];
        self.model.jvp(x, &mut jv);
        self.output_hessian(&mut jv);
        self.model.vjp(&jv, y);
        // Multiplying by the default scale 1 is exact.
        y.iter_mut().for_each(|v| *v *= self.scale);
    }
}

impl<T: Scalar, M: Model<T>> AdjointOperator<T> for GaussNewton<T, M> {
    /// Same as [`apply`](Operator::apply) (`G` is symmetric).
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.apply(x, y)
    }
}

impl<T: Scalar, M: Model<T>> SelfAdjoint<T> for GaussNewton<T, M> {}
