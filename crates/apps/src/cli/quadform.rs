//! `gradmat quadform`: `vᵀf(A)v` by Lanczos or Arnoldi, with gradients.

use super::compute::{describe, quadform_arnoldi, quadform_lanczos, QuadOptions, QuadformOutput};
use super::io::{self, json_number};
use super::ops::{file_operator, require_memory, require_square};
use super::{depth_or_default, json_object, Function, Method, QuadformArgs, Reorth};
use crate::report::{prepare_output_dir, Outputs};
use anyhow::{anyhow, bail, Result};
use gradmat_matfun::{MatrixFunction, Reorthogonalize};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::matrix_market::OperatorKind;
use gradmat_operators::ParamVjp as _;

impl Function {
    /// The matfun function.
    pub fn matrix_function(self) -> MatrixFunction {
        match self {
            Function::Log => MatrixFunction::Log,
            Function::Exp => MatrixFunction::Exp,
            Function::Sqrt => MatrixFunction::Sqrt,
            Function::InvSqrt => MatrixFunction::InvSqrt,
            Function::Inv => MatrixFunction::Inv,
        }
    }
}

impl Reorth {
    /// The krylov setting.
    pub fn krylov(self) -> Reorthogonalize {
        match self {
            Reorth::None => Reorthogonalize::None,
            Reorth::Full => Reorthogonalize::Full,
        }
    }
}

/// Runs `quadform` and returns the JSON line (gradient files written when asked).
pub fn run(a: &QuadformArgs) -> Result<String> {
    let file = io::read_matrix(&a.matrix)?;
    require_square(&a.matrix, file.nrows(), file.ncols())?;
    let n = file.nrows();
    let spec = io::VectorSpec::parse(&a.vector)?;
    // A vector file is read first: a wrong length says more than a memory estimate.
    let from_file = if spec.is_file() {
        let v = spec.vector(n)?;
        if v.len() != n {
            bail!(
                "{}: the vector has {} entries but the matrix {} is {n}×{n}",
                a.vector.display(),
                v.len(),
                a.matrix.display()
            );
        }
        Some(v)
    } else {
        None
    };
    let depth = depth_or_default(a.depth, n, &a.matrix)?;
    if !a.shift.is_finite() {
        bail!("--shift {} is not a finite number", a.shift);
    }
    let grad = a.grad_dir.is_some();
    // A lower bound: the Krylov basis (N×K) and six work vectors, the sparse storage, and with
    // gradients the adjoint's second basis.
    let (nf, kf, nnz) = (n as f64, depth as f64, file.nnz() as f64);
    let need = 8.0 * nf * (kf + 6.0)
        + 24.0 * nnz
        + if grad {
            8.0 * (nf * (kf + 2.0) + nnz)
        } else {
            0.0
        };
    require_memory(
        &a.matrix,
        n,
        &format!("quadform with --depth {depth}"),
        need,
    )?;
    let v = match from_file {
        Some(v) => v,
        None => spec.vector(n)?,
    };
    if let Some(dir) = &a.grad_dir {
        prepare_output_dir(dir)?;
    }
    let f = a.function.matrix_function();
    let o = QuadOptions {
        depth,
        reorth: a.reorthogonalize.krylov(),
        project: !a.no_projection,
        grad,
    };
    let (method, kind) = match a.method {
        Method::Lanczos => ("Lanczos", OperatorKind::SelfAdjoint),
        Method::Arnoldi => ("Arnoldi", OperatorKind::General),
    };
    let desc = |e| describe(&a.matrix, Some(&a.vector), method, e);
    let mm = file_operator(
        &a.matrix,
        file,
        kind,
        "--method lanczos needs a symmetric matrix (use --method arnoldi)",
    )?;
    let shift = |e: gradmat_operators::OperatorError| anyhow!("{}: {e}", a.matrix.display());
    let sigma = a.shift;
    let mut res: QuadformOutput = match a.method {
        Method::Lanczos => {
            let op = mm
                .operator
                .as_self_adjoint()
                .ok_or_else(|| anyhow!("internal: no self-adjoint operator for Lanczos"))?;
            if sigma == 0.0 {
                quadform_lanczos(&op, &v, &f, &o)
            } else {
                quadform_lanczos(&Shifted::new(op, sigma).map_err(shift)?, &v, &f, &o)
            }
        }
        Method::Arnoldi => {
            let op = &mm.operator;
            if sigma == 0.0 {
                quadform_arnoldi(op, &v, &f, &o)
            } else {
                quadform_arnoldi(&Shifted::new(op, sigma).map_err(shift)?, &v, &f, &o)
            }
        }
    }
    .map_err(desc)?;
    if let Some(g) = res.grad_params.as_mut() {
        // The shift's own entry (last) is not a stored entry of the file.
        g.truncate(mm.operator.num_params());
    }
    if !a.quiet {
        if let Some(range) = res.ritz_range {
            if matches!(
                f,
                MatrixFunction::Log | MatrixFunction::Inv | MatrixFunction::InvSqrt
            ) {
                super::compute::warn_if_nearly_singular(&a.matrix, range);
            }
        }
    }
    if let Some(dir) = &a.grad_dir {
        let mut files = Outputs::new(dir)?;
        io::write_matrix_gradient(&mut files, &mm, res.grad_params.as_deref().unwrap_or(&[]))?;
        io::write_vector_gradient(&mut files, res.grad_vector.as_deref().unwrap_or(&[]))?;
        files.commit()?;
    }
    json_line(&res, None)
}

/// The one JSON line of `quadform`; under mpirun (`ranks`) with the number of ranks last.
pub fn json_line(res: &QuadformOutput, ranks: Option<usize>) -> Result<String> {
    let mut fields = vec![
        ("value", json_number(res.value)?),
        ("depth", res.depth.to_string()),
        ("matvecs", res.matvecs.to_string()),
        ("seconds_forward", json_number(res.seconds_forward)?),
        (
            "seconds_gradient",
            match res.seconds_gradient {
                Some(s) => json_number(s)?,
                None => "null".into(),
            },
        ),
        (
            "last_step_change",
            match res.convergence.last_step_change {
                Some(d) if d.is_finite() => json_number(d)?,
                _ => "null".into(),
            },
        ),
        ("exact", res.convergence.exact.to_string()),
    ];
    if let Some(p) = ranks {
        fields.push(("ranks", p.to_string()));
    }
    Ok(json_object(&fields))
}
