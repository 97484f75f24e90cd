//! Distributed reductions: the communicator of [`crate::reduce`].
//!
//! Every global reduction of the Krylov methods and their adjoints passes through
//! [`crate::reduce`]. Outside a distributed scope (the default) those are the serial, unchanged
//! functions. Inside [`Distributed::run`] the vectors they see are the **local rows** of
//! vectors distributed by a [`RowPartition`], and each reduction becomes one collective:
//!
//! * **Global chunk order** ([`ReductionOrder::Global`], the default when affordable). The
//!   serial reductions split rows into fixed chunks (8,192 entries for dot products and sums,
//!   4,096 rows for basis products `Qᵀw`, 16,384 for Gram matrices) and add the chunk results in
//!   order. Distributed, every rank computes the partial results of its pieces of those same
//!   global chunks, one all-gather brings every piece to every rank, and each rank adds them in
//!   global order. When the partition's boundaries are multiples of the chunks
//!   ([`REDUCTION_ALIGN`](gradmat_operators::comm::REDUCTION_ALIGN) = 16,384 rows,
//!   [`RowPartition::aligned`]) every piece is a whole chunk and the result is **bit-identical
//!   to the serial one, for any number of ranks**; otherwise chunks split at rank boundaries
//!   are summed piecewise (rounding differs at the level of one addition per split chunk).
//!   The message is `n/chunk · m` values (`m` sums at once), gathered on every rank.
//! * **Rank order** ([`ReductionOrder::Ranks`]): every rank reduces its rows, the `P` partial
//!   results are gathered and added in rank order: `P·m` values per message, deterministic for
//!   a given partition but not equal to the serial bits. [`ReductionOrder::Auto`] (the default)
//!   takes the global chunk order while the message stays below 2¹⁶ values (512 KiB; e.g. up
//!   to `N ≈ 8.9·10⁶` for a basis product of depth 30) and the rank order above.
//!
//! Fused messages: Arnoldi's `‖A q_k‖` and `Qᵀ(A q_k)` travel in one message
//! ([`crate::reduce::norm_and_basis_t_vec`]); a fully reorthogonalised step costs three
//! collectives (first projection with the norm, second projection, new norm), a plain Lanczos
//! step two, a CG iteration three per right-hand side.
//!
//! The scope is **per thread**: code that spawns threads (the lock-step drivers of
//! `gradmat-matfun`) gives each thread its own [`duplicate`](Distributed::duplicate) — whose
//! collectives are independent — and rayon-parallel loops that reduce must not be used inside a
//! scope (the drivers run their probes one after another there). Every rank must make the same
//! sequence of reductions, which the algorithms do as long as their decisions depend only on
//! reduced (global) values.

use crate::reduce;
use gradmat_operators::comm::{Comm, RowPartition};
use gradmat_operators::{vector, Scalar};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;

/// Work (entries × sums) above which a rank computes its pieces in parallel.
const PAR_WORK: usize = 65_536;

/// Order in which distributed reductions add their partial results (see the
/// [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReductionOrder {
    /// Global chunk order while the message stays below 2¹⁶ values, rank order above.
    #[default]
    Auto,
    /// Always the global chunk order (bit-identical to serial for aligned partitions).
    Global,
    /// Always the rank order (`P·m` values per message).
    Ranks,
}

/// Largest message (values per rank times ranks, roughly) [`ReductionOrder::Auto`] sends in
/// global chunk order.
const AUTO_LIMIT: usize = 1 << 16;

/// A communicator and the row partition of the vectors the reductions see: the distributed
/// scope of [`crate::reduce`].
#[derive(Debug, Clone)]
pub struct Distributed {
    comm: Arc<dyn Comm>,
    part: Arc<RowPartition>,
    order: ReductionOrder,
}

thread_local! {
    static CURRENT: RefCell<Option<Distributed>> = const { RefCell::new(None) };
}

/// Restores the previous scope when dropped (also on panic).
struct Restore(Option<Distributed>);

/// The guard of [`Distributed::enter`]: the scope stays active on this thread until it is
/// dropped.
#[must_use = "the scope is left when the guard is dropped"]
pub struct Entered {
    _restore: Restore,
}

impl std::fmt::Debug for Entered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entered")
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

