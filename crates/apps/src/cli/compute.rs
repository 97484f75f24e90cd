//! The numerical kernels behind the subcommands, on the Krylov matrix-function API of
//! `gradmat-matfun` (`krylov::quadform_lanczos`/`quadform_arnoldi` with their `gradient`
//! backward passes, and the SLQ estimator with its probe generator).
//!
//! One path is local: `--method arnoldi` with a function other than `exp`. The matfun Arnoldi
//! path supports `exp` only (a general Hessenberg `H` has no symmetric eigendecomposition);
//! here `f` is applied to `(H + Hᵀ)/2` through [`SymmetricMatrixFunction`] when `H` is symmetric
//! to rounding (a symmetric `A`), and the gradient goes through `gradmat_adjoint::arnoldi_vjp`
//! with `H̄ = T̄` (the symmetric Daleckii–Krein cotangent, restricted to the Hessenberg pattern
//! by the adjoint). A non-symmetric `H` is reported as an error.

use gradmat_adjoint::{arnoldi_vjp, AdjointParams, ArnoldiCotangent};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::KrylovError;
use gradmat_matfun::dense::{MatrixFunction, SymmetricMatrixFunction};
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

/// `vᵀf(A)v` by Arnoldi, with its gradients when asked: `exp` through the matfun Arnoldi path
/// (any square `A`), the other functions through the local symmetric-`H` path (see the module
/// documentation).
pub fn quadform_arnoldi<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    o: &QuadOptions,
) -> Result<QuadForm, MatfunError>
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
{
    if !matches!(f, MatrixFunction::Exp) {
        return quadform_arnoldi_symmetric(op, v, f, o);
    }
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

/// Arnoldi with `f` applied to the (symmetric to rounding) Hessenberg matrix.
fn quadform_arnoldi_symmetric<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    o: &QuadOptions,
) -> Result<QuadForm, MatfunError>
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
{
    let t0 = Instant::now();
    let dec = arnoldi(
        op,
        v,
        &ArnoldiParams::new(o.depth).reorthogonalize(o.reorth),
    )?;
    let kk = dec.depth();
    let c = dec.inv_norm();
    let scale = 1.0 / (c * c);
    let fun = SymmetricMatrixFunction::<f64>::new(f.clone(), kk, dec.hessenberg()).map_err(
        |e| match e {
            MatfunError::EigenvalueOutsideDomain {
                function,
                eigenvalue,
                domain,
                ..
            } => MatfunError::RitzValueOutsideDomain {
                function,
                ritz_value: eigenvalue,
                domain,
            },
            other => other,
        },
    )?;
    let value = scale * fun.quadratic_form();
    if !value.is_finite() {
        return Err(MatfunError::NonFiniteResult { what: "vᵀf(A)v" });
    }
    let mut out = QuadForm {
        value,
        depth: kk,
        matvecs: dec.info().num_matvecs,
        seconds_forward: secs(t0),
        seconds_gradient: None,
        grad_params: None,
        grad_vector: None,
    };
    if o.grad {
        let t1 = Instant::now();
        // ρ depends on H through (H + Hᵀ)/2 and T̄ is symmetric, so H̄ = T̄ on the Hessenberg
        // pattern (the adjoint ignores the rest).
        let hbar = fun.pullback_quadratic_form(scale)?;
        let cot = ArnoldiCotangent {
            hessenberg: Some(&hbar),
            inv_norm: -2.0 * value / c,
            ..Default::default()
        };
        let mut adj = AdjointParams::default();
        if let Some(on) = o.project {
            adj = adj.project(on);
        }
        let mut g = vec![0.0; op.num_params()];
        let vbar = arnoldi_vjp(op, &dec, &cot, &adj, &mut g)?;
        out.seconds_gradient = Some(secs(t1));
        out.grad_params = Some(g);
        out.grad_vector = Some(vbar);
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
        });
    }
    let n = op.ncols();
    let kp = KrylovParams::new(depth).reorthogonalize(Reorthogonalize::Full);
    let mut values = Vec::with_capacity(probes);
    let mut acc = vec![0.0; op.num_params()];
    let (mut depth_used, mut matvecs) = (0, 0);
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
    })
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
