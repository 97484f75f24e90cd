//! The numerical kernels behind the subcommands, on the Krylov matrix-function API of
//! `gradmat-matfun` (`krylov::quadform_lanczos`/`quadform_arnoldi` with their `gradient`
//! backward passes, and the SLQ estimator with its probe generator).

use gradmat_krylov::arnoldi::Reorthogonalize;
use gradmat_krylov::KrylovError;
use gradmat_matfun::dense::MatrixFunction;
use gradmat_matfun::estimators::{probe_vector, Probe, SlqParams};
use gradmat_matfun::krylov::KrylovParams;
use gradmat_matfun::MatfunError;
use gradmat_operators::{AdjointOperator, ParamVjp, SelfAdjoint};
use std::time::Instant;

/// Result of one differentiated quadratic form `ρ = vᵀf(A)v`.
#[derive(Debug, Clone)]
pub struct QuadForm {
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
}

/// `(min, max)` of a quadratic form's Ritz values.
fn ritz_range(qf: &gradmat_matfun::krylov::QuadForm<f64>) -> Option<(f64, f64)> {
    qf.ritz_values()
        .filter(|th| !th.is_empty())
        .map(|th| (th[0], th[th.len() - 1]))
}

/// Options of the Krylov runs of `quadform`.
#[derive(Debug, Clone, Copy)]
pub struct QuadOptions {
    /// Depth `K` (checked `1 ≤ K ≤ N` by the caller).
    pub depth: usize,
    /// Reorthogonalisation of the forward pass.
    pub reorth: Reorthogonalize,
    /// `Some(false)` turns the Arnoldi adjoint's re-projection off.
    pub project: Option<bool>,
    /// Compute gradients.
    pub grad: bool,
}

impl QuadOptions {
    fn krylov(&self) -> KrylovParams {
        let p = KrylovParams::new(self.depth).reorthogonalize(self.reorth);
        match self.project {
            Some(on) => p.project(on),
            None => p,
        }
    }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// `vᵀf(A)v` by Lanczos, with its gradients when asked.
pub fn quadform_lanczos<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    o: &QuadOptions,
) -> Result<QuadForm, MatfunError>
where
    A: SelfAdjoint<f64> + ParamVjp<f64> + ?Sized,
{
    let t0 = Instant::now();
    let qf = gradmat_matfun::krylov::quadform_lanczos(op, v, f, &o.krylov())?;
    let seconds_forward = secs(t0);
    let mut out = QuadForm {
        value: qf.value(),
        depth: qf.depth(),
        matvecs: qf.num_matvecs(),
        seconds_forward,
        seconds_gradient: None,
        grad_params: None,
        grad_vector: None,
        ritz_range: ritz_range(&qf),
    };
    if o.grad {
        let t1 = Instant::now();
        let mut g = vec![0.0; op.num_params()];
        let gv = qf.gradient(op, &mut g)?;
        out.seconds_gradient = Some(secs(t1));
        out.grad_params = Some(g);
        out.grad_vector = Some(gv.v);
    }
    Ok(out)
}

/// `vᵀf(A)v` by Arnoldi, with its gradients when asked (matfun's Arnoldi path: `exp` for any
/// square `A`, the other functions when the Hessenberg matrix is symmetric to rounding).
pub fn quadform_arnoldi<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    o: &QuadOptions,
) -> Result<QuadForm, MatfunError>
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
{
    let t0 = Instant::now();
    let qf = gradmat_matfun::krylov::quadform_arnoldi(op, v, f, &o.krylov())?;
    let seconds_forward = secs(t0);
    let mut out = QuadForm {
        value: qf.value(),
        depth: qf.depth(),
        matvecs: qf.num_matvecs(),
        seconds_forward,
        seconds_gradient: None,
        grad_params: None,
        grad_vector: None,
        ritz_range: ritz_range(&qf),
    };
    if o.grad {
        let t1 = Instant::now();
        let mut g = vec![0.0; op.num_params()];
        let gv = qf.gradient_general(op, &mut g)?;
        out.seconds_gradient = Some(secs(t1));
        out.grad_params = Some(g);
        out.grad_vector = Some(gv.v);
    }
    Ok(out)
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
    /// Seconds of the forward passes (decompositions and `log T`).
    pub seconds_forward: f64,
    /// Seconds of the backward passes (`None` without gradients).
    pub seconds_gradient: Option<f64>,
    /// Gradient of `value` over the operator's parameters (with gradients).
    pub grad_params: Option<Vec<f64>>,
    /// Smallest and largest Ritz value over all probes.
    pub ritz_range: (f64, f64),
}