impl Distributed {
    /// The scope of vectors distributed by `part` over the ranks of `comm`.
    ///
    /// # Panics
    /// If the partition does not have one block per rank.
    pub fn new(comm: Arc<dyn Comm>, part: RowPartition) -> Self {
        assert_eq!(
            part.num_ranks(),
            comm.size(),
            "row partition with {} blocks for {} ranks",
            part.num_ranks(),
            comm.size()
        );
        Self {
            comm,
            part: Arc::new(part),
            order: ReductionOrder::Auto,
        }
    }

    /// The same scope with another reduction order.
    pub fn with_order(mut self, order: ReductionOrder) -> Self {
        self.order = order;
        self
    }

    /// Runs `f` with this scope active on the current thread (the previous scope is restored
    /// afterwards).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.enter();
        f()
    }

    /// Makes this scope active on the current thread until the returned guard is dropped
    /// (which restores the previous one).
    pub fn enter(&self) -> Entered {
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        Entered {
            _restore: Restore(prev),
        }
    }

    /// The same partition over a duplicate of the communicator (collective: every rank calls
    /// it in the same order): for a thread with its own sequence of reductions.
    pub fn duplicate(&self) -> Self {
        Self {
            comm: self.comm.duplicate(),
            part: self.part.clone(),
            order: self.order,
        }
    }

    /// The communicator.
    pub fn comm(&self) -> &Arc<dyn Comm> {
        &self.comm
    }
    /// The row partition.
    pub fn partition(&self) -> &RowPartition {
        &self.part
    }
    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    /// This rank's rows.
    pub fn local_range(&self) -> std::ops::Range<usize> {
        self.part.range(self.comm.rank())
    }
    /// Number of rows of this rank.
    pub fn local_len(&self) -> usize {
        self.part.count(self.comm.rank())
    }
    /// Global number of rows.
    pub fn global_len(&self) -> usize {
        self.part.len()
    }

    /// Number of pieces (intersections with global chunks of `chunk` rows) of rank `q`.
    fn pieces_of(&self, q: usize, chunk: usize) -> usize {
        let r = self.part.range(q);
        if r.is_empty() {
            0
        } else {
            (r.end - 1) / chunk - r.start / chunk + 1
        }
    }

    /// This rank's pieces as local row ranges.
    pub(crate) fn local_pieces(&self, chunk: usize) -> Vec<(usize, usize)> {
        let r = self.local_range();
        let mut out = Vec::new();
        let mut g = r.start;
        while g < r.end {
            let end = ((g / chunk + 1) * chunk).min(r.end);
            out.push((g - r.start, end - r.start));
            g = end;
        }
        out
    }

    /// Whether a section of `m` sums over `chunk`-row chunks goes in global chunk order.
    pub(crate) fn global_order(&self, chunk: usize, m: usize) -> bool {
        match self.order {
            ReductionOrder::Global => true,
            ReductionOrder::Ranks => false,
            ReductionOrder::Auto => {
                let total: usize = (0..self.comm.size())
                    .map(|q| self.pieces_of(q, chunk))
                    .sum();
                total.saturating_mul(m) <= AUTO_LIMIT
            }
        }
    }

    /// The padded slot of a section: room for the header and the largest piece count of any
    /// rank (at least one piece, so that the rank-order form fits the same slot).
    fn slot(&self, chunk: usize, m: usize, global: bool) -> usize {
        let pieces = if global {
            (0..self.comm.size())
                .map(|q| self.pieces_of(q, chunk))
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        1 + pieces.max(1) * m
    }

    /// One collective for several sections: each rank contributes, per section, its partial
    /// results (`count·m` values, count ≤ the slot); every rank gets back, per section, the
    /// sum of all ranks' partials added in rank order then piece order (from zero, in `T`).
    pub(crate) fn exchange<T: Scalar>(&self, sections: &[Section<T>]) -> Vec<Vec<T>> {
        let p = self.comm.size();
        let slots: Vec<usize> = sections
            .iter()
            .map(|s| self.slot(s.chunk, s.m, s.global))
            .collect();
        let per: usize = slots.iter().sum();
        let mut mine = vec![0.0f64; per];
        let mut at = 0;
        for (s, slot) in sections.iter().zip(&slots) {
            debug_assert!(s.partials.len() % s.m.max(1) == 0);
            let count = s.partials.len().checked_div(s.m).unwrap_or(0);
            assert!(
                s.partials.len() < *slot,
                "distributed reduction: piece count"
            );
            mine[at] = count as f64;
            for (d, v) in mine[at + 1..].iter_mut().zip(&s.partials) {
                *d = v.to_f64();
            }
            at += slot;
        }
        let mut all = vec![0.0f64; per * p];
        self.comm.allgather_f64(&mine, &mut all);
        let mut out: Vec<Vec<T>> = sections
            .iter()
            .map(|s| {
                let init = if s.max {
                    T::from_f64(f64::NEG_INFINITY)
                } else {
                    T::ZERO
                };
                vec![init; s.m]
            })
            .collect();
        for q in 0..p {
            let mut at = q * per;
            for ((s, slot), acc) in sections.iter().zip(&slots).zip(out.iter_mut()) {
                let count = all[at] as usize;
                for piece in 0..count {
                    let base = at + 1 + piece * s.m;
                    for (a, v) in acc.iter_mut().zip(&all[base..base + s.m]) {
                        let v = T::from_f64(*v);
                        if !s.max {
                            *a += v;
                        } else if v.to_f64().is_nan() || v > *a {
                            *a = v;
                        }
                    }
                }
                at += slot;
            }
        }
        out
    }
}

