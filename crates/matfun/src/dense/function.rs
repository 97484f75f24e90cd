//! Scalar functions `f`, their derivatives and accurate divided differences.

use std::fmt;
use std::sync::Arc;

/// A scalar function `f64 → f64` shared between threads, as used by
/// [`MatrixFunction::Custom`].
pub type ScalarFn = Arc<dyn Fn(f64) -> f64 + Send + Sync>;

/// Where a function (or its derivative) is defined on the real line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    /// Every real number.
    All,
    /// `x > 0`.
    Positive,
    /// `x ≥ 0`.
    NonNegative,
    /// `x ≠ 0`.
    NonZero,
}

impl Domain {
    pub(crate) fn contains(self, x: f64) -> bool {
        match self {
            Domain::All => x.is_finite(),
            Domain::Positive => x > 0.0,
            Domain::NonNegative => x >= 0.0,
            Domain::NonZero => x != 0.0,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Domain::All => "x ∈ ℝ",
            Domain::Positive => "x > 0",
            Domain::NonNegative => "x ≥ 0",
            Domain::NonZero => "x ≠ 0",
        }
    }
}

/// A scalar function `f` applied to a symmetric matrix through its eigenvalues,
/// `f(T) = S diag(f(θ)) Sᵀ`.
///
/// Besides `f` itself the type evaluates `f'` and the divided difference
/// `f[a, b] = (f(a) − f(b))/(a − b)` that the Daleckii–Krein reverse rule needs. The divided
/// difference is computed from a closed form that is accurate to a few ulps even when `a` and
/// `b` are close or equal (no cancellation in `f(a) − f(b)`):
///
/// | function | `f[a, b]` |
/// |---|---|
/// | `exp(t x)` | `t e^{t·h}·(−expm1(−t(h−l)))/(t(h−l))` with `h`, `l` ordered so that `t·h ≥ t·l` |
/// | `log x` | `log1p((h−l)/l)/(h−l)` with `l = min(a,b) > 0` |
/// | `√x` | `1/(√a + √b)` |
/// | `1/√x` | `−1/(√a √b (√a + √b))` |
/// | `1/x` | `−1/(ab)` |
/// | `xⁿ`, `n ≥ 1` | `Σ_{i<n} aⁱ bⁿ⁻¹⁻ⁱ` for `n ≤ 16`; `lⁿ expm1(n log1p((h−l)/l))/(h−l)` on magnitudes for larger `n` and equal signs |
/// | `x⁻ⁿ` | `−f_n[a,b]·a⁻ⁿ b⁻ⁿ` |
/// | `xᵖ` | `lᵖ expm1(p log1p((h−l)/l))/(h−l)` |
/// | custom | `f'((a+b)/2)` when `|a−b| ≤ ∛ε·max(1,|a|,|b|)`, else the plain quotient |
///
/// On equal arguments every form returns `f'(a)`. For the custom function the midpoint rule
/// has relative error about `|f'''| δ²/(24|f'|) ≤ ε^{2/3}/24` (unit-scale data) and the plain
/// quotient about `ε|f|/(δ|f'|)`, so the switch point `∛ε` balances the two.
///
/// # Domains
///
/// `exp`, `exp(t·)`, non-negative integer powers and custom functions accept every real
/// eigenvalue. `log`, `1/√x` and `1/x` need `x > 0`; negative integer powers need `x ≠ 0`
/// (indefinite matrices are fine); `√x` and `xᵖ` with `p > 0` accept `x ≥ 0`, `xᵖ` with `p ≤ 0`
/// needs `x > 0`. The *reverse rule* additionally needs a finite derivative: `√x` and `xᵖ` with
/// `0 < p < 1` are not differentiable at 0, so their pullbacks report
/// [`MatfunError::NotDifferentiable`](crate::MatfunError::NotDifferentiable) for a zero
/// eigenvalue while the forward value is still returned.
///
/// # Example
///
/// ```
/// use gradmat_matfun::dense::MatrixFunction;
///
/// let f = MatrixFunction::Log;
/// let (a, b) = (2.0_f64, 2.0 * (1.0 + 1e-12));
/// // (log a − log b)/(a − b) would lose about 4 digits here; the closed form does not.
/// let dd = f.divided_difference(a, b);
/// assert!((dd - 1.0 / (0.5 * (a + b))).abs() < 1e-15);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum MatrixFunction {
    /// `exp x`.
    Exp,
    /// `exp(t·x)` for a fixed, finite `t`.
    ScaledExp(f64),
    /// Natural logarithm `log x` (needs `x > 0`).
    Log,
    /// `√x` (needs `x ≥ 0`; derivative needs `x > 0`).
    Sqrt,
    /// `1/√x` (needs `x > 0`).
    InvSqrt,
    /// `1/x` (needs `x > 0`, like `log`; use `PowI(-1)` for a non-zero indefinite spectrum).
    Inv,
    /// Integer power `xⁿ` (negative `n` needs `x ≠ 0`).
    PowI(i32),
    /// Real power `xᵖ` for a finite `p` (needs `x ≥ 0` if `p > 0`, `x > 0` otherwise; the
    /// derivative needs `x > 0` when `p < 1`).
    Pow(f64),
    /// A user-supplied function `f` with its derivative `df`; see [`MatrixFunction::custom`].
    Custom {
        /// The function.
        f: ScalarFn,
        /// Its derivative.
        df: ScalarFn,
    },
}

