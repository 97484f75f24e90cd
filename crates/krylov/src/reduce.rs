//! The one layer through which the Krylov algorithms (and `gradmat-adjoint`) perform global
//! reductions and basis products: dot products, norms, `Qᵀw` and `w -= Q h`.
//!
//! All reductions are deterministic: they split rows into fixed chunks independent of the
//! thread count and add chunk results in order, so results are bit-identical for any
//! `RAYON_NUM_THREADS`.
//!
//! **Distributed.** Inside a scope of [`crate::distributed::Distributed`] the slices are the
//! local rows of row-distributed vectors and every reduction here is one collective of the
//! scope's communicator (basis products one per Gram–Schmidt block; see
//! [`crate::distributed`]); outside one (the default) each function is its serial body
//! unchanged, behind one thread-local check.

use crate::distributed as dist;
use gradmat_operators::vector;
use gradmat_operators::Scalar;
use rayon::prelude::*;

/// Row-chunk length of the blocked basis products.
pub(crate) const ROWS: usize = 4096;
/// Row-chunk length of [`gram`].
pub(crate) const GRAM_ROWS: usize = 16_384;
/// Work (rows × columns) above which basis products run in parallel.
const PAR_WORK: usize = 131_072;

/// `xᵀy` (deterministic).
#[inline]
pub fn dot<T: Scalar>(x: &[T], y: &[T]) -> T {
    if let Some(r) = dist::with_current(|d| d.map(|d| dist::dot(d, x, y))) {
        return r;
    }
    vector::dot(x, y)
}

/// `‖x‖₂` (deterministic, scaled).
#[inline]
pub fn norm<T: Scalar>(x: &[T]) -> T {
    if let Some(r) = dist::with_current(|d| d.map(|d| dist::norm(d, x))) {
        return r;
    }
    vector::norm2(x)
}

/// `(‖w‖₂, h = Qᵀw)` for the first `k` columns of `q`: [`norm`] and [`basis_t_vec`] (the same
/// bits), in one message when distributed.
pub fn norm_and_basis_t_vec<T: Scalar>(q: &[T], n: usize, k: usize, w: &[T], h: &mut [T]) -> T {
    if let Some(r) = dist::with_current(|d| d.map(|d| dist::norm_and_basis_t_vec(d, q, n, k, w, h)))
    {
        return r;
    }
    let nrm = vector::norm2(w);
    basis_t_vec(q, n, k, w, h);
    nrm
}

/// Adds row-chunk partial sums in chunk order (`m` sums per chunk; the caller computed chunk
/// `c` over its local rows `c·chunk..`), starting from zero; `flags` are combined by maximum
/// over ranks when distributed (unchanged serially). One message when distributed.
pub fn fold_chunk_partials<T: Scalar>(
    chunk: usize,
    m: usize,
    parts: &[Vec<T>],
    flags: &mut [f64],
) -> Vec<T> {
    if let Some(r) =
        dist::with_current(|d| d.map(|d| dist::fold_chunk_partials(d, chunk, m, parts, flags)))
    {
        return r;
    }
    let mut acc = vec![T::ZERO; m];
    for p in parts {
        for (a, v) in acc.iter_mut().zip(p) {
            *a += *v;
        }
    }
    acc
}

/// `y += alpha x`.
#[inline]
pub fn axpy<T: Scalar>(alpha: T, x: &[T], y: &mut [T]) {
    vector::axpy(alpha, x, y)
}

/// `x *= alpha`.
#[inline]
pub fn scale<T: Scalar>(alpha: T, x: &mut [T]) {
    vector::scale(alpha, x)
}

fn qt_w_rows<T: Scalar>(q: &[T], n: usize, k: usize, w: &[T], r0: usize, r1: usize, h: &mut [T]) {
    // The operations of `vector::dot` on a vector of at most one chunk (`0 + dot_seq`: the same
    // bits, -0.0 included), compiled for the best instruction set (fixed order: same bits on
    // every set).
    debug_assert!(r1 - r0 <= vector::CHUNK);
    vector::with_best_isa(
        #[inline(always)]
        || {
            let wr = &w[r0..r1];
            for (j, hj) in h.iter_mut().enumerate().take(k) {
                let col = &q[j * n + r0..j * n + r1];
                *hj = T::ZERO + vector::dot_seq(col, wr);
            }
        },
    )
}

