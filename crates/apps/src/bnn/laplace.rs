//! The Laplace approximation of the log marginal likelihood of an MLP classifier and its
//! gradient in the prior precision.
//!
//! With the summed cross-entropy `L(θ) = Σ_n −log p(y_n | x_n, θ)` over the `N` training points,
//! a Gaussian prior `N(0, diag(α_g)⁻¹)` with one precision per parameter group `g` (one group
//! for an isotropic prior, one per layer otherwise) and the Gauss–Newton matrix
//! `G = Σ_n J_nᵀ H_n J_n` at the MAP estimate `θ*`,
//!
//! ```text
//! log p(y | x, α) ≈ −L(θ*) − Σ_g α_g ‖θ*_g‖²/2 + Σ_g (P_g/2) log α_g − ½ log det(G + diag(α))
//! ```
//!
//! (the `(P/2) log 2π` of the prior density and of the Gaussian integral cancel exactly, so the
//! right-hand side has no further constant). `∂/∂α_g = −‖θ*_g‖²/2 + P_g/(2α_g) − ½ ∂ log det/∂α_g`.
//!
//! `G` is applied Jacobian-free through [`GaussNewton`] on a subsample of `m` training points
//! scaled by `N/m`: one JVP and one VJP of the network, each a handful of GEMMs over all `m`
//! points ([`crate::nn`], parallel inside, deterministic for any thread count). A block of `k`
//! vectors (the diagonal estimator's probes, lock-step SLQ probes) costs one block JVP and one
//! block VJP. The subsample may be split into chunks whose products are added in order.
//!
//! * **Lanczos:** `log det(G + diag α)` by stochastic Lanczos quadrature with `L` probes of
//!   depth `K` ([`logdet_with_grad`]), whose exact gradient in `α` comes from the Lanczos adjoint
//!   through the [`ParamVjp`] implementation of [`LaplacePrecision`]: `∇_{α_g} ⟨u, (G + diag α) x⟩
//!   = Σ_{i ∈ g} u_i x_i`.
//! * **Diagonal baseline:** `diag G ≈ mean_ℓ(v_ℓ ∘ G v_ℓ)` ([`diagonal_estimate`], `M` probes,
//!   negative estimates clipped to 0 since `G` is positive semi-definite), then
//!   `log det ≈ Σ_i log(d_i + α_{g(i)})` and its closed-form gradient `Σ_{i∈g} 1/(d_i + α_g)`.

use crate::nn::{Mlp, MlpBatch};
use gradmat_matfun::estimators::{diagonal_estimate, logdet_with_grad, SlqParams};
pub use gradmat_matfun::Reorthogonalize;
use gradmat_operators::ggn::{GaussNewton, OutputLoss};
use gradmat_operators::traits::check_len;
use gradmat_operators::{
    AdjointOperator, Operator, OperatorError, ParamVjp, SelfAdjoint, SetParams,
};
use std::ops::Range;
use std::sync::Mutex;

/// Parameter groups of an [`Mlp`]: one range for an isotropic prior, or one range per layer
/// (weights and bias of layer `l` together) in the MLP's parameter layout.
pub fn param_groups(mlp: &Mlp<f64>, per_layer: bool) -> Vec<Range<usize>> {
    if !per_layer {
        return std::iter::once(0..mlp.num_params()).collect();
    }
    let mut out = Vec::new();
    let mut start = 0;
    for w in mlp.layer_sizes().windows(2) {
        let len = w[0] * w[1] + w[1];
        out.push(start..start + len);
        start += len;
    }
    out
}

/// The posterior precision `scale · Σ_chunks G_chunk + diag(α_{g(i)})` of the Laplace
/// approximation, as a self-adjoint operator whose parameters are the prior precisions `α_g`
/// (layout: one entry per parameter group, in group order).
pub struct LaplacePrecision {
    chunks: Vec<GaussNewton<f64, MlpBatch<f64>>>,
    scale: f64,
    groups: Vec<Range<usize>>,
    alpha: Vec<f64>,
    p: usize,
    /// Buffers for the per-chunk products when there is more than one chunk.
    scratch: Mutex<Vec<Vec<f64>>>,
}

impl Clone for LaplacePrecision {
    fn clone(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
            scale: self.scale,
            groups: self.groups.clone(),
            alpha: self.alpha.clone(),
            p: self.p,
            scratch: Mutex::new(Vec::new()),
        }
    }
}

