//! `gradmat logdet` and `gradmat quadform` under `mpirun -np P` (binary built with the `mpi`
//! feature): the matrix is read once by rank 0 and scattered by rows ([`DistCsr`]), every
//! Krylov reduction is a collective ([`Distributed`]), and rank 0 prints the one JSON line and
//! writes the gradient files. `logdet --distribute probes` instead reads the matrix on every
//! rank and splits the probes (`gradmat_matfun::split`).
//!
//! **Same numbers as the serial run.** With `--partition aligned` (the default: row blocks in
//! multiples of 16,384 rows) the products and the reductions add exactly the serial terms in
//! the serial order, so the value (and for `quadform` every Krylov quantity) is bit-identical
//! to the serial run for any `P`; the gradient of a symmetric file's entries is summed from
//! its two mirror positions (`u_i x_j` and `u_j x_i` accumulated apart, added at the end), which
//! changes its last bits. `--partition balanced` (equal rows) splits reduction chunks at rank
//! boundaries: agreement to rounding (≈1e-15 relative per reduction). Probe splitting is
//! bit-identical in value and gradient.
//!
//! **Errors.** Every failure is agreed between the ranks before anyone moves on ([`agree`]):
//! bad input found by rank 0 (the reader) or by any other rank (its rows), and numerical
//! failures, which the algorithms detect on reduced (global) values and so on every rank at
//! once. Every rank then exits with status 2; rank 0 prints the one line.

use super::compute::{describe, logdet_slq, quadform_arnoldi, quadform_lanczos, QuadOptions};
use super::io;
use super::ops::{file_operator, require_square};
use super::{depth_or_default, LogdetArgs, Method, ProbeKind, QuadformArgs};
use crate::report::{prepare_output_dir, Outputs};
use anyhow::{anyhow, bail, Result};
use gradmat_krylov::distributed::Distributed;
use gradmat_matfun::estimators::{Probe, SlqParams};
use gradmat_matfun::{MatrixFunction, Reorthogonalize};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::comm::{Comm, RowPartition, REDUCTION_ALIGN};
use gradmat_operators::csr::CsrMatrix;
use gradmat_operators::dist::{allgather_vector, scatter_block, DistCsr};
use gradmat_operators::matrix_market::{FileOperator, MatrixMarketOperator, OperatorKind};
use gradmat_operators::{Operator as _, ParamVjp, SelfAdjoint};
use std::sync::Arc;

/// How a distributed run splits its work (`logdet --distribute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Distribute {
    /// Rows of the matrix (and of every vector) over the ranks; every rank works on every
    /// probe.
    #[default]
    Rows,
    /// Probes over the ranks; every rank holds the whole matrix.
    Probes,
}

/// Row blocks of a distributed run (`--partition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Partition {
    /// Blocks of multiples of 16,384 rows: bit-identical reductions (the last ranks may get
    /// fewer rows, or none, for small matrices).
    #[default]
    Aligned,
    /// Equal blocks: balanced work, results equal to the serial ones to rounding.
    Balanced,
}

impl Partition {
    /// The row partition of `n` rows over `p` ranks.
    pub fn rows(self, n: usize, p: usize) -> RowPartition {
        match self {
            Partition::Aligned => RowPartition::aligned(n, p, REDUCTION_ALIGN),
            Partition::Balanced => RowPartition::balanced(n, p),
        }
    }
}

/// `Ok` on every rank if `r` is `Ok` on every rank; otherwise every rank gets an error whose
/// message is the first failing rank's (rank 0 prints it). One small all-reduce when all
/// went well.
///
/// # Errors
/// As described.
pub fn agree<T>(comm: &dyn Comm, r: Result<T>) -> Result<T> {
    if comm.all_ok(r.is_ok()) {
        return r;
    }
    let msg = match &r {
        Ok(_) => String::new(),
        Err(e) => super::one_line(&format!("{e:#}")),
    };
    let all = comm.allgather_strings(&msg);
    let (q, first) = all
        .iter()
        .enumerate()
        .find(|(_, m)| !m.is_empty())
        .map(|(q, m)| (q, m.clone()))
        .unwrap_or((0, "failed on another rank".into()));
    match r {
        Err(e) if q == comm.rank() => Err(e),
        _ if q == 0 => Err(anyhow!("{first}")),
        _ => Err(anyhow!("rank {q}: {first}")),
    }
}