/// `h = Qᵀ w` for the first `k` columns of the column-major basis `q` (`n` rows): one pass over
/// `w` per row chunk for all columns (GEMV-shaped), not `k` separate sweeps over memory.
pub fn basis_t_vec<T: Scalar>(q: &[T], n: usize, k: usize, w: &[T], h: &mut [T]) {
    debug_assert!(q.len() >= n * k && w.len() == n && h.len() >= k);
    if dist::with_current(|d| d.map(|d| dist::basis_t_vec(d, q, n, k, w, h))).is_some() {
        return;
    }
    let nchunks = n.div_ceil(ROWS).max(1);
    let part = |c: usize| {
        let (r0, r1) = (c * ROWS, ((c + 1) * ROWS).min(n));
        let mut p = vec![T::ZERO; k];
        qt_w_rows(q, n, k, w, r0, r1, &mut p);
        p
    };
    let partials: Vec<Vec<T>> = if n * k >= PAR_WORK {
        (0..nchunks).into_par_iter().map(part).collect()
    } else {
        (0..nchunks).map(part).collect()
    };
    h[..k].iter_mut().for_each(|v| *v = T::ZERO);
    for p in partials {
        for (hj, pj) in h[..k].iter_mut().zip(p) {
            *hj += pj;
        }
    }
}

/// `wc += alpha · Q[r0.., ..k] h` on one row chunk `wc` (rows `r0..r0 + wc.len()`): the update
/// loop of [`basis_vec_acc`] and its fused variants (no reduction, no fused multiply-add: the
/// same bits on every instruction set and in every variant).
#[inline(always)]
fn acc_rows<T: Scalar>(alpha: T, q: &[T], n: usize, k: usize, h: &[T], r0: usize, wc: &mut [T]) {
    for j in 0..k {
        let a = alpha * h[j];
        let col = &q[j * n + r0..j * n + r0 + wc.len()];
        for (wi, qi) in wc.iter_mut().zip(col) {
            *wi += a * *qi;
        }
    }
}

/// `w += alpha · Q h` for the first `k` columns of the column-major basis `q` (`n` rows).
pub fn basis_vec_acc<T: Scalar>(alpha: T, q: &[T], n: usize, k: usize, h: &[T], w: &mut [T]) {
    debug_assert!(q.len() >= n * k && w.len() == n && h.len() >= k);
    let rows = |(c, wc): (usize, &mut [T])| {
        // Compiled for the best instruction set (no reduction, no fused multiply-add: the
        // same bits on every set).
        vector::with_best_isa(
            #[inline(always)]
            || {
                acc_rows(alpha, q, n, k, h, c * ROWS, wc);
            },
        )
    };
    if n * k >= PAR_WORK {
        w.par_chunks_mut(ROWS).enumerate().for_each(rows);
    } else {
        w.chunks_mut(ROWS).enumerate().for_each(rows);
    }
}

