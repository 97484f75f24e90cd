//! The optimiser and the positivity transform shared by the pipelines (`gp`, `pde`, `bnn`):
//! one [`Adam`] and one numerically careful [`softplus`] with its derivative and inverse.

/// `softplus(x) = log(1 + eˣ)`, accurate to a few ulps for every finite `x` and never
/// overflowing: `max(x, 0) + log1p(e^{−|x|})`.
///
/// ```
/// use gradmat_apps::optim::{softplus, softplus_inv};
/// assert!((softplus(0.0) - std::f64::consts::LN_2).abs() < 1e-16);
/// assert_eq!(softplus(1000.0), 1000.0);
/// assert!((softplus_inv(softplus(-3.0)) + 3.0).abs() < 1e-14);
/// ```
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// `d softplus/dx = 1/(1 + e⁻ˣ)` (the logistic sigmoid), evaluated without overflow and with
/// full relative accuracy for large negative `x` (`eˣ/(1 + eˣ)` there).
pub fn softplus_grad(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The inverse of [`softplus`] for `y > 0`: `y + log(−expm1(−y)) = log(e^y − 1)`, accurate for
/// tiny `y` (where it is `≈ log y`) and large `y` (where it is `≈ y − e^{−y}`). NaN for `y ≤ 0`.
pub fn softplus_inv(y: f64) -> f64 {
    y + (-(-y).exp_m1()).ln()
}

/// Adam (Kingma & Ba, 2015) with bias correction, minimising: `x ← x − lr·m̂/(√v̂ + ε)`.
/// Defaults `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-8`. (For ascent, pass the negated gradient.)
#[derive(Debug, Clone)]
pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    /// Adam with learning rate `lr`, β = (0.9, 0.999), ε = 1e-8, for `p` parameters.
    pub fn new(lr: f64, p: usize) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            m: vec![0.0; p],
            v: vec![0.0; p],
            t: 0,
        }
    }

    /// The same with another `ε` (the denominator's guard).
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.t as usize
    }

    /// The moment estimates `(m, v)` (for checkpoints; with [`steps`](Self::steps) and the
    /// learning rate they are the whole state).
    pub fn moments(&self) -> (&[f64], &[f64]) {
        (&self.m, &self.v)
    }

    /// Adam with learning rate `lr` restored after `steps` steps with moment estimates `m` and
    /// `v` (as returned by [`moments`](Self::moments)); it continues bit for bit as the
    /// original would. `None` when `m` and `v` differ in length or `steps` exceeds `i32::MAX`.
    pub fn restore(lr: f64, steps: usize, m: Vec<f64>, v: Vec<f64>) -> Option<Self> {
        if m.len() != v.len() {
            return None;
        }
        let t = i32::try_from(steps).ok()?;
        Some(Adam {
            m,
            v,
            t,
            ..Adam::new(lr, 0)
        })
    }

    /// One descent step on `x` with gradient `g` (both of the length given to [`Adam::new`]).
    pub fn step(&mut self, x: &mut [f64], g: &[f64]) {
        self.t += 1;
        let b1t = 1.0 - self.beta1.powi(self.t);
        let b2t = 1.0 - self.beta2.powi(self.t);
        for i in 0..x.len() {
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g[i];
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g[i] * g[i];
            let mh = self.m[i] / b1t;
            let vh = self.v[i] / b2t;
            x[i] -= self.lr * mh / (vh.sqrt() + self.eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_is_accurate_everywhere() {
        // Against log1p(eˣ) for x ≤ 0 (accurate there), the identity
        // softplus(x) − softplus(−x) = x for x > 0, and the asymptotes.
        for &x in &[-5.0f64, -1.0, -1e-3, 0.0, 1e-3, 1.0, 5.0, 20.0] {
            let reference: f64 = if x <= 0.0 {
                x.exp().ln_1p()
            } else {
                x + (-x).exp().ln_1p()
            };
            assert!((softplus(x) - reference).abs() <= 2.0 * f64::EPSILON * reference.abs());
            assert!(
                (softplus(x) - softplus(-x) - x).abs() <= 4.0 * f64::EPSILON * x.abs().max(1.0)
            );
            let h = 1e-6;
            let fd = (softplus(x + h) - softplus(x - h)) / (2.0 * h);
            assert!((softplus_grad(x) - fd).abs() < 1e-8, "{x}");
            assert!((softplus_inv(softplus(x)) - x).abs() <= 1e-12 * x.abs().max(1.0));
        }
        assert_eq!(softplus(-800.0).to_bits(), 0.0f64.to_bits());
        assert!((softplus(-40.0) / f64::exp(-40.0) - 1.0).abs() < 1e-15);
        assert_eq!(softplus(800.0).to_bits(), 800.0f64.to_bits());
        assert!((softplus_grad(-40.0) / f64::exp(-40.0) - 1.0).abs() < 1e-15);
        assert_eq!(softplus_grad(800.0).to_bits(), 1.0f64.to_bits());
        assert!((softplus_inv(1e-300) - 1e-300f64.ln()).abs() < 1e-12);
        assert!((softplus_inv(50.0) - 50.0).abs() <= 50.0 * f64::EPSILON);
        assert!(softplus_inv(0.0).is_infinite() && softplus_inv(-1.0).is_nan());
    }

    #[test]
    fn adam_minimises_a_quadratic_and_matches_its_formula() {
        let mut x = vec![3.0, -2.0];
        let mut adam = Adam::new(0.1, 2);
        for _ in 0..500 {
            let g: Vec<f64> = x.iter().map(|v| 2.0 * v).collect();
            adam.step(&mut x, &g);
        }
        assert!(x.iter().all(|v| v.abs() < 1e-2), "{x:?}");
        // First step: m̂ = g, v̂ = g², so x moves by lr·g/(|g| + ε).
        let mut y = vec![1.0];
        Adam::new(0.5, 1).with_eps(0.0).step(&mut y, &[4.0]);
        assert!((y[0] - 0.5).abs() < 1e-15);
    }
}
