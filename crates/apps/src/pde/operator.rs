//! The first-order wave operator `A(ω) = [[0, I], [diag(ω²) M, 0]]` on a `G×G` grid, matrix-free.

use gradmat_operators::traits::check_len;
use gradmat_operators::{AdjointOperator, Operator, OperatorError, ParamVjp, SetParams};

/// The five-point Neumann Laplacian `M` on the `G×G` nodes `x = (i h, j h)`, `h = 1/(G−1)`,
/// in the symmetric ("graph") form `(M u)_p = Σ_{q ~ p} (u_q − u_p) / h²` over the grid
/// neighbours `q` of `p` that exist (zero flux through the boundary; `M 1 = 0`). Node
/// `p = i + j·G` (`i` along `x₁`). `M` is symmetric negative semi-definite with
/// `‖M‖ ≤ 8/h²`.
///
/// # Panics
/// If `u.len()` or `out.len()` is not `G²`.
#[track_caller]
pub fn neumann_laplacian(g: usize, u: &[f64], out: &mut [f64]) {
    let n = g * g;
    check_len("neumann_laplacian u", u.len(), n);
    check_len("neumann_laplacian out", out.len(), n);
    stencil(g, u, 0.0, |p, v| out[p] = v);
}

/// The spatial operator of the wave equation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stencil {
    /// The five-point Neumann Laplacian [`neumann_laplacian`] (`u_tt = ω² Δu` as the paper
    /// states it; the default).
    #[default]
    Neumann,
    /// The operator of the paper's experiment code: the stencil `[[0,1,0],[1,−2,1],[0,1,0]]/h²`
    /// on edge-padded values, which is `M + (2/h²) I` (centre weight −2 instead of −4). It has
    /// positive eigenvalues up to `2/h²`, so its solutions grow in time.
    PaperCode,
}

impl Stencil {
    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Stencil::Neumann => "neumann",
            Stencil::PaperCode => "paper-code",
        }
    }

    /// The diagonal shift `σ` of `M + σ I` on a `g×g` grid.
    pub fn shift(&self, g: usize) -> f64 {
        match self {
            Stencil::Neumann => 0.0,
            Stencil::PaperCode => {
                let h = 1.0 / (g as f64 - 1.0);
                2.0 / (h * h)
            }
        }
    }
}

/// Calls `emit(p, ((M + σI) u)_p)` for every node in order (row by row), so that products can
/// be fused with what their callers do next (scaling by `ω²`, the parameter VJP) without a
/// temporary vector. `u.len() == G²` is the caller's responsibility.
#[inline]
fn stencil(g: usize, u: &[f64], shift: f64, mut emit: impl FnMut(usize, f64)) {
    let inv_h2 = {
        let h = 1.0 / (g as f64 - 1.0);
        1.0 / (h * h)
    };
    for j in 0..g {
        let row = &u[j * g..(j + 1) * g];
        let below = (j > 0).then(|| &u[(j - 1) * g..j * g]);
        let above = (j + 1 < g).then(|| &u[(j + 1) * g..(j + 2) * g]);
        for i in 0..g {
            let c = row[i];
            let mut s = 0.0;
            if i > 0 {
                s += row[i - 1] - c;
            }
            if i + 1 < g {
                s += row[i + 1] - c;
            }
            if let Some(b) = below {
                s += b[i] - c;
            }
            if let Some(a) = above {
                s += a[i] - c;
            }
            if shift != 0.0 {
                emit(i + j * g, s * inv_h2 + shift * c);
            } else {
                emit(i + j * g, s * inv_h2);
            }
        }
    }
}