/// The three-term step of a reorthogonalised Lanczos run and the first Gram–Schmidt
/// projection in **one** pass over rows: `w ← w − a·x − b·x_prev`, then `h = Qᵀw` over the
/// first `k` columns of `q`, each row chunk projected while it is in cache. Returns
/// `(‖w_in‖², ‖w_out‖²)`. Deterministic (fixed chunks, added in order); one message when
/// distributed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn three_term_basis_t_vec<T: Scalar>(
    w: &mut [T],
    a: T,
    x: &[T],
    b: T,
    xprev: &[T],
    q: &[T],
    n: usize,
    k: usize,
    h: &mut [T],
) -> (T, T) {
    debug_assert!(q.len() >= n * k && w.len() == n && h.len() >= k);
    let chunk = |(c, wc): (usize, &mut [T])| {
        let r0 = c * ROWS;
        let len = wc.len();
        let mut p = vec![T::ZERO; k + 2];
        vector::with_best_isa(
            #[inline(always)]
            || {
                let (xc, pc) = (&x[r0..r0 + len], &xprev[r0..r0 + len]);
                let (mut s_in, mut s_out) = (T::ZERO, T::ZERO);
                for ((wi, xi), pi) in wc.iter_mut().zip(xc).zip(pc) {
                    s_in += *wi * *wi;
                    let nw = *wi - a * *xi - b * *pi;
                    s_out += nw * nw;
                    *wi = nw;
                }
                p[k] = s_in;
                p[k + 1] = s_out;
            },
        );
        let wc = &*wc;
        vector::with_best_isa(
            #[inline(always)]
            || {
                for (j, pj) in p.iter_mut().enumerate().take(k) {
                    *pj = T::ZERO + vector::dot_seq(&q[j * n + r0..j * n + r0 + len], wc);
                }
            },
        );
        p
    };
    let parts: Vec<Vec<T>> = if n * (k + 3) >= PAR_WORK {
        w.par_chunks_mut(ROWS).enumerate().map(chunk).collect()
    } else {
        w.chunks_mut(ROWS).enumerate().map(chunk).collect()
    };
    let acc = fold_chunk_partials(ROWS, k + 2, &parts, &mut []);
    h[..k].copy_from_slice(&acc[..k]);
    (acc[k], acc[k + 1])
}

/// `w += alpha · Q h` for the first `k` columns of `q` and `‖w‖²` of the result, in one pass
/// over rows (deterministic; one message when distributed). The plain sum of squares: it
/// overflows for entries above ~1e154 (callers fall back to [`norm`]).
pub(crate) fn basis_vec_acc_norm2<T: Scalar>(
    alpha: T,
    q: &[T],
    n: usize,
    k: usize,
    h: &[T],
    w: &mut [T],
) -> T {
    debug_assert!(q.len() >= n * k && w.len() == n && h.len() >= k);
    let rows = |(c, wc): (usize, &mut [T])| {
        vector::with_best_isa(
            #[inline(always)]
            || {
                acc_rows(alpha, q, n, k, h, c * ROWS, wc);
                let mut s = T::ZERO;
                for wi in wc.iter() {
                    s += *wi * *wi;
                }
                vec![s]
            },
        )
    };
    let parts: Vec<Vec<T>> = if n * (k + 1) >= PAR_WORK {
        w.par_chunks_mut(ROWS).enumerate().map(rows).collect()
    } else {
        w.chunks_mut(ROWS).enumerate().map(rows).collect()
    };
    fold_chunk_partials(ROWS, 1, &parts, &mut [])[0]
}

/// `M = QᵀQ` (`k×k`, column-major) for the first `k` columns of the column-major basis `q`
/// (`n` rows): [`basis_t_mat`] of `q` with itself.
pub fn gram<T: Scalar>(q: &[T], n: usize, k: usize) -> Vec<T> {
    basis_t_mat(q, n, k, q, k)
}

/// `M = Qᵀ W` (`k×m`, column-major) for the first `k` columns of the column-major basis `q`
/// (`n` rows) and the column-major `n×m` block `w`: GEMMs over fixed row chunks (in parallel),
/// added in chunk order — deterministic for any thread count; in a distributed scope one
/// collective, summed in global chunk order.
pub fn basis_t_mat<T: Scalar>(q: &[T], n: usize, k: usize, w: &[T], m: usize) -> Vec<T> {
    debug_assert!(q.len() >= n * k && w.len() >= n * m);
    if let Some(r) = dist::with_current(|d| d.map(|d| dist::basis_t_mat(d, q, n, k, w, m))) {
        return r;
    }
    let part = |c: usize| {
        let (r0, r1) = (c * GRAM_ROWS, ((c + 1) * GRAM_ROWS).min(n));
        qt_w_mat_rows(q, n, k, w, m, r0, r1)
    };
    let nchunks = n.div_ceil(GRAM_ROWS).max(1);
    let parts: Vec<Vec<T>> = if n * k.max(m) >= PAR_WORK {
        (0..nchunks).into_par_iter().map(part).collect()
    } else {
        (0..nchunks).map(part).collect()
    };
    let mut out = vec![T::ZERO; k * m];
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}

