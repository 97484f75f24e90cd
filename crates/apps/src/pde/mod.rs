//! Learning the coefficient field of a wave equation through differentiable `exp(A)v`
//! (the PDE experiment of Krämer et al., NeurIPS 2024, §6), against Runge–Kutta baselines.
//!
//! * **PDE.** `u_tt = ω(x)² (u_{x₁x₁} + u_{x₂x₂})` on `[0,1]²` with Neumann boundaries, the
//!   five-point Laplacian `M` on a `G×G` node grid, and the first-order system `ẇ = A(ω) w`,
//!   `w = (u, u_t)`, `A(ω) = [[0, I], [diag(ω²) M, 0]]` ([`WaveOperator`], matrix-free, `2G²`
//!   rows, [`ParamVjp`](gradmat_operators::ParamVjp) in the grid values of `ω`).
//! * **Model.** `ω = softplus(−5)·MLP(x₁, x₂)` ([`FieldModel`]; the paper: two hidden layers of
//!   500, ReLU, ≈ 250k parameters); gradients flow from the operator's parameter VJP through the
//!   MLP's reverse mode.
//! * **Data** ([`Dataset`]). A true `ω` and initial conditions `(u₀, u̇₀)` drawn from
//!   squared-exponential GPs on the grid with gradmat's Lanczos square-root action; targets
//!   `w(1) = exp(A) w₀` from a depth-80 Arnoldi reference, cross-checked against a fine-step
//!   Dopri5 solve. 80/20 train/test split.
//! * **Loss.** `L = (1/n) Σ_i ‖ŵ_i(1) − y_i‖²/‖y_i‖²`, minimised with [`Adam`].
//! * **Solvers** ([`Solver`]). Arnoldi (depth 10, full reorthogonalisation, gradient by the
//!   Arnoldi adjoint); Dopri5 with the continuous backsolve adjoint and Tsit5 with the discrete
//!   checkpointed adjoint ([`rk`]).

pub mod data;
pub mod operator;
pub mod rk;
pub mod train;

pub use data::Dataset;
pub use operator::WaveOperator;
pub use train::{Adam, FieldModel, Solver};