impl fmt::Debug for MatrixFunction {
    fn fmt(&self, fm: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatrixFunction::Exp => write!(fm, "Exp"),
            MatrixFunction::ScaledExp(t) => write!(fm, "ScaledExp({t:?})"),
            MatrixFunction::Log => write!(fm, "Log"),
            MatrixFunction::Sqrt => write!(fm, "Sqrt"),
            MatrixFunction::InvSqrt => write!(fm, "InvSqrt"),
            MatrixFunction::Inv => write!(fm, "Inv"),
            MatrixFunction::PowI(n) => write!(fm, "PowI({n})"),
            MatrixFunction::Pow(p) => write!(fm, "Pow({p:?})"),
            MatrixFunction::Custom { .. } => write!(fm, "Custom {{ .. }}"),
        }
    }
}

/// `∛ε` for `f64`: the switch between the midpoint derivative and the plain quotient in the
/// divided difference of a custom function.
const CBRT_EPS: f64 = 6.055454452393343e-6;

/// Largest integer power for which the divided difference uses the explicit sum.
const POWI_SUM_MAX: u32 = 16;

impl MatrixFunction {
    /// A user-supplied function `f` with derivative `df`. Both must be accurate on the spectrum
    /// of the matrices they are applied to; `f` is applied to every real eigenvalue (no domain
    /// check beyond finiteness of the results).
    pub fn custom(
        f: impl Fn(f64) -> f64 + Send + Sync + 'static,
        df: impl Fn(f64) -> f64 + Send + Sync + 'static,
    ) -> Self {
        MatrixFunction::Custom {
            f: Arc::new(f),
            df: Arc::new(df),
        }
    }

