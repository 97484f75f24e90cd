//! An unchecked dense operator for fuzzing: any entries (NaN, ±∞, huge) and any asymmetry.
//!
//! The library's own dense operators reject non-finite entries at construction, so they cannot
//! carry the "NaN/Inf in the operator" and "non-symmetric matrix given to Lanczos" classes of
//! bad input to the Krylov code. [`RawMatrix`] can: it applies its entries as given and
//! **claims** to be self-adjoint whether or not it is.

use crate::{AdjointOperator, Operator, ParamVjp, SelfAdjoint};

/// A square column-major matrix applied as given; parameters are the `n²` entries.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMatrix {
    n: usize,
    a: Vec<f64>,
}

impl RawMatrix {
    /// `n×n` from column-major entries (`a.len()` must be `n²`; panics otherwise: this is test
    /// support, the caller builds `a`).
    pub fn new(n: usize, a: Vec<f64>) -> Self {
        assert_eq!(a.len(), n * n, "RawMatrix::new: wrong number of entries");
        Self { n, a }
    }
    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.a[i + j * self.n]
    }
    /// The entries, column-major.
    pub fn entries(&self) -> &[f64] {
        &self.a
    }
    /// Whether `A = Aᵀ` exactly.
    pub fn is_symmetric(&self) -> bool {
        (0..self.n).all(|j| (0..j).all(|i| self.get(i, j).to_bits() == self.get(j, i).to_bits()))
    }
    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.a.iter().all(|x| x.is_finite())
    }
    /// `max |a_ij|` (0 for an empty matrix; NaN entries ignored).
    pub fn max_abs(&self) -> f64 {
        self.a.iter().fold(0.0, |m, x| m.max(x.abs()))
    }
}

impl Operator<f64> for RawMatrix {
    fn nrows(&self) -> usize {
        self.n
    }
    fn ncols(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = (0..self.n).map(|j| self.get(i, j) * x[j]).sum();
        }
    }
}

impl AdjointOperator<f64> for RawMatrix {
    fn apply_transpose(&self, x: &[f64], y: &mut [f64]) {
        for (j, yj) in y.iter_mut().enumerate() {
            *yj = (0..self.n).map(|i| self.get(i, j) * x[i]).sum();
        }
    }
}

/// A promise [`RawMatrix`] does not check: that is the point (the "non-symmetric matrix given to
/// Lanczos" input class).
impl SelfAdjoint<f64> for RawMatrix {}

impl ParamVjp<f64> for RawMatrix {
    fn num_params(&self) -> usize {
        self.n * self.n
    }
    fn vjp_params(&self, u: &[f64], x: &[f64], grad: &mut [f64]) {
        for j in 0..self.n {
            for i in 0..self.n {
                grad[i + j * self.n] += u[i] * x[j];
            }
        }
    }
}