/// A test hook: `GRADMAT_FAIL_RANK=q` makes rank `q` fail as if its input were bad, after the
/// input is read (exercises the agreement of a failure on one rank only).
fn injected_fault(comm: &dyn Comm) -> Result<()> {
    match std::env::var("GRADMAT_FAIL_RANK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(q) if q == comm.rank() => bail!("injected fault on rank {q} (GRADMAT_FAIL_RANK)"),
        _ => Ok(()),
    }
}

/// The matrix as rank 0 prepares it: the file's operator (for the gradient file), the whole
/// matrix in full (both triangles) CSR storage, and how to map the gradient of its entries back
/// to the operator's parameters.
struct Prepared {
    mm: MatrixMarketOperator<f64>,
    full: CsrMatrix<f64>,
    /// For symmetric storage: the parameter (lower-triangle entry) of each full entry.
    full_to_param: Option<Vec<usize>>,
}

impl Prepared {
    /// Reads `path` as an operator of `kind` (`needs` completes the message of a non-symmetric
    /// matrix where a symmetric one is needed).
    fn read(path: &std::path::Path, kind: OperatorKind, needs: &str) -> Result<Self> {
        let file = io::read_matrix(path)?;
        require_square(path, file.nrows(), file.ncols())?;
        let mm = file_operator(path, file, kind, needs)?;
        let (full, full_to_param) = match &mm.operator {
            FileOperator::Symmetric(s) => (s.full().clone(), Some(s.full_to_param().to_vec())),
            FileOperator::CheckedSymmetric(c) => (c.inner().clone(), None),
            FileOperator::General(a) => (a.clone(), None),
            _ => bail!("internal: an operator storage the distributed reader does not know"),
        };
        Ok(Prepared {
            mm,
            full,
            full_to_param,
        })
    }

    /// The operator's parameter gradient from the gradient of every full entry.
    fn param_grad(&self, full_grad: &[f64]) -> Vec<f64> {
        match &self.full_to_param {
            None => full_grad.to_vec(),
            Some(f2p) => {
                let mut g = vec![0.0; self.mm.operator.num_params()];
                for (q, v) in full_grad.iter().enumerate() {
                    g[f2p[q]] += *v;
                }
                g
            }
        }
    }

    /// Writes `d_matrix.mtx` (and `d_vector.txt` when `vgrad` is given) into `dir` atomically.
    fn write_gradients(
        &self,
        dir: &std::path::Path,
        full_grad: &[f64],
        vgrad: Option<&[f64]>,
    ) -> Result<()> {
        let mut files = Outputs::new(dir)?;
        io::write_matrix_gradient(&mut files, &self.mm, &self.param_grad(full_grad))?;
        if let Some(v) = vgrad {
            io::write_vector_gradient(&mut files, v)?;
        }
        files.commit()
    }
}

/// Reads on rank 0, agrees, scatters: the distributed operator (with shift `sigma`), its
/// partition, and rank 0's preparation.
fn scatter(
    comm: &Arc<dyn Comm>,
    path: &std::path::Path,
    kind: OperatorKind,
    needs: &str,
    partition: Partition,
    sigma: Option<f64>,
    check: impl FnOnce(usize) -> Result<()>,
) -> Result<(DistCsr<f64>, RowPartition, Option<Prepared>)> {
    let me = comm.rank();
    let prepared = if me == 0 {
        Prepared::read(path, kind, needs).and_then(|p| check(p.full.nrows()).map(|()| Some(p)))
    } else {
        Ok(None)
    };
    let prepared = agree(
        &**comm,
        prepared.and_then(|p| injected_fault(&**comm).map(|()| p)),
    )?;
    let mut n = [prepared.as_ref().map_or(0, |p| p.full.nrows() as u64)];
    comm.broadcast_u64(&mut n, 0);
    let part = partition.rows(n[0] as usize, comm.size());
    let op = DistCsr::scatter_from(
        prepared.as_ref().map(|p| &p.full),
        0,
        part.clone(),
        comm.clone(),
    )
    .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let op = match sigma {
        Some(s) => op
            .with_shift(s)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?,
        None => op,
    };
    Ok((op, part, prepared))
}