    /// Short name for messages (`"log"`, `"exp"`, …; `"custom"` for user functions).
    pub fn name(&self) -> &'static str {
        match self {
            MatrixFunction::Exp => "exp",
            MatrixFunction::ScaledExp(_) => "scaled exp",
            MatrixFunction::Log => "log",
            MatrixFunction::Sqrt => "sqrt",
            MatrixFunction::InvSqrt => "inverse sqrt",
            MatrixFunction::Inv => "inverse",
            MatrixFunction::PowI(_) => "integer power",
            MatrixFunction::Pow(_) => "real power",
            MatrixFunction::Custom { .. } => "custom",
        }
    }

    /// The fixed parameter (`t` of `exp(t·x)` or `p` of `xᵖ`) if it is not finite.
    pub(crate) fn non_finite_parameter(&self) -> Option<(&'static str, f64)> {
        match *self {
            MatrixFunction::ScaledExp(t) if !t.is_finite() => Some(("scaled exp: t", t)),
            MatrixFunction::Pow(p) if !p.is_finite() => Some(("real power: p", p)),
            _ => None,
        }
    }

    /// Where `f` is defined.
    pub(crate) fn value_domain(&self) -> Domain {
        match *self {
            MatrixFunction::Exp | MatrixFunction::ScaledExp(_) | MatrixFunction::Custom { .. } => {
                Domain::All
            }
            MatrixFunction::PowI(n) if n >= 0 => Domain::All,
            // Inverse, like log and inverse square root, requires a positive spectrum (the issue's
            // contract: a Krylov inverse of an indefinite operator is fragile, Ritz values can
            // sit near 0). `PowI(-1)` is the same function on any non-zero spectrum.
            MatrixFunction::PowI(_) => Domain::NonZero,
            MatrixFunction::Log | MatrixFunction::InvSqrt | MatrixFunction::Inv => Domain::Positive,
            MatrixFunction::Sqrt => Domain::NonNegative,
            MatrixFunction::Pow(p) if p > 0.0 => Domain::NonNegative,
            MatrixFunction::Pow(_) => Domain::Positive,
        }
    }

    /// Where `f'` is finite.
    pub(crate) fn derivative_domain(&self) -> Domain {
        match *self {
            MatrixFunction::Sqrt => Domain::Positive,
            MatrixFunction::Pow(p) if p > 0.0 && p < 1.0 => Domain::Positive,
            _ => self.value_domain(),
        }
    }

    /// `f(x)`.
    pub fn eval(&self, x: f64) -> f64 {
        match self {
            MatrixFunction::Exp => x.exp(),
            MatrixFunction::ScaledExp(t) => (t * x).exp(),
            MatrixFunction::Log => x.ln(),
            MatrixFunction::Sqrt => x.sqrt(),
            MatrixFunction::InvSqrt => 1.0 / x.sqrt(),
            MatrixFunction::Inv => 1.0 / x,
            MatrixFunction::PowI(n) => x.powi(*n),
            MatrixFunction::Pow(p) => x.powf(*p),
            MatrixFunction::Custom { f, .. } => f(x),
        }
    }

    /// `f'(x)`.
    pub fn derivative(&self, x: f64) -> f64 {
        match self {
            MatrixFunction::Exp => x.exp(),
            MatrixFunction::ScaledExp(t) => t * (t * x).exp(),
            MatrixFunction::Log => 1.0 / x,
            MatrixFunction::Sqrt => 0.5 / x.sqrt(),
            MatrixFunction::InvSqrt => -0.5 / (x * x.sqrt()),
            MatrixFunction::Inv => -1.0 / (x * x),
            MatrixFunction::PowI(n) => powi_derivative(*n, x),
            MatrixFunction::Pow(p) => {
                if *p == 0.0 {
                    0.0
                } else {
                    p * x.powf(p - 1.0)
                }
            }
            MatrixFunction::Custom { df, .. } => df(x),
        }
    }

    /// The divided difference `f[a, b] = (f(a) − f(b))/(a − b)`, equal to `f'(a)` when
    /// `a = b`, computed without cancellation for close arguments (see the type's
    /// documentation for the formulas). Symmetric: `f[a, b] = f[b, a]` bit for bit.
    pub fn divided_difference(&self, a: f64, b: f64) -> f64 {
        // Order the arguments so that every formula is symmetric bit for bit.
        let (a, b) = ordered(a, b);
        let d = a - b;
        if d == 0.0 {
            return self.derivative(a);
        }
        match self {
            MatrixFunction::Exp => exp_dd(1.0, a, b),
            MatrixFunction::ScaledExp(t) => exp_dd(*t, a, b),
            MatrixFunction::Log => {
                let (lo, hi) = ordered(a, b);
                let h = hi - lo;
                (h / lo).ln_1p() / h
            }
            MatrixFunction::Sqrt => 1.0 / (a.sqrt() + b.sqrt()),
            MatrixFunction::InvSqrt => {
                let (sa, sb) = (a.sqrt(), b.sqrt());
                -1.0 / (sa * sb * (sa + sb))
            }
            MatrixFunction::Inv => -1.0 / (a * b),
            MatrixFunction::PowI(n) => powi_dd(*n, a, b),
            MatrixFunction::Pow(p) => powf_dd(*p, a, b),
            MatrixFunction::Custom { f, df } => {
                let scale = 1.0_f64.max(a.abs()).max(b.abs());
                if d.abs() <= CBRT_EPS * scale {
                    df(0.5 * a + 0.5 * b)
                } else {
                    let (lo, hi) = ordered(a, b);
                    (f(hi) - f(lo)) / (hi - lo)
                }
            }
        }
    }
}

