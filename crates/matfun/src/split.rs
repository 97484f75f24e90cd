//! Stochastic estimators with their probes split across ranks.
//!
//! The probes of stochastic Lanczos quadrature are independent and their combination is a sum
//! over probes, so `P` ranks can each run a block of them: rank `r` runs the probes
//! [`probe_range`]`(L, P, r)` on its own copy of the operator (replicated: every rank holds the
//! whole operator, as a laptop would), with the ordinary parallel driver on its threads. Then
//!
//! * the per-probe values (and depths, product counts, Ritz ranges, timings) are all-gathered
//!   and combined in probe order by the serial code: estimate and standard error are
//!   **bit-identical to the serial run**;
//! * the per-probe gradients are added **in probe order** — all-gathered when `L·p` is small,
//!   otherwise passed along the ranks as a running sum (rank `r` adds its probes' gradients to
//!   what rank `r − 1` sends, and the last rank broadcasts the total) — so `θ̄` is
//!   **bit-identical to the serial run** too, for any number of ranks.
//!
//! The probes are those of the serial estimator (probe `ℓ` depends only on the seed, `ℓ` and
//! `N`). The lock-step option ([`SlqParams::lockstep`]) is not used here: each rank runs its
//! probes as the default (independent) driver does.
//!
//! For an operator distributed by rows, use the ordinary estimators inside a distributed
//! scope of `gradmat_krylov::distributed` instead (every rank then works on every probe).
//!
//! A probe that fails on one rank makes every rank return an error (that rank's own error;
//! [`MatfunError::OtherRank`] on the others), after one agreement collective, so no rank waits
//! forever.

use crate::dense::MatrixFunction;
use crate::estimators::{
    check_slq, fold_probes, krylov_params, slq_probe, Estimate, ProbeResult, SlqParams, Totals,
};
use crate::krylov::Convergence;
use crate::MatfunError;
use gradmat_adjoint::NoParams;
use gradmat_operators::comm::Comm;
use gradmat_operators::{ParamVjp, Scalar, SelfAdjoint};
use std::ops::Range;

/// Largest `L·p` (probes × parameters) whose per-probe gradients are all-gathered; above it
/// they are summed along the ranks.
const GATHER_LIMIT: usize = 1 << 20;