/// The partial of [`basis_t_mat`] on rows `r0..r1` (column-major `k×m`): one GEMM.
pub(crate) fn qt_w_mat_rows<T: Scalar>(
    q: &[T],
    n: usize,
    k: usize,
    w: &[T],
    m: usize,
    r0: usize,
    r1: usize,
) -> Vec<T> {
    use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
    let mut out = vec![T::ZERO; k * m];
    if r1 <= r0 || k == 0 || m == 0 {
        return out;
    }
    let qc = MatRef::from_column_major_slice_with_stride(&q[r0..], r1 - r0, k, n);
    let wc = MatRef::from_column_major_slice_with_stride(&w[r0..], r1 - r0, m, n);
    matmul(
        MatMut::from_column_major_slice_mut(&mut out, k, m),
        Accum::Replace,
        qc.transpose(),
        wc,
        T::ONE,
        Par::Seq,
    );
    out
}

/// `U = Q W` (`n×m`, column-major) for the first `k` columns of the column-major basis `q`
/// (`n` rows) and a column-major `k×m` matrix `w`: a GEMM per fixed row chunk (in parallel).
/// Every entry of `U` is computed by one chunk, so the result does not depend on the thread
/// count.
pub fn basis_mat<T: Scalar>(q: &[T], n: usize, k: usize, w: &[T], m: usize) -> Vec<T> {
    use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
    debug_assert!(q.len() >= n * k && w.len() >= k * m);
    let mut out = vec![T::ZERO; n * m];
    if n == 0 || m == 0 {
        return out;
    }
    let wm = MatRef::from_column_major_slice(&w[..k * m], k, m);
    // Row chunks of `out` are strided (column-major), so each chunk computes into its own
    // buffer and is copied into place.
    let part = |c: usize| {
        let (r0, r1) = (c * ROWS, ((c + 1) * ROWS).min(n));
        let qc = MatRef::from_column_major_slice_with_stride(&q[r0..], r1 - r0, k, n);
        let mut buf = vec![T::ZERO; (r1 - r0) * m];
        let um = MatMut::from_column_major_slice_mut(&mut buf, r1 - r0, m);
        matmul(um, Accum::Replace, qc, wm, T::ONE, Par::Seq);
        buf
    };
    let nchunks = n.div_ceil(ROWS);
    let parts: Vec<Vec<T>> = if n * k * m >= PAR_WORK {
        (0..nchunks).into_par_iter().map(part).collect()
    } else {
        (0..nchunks).map(part).collect()
    };
    for (c, buf) in parts.into_iter().enumerate() {
        let r0 = c * ROWS;
        let rows = buf.len() / m;
        for j in 0..m {
            out[j * n + r0..j * n + r0 + rows].copy_from_slice(&buf[j * rows..(j + 1) * rows]);
        }
    }
    out
}

/// `w += alpha · Q h` followed by `h2 = Qᵀ w` for the first `k` columns of `q`, in **one** pass
/// over the basis: each row chunk of `w` is updated and then projected while that chunk of `Q`
/// is in cache. The results are bit-identical to [`basis_vec_acc`] followed by
/// [`basis_t_vec`] (same row chunks, same order of operations, chunk sums added in order); the
/// second pass of classical Gram–Schmidt with reorthogonalisation reads `Q` three times per
/// step instead of four.
pub fn basis_vec_acc_t_vec<T: Scalar>(
    alpha: T,
    q: &[T],
    n: usize,
    k: usize,
    h: &[T],
    w: &mut [T],
    h2: &mut [T],
) {
    debug_assert!(q.len() >= n * k && w.len() == n && h.len() >= k && h2.len() >= k);
    if let Some(()) = dist::with_current(|d| {
        d.map(|d| dist::basis_vec_acc_t_vec(d, alpha, q, n, k, h, &mut *w, &mut *h2))
    }) {
        return;
    }
    let chunk = |(c, wc): (usize, &mut [T])| {
        let r0 = c * ROWS;
        let r1 = r0 + wc.len();
        acc_rows(alpha, q, n, k, h, r0, wc);
        let mut p = vec![T::ZERO; k];
        for (j, pj) in p.iter_mut().enumerate() {
            *pj = vector::dot(&q[j * n + r0..j * n + r1], wc);
        }
        p
    };
    let partials: Vec<Vec<T>> = if n * k >= PAR_WORK {
        w.par_chunks_mut(ROWS).enumerate().map(chunk).collect()
    } else {
        w.chunks_mut(ROWS).enumerate().map(chunk).collect()
    };
    h2[..k].iter_mut().for_each(|v| *v = T::ZERO);
    for p in partials {
        for (hj, pj) in h2[..k].iter_mut().zip(p) {
            *hj += pj;
        }
    }
}