/// `gradmat logdet` under mpirun (see the [module documentation](self)). Returns the JSON line
/// on rank 0 (an empty string on the others).
///
/// # Errors
/// As the serial command, on every rank.
pub fn logdet(a: &LogdetArgs, comm: &Arc<dyn Comm>) -> Result<String> {
    let mut depth = 0;
    let mut checks = |n: usize| -> Result<()> {
        depth = depth_or_default(a.depth, n, &a.matrix)?;
        if a.probes == 0 {
            bail!("--probes 0 is out of range: at least one probe is needed");
        }
        if !a.shift.is_finite() {
            bail!("--shift {} is not a finite number", a.shift);
        }
        if let Some(dir) = &a.grad_dir {
            prepare_output_dir(dir)?;
        }
        Ok(())
    };
    let need_sym = "logdet needs a symmetric positive-definite matrix";
    let probe = match a.probe {
        ProbeKind::Rademacher => Probe::Rademacher,
        ProbeKind::Gaussian => Probe::Gaussian,
    };
    let grad = a.grad_dir.is_some();
    let me = comm.rank();
    let desc = |e| describe(&a.matrix, None, "Lanczos", e);
    match a.distribute {
        Distribute::Rows => {
            let (op, part, prepared) = scatter(
                comm,
                &a.matrix,
                OperatorKind::SelfAdjoint,
                need_sym,
                a.partition,
                Some(a.shift),
                &mut checks,
            )?;
            // Rank 0 checked the depth; the others take it from there.
            let mut k = [depth as u64];
            comm.broadcast_u64(&mut k, 0);
            let depth = k[0] as usize;
            let scope = Distributed::new(comm.clone(), part);
            let res = scope
                .run(|| logdet_slq(&op, a.probes, depth, a.seed, probe, grad))
                .map_err(desc);
            let res = agree(&**comm, res)?;
            let full_grad = res
                .grad_params
                .as_ref()
                .map(|g| op.gather_entries(&g[..op.local_nnz()]));
            let Some(prepared) = prepared.filter(|_| me == 0) else {
                return Ok(String::new());
            };
            if !a.quiet {
                super::compute::warn_if_nearly_singular(&a.matrix, res.ritz_range);
            }
            if let Some(dir) = &a.grad_dir {
                prepared.write_gradients(dir, full_grad.as_deref().unwrap_or(&[]), None)?;
            }
            super::logdet::json_line(&res, Some(comm.size()))
        }
        Distribute::Probes => {
            // Every rank reads the matrix (it holds all of it) and builds the serial command's
            // operator, so that value and gradient are the serial bits.
            let mut read = || -> Result<MatrixMarketOperator<f64>> {
                let file = io::read_matrix(&a.matrix)?;
                require_square(&a.matrix, file.nrows(), file.ncols())?;
                checks(file.nrows())?;
                injected_fault(&**comm)?;
                file_operator(&a.matrix, file, OperatorKind::SelfAdjoint, need_sym)
            };
            let mm = agree(&**comm, read())?;
            let op = mm
                .operator
                .as_self_adjoint()
                .ok_or_else(|| anyhow!("internal: no self-adjoint operator for logdet"))?;
            let np = op.num_params();
            let shifted =
                Shifted::new(op, a.shift).map_err(|e| anyhow!("{}: {e}", a.matrix.display()));
            let res = shifted
                .and_then(|op| split_logdet(&op, a, depth, probe, grad, &**comm, np).map_err(desc));
            let res = agree(&**comm, res)?;
            if me != 0 {
                return Ok(String::new());
            }
            if !a.quiet {
                super::compute::warn_if_nearly_singular(&a.matrix, res.ritz_range);
            }
            if let Some(dir) = &a.grad_dir {
                let mut files = Outputs::new(dir)?;
                io::write_matrix_gradient(
                    &mut files,
                    &mm,
                    res.grad_params.as_deref().unwrap_or(&[]),
                )?;
                files.commit()?;
            }
            super::logdet::json_line(&res, Some(comm.size()))
        }
    }
}

