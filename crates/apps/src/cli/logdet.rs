//! `gradmat logdet`: stochastic Lanczos quadrature for `log det(A + σI)`, with the gradient in
//! the entries of `A`.

use super::compute::{describe, logdet_slq, LogDet};
use super::io::{self, json_number};
use super::ops::{file_operator, require_memory, require_square};
use super::{check_depth, json_object, LogdetArgs, ProbeKind};
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
    check_depth(a.depth, n, &a.matrix)?;
    // A lower bound: one Lanczos basis (N×K) and four work vectors of N doubles.
    let need = 8.0 * n as f64 * (a.depth as f64 + 4.0);
    require_memory(
        &a.matrix,
        n,
        &format!("logdet with --depth {}", a.depth),
        need,
    )?;
    if a.probes == 0 {
        bail!("--probes 0 is out of range: at least one probe is needed");
    }
    if !a.shift.is_finite() {
        bail!("--shift {} is not a finite number", a.shift);
    }
    if let Some(dir) = &a.grad_dir {
        io::create_dir(dir)?;
    }
    let grad = a.grad_dir.is_some();
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
    let res = estimate(op, a, grad)?;
    super::compute::warn_if_nearly_singular(&a.matrix, res.ritz_range);
    if let Some(dir) = &a.grad_dir {
        io::write_matrix_gradient(dir, &mm, res.grad_params.as_deref().unwrap_or(&[]))?;
    }
    let opt = |x: Option<f64>| -> Result<String> {
        match x {
            Some(s) => json_number(s),
            None => Ok("null".into()),
        }
    };
    Ok(json_object(&[
        ("value", json_number(res.value)?),
        ("std_error", opt(res.std_error)?),
        ("depth", res.depth.to_string()),
        ("matvecs", res.matvecs.to_string()),
        ("seconds_forward", json_number(res.seconds_forward)?),
        ("seconds_gradient", opt(res.seconds_gradient)?),
    ]))
}

/// SLQ on `A + σI`; the returned gradient is the `A` part only (σ's own entry dropped).
fn estimate<A>(op: A, a: &LogdetArgs, grad: bool) -> Result<LogDet>
where
    A: SelfAdjoint<f64> + ParamVjp<f64>,
{
    let np = op.num_params();
    let shifted = Shifted::new(op, a.shift).map_err(|e| anyhow!("{}: {e}", a.matrix.display()))?;
    let probe = match a.probe {
        ProbeKind::Rademacher => Probe::Rademacher,
        ProbeKind::Gaussian => Probe::Gaussian,
    };
    let mut res = logdet_slq(&shifted, a.probes, a.depth, a.seed, probe, grad)
        .map_err(|e| describe(&a.matrix, None, e))?;
    if let Some(g) = res.grad_params.as_mut() {
        g.truncate(np);
    }
    Ok(res)
}