/// `(min, max)` of two numbers.
fn ordered(a: f64, b: f64) -> (f64, f64) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Divided difference of `exp(t x)` for `a ≠ b`: with `h`, `l` ordered so that `t·h ≥ t·l`,
/// `z = t(h − l) ≥ 0` and `f[a,b] = e^{t h}(1 − e^{−z})/(h − l) = −e^{t h} expm1(−z)/(h − l)`,
/// which neither cancels for small `z` nor overflows unless the result does.
fn exp_dd(t: f64, a: f64, b: f64) -> f64 {
    let (hi, lo) = if t * a >= t * b { (a, b) } else { (b, a) };
    let d = hi - lo;
    let z = t * d;
    -(t * hi).exp() * (-z).exp_m1() / d
}

/// `n xⁿ⁻¹` without overflowing `n − 1`.
fn powi_derivative(n: i32, x: f64) -> f64 {
    match n {
        0 => 0.0,
        i32::MIN => f64::from(n) * x.powi(n) / x,
        _ => f64::from(n) * x.powi(n - 1),
    }
}

/// Divided difference of `xⁿ`, `a ≠ b`.
fn powi_dd(n: i32, a: f64, b: f64) -> f64 {
    match n {
        0 => 0.0,
        n if n > 0 => powu_dd(n.unsigned_abs(), a, b),
        // a⁻ᵐ − b⁻ᵐ = −(aᵐ − bᵐ)·a⁻ᵐ b⁻ᵐ
        n => -powu_dd(n.unsigned_abs(), a, b) * a.powi(n) * b.powi(n),
    }
}

/// Divided difference of `xᵐ`, `m ≥ 1`, `a ≠ b`.
fn powu_dd(m: u32, a: f64, b: f64) -> f64 {
    if m <= POWI_SUM_MAX {
        // s_k = Σ_{i<k} aⁱ bᵏ⁻¹⁻ⁱ, s_{k+1} = a s_k + bᵏ: all terms share a sign when a, b do.
        let mut s = 0.0;
        let mut bk = 1.0;
        for _ in 0..m {
            s = a * s + bk;
            bk *= b;
        }
        return s;
    }
    if a * b > 0.0 {
        // Same sign: work with magnitudes, f[a,b] = (−1)^{m−1} f[|a|,|b|].
        let (lo, hi) = ordered(a.abs(), b.abs());
        let h = hi - lo;
        let mf = f64::from(m);
        let mag = lo.powf(mf) * (mf * (h / lo).ln_1p()).exp_m1() / h;
        if a < 0.0 && m.is_multiple_of(2) {
            -mag
        } else {
            mag
        }
    } else {
        // Opposite signs or a zero: |a − b| ≥ max(|a|, |b|), no cancellation in the denominator.
        let mf = f64::from(m);
        let (lo, hi) = ordered(a, b);
        (hi.powf(mf) - lo.powf(mf)) / (hi - lo)
    }
}

/// Divided difference of `xᵖ` on `x ≥ 0`, `a ≠ b`.
fn powf_dd(p: f64, a: f64, b: f64) -> f64 {
    if p == 0.0 {
        return 0.0;
    }
    let (lo, hi) = ordered(a, b);
    let h = hi - lo;
    if lo == 0.0 {
        return hi.powf(p) / hi;
    }
    lo.powf(p) * (p * (h / lo).ln_1p()).exp_m1() / h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_in_arguments() {
        let fs = [
            MatrixFunction::Exp,
            MatrixFunction::ScaledExp(-0.7),
            MatrixFunction::Log,
            MatrixFunction::Sqrt,
            MatrixFunction::InvSqrt,
            MatrixFunction::Inv,
            MatrixFunction::PowI(3),
            MatrixFunction::PowI(-20),
            MatrixFunction::Pow(0.3),
        ];
        for f in &fs {
            let (a, b) = (1.3, 2.9);
            assert_eq!(
                f.divided_difference(a, b).to_bits(),
                f.divided_difference(b, a).to_bits(),
                "{f:?}"
            );
        }
    }

    #[test]
    fn cbrt_eps_constant() {
        assert!((CBRT_EPS - f64::EPSILON.cbrt()).abs() < 1e-20);
    }
}