/// The probe-split estimate in the form of `compute::logdet_slq`.
fn split_logdet<A>(
    op: &A,
    a: &LogdetArgs,
    depth: usize,
    probe: Probe,
    grad: bool,
    comm: &dyn Comm,
    np: usize,
) -> std::result::Result<super::compute::LogDet, gradmat_matfun::MatfunError>
where
    A: SelfAdjoint<f64> + ParamVjp<f64>,
{
    let params = SlqParams {
        num_probes: a.probes,
        depth,
        seed: a.seed,
        probe,
        reorthogonalize: Reorthogonalize::Full,
        ..SlqParams::default()
    };
    let mut g = grad.then(|| vec![0.0; op.num_params()]);
    let est = match g.as_mut() {
        Some(g) => gradmat_matfun::split::logdet_with_grad_split(op, &params, comm, g)?,
        None => gradmat_matfun::split::logdet_split(op, &params, comm)?,
    };
    // The shift's own entry dropped: the gradient in the entries of A.
    if let Some(g) = g.as_mut() {
        g.truncate(np);
    }
    Ok(super::compute::LogDet {
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

/// `gradmat quadform` under mpirun: rows of the matrix and of the vector over the ranks.
///
/// # Errors
/// As the serial command, on every rank.
pub fn quadform(a: &QuadformArgs, comm: &Arc<dyn Comm>) -> Result<String> {
    let me = comm.rank();
    let (method, kind) = match a.method {
        Method::Lanczos => ("Lanczos", OperatorKind::SelfAdjoint),
        Method::Arnoldi => ("Arnoldi", OperatorKind::General),
    };
    // Rank 0 reads (or makes) the vector too, after the matrix, as the serial command does.
    let mut vector = None;
    let mut depth = 0;
    let checks = |n: usize| -> Result<()> {
        let v = io::VectorSpec::parse(&a.vector)?.vector(n)?;
        if v.len() != n {
            bail!(
                "{}: the vector has {} entries but the matrix {} is {n}×{n}",
                a.vector.display(),
                v.len(),
                a.matrix.display()
            );
        }
        depth = depth_or_default(a.depth, n, &a.matrix)?;
        if !a.shift.is_finite() {
            bail!("--shift {} is not a finite number", a.shift);
        }
        if let Some(dir) = &a.grad_dir {
            prepare_output_dir(dir)?;
        }
        vector = Some(v);
        Ok(())
    };
    let sigma = (a.shift != 0.0).then_some(a.shift);
    let (op, part, prepared) = scatter(
        comm,
        &a.matrix,
        kind,
        "--method lanczos needs a symmetric matrix (use --method arnoldi)",
        a.partition,
        sigma,
        checks,
    )?;
    let mut k = [depth as u64];
    comm.broadcast_u64(&mut k, 0);
    let v = scatter_block(&**comm, &part, 0, vector.as_deref().unwrap_or(&[]), 1);
    let f = a.function.matrix_function();
    let grad = a.grad_dir.is_some();
    let o = QuadOptions {
        depth: k[0] as usize,
        reorth: a.reorthogonalize.krylov(),
        project: !a.no_projection,
        grad,
    };
    let scope = Distributed::new(comm.clone(), part.clone());
    let res = scope
        .run(|| match a.method {
            Method::Lanczos => quadform_lanczos(&op, &v, &f, &o),
            Method::Arnoldi => quadform_arnoldi(&op, &v, &f, &o),
        })
        .map_err(|e| describe(&a.matrix, Some(&a.vector), method, e));
    let res = agree(&**comm, res)?;
    let full_grad = res
        .grad_params
        .as_ref()
        .map(|g| op.gather_entries(&g[..op.local_nnz()]));
    let vgrad = res
        .grad_vector
        .as_ref()
        .map(|g| allgather_vector(&**comm, &part, g));
    let Some(prepared) = prepared.filter(|_| me == 0) else {
        return Ok(String::new());
    };
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
        prepared.write_gradients(
            dir,
            full_grad.as_deref().unwrap_or(&[]),
            Some(vgrad.as_deref().unwrap_or(&[])),
        )?;
    }
    super::quadform::json_line(&res, Some(comm.size()))
}
