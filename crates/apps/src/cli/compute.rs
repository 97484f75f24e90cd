//! The numerical kernels behind the subcommands, on the Krylov matrix-function API of
//! `gradmat-matfun` (`krylov::quadform_lanczos`/`quadform_arnoldi` with their `gradient`
//! backward passes, and the SLQ estimators), with the timings the command reports.

use gradmat_krylov::KrylovError;
use gradmat_matfun::estimators::{Probe, SlqParams};
use gradmat_matfun::krylov::{Convergence, Gradient, KrylovParams};
use gradmat_matfun::{MatfunError, MatrixFunction, Reorthogonalize};
use gradmat_operators::{AdjointOperator, ParamVjp, SelfAdjoint};
use std::time::Instant;

/// Result of one differentiated quadratic form `ρ = vᵀf(A)v`, with the timings the command
/// reports.
#[derive(Debug, Clone)]
pub struct QuadformOutput {
    /// `ρ`.
    pub value: f64,
    /// Krylov depth reached (smaller than requested after a breakdown).
    pub depth: usize,
    /// Matrix–vector products of the forward pass.
    pub matvecs: usize,
    /// Seconds for the decomposition and the small matrix function.
    pub seconds_forward: f64,
    /// Seconds of the backward pass (`None` without gradients).
    pub seconds_gradient: Option<f64>,
    /// `∂ρ/∂θ` over the operator's parameters (with gradients).
    pub grad_params: Option<Vec<f64>>,
    /// `∂ρ/∂v` (with gradients).
    pub grad_vector: Option<Vec<f64>>,
    /// Smallest and largest Ritz value (symmetric paths; `None` for Arnoldi's `exp`).
    pub ritz_range: Option<(f64, f64)>,
    /// The change made by the last Krylov step and whether the decomposition is exact.
    pub convergence: Convergence<f64>,
}

/// Options of the Krylov runs of `quadform`.
#[derive(Debug, Clone, Copy)]
pub struct QuadOptions {
    /// Depth `K` (checked `1 ≤ K ≤ N` by the caller).
    pub depth: usize,
    /// Reorthogonalisation of the forward pass.
    pub reorth: Reorthogonalize,
    /// The Arnoldi adjoint's re-projection (on unless `--no-projection`).
    pub project: bool,
    /// Compute gradients.
    pub grad: bool,
}

impl QuadOptions {
    fn krylov(&self) -> KrylovParams {
        KrylovParams {
            reorthogonalize: self.reorth,
            project: self.project,
            ..KrylovParams::new(self.depth)
        }
    }
}

/// What [`timed`] reads off a forward result.
type Summary = (f64, usize, usize, Option<(f64, f64)>, Convergence<f64>);

