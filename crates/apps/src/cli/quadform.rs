//! `gradmat quadform`: `vᵀf(A)v` by Lanczos or Arnoldi, with gradients.

use super::compute::{describe, quadform_arnoldi, quadform_lanczos, QuadOptions, QuadformOutput};
use super::io::{self, json_number};
use super::ops::{file_operator, require_square};
use super::{check_depth, json_object, Function, Method, QuadformArgs, Reorth};
use anyhow::{anyhow, bail, Result};
use gradmat_matfun::{MatrixFunction, Reorthogonalize};
use gradmat_operators::matrix_market::OperatorKind;

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
    let v = io::read_vector(&a.vector)?;
    if v.len() != n {
        bail!(
            "{}: the vector has {} entries but the matrix {} is {n}×{n}",
            a.vector.display(),
            v.len(),
            a.matrix.display()
        );
    }
    check_depth(a.depth, n, &a.matrix)?;
    if let Some(dir) = &a.grad_dir {
        io::create_dir(dir)?;
    }
    let f = a.function.matrix_function();
    let grad = a.grad_dir.is_some();
    let o = QuadOptions {
        depth: a.depth,
        reorth: a.reorthogonalize.krylov(),
        project: !a.no_projection,
        grad,
    };
    let desc = |e| describe(&a.matrix, Some(&a.vector), e);
    let kind = match a.method {
        Method::Lanczos => OperatorKind::SelfAdjoint,
        Method::Arnoldi => OperatorKind::General,
    };
    let mm = file_operator(
        &a.matrix,
        file,
        kind,
        "--method lanczos needs a symmetric matrix (use --method arnoldi)",
    )?;
    let res: QuadformOutput = match a.method {
        Method::Lanczos => {
            let op = mm
                .operator
                .as_self_adjoint()
                .ok_or_else(|| anyhow!("internal: no self-adjoint operator for Lanczos"))?;
            quadform_lanczos(&op, &v, &f, &o)
        }
        Method::Arnoldi => quadform_arnoldi(&mm.operator, &v, &f, &o),
    }
    .map_err(desc)?;
    if let Some(range) = res.ritz_range {
        if matches!(
            f,
            MatrixFunction::Log | MatrixFunction::Inv | MatrixFunction::InvSqrt
        ) {
            super::compute::warn_if_nearly_singular(&a.matrix, range);
        }
    }
    if let Some(dir) = &a.grad_dir {
        let gp = res.grad_params.as_deref().unwrap_or(&[]);
        io::write_matrix_gradient(dir, &mm, gp)?;
        io::write_vector_gradient(dir, res.grad_vector.as_deref().unwrap_or(&[]))?;
    }
    Ok(json_object(&[
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
    ]))
}