/// One section of a fused reduction message: `m` simultaneous sums over chunks of `chunk`
/// rows, this rank's partials (`pieces × m`, in piece order).
pub(crate) struct Section<T> {
    pub chunk: usize,
    pub m: usize,
    pub global: bool,
    /// Combine by maximum (NaN-propagating) instead of the ordered sum.
    pub max: bool,
    pub partials: Vec<T>,
}

/// Runs `f` with no distributed scope on this thread (the serial reductions), restoring the
/// scope afterwards.
pub fn serially<R>(f: impl FnOnce() -> R) -> R {
    let prev = CURRENT.with(|c| c.borrow_mut().take());
    let _restore = Restore(prev);
    f()
}

/// Runs `f` with the current thread's distributed scope, if any.
/// (The scope is cloned out of the thread-local first, so `f` may suspend or replace it.)
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Distributed>) -> R) -> R {
    let d = CURRENT.with(|c| c.borrow().clone());
    f(d.as_ref())
}

/// The current thread's distributed scope, if any.
pub fn current() -> Option<Distributed> {
    with_current(|d| d.cloned())
}

/// Whether a distributed scope is active on this thread.
pub fn is_active() -> bool {
    with_current(|d| d.is_some())
}

/// The global dimension of an operator with `n_local` local rows: the partition's length in
/// a distributed scope (whose local length is `n_local`), else `n_local` itself. Use it for
/// every decision that depends on the dimension (depth limits, tolerances `∝ √N`), so that
/// all ranks — including those with no rows — decide alike.
pub fn global_dim(n_local: usize) -> usize {
    with_current(|d| match d {
        Some(d) if d.local_len() == n_local => d.global_len(),
        _ => n_local,
    })
}

/// The global row offset of this rank's rows (0 outside a distributed scope).
pub fn global_offset() -> usize {
    with_current(|d| d.map_or(0, |d| d.local_range().start))
}

/// The sections of a reduction of `m` sums over `chunk`-row chunks of a vector of `len`
/// local entries: global pieces when `len` is the scope's local length and the order allows,
/// else one rank-order piece (`whole` computes it; `piece(r0, r1)` computes a piece).
pub(crate) fn section<T: Scalar>(
    d: &Distributed,
    chunk: usize,
    m: usize,
    len: usize,
    piece: impl Fn(usize, usize) -> Vec<T> + Sync,
    whole: impl FnOnce() -> Vec<T>,
) -> Section<T> {
    let global = d.global_order(chunk, m);
    let partials = if global && len == d.local_len() {
        let pieces = d.local_pieces(chunk);
        let parts: Vec<Vec<T>> = if len.saturating_mul(m.max(1)) >= PAR_WORK {
            pieces.into_par_iter().map(|(a, b)| piece(a, b)).collect()
        } else {
            pieces.into_iter().map(|(a, b)| piece(a, b)).collect()
        };
        parts.concat()
    } else if len == 0 {
        Vec::new()
    } else {
        whole()
    };
    Section {
        chunk,
        m,
        global,
        max: false,
        partials,
    }
}

// ---------------------------------------------------------------------------------------------
// The distributed forms of the reductions of `crate::reduce` (called by its functions inside a
// scope; each is one collective unless stated otherwise).
// ---------------------------------------------------------------------------------------------

fn dot_section<T: Scalar>(d: &Distributed, x: &[T], y: &[T]) -> Section<T> {
    section(
        d,
        vector::CHUNK,
        1,
        x.len(),
        |a, b| vec![vector::dot(&x[a..b], &y[a..b])],
        || vec![vector::dot(x, y)],
    )
}