impl std::fmt::Debug for LaplacePrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaplacePrecision")
            .field("num_params", &self.p)
            .field("chunks", &self.chunks.len())
            .field("scale", &self.scale)
            .field("groups", &self.groups)
            .field("alpha", &self.alpha)
            .finish_non_exhaustive()
    }
}

impl LaplacePrecision {
    /// The precision for `mlp` on the `n` inputs `x` (row-major `n×D`, cross-entropy loss),
    /// split into `num_chunks` chunks (1 is fastest: each product is parallel inside; more
    /// chunks only bound the memory of the cached activations), with GGN factor `scale` (e.g.
    /// `N_train/n`), parameter
    /// groups `groups` (see [`param_groups`]) and prior precisions `alpha` (one per group,
    /// positive).
    ///
    /// # Errors
    /// Invalid lengths, non-finite data, `n = 0`, groups that do not partition `0..P`, or
    /// non-positive precisions.
    pub fn new(
        mlp: &Mlp<f64>,
        x: &[f64],
        n: usize,
        num_chunks: usize,
        scale: f64,
        groups: Vec<Range<usize>>,
        alpha: Vec<f64>,
    ) -> Result<Self, OperatorError> {
        let d = mlp.input_dim();
        if n == 0 || x.len() != n * d {
            return Err(OperatorError::InvalidArgument(format!(
                "GGN data: expected {n} inputs of dimension {d} (n ≥ 1), got {} values",
                x.len()
            )));
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(OperatorError::InvalidArgument(format!(
                "GGN scale must be positive and finite, got {scale}"
            )));
        }
        let p = mlp.num_params();
        let mut next = 0;
        for g in &groups {
            if g.start != next || g.end < g.start {
                return Err(OperatorError::InvalidArgument(
                    "parameter groups must be consecutive ranges".into(),
                ));
            }
            next = g.end;
        }
        if next != p || groups.is_empty() {
            return Err(OperatorError::InvalidArgument(format!(
                "parameter groups must cover 0..{p}"
            )));
        }
        let k = num_chunks.clamp(1, n);
        let mut chunks = Vec::with_capacity(k);
        for c in 0..k {
            let (a, b) = (c * n / k, (c + 1) * n / k);
            let batch = mlp.forward(&x[a * d..b * d], b - a)?;
            chunks.push(GaussNewton::new(batch, OutputLoss::SoftmaxCrossEntropy)?);
        }
        let ng = groups.len();
        let mut op = Self {
            chunks,
            scale,
            groups,
            alpha: vec![1.0; ng],
            p,
            scratch: Mutex::new(Vec::new()),
        };
        op.set_params(&alpha)?;
        Ok(op)
    }

    /// The parameter groups.
    pub fn groups(&self) -> &[Range<usize>] {
        &self.groups
    }

    /// The prior precisions, one per group.
    pub fn alpha(&self) -> &[f64] {
        &self.alpha
    }

    /// The GGN factor `N/m`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `y = scale · Σ_chunks G_chunk x` (the Gauss–Newton part alone).
    ///
    /// # Panics
    /// If `x.len() != P` or `y.len() != P`.
    #[track_caller]
    pub fn apply_ggn(&self, x: &[f64], y: &mut [f64]) {
        check_len("LaplacePrecision x", x.len(), self.p);
        check_len("LaplacePrecision y", y.len(), self.p);
        self.ggn_block(x, y, 1);
    }

    /// `Y = scale · Σ_chunks G_chunk X` for a column-major block of `k` vectors: one block
    /// product per chunk, chunks added in order.
    fn ggn_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        let (first, rest) = match self.chunks.split_first() {
            Some(v) => v,
            None => {
                y.fill(0.0);
                return;
            }
        };
        first.apply_block(x, y, k);
        if !rest.is_empty() {
            let mut part = self
                .scratch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_default();
            part.resize(y.len(), 0.0);
            for g in rest {
                g.apply_block(x, &mut part, k);
                y.iter_mut().zip(&part).for_each(|(a, b)| *a += *b);
            }
            self.scratch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(part);
        }
        y.iter_mut().for_each(|v| *v *= self.scale);
    }

    /// Adds `diag(α) x` to `y` for a block of `k` vectors.
    fn add_prior(&self, x: &[f64], y: &mut [f64], k: usize) {
        for j in 0..k {
            let (xj, yj) = (
                &x[j * self.p..(j + 1) * self.p],
                &mut y[j * self.p..(j + 1) * self.p],
            );
            for (g, a) in self.groups.iter().zip(&self.alpha) {
                for i in g.clone() {
                    yj[i] += a * xj[i];
                }
            }
        }
    }

    /// The Gauss–Newton part alone as an operator (for the diagonal estimate).
    pub fn ggn(&self) -> GgnPart<'_> {
        GgnPart(self)
    }
}