thread_local! {
    /// Scratch of `WaveOperator::apply_transpose` (`ω² ∘ x₂`), reused across calls.
    static SCALED: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The wave equation `u_tt = ω(x)² Δu` on `[0,1]²` with Neumann boundaries as the first-order
/// system `ẇ = A(ω) w`, `w = (u, u_t)` (length `2G²`, `u` first):
///
/// `A(ω) = [[0, I], [diag(ω²) M, 0]]`, `Aᵀ = [[0, M diag(ω²)], [I, 0]]`
///
/// with `M` the [`neumann_laplacian`] (or `M + σI` for [`Stencil::PaperCode`]). Never stored:
/// a product costs one stencil pass.
///
/// **Parameters** (`ParamVjp`, `SetParams`): `θ = ω`, the `G²` grid values of the coefficient
/// in node order `p = i + j·G`. `∇_ω ⟨a, A(ω) x⟩ = 2 ω ∘ a₂ ∘ (M x₁)` (`a₂` the lower half of
/// `a`, `x₁` the upper half of `x`).
#[derive(Debug, Clone, PartialEq)]
pub struct WaveOperator {
    g: usize,
    omega: Vec<f64>,
    omega2: Vec<f64>,
    shift: f64,
}

impl WaveOperator {
    /// The operator on a `g×g` grid (`g ≥ 2`) with coefficient values `omega` (length `g²`,
    /// finite). Errors otherwise.
    pub fn new(g: usize, omega: Vec<f64>) -> Result<Self, OperatorError> {
        Self::with_stencil(g, omega, Stencil::Neumann)
    }

    /// The operator with the given spatial stencil (see [`Stencil`]).
    pub fn with_stencil(
        g: usize,
        omega: Vec<f64>,
        stencil: Stencil,
    ) -> Result<Self, OperatorError> {
        if g < 2 {
            return Err(OperatorError::InvalidArgument(format!(
                "the wave operator needs a grid of at least 2×2 nodes, got {g}×{g}"
            )));
        }
        let n = g
            .checked_mul(g)
            .and_then(|n| n.checked_mul(2).map(|_| n))
            .ok_or_else(|| OperatorError::InvalidArgument(format!("grid {g}×{g} too large")))?;
        let mut op = Self {
            g,
            omega: vec![0.0; n],
            omega2: vec![0.0; n],
            shift: stencil.shift(g),
        };
        op.set_params(&omega)?;
        Ok(op)
    }

    /// Grid size `G`.
    pub fn grid(&self) -> usize {
        self.g
    }

    /// Number of grid nodes `G²` (half the dimension).
    pub fn num_nodes(&self) -> usize {
        self.g * self.g
    }

    /// The coefficient values `ω`.
    pub fn omega(&self) -> &[f64] {
        &self.omega
    }
}

impl Operator<f64> for WaveOperator {
    fn nrows(&self) -> usize {
        2 * self.num_nodes()
    }
    fn ncols(&self) -> usize {
        2 * self.num_nodes()
    }
    #[track_caller]
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let n = self.num_nodes();
        check_len("WaveOperator::apply x", x.len(), 2 * n);
        check_len("WaveOperator::apply y", y.len(), 2 * n);
        let (x1, x2) = x.split_at(n);
        let (y1, y2) = y.split_at_mut(n);
        y1.copy_from_slice(x2);
        let w2 = &self.omega2;
        stencil(self.g, x1, self.shift, |p, v| y2[p] = v * w2[p]);
    }
}

impl AdjointOperator<f64> for WaveOperator {
    #[track_caller]
    fn apply_transpose(&self, x: &[f64], y: &mut [f64]) {
        let n = self.num_nodes();
        check_len("WaveOperator::apply_transpose x", x.len(), 2 * n);
        check_len("WaveOperator::apply_transpose y", y.len(), 2 * n);
        let (x1, x2) = x.split_at(n);
        let (y1, y2) = y.split_at_mut(n);
        // y₁ = M (ω² ∘ x₂) through one scratch vector per thread (no allocation per product).
        SCALED.with(|cell| {
            let mut fresh = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let scaled = match guard.as_deref_mut() {
                Ok(v) => v,
                Err(_) => &mut fresh,
            };
            scaled.clear();
            scaled.extend(x2.iter().zip(&self.omega2).map(|(a, w)| a * w));
            stencil(self.g, scaled, self.shift, |p, v| y1[p] = v);
        });
        y2.copy_from_slice(x1);
    }
}

impl ParamVjp<f64> for WaveOperator {
    fn num_params(&self) -> usize {
        self.num_nodes()
    }
    #[track_caller]
    fn vjp_params(&self, u: &[f64], x: &[f64], grad: &mut [f64]) {
        let n = self.num_nodes();
        check_len("WaveOperator::vjp_params u", u.len(), 2 * n);
        check_len("WaveOperator::vjp_params x", x.len(), 2 * n);
        check_len("WaveOperator::vjp_params grad", grad.len(), n);
        let (w, u2) = (&self.omega, &u[n..]);
        stencil(self.g, &x[..n], self.shift, |p, v| {
            grad[p] += 2.0 * w[p] * u2[p] * v
        });
    }
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[f64], y: &mut [f64], u: &[f64], grad: &mut [f64]) {
        let n = self.num_nodes();
        check_len("WaveOperator::apply_and_vjp_params x", x.len(), 2 * n);
        check_len("WaveOperator::apply_and_vjp_params y", y.len(), 2 * n);
        check_len("WaveOperator::apply_and_vjp_params u", u.len(), 2 * n);
        check_len("WaveOperator::apply_and_vjp_params grad", grad.len(), n);
        let (x1, x2) = x.split_at(n);
        let (y1, y2) = y.split_at_mut(n);
        y1.copy_from_slice(x2);
        // One stencil pass: the VJP uses the unscaled (M x₁)_p, the product its scaled value.
        let (w, w2, u2) = (&self.omega, &self.omega2, &u[n..]);
        stencil(self.g, x1, self.shift, |p, v| {
            grad[p] += 2.0 * w[p] * u2[p] * v;
            y2[p] = v * w2[p];
        });
    }
}

impl SetParams<f64> for WaveOperator {
    fn params(&self, out: &mut [f64]) {
        check_len("WaveOperator::params", out.len(), self.num_nodes());
        out.copy_from_slice(&self.omega);
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<(), OperatorError> {
        let n = self.num_nodes();
        if theta.len() != n {
            return Err(OperatorError::InvalidArgument(format!(
                "wave operator: {} coefficient values for {n} grid nodes",
                theta.len()
            )));
        }
        if let Some(p) = theta.iter().position(|v| !v.is_finite()) {
            return Err(OperatorError::InvalidArgument(format!(
                "wave operator: coefficient ω at node {p} is {}",
                theta[p]
            )));
        }
        self.omega.copy_from_slice(theta);
        for (w2, w) in self.omega2.iter_mut().zip(theta) {
            *w2 = w * w;
        }
        Ok(())
    }
}