pub(crate) fn dot<T: Scalar>(d: &Distributed, x: &[T], y: &[T]) -> T {
    gradmat_operators::traits::check_len("dot", y.len(), x.len());
    d.exchange(&[dot_section(d, x, y)])[0][0]
}

/// The scaled norm from the global sum of squares `ss` (the serial `norm2`'s branches; the
/// fallback costs two more collectives and is taken only for tiny or overflowing sums).
fn norm_from_ss<T: Scalar>(d: &Distributed, x: &[T], ss: T) -> T {
    if ss.to_f64().is_nan() {
        return ss;
    }
    if ss.is_finite() && ss > T::from_f64(1e-280_f64.max(T::EPS.to_f64().powi(8))) {
        return ss.sqrt();
    }
    let local_max = x.iter().fold(T::ZERO, |m, v| m.max(v.abs()));
    let mut mx = [local_max.to_f64()];
    d.comm.allreduce_max_f64(&mut mx);
    let scale = T::from_f64(mx[0]);
    if scale == T::ZERO || !scale.is_finite() {
        return if scale.is_finite() { T::ZERO } else { scale };
    }
    let inv = T::ONE / scale;
    let sq = |c: &[T]| c.iter().fold(T::ZERO, |s, v| s + (*v * inv) * (*v * inv));
    let sec = section(
        d,
        vector::CHUNK,
        1,
        x.len(),
        |a, b| vec![sq(&x[a..b])],
        || vec![x.chunks(vector::CHUNK).map(sq).fold(T::ZERO, |s, v| s + v)],
    );
    let s = d.exchange(&[sec])[0][0];
    scale * s.sqrt()
}

pub(crate) fn norm<T: Scalar>(d: &Distributed, x: &[T]) -> T {
    let ss = dot(d, x, x);
    norm_from_ss(d, x, ss)
}

fn basis_t_vec_section<T: Scalar>(
    d: &Distributed,
    q: &[T],
    n: usize,
    k: usize,
    w: &[T],
) -> Section<T> {
    section(
        d,
        reduce::ROWS,
        k,
        n,
        |a, b| {
            // `reduce::basis_t_vec`'s chunk partial.
            (0..k)
                .map(|j| vector::dot(&q[j * n + a..j * n + b], &w[a..b]))
                .collect()
        },
        || {
            let mut h = vec![T::ZERO; k];
            serially(|| reduce::basis_t_vec(q, n, k, w, &mut h));
            h
        },
    )
}

pub(crate) fn basis_t_vec<T: Scalar>(
    d: &Distributed,
    q: &[T],
    n: usize,
    k: usize,
    w: &[T],
    h: &mut [T],
) {
    let r = d.exchange(&[basis_t_vec_section(d, q, n, k, w)]);
    h[..k].copy_from_slice(&r[0]);
}

pub(crate) fn norm_and_basis_t_vec<T: Scalar>(
    d: &Distributed,
    q: &[T],
    n: usize,
    k: usize,
    w: &[T],
    h: &mut [T],
) -> T {
    let r = d.exchange(&[dot_section(d, w, w), basis_t_vec_section(d, q, n, k, w)]);
    h[..k].copy_from_slice(&r[1]);
    norm_from_ss(d, w, r[0][0])
}

pub(crate) fn basis_vec_acc_t_vec<T: Scalar>(
    d: &Distributed,
    alpha: T,
    q: &[T],
    n: usize,
    k: usize,
    h: &[T],
    w: &mut [T],
    h2: &mut [T],
) {
    // The update touches each entry alone (same result for any chunking); the projection of
    // the updated vector is then reduced in pieces as `basis_t_vec`.
    reduce::basis_vec_acc(alpha, q, n, k, h, w);
    basis_t_vec(d, q, n, k, w, h2);
}

/// `reduce::basis_t_mat` in a distributed scope: the chunk partials of the local rows (in
/// global chunk order), summed over the ranks.
pub(crate) fn basis_t_mat<T: Scalar>(
    d: &Distributed,
    q: &[T],
    n: usize,
    k: usize,
    w: &[T],
    m: usize,
) -> Vec<T> {
    let sec = section(
        d,
        reduce::GRAM_ROWS,
        k * m,
        n,
        |a, b| reduce::qt_w_mat_rows(q, n, k, w, m, a, b),
        || serially(|| reduce::basis_t_mat(q, n, k, w, m)),
    );
    d.exchange(&[sec]).swap_remove(0)
}

