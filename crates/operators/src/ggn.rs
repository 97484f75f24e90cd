//! Generalised Gauss–Newton matrices `G = Σ_n J_nᵀ H_n J_n` of a model, applied without ever
//! forming the Jacobian.
//!
//! * [`Model`]: a differentiable map from `P` parameters to `N×C` outputs (one row of `C` outputs
//!   per data point) at fixed parameters and data, given through `jvp` and `vjp` (and their
//!   block forms for several vectors at once).
//! * [`OutputLoss`]: the per-sample loss `ℓ(f_n)` on the outputs and its Hessian `H_n`:
//!   squared error `ℓ = ½‖f − y‖²`, `H = I`; softmax cross-entropy `ℓ = −log softmax(f)_y`,
//!   `H = diag(p) − p pᵀ` with `p = softmax(f)`.
//! * [`GaussNewton`]: the `P×P` operator `G v = scale · Jᵀ H J v` (one JVP, a per-sample Hessian
//!   product and one VJP per application; a block of vectors costs one block JVP and one block
//!   VJP).
//!
//! Output arrays are row-major `N×C` (the `C` outputs of sample `n` are contiguous at
//! `[n·C, (n+1)·C)`). Models live with their applications (the dense network of `gradmat-apps`
//! implements [`Model`]); here is a linear one, `f = X θ`:
//!
//! ```
//! use gradmat_operators::ggn::{GaussNewton, Model, OutputLoss};
//! use gradmat_operators::Operator;
//!
//! /// `f = X θ` for a row-major `N×P` matrix `X` (one output per data point).
//! struct Linear { x: Vec<f64>, n: usize, p: usize, f: Vec<f64> }
//! impl Model<f64> for Linear {
//!     fn num_params(&self) -> usize { self.p }
//!     fn output_dim(&self) -> usize { 1 }
//!     fn num_data(&self) -> usize { self.n }
//!     fn outputs(&self) -> &[f64] { &self.f }
//!     fn jvp(&self, v: &[f64], out: &mut [f64]) {
//!         for (o, row) in out.iter_mut().zip(self.x.chunks(self.p)) {
//!             *o = row.iter().zip(v).map(|(a, b)| a * b).sum();
//!         }
//!     }
//!     fn vjp(&self, w: &[f64], out: &mut [f64]) {
//!         out.fill(0.0);
//!         for (wi, row) in w.iter().zip(self.x.chunks(self.p)) {
//!             out.iter_mut().zip(row).for_each(|(o, a)| *o += wi * a);
//!         }
//!     }
//! }
//!
//! let model = Linear { x: vec![1.0, 2.0, 0.0, 1.0, 3.0, 1.0], n: 3, p: 2, f: vec![0.0; 3] };
//! let g = GaussNewton::new(model, OutputLoss::SquaredError).unwrap();
//! // Squared error: G = XᵀX = [[10, 5], [5, 6]].
//! let mut y = [0.0; 2];
//! g.apply(&[1.0, 0.0], &mut y);
//! assert_eq!(y, [10.0, 5.0]);
//! ```