/// The Gauss–Newton part `scale · G` of a [`LaplacePrecision`] (no prior term).
#[derive(Debug, Clone, Copy)]
pub struct GgnPart<'a>(&'a LaplacePrecision);

impl Operator<f64> for GgnPart<'_> {
    fn nrows(&self) -> usize {
        self.0.p
    }
    fn ncols(&self) -> usize {
        self.0.p
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.0.apply_ggn(x, y)
    }
    fn apply_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        check_len("GgnPart::apply_block x", x.len(), self.0.p * k);
        check_len("GgnPart::apply_block y", y.len(), self.0.p * k);
        self.0.ggn_block(x, y, k)
    }
}

impl Operator<f64> for LaplacePrecision {
    fn nrows(&self) -> usize {
        self.p
    }
    fn ncols(&self) -> usize {
        self.p
    }
    /// `y = scale · G x + diag(α) x`.
    ///
    /// # Panics
    /// If `x.len() != P` or `y.len() != P`.
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.apply_ggn(x, y);
        self.add_prior(x, y, 1);
    }
    /// `Y = scale · G X + diag(α) X` with one block product per chunk.
    ///
    /// # Panics
    /// If `x.len() != P·k` or `y.len() != P·k`.
    fn apply_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        check_len("LaplacePrecision::apply_block x", x.len(), self.p * k);
        check_len("LaplacePrecision::apply_block y", y.len(), self.p * k);
        self.ggn_block(x, y, k);
        self.add_prior(x, y, k);
    }
}

impl AdjointOperator<f64> for LaplacePrecision {
    fn apply_transpose(&self, x: &[f64], y: &mut [f64]) {
        self.apply(x, y)
    }
}

impl SelfAdjoint<f64> for LaplacePrecision {}

impl ParamVjp<f64> for LaplacePrecision {
    fn num_params(&self) -> usize {
        self.groups.len()
    }
    /// `grad[g] += Σ_{i ∈ g} u_i x_i` (the GGN does not depend on α).
    fn vjp_params(&self, u: &[f64], x: &[f64], grad: &mut [f64]) {
        for (gr, g) in grad.iter_mut().zip(&self.groups) {
            *gr += u[g.clone()]
                .iter()
                .zip(&x[g.clone()])
                .map(|(a, b)| a * b)
                .sum::<f64>();
        }
    }
}

impl SetParams<f64> for LaplacePrecision {
    fn params(&self, out: &mut [f64]) {
        out.copy_from_slice(&self.alpha);
    }
    /// Replaces the precisions; each must be positive and finite.
    fn set_params(&mut self, theta: &[f64]) -> Result<(), OperatorError> {
        if theta.len() != self.groups.len() {
            return Err(OperatorError::InvalidArgument(format!(
                "expected {} prior precisions, got {}",
                self.groups.len(),
                theta.len()
            )));
        }
        if let Some(a) = theta.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return Err(OperatorError::InvalidArgument(format!(
                "prior precision must be positive and finite, got {a}"
            )));
        }
        self.alpha.copy_from_slice(theta);
        Ok(())
    }
}

/// The α-independent parts of the Laplace objective.
#[derive(Debug, Clone, PartialEq)]
pub struct LaplaceTerms {
    /// `L(θ*)`, the summed cross-entropy over the `N` training points.
    pub nll: f64,
    /// `‖θ*_g‖²` per group.
    pub sq_norms: Vec<f64>,
    /// `P_g` per group.
    pub sizes: Vec<usize>,
}

impl LaplaceTerms {
    /// From the MAP parameters, the groups and the summed training loss.
    pub fn new(theta: &[f64], groups: &[Range<usize>], nll: f64) -> Self {
        Self {
            nll,
            sq_norms: groups
                .iter()
                .map(|g| theta[g.clone()].iter().map(|t| t * t).sum())
                .collect(),
            sizes: groups.iter().map(|g| g.len()).collect(),
        }
    }