/// A chunk-sum closure, type-erased (so the serial fallback does not instantiate a new
/// closure type at every level).
pub(crate) type RangeSum<'a, T, const M: usize> =
    &'a (dyn Fn(std::ops::Range<usize>) -> [T; M] + Sync);
/// An update-and-sum closure, type-erased.
pub(crate) type ChunkSum<'a, T, const M: usize> = &'a (dyn Fn(usize, &mut [T]) -> [T; M] + Sync);

pub(crate) fn sum_chunks<T: Scalar, const M: usize>(
    d: &Distributed,
    n: usize,
    f: RangeSum<'_, T, M>,
) -> [T; M] {
    let sec = section(
        d,
        vector::CHUNK,
        M,
        n,
        |a, b| f(a..b).to_vec(),
        || serially(|| reduce::sum_chunks::<T, M, _>(n, f)).to_vec(),
    );
    let r = d.exchange(&[sec]);
    std::array::from_fn(|i| r[0][i])
}

pub(crate) fn for_each_chunk_sum<T: Scalar, const M: usize>(
    d: &Distributed,
    out: &mut [T],
    f: ChunkSum<'_, T, M>,
) -> [T; M] {
    let len = out.len();
    let global = d.global_order(vector::CHUNK, M);
    let partials: Vec<T> = if global && len == d.local_len() {
        // Split `out` at the pieces' boundaries.
        let pieces = d.local_pieces(vector::CHUNK);
        let mut slices: Vec<(usize, &mut [T])> = Vec::with_capacity(pieces.len());
        let mut rest = out;
        let mut at = 0;
        for (a, b) in pieces {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(b - at);
            debug_assert_eq!(a, at);
            slices.push((a, head));
            rest = tail;
            at = b;
        }
        let parts: Vec<[T; M]> = if len >= vector::PAR_THRESHOLD {
            slices.into_par_iter().map(|(o, c)| f(o, c)).collect()
        } else {
            slices.into_iter().map(|(o, c)| f(o, c)).collect()
        };
        parts.into_iter().flatten().collect()
    } else if len == 0 {
        Vec::new()
    } else {
        serially(|| reduce::for_each_chunk_sum::<T, M, _>(out, f)).to_vec()
    };
    let r = d.exchange(&[Section {
        chunk: vector::CHUNK,
        m: M,
        global,
        max: false,
        partials,
    }]);
    std::array::from_fn(|i| r[0][i])
}

/// Row-chunk partials computed by the caller over its local rows (chunk `c` = local rows
/// `c·chunk..`), added in global order, with `flags` combined by maximum over ranks (one
/// collective).
pub(crate) fn fold_chunk_partials<T: Scalar>(
    d: &Distributed,
    chunk: usize,
    m: usize,
    parts: &[Vec<T>],
    flags: &mut [f64],
) -> Vec<T> {
    let global = d.global_order(chunk, m);
    let partials: Vec<T> = if global {
        parts.iter().flatten().copied().collect()
    } else {
        let mut acc = vec![T::ZERO; m];
        for p in parts {
            for (a, v) in acc.iter_mut().zip(p) {
                *a += *v;
            }
        }
        if parts.is_empty() {
            Vec::new()
        } else {
            acc
        }
    };
    let sections = [
        Section {
            chunk,
            m,
            global,
            max: false,
            partials,
        },
        // The flags: one piece per rank, combined by maximum (exact in any order).
        Section {
            chunk: usize::MAX,
            m: flags.len(),
            global: false,
            max: true,
            partials: flags.iter().map(|v| T::from_f64(*v)).collect(),
        },
    ];
    let mut out = d.exchange(&sections);
    for (f, v) in flags.iter_mut().zip(&out[1]) {
        *f = v.to_f64();
    }
    out.swap_remove(0)
}

pub(crate) fn first_non_finite<T: Scalar>(d: &Distributed, x: &[T]) -> Option<usize> {
    let nl = d.local_len();
    let off = d.local_range().start;
    let key = x
        .iter()
        .position(|v| !v.is_finite())
        .map_or(u64::MAX, |i| match i.checked_div(nl) {
            Some(col) => (col * d.global_len() + off + i % nl) as u64,
            None => i as u64,
        });
    let mut k = [key];
    d.comm.allreduce_min_u64(&mut k);
    (k[0] != u64::MAX).then_some(k[0] as usize)
}
