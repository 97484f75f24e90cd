//! Communicators: the one abstraction through which gradmat talks between processes.
//!
//! gradmat runs unchanged from a laptop to a cluster: every global reduction of the Krylov
//! algorithms goes through `gradmat_krylov::reduce`, and the distributed operators of
//! [`crate::dist`] exchange the entries they need; both talk through a [`Comm`]. This module
//! holds the trait and three implementations:
//!
//! * [`SerialComm`] — one process; every collective is a copy (the default: code that never
//!   mentions a communicator runs serially, on the unchanged serial code paths).
//! * [`ThreadComm`] — `P` "ranks" as threads of one process, for tests and experiments without
//!   an MPI installation (every collective is an exchange through shared memory).
//! * `MpiComm` (feature `mpi`) — MPI through the `mpi` crate (rsmpi 0.8) over the system MPI
//!   (OpenMPI: `libopenmpi-dev`, `openmpi-bin`); run with `mpirun -np P`.
//!
//! The trait is small and object safe: the collectives gradmat needs on `f64` and `u64`
//! buffers (other scalars travel as `f64`, which holds every `f32` exactly). It has no
//! all-reduce *sum*: sums whose order must not depend on the library's reduction tree are
//! formed from an all-gather and added in a fixed order ([`sum_in_rank_order`]), so results are
//! deterministic for a given number of ranks.
//!
//! Collectives must be called by every rank of the communicator in the same order (the MPI
//! rule); threads that need their own sequence of collectives use [`Comm::duplicate`].
//!
//! [`RowPartition`] describes how the rows of a distributed vector are split into contiguous
//! blocks, one per rank.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[cfg(feature = "mpi")]
pub mod mpi;
mod threads;

#[cfg(feature = "mpi")]
pub use self::mpi::MpiComm;
pub use threads::ThreadComm;

/// Traffic counters of one rank's communicator (what this rank sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommStats {
    /// Collective calls made.
    pub collectives: u64,
    /// Payload bytes this rank contributed to them (for an all-gather: its own part; for an
    /// all-to-all: what it sent to the other ranks).
    pub bytes_sent: u64,
}

impl CommStats {
    /// `self − earlier` (counters since `earlier` was taken).
    pub fn since(&self, earlier: &CommStats) -> CommStats {
        CommStats {
            collectives: self.collectives - earlier.collectives,
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
        }
    }
}