/// The probes rank `rank` of `ranks` runs: consecutive blocks, the first `L mod P` ranks one
/// probe more.
pub fn probe_range(num_probes: usize, ranks: usize, rank: usize) -> Range<usize> {
    let (base, extra) = (num_probes / ranks, num_probes % ranks);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// [`crate::trace_fn`] with the probes split across the ranks of `comm` (see the
/// [module documentation](self)); every rank returns the same estimate.
///
/// # Errors
/// As [`crate::trace_fn`], on every rank.
pub fn trace_fn_split<T, A>(
    op: &A,
    f: &MatrixFunction,
    params: &SlqParams,
    comm: &dyn Comm,
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    let op = NoParams(op);
    split_driver(&op, f, params, comm, None)
}

/// [`crate::trace_fn_with_grad`] with the probes split across the ranks of `comm`: the
/// estimate and `θ̄` (accumulated into `theta_grad`) are bit-identical to the serial ones, on
/// every rank.
///
/// # Errors
/// As [`crate::trace_fn_with_grad`], on every rank.
pub fn trace_fn_with_grad_split<T, A>(
    op: &A,
    f: &MatrixFunction,
    params: &SlqParams,
    comm: &dyn Comm,
    theta_grad: &mut [T],
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    split_driver(op, f, params, comm, Some(theta_grad))
}

/// [`crate::logdet`] with the probes split across ranks.
///
/// # Errors
/// As [`crate::logdet`], on every rank.
pub fn logdet_split<T, A>(
    op: &A,
    params: &SlqParams,
    comm: &dyn Comm,
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    trace_fn_split(op, &MatrixFunction::Log, params, comm)
}

/// [`crate::logdet_with_grad`] with the probes split across ranks.
///
/// # Errors
/// As [`crate::logdet_with_grad`], on every rank.
pub fn logdet_with_grad_split<T, A>(
    op: &A,
    params: &SlqParams,
    comm: &dyn Comm,
    theta_grad: &mut [T],
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    trace_fn_with_grad_split(op, &MatrixFunction::Log, params, comm, theta_grad)
}

/// Every rank gets `Ok` if all succeeded, else the first failing rank's error.
fn agree<X>(comm: &dyn Comm, r: Result<X, MatfunError>) -> Result<X, MatfunError> {
    if comm.all_ok(r.is_ok()) {
        return r;
    }
    let msg = r.as_ref().err().map_or(String::new(), |e| e.to_string());
    let all = comm.allgather_strings(&msg);
    let (rank, message) = all
        .into_iter()
        .enumerate()
        .find(|(_, m)| !m.is_empty())
        .unwrap_or((0, "unknown error".into()));
    match r {
        Err(e) if rank == comm.rank() => Err(e),
        _ => Err(MatfunError::OtherRank { rank, message }),
    }
}

fn split_driver<T, A>(
    op: &A,
    f: &MatrixFunction,
    params: &SlqParams,
    comm: &dyn Comm,
    theta_grad: Option<&mut [T]>,
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    let (p, me) = (comm.size(), comm.rank());
    let np = op.num_params();
    let grad_len = match &theta_grad {
        Some(g) if g.len() != np => Err(MatfunError::DimensionMismatch {
            what: "parameter gradient",
            expected: np,
            got: g.len(),
        }),
        _ => Ok(()),
    };
    let checked = check_slq(op, params).and(grad_len);
    agree(comm, checked)?;
    let want = theta_grad.is_some();
    let kp = krylov_params(params);
    let l = params.num_probes;
    let range = probe_range(l, p, me);
    let mut mine = Vec::with_capacity(range.len());
    let local = fold_probes(
        op.ncols(),
        params,
        range,
        want,
        |v, w| slq_probe(op, f, &kp, v, w),
        |r| mine.push(r),
    )
    .map(|()| mine);
    let local: Vec<ProbeResult<T>> = agree(comm, local)?;
    // Per-probe records: value, depth, matvecs, ritz (2), seconds (2), the last step's change
    // (NaN for none) and whether the decomposition was exact.
    const REC: usize = 9;
    let mine: Vec<f64> = local
        .iter()
        .flat_map(|r| {
            [
                r.value.to_f64(),
                r.depth as f64,
                r.matvecs as f64,
                r.ritz.0,
                r.ritz.1,
                r.seconds.0,
                r.seconds.1,
                r.conv.last_step_change.map_or(f64::NAN, |c| c.to_f64()),
                f64::from(u8::from(r.conv.exact)),
            ]
        })
        .collect();
    let counts: Vec<usize> = (0..p).map(|q| probe_range(l, p, q).len() * REC).collect();
    let mut all = vec![0.0; l * REC];
    comm.allgatherv_f64(&mine, &counts, &mut all);
    let mut totals = Totals::new(l, if want { np } else { 0 });
    for rec in all.chunks_exact(REC) {
        totals.add(ProbeResult {
            value: T::from_f64(rec[0]),
            conv: Convergence {
                last_step_change: (!rec[7].is_nan()).then(|| T::from_f64(rec[7])),
                exact: rec[8] != 0.0,
            },
            depth: rec[1] as usize,
            matvecs: rec[2] as usize,
            grad: None,
            ritz: (rec[3], rec[4]),
            seconds: (rec[5], rec[6]),
        });
    }
    if want {
        let grads: Vec<&[T]> = local
            .iter()
            .map(|r| r.grad.as_deref().unwrap_or(&[]))
            .collect();
        totals.add_grad(&ordered_sum(comm, l, np, &grads));
    }
    totals.finish(theta_grad)
}

/// `Σ_ℓ g_ℓ` over all probes in probe order from zero, where this rank holds the gradients of
/// its [`probe_range`] (`grads`, in order), on every rank.
fn ordered_sum<T: Scalar>(comm: &dyn Comm, l: usize, np: usize, grads: &[&[T]]) -> Vec<T> {
    let (p, me) = (comm.size(), comm.rank());
    let mut acc = vec![T::ZERO; np];
    if l.saturating_mul(np) <= GATHER_LIMIT {
        let mine: Vec<f64> = grads
            .iter()
            .flat_map(|g| g.iter().map(|v| v.to_f64()))
            .collect();
        let counts: Vec<usize> = (0..p).map(|q| probe_range(l, p, q).len() * np).collect();
        let mut all = vec![0.0; l * np];
        comm.allgatherv_f64(&mine, &counts, &mut all);
        for g in all.chunks_exact(np.max(1)).take(l) {
            for (a, v) in acc.iter_mut().zip(g) {
                *a += T::from_f64(*v);
            }
        }
        return acc;
    }
    // A running sum along the ranks: step s sends rank s's total to rank s + 1.
    let add_mine = |acc: &mut Vec<T>| {
        for g in grads {
            for (a, v) in acc.iter_mut().zip(g.iter()) {
                *a += *v;
            }
        }
    };
    if me == 0 {
        add_mine(&mut acc);
    }
    for s in 0..p.saturating_sub(1) {
        let mut sc = vec![0usize; p];
        let mut rc = vec![0usize; p];
        let send: Vec<f64> = if me == s {
            sc[s + 1] = np;
            acc.iter().map(|v| v.to_f64()).collect()
        } else {
            Vec::new()
        };
        if me == s + 1 {
            rc[s] = np;
        }
        let mut recv = vec![0.0; rc.iter().sum()];
        comm.alltoallv_f64(&send, &sc, &mut recv, &rc);
        if me == s + 1 {
            acc = recv.into_iter().map(T::from_f64).collect();
            add_mine(&mut acc);
        }
    }
    let mut total: Vec<f64> = acc.iter().map(|v| v.to_f64()).collect();
    comm.broadcast_f64(&mut total, p - 1);
    total.into_iter().map(T::from_f64).collect()
}

#[cfg(test)]
mod tests {
    use super::probe_range;

    #[test]
    fn probe_ranges_cover_the_probes_in_order() {
        for (l, p) in [(10, 3), (2, 4), (7, 7), (0, 2)] {
            let mut next = 0;
            for r in 0..p {
                let rg = probe_range(l, p, r);
                assert_eq!(rg.start, next);
                next = rg.end;
            }
            assert_eq!(next, l);
        }
    }
}
