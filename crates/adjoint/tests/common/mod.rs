//! Shared helpers of the adjoint test suites: random linear functionals of every output of a
//! decomposition, and central finite differences of them.
#![allow(dead_code)]

use gradmat_krylov::arnoldi::Arnoldi;
use gradmat_krylov::lanczos::Lanczos;
use gradmat_operators::testing::random_vector;

/// Random cotangents for every output of a Lanczos decomposition of depth `k`, dimension `n`.
pub struct LanczosCot {
    pub q: Vec<f64>,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub r: Vec<f64>,
    pub c: f64,
}

impl LanczosCot {
    pub fn random(n: usize, k: usize, seed: u64) -> Self {
        Self {
            q: random_vector(n * k, seed),
            a: random_vector(k, seed + 1),
            b: random_vector(k - 1, seed + 2),
            r: random_vector(n, seed + 3),
            c: random_vector::<f64>(1, seed + 4)[0],
        }
    }
    /// ρ = ⟨Q̄,Q⟩ + ⟨ā,a⟩ + ⟨b̄,b⟩ + ⟨r̄,r⟩ + c̄ c
    pub fn rho(&self, d: &Lanczos<f64>) -> f64 {
        dotp(&self.q, d.basis())
            + dotp(&self.a, d.diagonal())
            + dotp(&self.b, d.off_diagonal())
            + dotp(&self.r, d.residual())
            + self.c * d.inv_norm()
    }
}

/// Random cotangents for every output of an Arnoldi decomposition.
pub struct ArnoldiCot {
    pub q: Vec<f64>,
    pub h: Vec<f64>,
    pub r: Vec<f64>,
    pub c: f64,
}

impl ArnoldiCot {
    pub fn random(n: usize, k: usize, seed: u64) -> Self {
        let mut h = random_vector(k * k, seed + 1);
        // Only the Hessenberg pattern is an output.
        for j in 0..k {
            for i in j + 2..k {
                h[i + j * k] = 0.0;
            }
        }
        Self {
            q: random_vector(n * k, seed),
            h,
            r: random_vector(n, seed + 3),
            c: random_vector::<f64>(1, seed + 4)[0],
        }
    }
    pub fn rho(&self, d: &Arnoldi<f64>) -> f64 {
        dotp(&self.q, d.basis())
            + dotp(&self.h, d.hessenberg())
            + dotp(&self.r, d.residual())
            + self.c * d.inv_norm()
    }
}

pub fn dotp(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Directional derivative of `f` at `x` along `d` by Richardson-extrapolated central
/// differences (`(4·D(h/2) − D(h))/3`, truncation O(h⁴), rounding O(eps·|f|/h)) on a ladder of
/// steps `h_max·10^{-i}`, i = 0..5, returning the estimate where two successive steps agree best
/// (the plateau between truncation and rounding error). The choice never looks at the adjoint
/// value under test. Krylov outputs can be steep (plain Lanczos/Arnoldi after loss of
/// orthogonality), so one fixed step is not reliable.
pub fn central(f: &mut dyn FnMut(&[f64]) -> f64, x: &[f64], d: &[f64], h_max: f64) -> f64 {
    gradmat_operators::testing::richardson_plateau(h_max, 10.0, 6, |h| {
        let xh: Vec<f64> = x.iter().zip(d).map(|(a, b)| a + h * b).collect();
        f(&xh)
    })
}

/// Relative error `|a − b| / max(|a|, |b|, floor)`.
pub fn rel_err(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(floor)
}