/// Shared counters an implementation updates on every collective.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    collectives: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, bytes: usize) {
        self.collectives.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> CommStats {
        CommStats {
            collectives: self.collectives.load(Ordering::Relaxed),
            bytes_sent: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A communicator: `size()` ranks that call the same collectives in the same order.
///
/// Counts (`counts[q]`: the number of entries rank `q` contributes or receives) are known to
/// every rank in advance; the implementations do not exchange them.
///
/// # Panics
/// Implementations panic on buffer lengths that do not match the counts.
pub trait Comm: Send + Sync + fmt::Debug {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Waits until every rank has called it.
    fn barrier(&self);
    /// All-gather of variable-length parts: `out` (length `Σ counts`) receives every rank's
    /// `local` (`local.len() == counts[rank]`) in rank order.
    fn allgatherv_f64(&self, local: &[f64], counts: &[usize], out: &mut [f64]);
    /// [`allgatherv_f64`](Comm::allgatherv_f64) for `u64`.
    fn allgatherv_u64(&self, local: &[u64], counts: &[usize], out: &mut [u64]);
    /// All-to-all: `send` is the concatenation of the parts for ranks `0..P`
    /// (`send_counts`), `recv` receives the parts from ranks `0..P` (`recv_counts`), in rank
    /// order.
    fn alltoallv_f64(
        &self,
        send: &[f64],
        send_counts: &[usize],
        recv: &mut [f64],
        recv_counts: &[usize],
    );
    /// [`alltoallv_f64`](Comm::alltoallv_f64) for `u64`.
    fn alltoallv_u64(
        &self,
        send: &[u64],
        send_counts: &[usize],
        recv: &mut [u64],
        recv_counts: &[usize],
    );
    /// Element-wise maximum over ranks, in place (NaN-propagating: a NaN anywhere gives NaN).
    fn allreduce_max_f64(&self, buf: &mut [f64]);
    /// Element-wise minimum over ranks, in place.
    fn allreduce_min_u64(&self, buf: &mut [u64]);
    /// `buf` of rank `root` copied to every rank.
    fn broadcast_f64(&self, buf: &mut [f64], root: usize);
    /// [`broadcast_f64`](Comm::broadcast_f64) for `u64`.
    fn broadcast_u64(&self, buf: &mut [u64], root: usize);
    /// A new communicator over the same ranks whose collectives are independent of this one's
    /// (MPI_Comm_dup). Collective: every rank calls it, in the same order.
    fn duplicate(&self) -> Arc<dyn Comm>;
    /// Traffic counters of this rank (this communicator and its duplicates).
    fn stats(&self) -> CommStats;
    /// Ends every process of the job with `code` (MPI_Abort); the last resort when one rank
    /// cannot continue and the others may be waiting in a collective.
    fn abort(&self, code: i32) -> !;

    // -- provided ------------------------------------------------------------------------

    /// All-gather of equal parts (`out.len() == size()·local.len()`).
    fn allgather_f64(&self, local: &[f64], out: &mut [f64]) {
        let counts = vec![local.len(); self.size()];
        self.allgatherv_f64(local, &counts, out)
    }
    /// All-gather of equal `u64` parts.
    fn allgather_u64(&self, local: &[u64], out: &mut [u64]) {
        let counts = vec![local.len(); self.size()];
        self.allgatherv_u64(local, &counts, out)
    }
    /// `true` on every rank iff `ok` is `true` on every rank: the agreement point after a step
    /// that can fail on some ranks only (bad input in one rank's rows), so that all ranks take
    /// the same branch and none is left waiting in a collective.
    fn all_ok(&self, ok: bool) -> bool {
        let mut w = [u64::from(ok)];
        self.allreduce_min_u64(&mut w);
        w[0] == 1
    }
    /// Every rank's string, in rank order.
    fn allgather_strings(&self, s: &str) -> Vec<String> {
        let p = self.size();
        let mut lens = vec![0u64; p];
        self.allgather_u64(&[s.len() as u64], &mut lens);
        let words = |len: u64| (len as usize).div_ceil(8);
        let counts: Vec<usize> = lens.iter().map(|l| words(*l)).collect();
        let mut packed = vec![0u64; words(s.len() as u64)];
        for (i, b) in s.bytes().enumerate() {
            packed[i / 8] |= u64::from(b) << (8 * (i % 8));
        }
        let mut all = vec![0u64; counts.iter().sum()];
        self.allgatherv_u64(&packed, &counts, &mut all);
        let mut out = Vec::with_capacity(p);
        let mut at = 0;
        for (q, len) in lens.iter().enumerate() {
            let bytes: Vec<u8> = (0..*len as usize)
                .map(|i| (all[at + i / 8] >> (8 * (i % 8))) as u8)
                .collect();
            at += counts[q];
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        out
    }
}

/// `Σ_q local_q` over ranks, added in rank order from zero (`((0 + x_0) + x_1) + …`): the same
/// bits on every rank and for every run with the same number of ranks. One all-gather of
/// `P·len` values.
pub fn sum_in_rank_order(comm: &dyn Comm, local: &[f64]) -> Vec<f64> {
    let (p, m) = (comm.size(), local.len());
    if p == 1 {
        return local.iter().map(|v| 0.0 + *v).collect();
    }
    let mut all = vec![0.0; p * m];
    comm.allgather_f64(local, &mut all);
    let mut acc = vec![0.0; m];
    for part in all.chunks_exact(m.max(1)).take(p) {
        for (a, v) in acc.iter_mut().zip(part) {
            *a += *v;
        }
    }
    acc
}

/// One process: every collective is a copy, [`duplicate`](Comm::duplicate) is free.
#[derive(Debug, Default)]
pub struct SerialComm {
    counters: Arc<Counters>,
}

impl SerialComm {
    /// The serial communicator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Comm for SerialComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn barrier(&self) {}
    fn allgatherv_f64(&self, local: &[f64], counts: &[usize], out: &mut [f64]) {
        check_counts("allgatherv", local.len(), counts, out.len(), 0);
        out.copy_from_slice(local);
    }
    fn allgatherv_u64(&self, local: &[u64], counts: &[usize], out: &mut [u64]) {
        check_counts("allgatherv", local.len(), counts, out.len(), 0);
        out.copy_from_slice(local);
    }
    fn alltoallv_f64(&self, send: &[f64], sc: &[usize], recv: &mut [f64], rc: &[usize]) {
        assert!(sc == [send.len()] && rc == [recv.len()] && send.len() == recv.len());
        recv.copy_from_slice(send);
    }
    fn alltoallv_u64(&self, send: &[u64], sc: &[usize], recv: &mut [u64], rc: &[usize]) {
        assert!(sc == [send.len()] && rc == [recv.len()] && send.len() == recv.len());
        recv.copy_from_slice(send);
    }
    fn allreduce_max_f64(&self, _buf: &mut [f64]) {}
    fn allreduce_min_u64(&self, _buf: &mut [u64]) {}
    fn broadcast_f64(&self, _buf: &mut [f64], root: usize) {
        assert_eq!(root, 0, "broadcast root {root} out of range for 1 rank");
    }
    fn broadcast_u64(&self, _buf: &mut [u64], root: usize) {
        assert_eq!(root, 0, "broadcast root {root} out of range for 1 rank");
    }
    fn duplicate(&self) -> Arc<dyn Comm> {
        Arc::new(SerialComm {
            counters: self.counters.clone(),
        })
    }
    fn stats(&self) -> CommStats {
        self.counters.get()
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

#[track_caller]
pub(crate) fn check_counts(what: &str, local: usize, counts: &[usize], out: usize, rank: usize) {
    assert!(
        counts.get(rank) == Some(&local),
        "{what}: local part of length {local}, counts say {:?}",
        counts.get(rank)
    );
    assert!(
        counts.iter().sum::<usize>() == out,
        "{what}: output of length {out}, counts sum to {}",
        counts.iter().sum::<usize>()
    );
}

/// How the `n` rows of a distributed vector (or operator) are split into contiguous blocks,
/// one per rank: rank `q` owns rows `offsets[q]..offsets[q + 1]`. Blocks may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowPartition {
    offsets: Vec<usize>,
}

impl RowPartition {
    /// From the `P + 1` nondecreasing offsets `0 = o_0 ≤ o_1 ≤ … ≤ o_P = n`.
    ///
    /// # Panics
    /// If the offsets are empty, do not start at 0 or decrease.
    pub fn from_offsets(offsets: Vec<usize>) -> Self {
        assert!(
            offsets.len() >= 2 && offsets[0] == 0 && offsets.windows(2).all(|w| w[0] <= w[1]),
            "row partition offsets must start at 0 and be nondecreasing, got {offsets:?}"
        );
        Self { offsets }
    }

    /// From the number of rows of each rank.
    pub fn from_counts(counts: &[usize]) -> Self {
        let mut offsets = Vec::with_capacity(counts.len() + 1);
        offsets.push(0);
        for c in counts {
            offsets.push(offsets.last().copied().unwrap_or(0) + c);
        }
        Self::from_offsets(offsets)
    }

    /// `n` rows in `p` blocks as equal as possible (the first `n mod p` ranks one row more).
    pub fn balanced(n: usize, p: usize) -> Self {
        Self::aligned(n, p, 1)
    }

    /// `n` rows in `p` blocks whose boundaries are multiples of `align` (except the end `n`),
    /// as equal as the alignment allows: block sizes are `⌈n/(p·align)⌉·align` until the rows
    /// run out, so the last ranks may get fewer rows or none. With `align` a multiple of the
    /// reduction chunks of `gradmat_krylov::reduce` ([`REDUCTION_ALIGN`]), distributed
    /// reductions are bit-identical to the serial ones.
    ///
    /// # Panics
    /// If `p == 0` or `align == 0`.
    pub fn aligned(n: usize, p: usize, align: usize) -> Self {
        assert!(
            p > 0 && align > 0,
            "row partition of {n} rows into {p} blocks of multiples of {align}"
        );
        let blocks = n.div_ceil(align);
        // Blocks of `align` rows dealt out as evenly as possible.
        let (base, extra) = (blocks / p, blocks % p);
        let mut offsets = Vec::with_capacity(p + 1);
        offsets.push(0);
        let mut at = 0usize;
        for q in 0..p {
            at += (base + usize::from(q < extra)) * align;
            offsets.push(at.min(n));
        }
        Self::from_offsets(offsets)
    }

    /// Number of ranks `P`.
    pub fn num_ranks(&self) -> usize {
        self.offsets.len() - 1
    }
    /// Total number of rows `n`.
    pub fn len(&self) -> usize {
        *self.offsets.last().unwrap_or(&0)
    }
    /// Whether there are no rows at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The rows of rank `q`.
    pub fn range(&self, q: usize) -> std::ops::Range<usize> {
        self.offsets[q]..self.offsets[q + 1]
    }
    /// Number of rows of rank `q`.
    pub fn count(&self, q: usize) -> usize {
        self.offsets[q + 1] - self.offsets[q]
    }
    /// The offsets `o_0..=o_P`.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }
    /// The rank owning row `i` (the last rank whose block starts at or before `i` and is not
    /// empty).
    ///
    /// # Panics
    /// If `i ≥ n`.
    pub fn owner(&self, i: usize) -> usize {
        assert!(
            i < self.len(),
            "row {i} out of range for {} rows",
            self.len()
        );
        // First q with offsets[q + 1] > i.
        self.offsets[1..].partition_point(|o| *o <= i)
    }
}

/// Alignment (rows) at which [`RowPartition::aligned`] makes the distributed reductions of
/// `gradmat_krylov::reduce` bit-identical to the serial ones: a multiple of every fixed
/// reduction chunk (8,192 entries for dot products and sums, 4,096 rows for basis products,
/// 16,384 rows for Gram matrices).
pub const REDUCTION_ALIGN: usize = 16_384;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions() {
        let p = RowPartition::balanced(10, 3);
        assert_eq!(p.offsets(), &[0, 4, 7, 10]);
        assert_eq!(
            (p.owner(0), p.owner(3), p.owner(4), p.owner(9)),
            (0, 0, 1, 2)
        );
        let a = RowPartition::aligned(20_000, 3, REDUCTION_ALIGN);
        assert_eq!(a.offsets(), &[0, 16_384, 20_000, 20_000]);
        assert_eq!(a.owner(19_999), 1);
        let e = RowPartition::from_counts(&[0, 5, 0, 2]);
        assert_eq!(
            (e.owner(0), e.owner(4), e.owner(5), e.owner(6)),
            (1, 1, 3, 3)
        );
        assert_eq!(RowPartition::balanced(2, 4).offsets(), &[0, 1, 2, 2, 2]);
    }

    #[test]
    fn thread_comm_collectives() {
        let comms = ThreadComm::create(3);
        let out: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let r = c.rank();
                        let counts = [1, 2, 0];
                        let local: Vec<f64> = (0..counts[r]).map(|i| (10 * r + i) as f64).collect();
                        let mut all = vec![0.0; 3];
                        c.allgatherv_f64(&local, &counts, &mut all);
                        // Each rank sends r+q copies of r to rank q.
                        let sc: Vec<usize> = (0..3).map(|q| r + q).collect();
                        let send: Vec<u64> = sc.iter().flat_map(|&m| vec![r as u64; m]).collect();
                        let rc: Vec<usize> = (0..3).map(|q| q + r).collect();
                        let mut recv = vec![0u64; rc.iter().sum()];
                        c.alltoallv_u64(&send, &sc, &mut recv, &rc);
                        let d = c.duplicate();
                        let s = sum_in_rank_order(&*d, &[r as f64 + 0.5]);
                        let ok = c.all_ok(r != 1);
                        let names = c.allgather_strings(&format!("rank {r}"));
                        (all, recv, s, ok, names)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, (all, recv, s, ok, names)) in out.into_iter().enumerate() {
            assert_eq!(all, vec![0.0, 10.0, 11.0]);
            let want: Vec<u64> = (0..3u64).flat_map(|q| vec![q; q as usize + r]).collect();
            assert_eq!(recv, want);
            assert_eq!(s, vec![0.5 + 1.5 + 2.5]);
            assert!(!ok);
            assert_eq!(names, vec!["rank 0", "rank 1", "rank 2"]);
        }
    }
}