/// Stochastic Lanczos quadrature (`gradmat_matfun::estimators`): `log det A ≈ (1/L) Σ_ℓ
/// z_ℓᵀ log(T_ℓ) z_ℓ` with matfun's seeded probes and fully reorthogonalised Lanczos.
///
/// Without gradients this is `estimators::logdet` (probes in parallel). With gradients the
/// probes run one after the other (same probes, same per-probe values, summed in probe order
/// as the estimator does, so the value is the same) so that the forward and backward passes
/// can be timed separately.
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
    let params = SlqParams::new()
        .num_probes(probes)
        .num_matvecs(depth)
        .seed(seed)
        .probe(probe)
        .reorthogonalize(Reorthogonalize::Full);
    let finite = |x: f64| x.is_finite().then_some(x);
    if !grad {
        let t0 = Instant::now();
        let est = gradmat_matfun::estimators::logdet(op, &params)?;
        return Ok(LogDet {
            value: est.value,
            std_error: finite(est.std_error),
            depth: est.depth,
            matvecs: est.num_matvecs,
            seconds_forward: secs(t0),
            seconds_gradient: None,
            grad_params: None,
            ritz_range: est.ritz_range,
        });
    }
    let n = op.ncols();
    let kp = KrylovParams::new(depth).reorthogonalize(Reorthogonalize::Full);
    let mut values = Vec::with_capacity(probes);
    let mut acc = vec![0.0; op.num_params()];
    let (mut depth_used, mut matvecs) = (0, 0);
    let mut range = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut tf, mut tg) = (0.0, 0.0);
    for idx in 0..probes {
        let wrap = |e: MatfunError| MatfunError::Probe {
            probe: idx,
            source: Box::new(e),
        };
        let t0 = Instant::now();
        let z = probe_vector::<f64>(probe, seed, idx, n);
        let qf = gradmat_matfun::krylov::quadform_lanczos(op, &z, &MatrixFunction::Log, &kp)
            .map_err(wrap)?;
        tf += secs(t0);
        let t1 = Instant::now();
        let mut g = vec![0.0; op.num_params()];
        qf.gradient(op, &mut g).map_err(wrap)?;
        acc.iter_mut().zip(&g).for_each(|(a, x)| *a += *x);
        tg += secs(t1);
        values.push(qf.value());
        depth_used = depth_used.max(qf.depth());
        matvecs += qf.num_matvecs();
        if let Some((lo, hi)) = ritz_range(&qf) {
            range = (range.0.min(lo), range.1.max(hi));
        }
    }
    let l = probes as f64;
    let mean = values.iter().sum::<f64>() / l;
    let std_error = (probes > 1).then(|| {
        let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (l - 1.0);
        (var / l).sqrt()
    });
    let inv_l = 1.0 / l;
    acc.iter_mut().for_each(|a| *a *= inv_l);
    Ok(LogDet {
        value: mean,
        std_error,
        depth: depth_used,
        matvecs,
        seconds_forward: tf,
        seconds_gradient: Some(tg),
        grad_params: Some(acc),
        ritz_range: range,
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
/// start vector).
pub fn describe(
    matrix: &std::path::Path,
    vector: Option<&std::path::Path>,
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
        MatfunError::NotSymmetric { .. } => anyhow::anyhow!(
            "{m}: with --method arnoldi, functions other than exp need a symmetric matrix, \
             but the Arnoldi {inner}"
        ),
        _ => anyhow::anyhow!("{m}: {at}{inner}"),
    }
}