/// `ok` on every rank (serially: `ok`): a decision taken on local rows made the same on all
/// ranks (one small message when distributed).
pub fn all_ranks(ok: bool) -> bool {
    match dist::current() {
        Some(d) => d.comm().all_ok(ok),
        None => ok,
    }
}

/// Index of the first non-finite entry, if any.
pub fn first_non_finite<T: Scalar>(x: &[T]) -> Option<usize> {
    if let Some(r) = dist::with_current(|d| d.map(|d| dist::first_non_finite(d, x))) {
        return r;
    }
    x.iter().position(|v| !v.is_finite())
}

/// Runs `f(offset, chunk)` over fixed chunks of `out` (in parallel for long vectors). Each entry
/// is written by exactly one call, so the result does not depend on the thread count.
pub fn for_each_chunk<T: Scalar, F>(out: &mut [T], f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    const C: usize = vector::CHUNK;
    if out.len() >= vector::PAR_THRESHOLD {
        out.par_chunks_mut(C)
            .enumerate()
            .for_each(|(i, c)| f(i * C, c));
    } else {
        out.chunks_mut(C).enumerate().for_each(|(i, c)| f(i * C, c));
    }
}

/// `Σ_chunks f(range)` for `M` simultaneous sums over `0..n`, deterministic: fixed chunks,
/// chunk results added in order.
pub fn sum_chunks<T: Scalar, const M: usize, F>(n: usize, f: F) -> [T; M]
where
    F: Fn(std::ops::Range<usize>) -> [T; M] + Sync + Send,
{
    if let Some(r) = dist::with_current(|d| d.map(|d| dist::sum_chunks(d, n, &f))) {
        return r;
    }
    const C: usize = vector::CHUNK;
    let nchunks = n.div_ceil(C);
    let part = |i: usize| f(i * C..((i + 1) * C).min(n));
    let parts: Vec<[T; M]> = if n >= vector::PAR_THRESHOLD {
        (0..nchunks).into_par_iter().map(part).collect()
    } else {
        (0..nchunks).map(part).collect()
    };
    let mut acc = [T::ZERO; M];
    for p in parts {
        for (a, v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    acc
}

/// Like [`for_each_chunk`], and also returns `Σ_chunks f(offset, chunk)` for `M` simultaneous
/// sums, added in chunk order (deterministic for any thread count): an elementwise update and
/// the inner products of its result in one pass over memory.
pub fn for_each_chunk_sum<T: Scalar, const M: usize, F>(out: &mut [T], f: F) -> [T; M]
where
    F: Fn(usize, &mut [T]) -> [T; M] + Sync + Send,
{
    if let Some(r) = dist::with_current(|d| d.map(|d| dist::for_each_chunk_sum(d, &mut *out, &f))) {
        return r;
    }
    const C: usize = vector::CHUNK;
    let parts: Vec<[T; M]> = if out.len() >= vector::PAR_THRESHOLD {
        out.par_chunks_mut(C)
            .enumerate()
            .map(|(i, c)| f(i * C, c))
            .collect()
    } else {
        out.chunks_mut(C)
            .enumerate()
            .map(|(i, c)| f(i * C, c))
            .collect()
    };
    let mut acc = [T::ZERO; M];
    for p in parts {
        for (a, v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    acc
}

/// Like [`for_each_chunk_sum`] for two outputs of equal length, split at the same fixed
/// chunks: `f(offset, chunk_a, chunk_b)` updates both and returns its `M` partial sums, added
/// in chunk order (deterministic for any thread count).
pub fn for_each_chunk2_sum<T: Scalar, const M: usize, F>(a: &mut [T], b: &mut [T], f: F) -> [T; M]
where
    F: Fn(usize, &mut [T], &mut [T]) -> [T; M] + Sync + Send,
{
    const C: usize = vector::CHUNK;
    assert_eq!(a.len(), b.len(), "for_each_chunk2_sum: lengths differ");
    let parts: Vec<[T; M]> = if a.len() >= vector::PAR_THRESHOLD {
        a.par_chunks_mut(C)
            .zip(b.par_chunks_mut(C))
            .enumerate()
            .map(|(i, (ca, cb))| f(i * C, ca, cb))
            .collect()
    } else {
        a.chunks_mut(C)
            .zip(b.chunks_mut(C))
            .enumerate()
            .map(|(i, (ca, cb))| f(i * C, ca, cb))
            .collect()
    };
    let mut acc = [T::ZERO; M];
    for p in parts {
        for (s, v) in acc.iter_mut().zip(p) {
            *s += v;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_output_chunks_update_both_and_sum_in_chunk_order() {
        // Below and above the parallel threshold, ragged last chunk.
        for n in [1000usize, vector::PAR_THRESHOLD + 4321] {
            let val = |i: usize| ((i * 7919 % 1009) as f64 - 504.0) / 311.0;
            let (mut a, mut b): (Vec<f64>, Vec<f64>) = ((0..n).map(val).collect(), vec![0.0; n]);
            let a0 = a.clone();
            let s = for_each_chunk2_sum::<f64, 2, _>(&mut a, &mut b, |o, ca, cb| {
                let mut acc = [0.0; 2];
                for (i, (x, y)) in ca.iter_mut().zip(cb.iter_mut()).enumerate() {
                    *y = *x + (o + i) as f64;
                    *x *= 2.0;
                    acc[0] += *x;
                    acc[1] += *y;
                }
                acc
            });
            // The same sums as the one-output helper on the same chunks.
            let (mut a1, mut b1) = (a0.clone(), a0.clone());
            let s0 = for_each_chunk_sum::<f64, 1, _>(&mut a1, |_, c| {
                let mut acc = 0.0;
                for x in c.iter_mut() {
                    *x *= 2.0;
                    acc += *x;
                }
                [acc]
            });
            let s1 = for_each_chunk_sum::<f64, 1, _>(&mut b1, |o, c| {
                let mut acc = 0.0;
                for (i, y) in c.iter_mut().enumerate() {
                    *y += (o + i) as f64;
                    acc += *y;
                }
                [acc]
            });
            assert_eq!(s[0].to_bits(), s0[0].to_bits());
            assert_eq!(s[1].to_bits(), s1[0].to_bits());
            assert!(a.iter().zip(&a1).all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(b.iter().zip(&b1).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn fused_update_and_projection_equal_the_two_passes_bit_for_bit() {
        // Below and above the parallel threshold, with a ragged last row chunk.
        for (n, k) in [(37usize, 3usize), (3 * ROWS + 123, 40)] {
            let val = |i: usize| ((i * 7919 % 1009) as f64 - 504.0) / 311.0;
            let q: Vec<f64> = (0..n * k).map(val).collect();
            let w0: Vec<f64> = (0..n).map(|i| val(i + 17)).collect();
            let h: Vec<f64> = (0..k).map(|i| val(i + 5)).collect();
            let (mut wa, mut wb) = (w0.clone(), w0);
            let (mut ha, mut hb) = (vec![0.0; k], vec![0.0; k]);
            basis_vec_acc(-1.0, &q, n, k, &h, &mut wa);
            basis_t_vec(&q, n, k, &wa, &mut ha);
            basis_vec_acc_t_vec(-1.0, &q, n, k, &h, &mut wb, &mut hb);
            assert!(wa.iter().zip(&wb).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(ha.iter().zip(&hb).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