    /// The objective for a given `log det(G + diag α)`, and its gradient in `α` given
    /// `∂ log det/∂α` (both written to `grad`).
    pub fn objective(&self, alpha: &[f64], logdet: f64, dlogdet: &[f64], grad: &mut [f64]) -> f64 {
        let mut value = -self.nll - 0.5 * logdet;
        for g in 0..alpha.len() {
            let (a, s, p) = (alpha[g], self.sq_norms[g], self.sizes[g] as f64);
            value += -0.5 * a * s + 0.5 * p * a.ln();
            grad[g] = -0.5 * s + 0.5 * p / a - 0.5 * dlogdet[g];
        }
        value
    }
}

/// How `log det(G + diag α)` is estimated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogdetMethod {
    /// SLQ with `probes` probes of depth `depth` (`probes·depth` matvecs per evaluation).
    Lanczos {
        /// Probes `L`.
        probes: usize,
        /// Depth `K` per probe.
        depth: usize,
        /// Reorthogonalisation of the Lanczos basis: `Full` (against the whole basis at every
        /// step; the basis stays orthonormal to rounding) or `None` (the three-term recurrence
        /// alone, O(P) work per step instead of O(P·K); the adjoint then differentiates the
        /// recurrence as computed). Either way the gradient is exact for the estimator run.
        reorthogonalize: Reorthogonalize,
    },
    /// Stochastic diagonal with `probes` matvecs, closed-form log det.
    Diagonal {
        /// Probes (= matvecs).
        probes: usize,
    },
}

/// One evaluation of the Laplace objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The objective (approximate log marginal likelihood).
    pub value: f64,
    /// Its gradient in `α` (one entry per group).
    pub grad: Vec<f64>,
    /// The log-determinant estimate.
    pub logdet: f64,
    /// The GGN diagonal estimate (diagonal method only).
    pub diagonal: Option<Vec<f64>>,
}

/// `log det` of `diag(d) + α` per group and its gradient `Σ_{i∈g} 1/(d_i + α_g)`.
pub fn diagonal_logdet(d: &[f64], groups: &[Range<usize>], alpha: &[f64]) -> (f64, Vec<f64>) {
    let mut ld = 0.0;
    let mut grad = vec![0.0; groups.len()];
    for (gi, g) in groups.iter().enumerate() {
        for i in g.clone() {
            let v = d[i] + alpha[gi];
            ld += v.ln();
            grad[gi] += 1.0 / v;
        }
    }
    (ld, grad)
}

/// Evaluates the objective and its gradient at the operator's current `α` with probe seed
/// `seed`.
///
/// # Errors
/// Errors of the estimators (e.g. a Ritz value ≤ 0).
pub fn evaluate(
    op: &LaplacePrecision,
    terms: &LaplaceTerms,
    method: &LogdetMethod,
    seed: u64,
) -> Result<Evaluation, gradmat_matfun::MatfunError> {
    let alpha = op.alpha().to_vec();
    let (logdet, dlogdet, diagonal) = match *method {
        LogdetMethod::Lanczos {
            probes,
            depth,
            reorthogonalize,
        } => {
            let mut g = vec![0.0; op.num_params()];
            // Several probes run in lock-step, so that each Lanczos step is one block product
            // (one pass of GEMMs for all probes).
            let params = SlqParams {
                num_probes: probes,
                depth,
                seed,
                lockstep: probes > 1,
                reorthogonalize,
                ..SlqParams::default()
            };
            let est = logdet_with_grad(op, &params, &mut g)?;
            (est.value, g, None)
        }
        LogdetMethod::Diagonal { probes } => {
            let mut d = diagonal_estimate(&op.ggn(), probes, seed)?.value;
            d.iter_mut().for_each(|v| *v = v.max(0.0));
            let (ld, g) = diagonal_logdet(&d, op.groups(), &alpha);
            (ld, g, Some(d))
        }
    };
    let mut grad = vec![0.0; alpha.len()];
    let value = terms.objective(&alpha, logdet, &dlogdet, &mut grad);
    Ok(Evaluation {
        value,
        grad,
        logdet,
        diagonal,
    })
}
