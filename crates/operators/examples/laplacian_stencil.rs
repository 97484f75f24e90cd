//! A downstream operator: the matrix-free 2-D five-point Laplacian on a `g×g` grid (Dirichlet
//! boundary), with one parameter — a diffusion coefficient `κ` scaling the stencil — validated
//! with gradmat's conformance kit in a few lines.
//!
//! Run: `cargo run -p gradmat-operators --features testing --example laplacian_stencil`

use gradmat_operators::{
    testing, AdjointOperator, Operator, OperatorError, ParamVjp, SelfAdjoint, SetParams,
};

/// `κ · (4u_ij − u_{i±1,j} − u_{i,j±1})` on a `g×g` grid, zero outside.
#[derive(Clone)]
struct Laplacian2d {
    g: usize,
    kappa: f64,
}

impl Laplacian2d {
    fn stencil(&self, x: &[f64], y: &mut [f64]) {
        let g = self.g;
        for j in 0..g {
            for i in 0..g {
                let p = i + j * g;
                let mut s = 4.0 * x[p];
                if i > 0 {
                    s -= x[p - 1];
                }
                if i + 1 < g {
                    s -= x[p + 1];
                }
                if j > 0 {
                    s -= x[p - g];
                }
                if j + 1 < g {
                    s -= x[p + g];
                }
                y[p] = s;
            }
        }
    }
}

impl Operator<f64> for Laplacian2d {
    fn nrows(&self) -> usize {
        self.g * self.g
    }
    fn ncols(&self) -> usize {
        self.g * self.g
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.stencil(x, y);
        y.iter_mut().for_each(|v| *v *= self.kappa);
    }
}

impl AdjointOperator<f64> for Laplacian2d {
    fn apply_transpose(&self, x: &[f64], y: &mut [f64]) {
        self.apply(x, y)
    }
}

impl SelfAdjoint<f64> for Laplacian2d {}

impl ParamVjp<f64> for Laplacian2d {
    fn num_params(&self) -> usize {
        1
    }
    fn vjp_params(&self, u: &[f64], x: &[f64], grad: &mut [f64]) {
        // ∂⟨u, κ L x⟩/∂κ = ⟨u, L x⟩
        let mut lx = vec![0.0; x.len()];
        self.stencil(x, &mut lx);
        grad[0] += u.iter().zip(&lx).map(|(a, b)| a * b).sum::<f64>();
    }
}

impl SetParams<f64> for Laplacian2d {
    fn params(&self, out: &mut [f64]) {
        out[0] = self.kappa;
    }
    fn set_params(&mut self, theta: &[f64]) -> Result<(), OperatorError> {
        if theta.len() != 1 || !theta[0].is_finite() {
            return Err(OperatorError::InvalidArgument(
                "κ must be one finite value".into(),
            ));
        }
        self.kappa = theta[0];
        Ok(())
    }
}

fn main() {
    let op = Laplacian2d { g: 32, kappa: 0.7 };
    let eps = f64::EPSILON;
    println!(
        "adjoint        {:.2e}",
        testing::check_adjoint(&op, 1, 100.0 * eps).unwrap()
    );
    println!(
        "self-adjoint   {:.2e}",
        testing::check_self_adjoint(&op, 2, 100.0 * eps).unwrap()
    );
    println!(
        "block          {:.2e}",
        testing::check_block_consistency(&op, 4, 3, 100.0 * eps).unwrap()
    );
    println!(
        "vjp block      {:.2e}",
        testing::check_vjp_block_consistency(&op, 4, 4, 1e3 * eps).unwrap()
    );
    println!(
        "vjp vs FD      {:.2e}",
        testing::check_vjp_params_fd(&op, 5, 1e-4, 1e-8).unwrap()
    );
    println!("all conformance checks passed");
}