/// `2^e` for `-1074 ≤ e ≤ 1023`, exactly.
fn pow2(e: i32) -> f64 {
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// A start vector so small that the Krylov iteration cannot normalise it (`1/‖v‖` overflows
/// below `‖v‖ ≈ 5.6e-309`, and subnormal entries lose digits) is scaled by a power of two `s`
/// (exactly) into `[1, 2)` in its largest entry: `(v/s, s)`. Other vectors are returned as
/// they are with `s = 1`. The quadratic form is `ρ(v) = s²ρ(v/s)`, its gradients
/// `∇_v ρ = s ∇ρ(v/s)` and `∇_θ ρ = s² ∇_θ ρ(v/s)` (see [`rescale`]).
fn scaled_start(v: &[f64]) -> (std::borrow::Cow<'_, [f64]>, f64) {
    let max = v.iter().fold(0.0_f64, |m, x| m.max(x.abs()));
    if !(max > 0.0 && max.is_finite() && max < pow2(-500)) {
        return (std::borrow::Cow::Borrowed(v), 1.0);
    }
    let s = pow2(max.log2().floor().max(-1074.0) as i32);
    (
        std::borrow::Cow::Owned(v.iter().map(|x| x / s).collect()),
        s,
    )
}

/// The output for `v = s·u` from the output for `u` (see [`scaled_start`]).
fn rescale(mut out: QuadformOutput, s: f64) -> QuadformOutput {
    // `s` is an exact power of two: 1 means no scaling was applied.
    if s.to_bits() == 1.0f64.to_bits() {
        return out;
    }
    out.value = out.value * s * s;
    if let Some(d) = out.convergence.last_step_change.as_mut() {
        *d = *d * s * s;
    }
    if let Some(g) = out.grad_params.as_mut() {
        g.iter_mut().for_each(|x| *x = *x * s * s);
    }
    if let Some(g) = out.grad_vector.as_mut() {
        g.iter_mut().for_each(|x| *x *= s);
    }
    out
}

/// Times a forward pass and, when asked, its backward pass (`θ̄` of `num_params` entries).
fn timed<Q>(
    num_params: usize,
    grad: bool,
    forward: impl FnOnce() -> Result<Q, MatfunError>,
    summary: impl Fn(&Q) -> Summary,
    backward: impl FnOnce(&Q, &mut [f64]) -> Result<Gradient<f64>, MatfunError>,
) -> Result<QuadformOutput, MatfunError> {
    let t0 = Instant::now();
    let qf = forward()?;
    let seconds_forward = t0.elapsed().as_secs_f64();
    let (value, depth, matvecs, ritz_range, convergence) = summary(&qf);
    let mut out = QuadformOutput {
        value,
        depth,
        matvecs,
        seconds_forward,
        seconds_gradient: None,
        grad_params: None,
        grad_vector: None,
        ritz_range,
        convergence,
    };
    if grad {
        let t1 = Instant::now();
        let mut g = vec![0.0; num_params];
        let gv = backward(&qf, &mut g)?;
        out.seconds_gradient = Some(t1.elapsed().as_secs_f64());
        out.grad_params = Some(g);
        out.grad_vector = Some(gv.v);
    }
    Ok(out)
}

/// `vᵀf(A)v` by Lanczos, with its gradients when asked (a tiny `v` is scaled first, see
/// `scaled_start`).
pub fn quadform_lanczos<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    o: &QuadOptions,
) -> Result<QuadformOutput, MatfunError>
where
    A: SelfAdjoint<f64> + ParamVjp<f64> + ?Sized,
{
    let (u, s) = scaled_start(v);
    let out = timed(
        op.num_params(),
        o.grad,
        || gradmat_matfun::krylov::quadform_lanczos(op, &u, f, &o.krylov()),
        |qf| {
            let r = qf.ritz_range();
            let c = qf.convergence();
            (qf.value(), qf.depth(), qf.num_matvecs(), Some(r), c)
        },
        |qf, g| qf.gradient(op, g),
    )?;
    Ok(rescale(out, s))
}

/// `vᵀf(A)v` by Arnoldi, with its gradients when asked (matfun's Arnoldi path: `exp` for any
/// square `A`, the other functions when the Hessenberg matrix is symmetric to rounding).
pub fn quadform_arnoldi<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    o: &QuadOptions,
) -> Result<QuadformOutput, MatfunError>
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
{
    let (u, s) = scaled_start(v);
    let out = timed(
        op.num_params(),
        o.grad,
        || gradmat_matfun::krylov::quadform_arnoldi(op, &u, f, &o.krylov()),
        |qf| {
            let r = qf
                .ritz_values()
                .and_then(|th| Some((*th.first()?, *th.last()?)));
            let c = qf.convergence();
            (qf.value(), qf.depth(), qf.num_matvecs(), r, c)
        },
        |qf, g| qf.gradient(op, g),
    )?;
    Ok(rescale(out, s))
}

/// Result of the stochastic Lanczos quadrature estimate of `log det A`.
#[derive(Debug, Clone)]
pub struct LogDet {
    /// The estimate (mean over probes of `zᵀ log(A) z`).
    pub value: f64,
    /// Standard error of the mean (`None` with one probe).
    pub std_error: Option<f64>,
    /// Largest Krylov depth reached over the probes.
    pub depth: usize,
    /// Matrix–vector products of the forward passes, summed over probes.
    pub matvecs: usize,
    /// Seconds of the forward passes (decompositions and `log T`), summed over probes.
    pub seconds_forward: f64,
    /// Seconds of the backward passes, summed over probes (`None` without gradients).
    pub seconds_gradient: Option<f64>,
    /// Gradient of `value` over the operator's parameters (with gradients).
    pub grad_params: Option<Vec<f64>>,
    /// Smallest and largest Ritz value over all probes.
    pub ritz_range: (f64, f64),
    /// The mean over probes of the change made by the last Lanczos step (`None` at depth 1).
    pub last_step_change: Option<f64>,
    /// Every probe's decomposition is exact.
    pub exact: bool,
}

