//! Row-distributed operators: each rank owns a contiguous block of rows ([`RowPartition`]) of
//! the operator and of every vector it is applied to.
//!
//! * [`DistCsr`] — a sparse matrix partitioned by rows; a product exchanges the *halo* (the
//!   entries of `x` that the owned rows reference on other ranks) and then runs the serial CSR
//!   kernels on the owned rows, so every owned entry of `y` is computed exactly as the serial
//!   product computes it. Parameters are the owned stored entries (the parameter VJP needs no
//!   communication beyond the halo).
//! * [`DistKernel`] — a kernel matrix `k_θ(X, X) (+ σ²I)` with the inputs and `θ` replicated;
//!   each rank evaluates its share of the symmetric tile pairs (tiles are owned by the rank
//!   that owns their rows, pairs are split half-circle so every rank evaluates about
//!   `n²/(2P)` kernel values), after an all-gather of the block `X`; the contributions to rows
//!   of other ranks travel back in one all-to-all, and the parameter VJP's partial sums are
//!   all-gathered and added in rank order.
//!
//! Vectors passed to these operators are the **local** rows (`nrows() == ncols() ==` the rows
//! of this rank); the global dimension is [`DistCsr::global_dim`]. Every product is a
//! collective: call it on every rank, in the same order, from one thread at a time (the
//! lock-step drivers of `gradmat-matfun` do). Global reductions over the local vectors belong
//! to `gradmat_krylov::reduce` inside a distributed scope, which the Krylov methods use.
//!
//! Construction validates on every rank and agrees ([`agree`]): a rank that meets bad input
//! makes every rank return the same error, so no rank is left waiting in a collective.

mod csr;
mod kernel;

pub use crate::comm::RowPartition;
pub use csr::DistCsr;
pub use kernel::DistKernel;

use crate::comm::Comm;
use crate::{OperatorError, Scalar};

/// Agreement after a step that may fail on some ranks only: `Ok` on every rank if it
/// succeeded on every rank, otherwise on every rank the error of the first rank that failed
/// (prefixed with that rank on the others). One small all-reduce when all went well.
///
/// # Errors
/// The first failing rank's error (as [`OperatorError::InvalidArgument`] on the other ranks).
pub fn agree<X>(comm: &dyn Comm, r: Result<X, OperatorError>) -> Result<X, OperatorError> {
    if comm.all_ok(r.is_ok()) {
        return r;
    }
    let msg = match &r {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let all = comm.allgather_strings(&msg);
    let (q, first) = all
        .iter()
        .enumerate()
        .find(|(_, m)| !m.is_empty())
        .map(|(q, m)| (q, m.clone()))
        .unwrap_or((0, "unknown error".into()));
    match r {
        Err(e) if q == comm.rank() => Err(e),
        _ => Err(OperatorError::InvalidArgument(format!("rank {q}: {first}"))),
    }
}

/// Gathers a column-major block distributed by rows (`local`: this rank's `n_q × k` rows) into
/// the whole `n × k` column-major block `out` on every rank (one all-gather).
///
/// # Panics
/// On length mismatches.
pub fn allgather_block<T: Scalar>(
    comm: &dyn Comm,
    part: &RowPartition,
    local: &[T],
    k: usize,
    out: &mut [T],
) {
    let (n, p, me) = (part.len(), part.num_ranks(), comm.rank());
    assert_eq!(
        local.len(),
        part.count(me) * k,
        "allgather_block: local block length"
    );
    assert_eq!(out.len(), n * k, "allgather_block: output length");
    let counts: Vec<usize> = (0..p).map(|q| part.count(q) * k).collect();
    let send: Vec<f64> = local.iter().map(|v| v.to_f64()).collect();
    let mut all = vec![0.0; n * k];
    comm.allgatherv_f64(&send, &counts, &mut all);
    // `all` is [rank][column][row]; `out` is [column][global row].
    let mut at = 0;
    for q in 0..p {
        let (r0, nq) = (part.range(q).start, part.count(q));
        for c in 0..k {
            for (o, v) in out[c * n + r0..c * n + r0 + nq]
                .iter_mut()
                .zip(&all[at..at + nq])
            {
                *o = T::from_f64(*v);
            }
            at += nq;
        }
    }
}

/// This rank's rows of a whole `n × k` column-major block (no communication).
pub fn local_rows<T: Scalar>(part: &RowPartition, rank: usize, full: &[T], k: usize) -> Vec<T> {
    let n = part.len();
    let r = part.range(rank);
    let mut out = Vec::with_capacity(r.len() * k);
    for c in 0..k {
        out.extend_from_slice(&full[c * n + r.start..c * n + r.end]);
    }
    out
}

/// Sends every rank its rows of a whole `n × k` column-major block held by `root` (the other
/// ranks pass an empty slice); returns this rank's rows. One all-to-all.
///
/// # Panics
/// If `root` does not pass `n·k` entries.
pub fn scatter_block<T: Scalar>(
    comm: &dyn Comm,
    part: &RowPartition,
    root: usize,
    full: &[T],
    k: usize,
) -> Vec<T> {
    let (p, me) = (part.num_ranks(), comm.rank());
    let mut send_counts = vec![0usize; p];
    let mut send = Vec::new();
    if me == root {
        assert_eq!(
            full.len(),
            part.len() * k,
            "scatter_block: root block length"
        );
        for q in 0..p {
            send_counts[q] = part.count(q) * k;
            send.extend(local_rows(part, q, full, k).iter().map(|v| v.to_f64()));
        }
    }
    let mut recv_counts = vec![0usize; p];
    recv_counts[root] = part.count(me) * k;
    let mut recv = vec![0.0; part.count(me) * k];
    comm.alltoallv_f64(&send, &send_counts, &mut recv, &recv_counts);
    recv.into_iter().map(T::from_f64).collect()
}

/// Gathers a vector distributed by rows into the whole vector on every rank.
pub fn allgather_vector<T: Scalar>(comm: &dyn Comm, part: &RowPartition, local: &[T]) -> Vec<T> {
    let mut out = vec![T::ZERO; part.len()];
    allgather_block(comm, part, local, 1, &mut out);
    out
}