use crate::error::{require_finite, require_len};
use crate::traits::check_len;
use crate::{AdjointOperator, Operator, OperatorError, Scalar, SelfAdjoint};
use std::sync::Mutex;

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
    /// Forward mode for a column-major block of `k` directions (`v.len() == P·k`,
    /// `out.len() == N·C·k`, column `j` of `out` row-major `N×C`). The default loops over
    /// columns; models override it to serve all columns with one pass of matrix products.
    fn jvp_block(&self, v: &[T], k: usize, out: &mut [T]) {
        let (p, m) = (self.num_params(), self.num_data() * self.output_dim());
        check_len("Model::jvp_block v", v.len(), p * k);
        check_len("Model::jvp_block out", out.len(), m * k);
        for j in 0..k {
            self.jvp(&v[j * p..(j + 1) * p], &mut out[j * m..(j + 1) * m]);
        }
    }
    /// Reverse mode for a column-major block of `k` cotangents (`w.len() == N·C·k`,
    /// `out.len() == P·k`). The default loops over columns.
    fn vjp_block(&self, w: &[T], k: usize, out: &mut [T]) {
        let (p, m) = (self.num_params(), self.num_data() * self.output_dim());
        check_len("Model::vjp_block w", w.len(), m * k);
        check_len("Model::vjp_block out", out.len(), p * k);
        for j in 0..k {
            self.vjp(&w[j * m..(j + 1) * m], &mut out[j * p..(j + 1) * p]);
        }
    }
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
    /// `grad`. `values` is the sample's row of targets (squared error; ignored for
    /// cross-entropy); `class` its label (cross-entropy, `< C`; ignored for squared error).
    ///
    /// # Panics
    /// If the slices are shorter than `C` or `class ≥ C` for cross-entropy.
    pub fn sample_value_and_grad<T2: Scalar>(
        self,
        f: &[T2],
        values: &[T2],
        class: usize,
        grad: &mut [T2],
    ) -> T2 {
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

/// The generalised Gauss–Newton matrix `G = scale · Σ_n J_nᵀ H_n J_n` (`P×P`, symmetric positive
/// semi-definite) of a [`Model`] and an [`OutputLoss`], over the data batch the model was
/// evaluated on (a mini-batch gives a stochastic GGN).
///
/// `apply` costs one JVP, `N` small output-space Hessian products and one VJP; the Jacobian is
/// never formed. `apply_block` makes one [`Model::jvp_block`] and one [`Model::vjp_block`]
/// call for all columns (bit-identical to column-by-column products whenever the model's block
/// forms are). The output-space buffer is reused across products (no allocation per product
/// in steady state). The operator adds no parallelism or reordering of its own, so it is as
/// deterministic as the model.
///
/// With `scale = 1` (the default) this is the GGN of the **summed** loss `Σ_n ℓ(f_n)`; use
/// `scale = 1/N` for the mean loss.
///
/// [`ParamVjp`](crate::ParamVjp) with respect to the network weights is **not** implemented
/// (it would need second derivatives of the model).
pub struct GaussNewton<T: Scalar, M: Model<T>> {
    model: M,
    loss: OutputLoss,
    /// Softmax probabilities (row-major `N×C`) for cross-entropy; empty for squared error.
    probs: Vec<T>,
    scale: T,
    /// Output-space buffers returned by finished products.
    scratch: Mutex<Vec<Vec<T>>>,
}

impl<T: Scalar, M: Model<T> + Clone> Clone for GaussNewton<T, M> {
    fn clone(&self) -> Self {
        Self {
            model: self.model.clone(),
            loss: self.loss,
            probs: self.probs.clone(),
            scale: self.scale,
            scratch: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Scalar, M: Model<T> + std::fmt::Debug> std::fmt::Debug for GaussNewton<T, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaussNewton")
            .field("model", &self.model)
            .field("loss", &self.loss)
            .field("scale", &self.scale)
            .finish_non_exhaustive()
    }
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
            scratch: Mutex::new(Vec::new()),
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

    /// An output-space buffer of length `len` from the pool.
    fn take(&self, len: usize) -> Vec<T> {
        let mut v = self
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        v.resize(len, T::ZERO);
        v
    }

    fn put(&self, v: Vec<T>) {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(v);
    }

    /// `t ← H t` sample by sample for `k` stacked columns (each row-major `N×C`).
    fn output_hessian(&self, t: &mut [T]) {
        match self.loss {
            OutputLoss::SquaredError => {}
            OutputLoss::SoftmaxCrossEntropy => {
                let c = self.model.output_dim();
                if c == 0 || self.probs.is_empty() {
                    return;
                }
                let probs = self.probs.chunks(c).cycle();
                for (tr, pr) in t.chunks_mut(c).zip(probs) {
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
        let mut jv = self.take(self.model.num_data() * self.model.output_dim());
        self.model.jvp(x, &mut jv);
        self.output_hessian(&mut jv);
        self.model.vjp(&jv, y);
        self.put(jv);
        // Multiplying by the default scale 1 is exact.
        y.iter_mut().for_each(|v| *v *= self.scale);
    }
    /// `Y = scale · Jᵀ H J X` with one block JVP and one block VJP.
    ///
    /// # Panics
    /// If `x.len() != P·k` or `y.len() != P·k`.
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        let p = self.model.num_params();
        check_len("GaussNewton::apply_block x", x.len(), p * k);
        check_len("GaussNewton::apply_block y", y.len(), p * k);
        let mut jv = self.take(self.model.num_data() * self.model.output_dim() * k);
        self.model.jvp_block(x, k, &mut jv);
        self.output_hessian(&mut jv);
        self.model.vjp_block(&jv, k, y);
        self.put(jv);
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