/// Stochastic Lanczos quadrature (`gradmat_matfun::estimators::logdet` and
/// `logdet_with_grad`): `log det A ≈ (1/L) Σ_ℓ z_ℓᵀ log(T_ℓ) z_ℓ` with matfun's seeded probes
/// and fully reorthogonalised Lanczos, probes in parallel. The forward and backward seconds are
/// the estimator's per-probe timings summed over probes.
pub fn logdet_slq<A>(
    op: &A,
    probes: usize,
    depth: usize,
    seed: u64,
    probe: Probe,
    grad: bool,
) -> Result<LogDet, MatfunError>
where
    A: SelfAdjoint<f64> + ParamVjp<f64> + ?Sized,
{
    let params = SlqParams {
        num_probes: probes,
        depth,
        seed,
        probe,
        reorthogonalize: Reorthogonalize::Full,
        ..SlqParams::default()
    };
    let mut g = grad.then(|| vec![0.0; op.num_params()]);
    let est = match g.as_mut() {
        Some(g) => gradmat_matfun::estimators::logdet_with_grad(op, &params, g)?,
        None => gradmat_matfun::estimators::logdet(op, &params)?,
    };
    Ok(LogDet {
        value: est.value,
        std_error: est.std_error.is_finite().then_some(est.std_error),
        depth: est.depth,
        matvecs: est.num_matvecs,
        seconds_forward: est.seconds_forward,
        seconds_gradient: grad.then_some(est.seconds_backward),
        grad_params: g,
        ritz_range: est.ritz_range,
        last_step_change: est.last_step_change,
        exact: est.exact,
    })
}

/// A warning on stderr when the smallest Ritz value is below `1e-12` of the largest: the matrix
/// may be (numerically) singular, and a Krylov estimate cannot tell (a null space that the
/// vector or probes barely weigh need not show up among the Ritz values).
pub fn warn_if_nearly_singular(matrix: &std::path::Path, range: (f64, f64)) {
    let (lo, hi) = range;
    if lo.is_finite() && hi.is_finite() && lo < 1e-12 * hi.abs() {
        eprintln!(
            "gradmat: warning: {}: the smallest Ritz value {lo:e} is below 1e-12 of the largest \
             {hi:e}: the matrix may be singular, and then the result is not meaningful",
            matrix.display()
        );
    }
}

/// A one-line `anyhow` error from a computation, naming the matrix (or the vector for a zero
/// start vector) and the Krylov method of the run (`"Lanczos"` or `"Arnoldi"`; a fully
/// reorthogonalised Lanczos run uses the Arnoldi code, whose errors would say "arnoldi").
pub fn describe(
    matrix: &std::path::Path,
    vector: Option<&std::path::Path>,
    method: &str,
    e: MatfunError,
) -> anyhow::Error {
    let m = matrix.display();
    let (probe, inner) = match e {
        MatfunError::Probe { probe, source } => (Some(probe), *source),
        other => (None, other),
    };
    let at = probe.map_or(String::new(), |p| format!("probe {p}: "));
    match &inner {
        MatfunError::Krylov(KrylovError::ZeroStartVector) => match vector {
            Some(p) => anyhow::anyhow!("{}: the vector is zero", p.display()),
            None => anyhow::anyhow!("{m}: {at}the probe vector is zero"),
        },
        MatfunError::Krylov(KrylovError::NonFinite { step, .. }) => anyhow::anyhow!(
            "{m}: {at}a non-finite value appeared at step {step} of the {method} iteration: the \
             matrix–vector products overflow (matrix entries too close to the largest \
             floating-point number)"
        ),
        MatfunError::NotSymmetric { .. } => anyhow::anyhow!(
            "{m}: with --method arnoldi, functions other than exp need a symmetric matrix, \
             but the Arnoldi {inner}"
        ),
        _ => anyhow::anyhow!("{m}: {at}{inner}"),
    }
}
