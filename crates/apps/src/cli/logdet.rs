//! `gradmat logdet`: stochastic Lanczos quadrature for `log det(A + σI)`, with the gradient in
//! the entries of `A`.

use super::compute::{describe, logdet_slq, LogDet};
use super::io::{self, json_number};
use super::ops::{file_operator, require_memory, require_square};
use super::{depth_or_default, json_object, LogdetArgs, ProbeKind};
use crate::report::{prepare_output_dir, Outputs};
use anyhow::{anyhow, bail, Result};
use gradmat_matfun::estimators::Probe;
use gradmat_operators::algebra::Shifted;
use gradmat_operators::matrix_market::OperatorKind;
use gradmat_operators::{ParamVjp, SelfAdjoint};

/// Runs `logdet` and returns the JSON line (the gradient file written when asked).
pub fn run(a: &LogdetArgs) -> Result<String> {
    let file = io::read_matrix(&a.matrix)?;
    require_square(&a.matrix, file.nrows(), file.ncols())?;
    let n = file.nrows();
    let depth = depth_or_default(a.depth, n, &a.matrix)?;
    if a.probes == 0 {
        bail!("--probes 0 is out of range: at least one probe is needed");
    }
    if !a.shift.is_finite() {
        bail!("--shift {} is not a finite number", a.shift);
    }
    let grad = a.grad_dir.is_some();
    // A lower bound: per probe running at the same time (one per thread), one Lanczos basis
    // (N×K) and four work vectors of N doubles, with gradients a second basis and a parameter
    // gradient; the sparse storage once.
    let at_once = a.probes.min(rayon::current_num_threads().max(1));
    let (nf, kf, nnz) = (n as f64, depth as f64, file.nnz() as f64);
    let per_probe = 8.0 * nf * (kf + 4.0) + if grad { 8.0 * (nf * kf + nnz) } else { 0.0 };
    let need = at_once as f64 * per_probe + 24.0 * nnz;
    require_memory(
        &a.matrix,
        n,
        &format!("logdet with --depth {depth} ({at_once} probes at a time)"),
        need,
    )?;
    if let Some(dir) = &a.grad_dir {
        prepare_output_dir(dir)?;
    }
    let mm = file_operator(
        &a.matrix,
        file,
        OperatorKind::SelfAdjoint,
        "logdet needs a symmetric positive-definite matrix",
    )?;
    let op = mm
        .operator
        .as_self_adjoint()
        .ok_or_else(|| anyhow!("internal: no self-adjoint operator for logdet"))?;
    let res = estimate(op, a, depth, grad)?;
    if !a.quiet {
        super::compute::warn_if_nearly_singular(&a.matrix, res.ritz_range);
    }
    if let Some(dir) = &a.grad_dir {
        let mut files = Outputs::new(dir)?;
        io::write_matrix_gradient(&mut files, &mm, res.grad_params.as_deref().unwrap_or(&[]))?;
        files.commit()?;
    }
    json_line(&res, None)
}

/// The one JSON line of `logdet`; under mpirun (`ranks`) with the number of ranks last.
pub fn json_line(res: &LogDet, ranks: Option<usize>) -> Result<String> {
    let opt = |x: Option<f64>| -> Result<String> {
        match x {
            Some(s) if s.is_finite() => json_number(s),
            _ => Ok("null".into()),
        }
    };
    let mut fields = vec![
        ("value", json_number(res.value)?),
        ("std_error", opt(res.std_error)?),
        ("depth", res.depth.to_string()),
        ("matvecs", res.matvecs.to_string()),
        ("seconds_forward", json_number(res.seconds_forward)?),
        ("seconds_gradient", opt(res.seconds_gradient)?),
        ("last_step_change", opt(res.last_step_change)?),
        ("exact", res.exact.to_string()),
    ];
    if let Some(p) = ranks {
        fields.push(("ranks", p.to_string()));
    }
    Ok(json_object(&fields))
}

/// SLQ on `A + σI`; the returned gradient is the `A` part only (σ's own entry dropped).
fn estimate<A>(op: A, a: &LogdetArgs, depth: usize, grad: bool) -> Result<LogDet>
where
    A: SelfAdjoint<f64> + ParamVjp<f64>,
{
    let np = op.num_params();
    let shifted = Shifted::new(op, a.shift).map_err(|e| anyhow!("{}: {e}", a.matrix.display()))?;
    let probe = match a.probe {
        ProbeKind::Rademacher => Probe::Rademacher,
        ProbeKind::Gaussian => Probe::Gaussian,
    };
    let mut res = logdet_slq(&shifted, a.probes, depth, a.seed, probe, grad)
        .map_err(|e| describe(&a.matrix, None, "Lanczos", e))?;
    if let Some(g) = res.grad_params.as_mut() {
        g.truncate(np);
    }
    Ok(res)
}
