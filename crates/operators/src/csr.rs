//! Sparse matrices in compressed sparse row (CSR) form: a general matrix [`CsrMatrix`] and a
//! symmetric matrix stored by one triangle, [`SymCsrMatrix`].
//!
//! * **Products.** `y = A x` is parallel over row chunks with rayon (above [`PAR_THRESHOLD`]
//!   stored entries + rows). It is deterministic: each `y[i]` is computed by one thread, summing
//!   row `i` in stored order, so the result is bit-identical for any thread count.
//!   [`Operator::apply_block`] is a blocked SpMM: the block is processed in groups of up to
//!   [`SPMM_BLOCK`] columns with one register accumulator per column, so the matrix is read once
//!   per group instead of once per column (and gives bit-identical results to column-by-column
//!   `apply`, since each entry is summed in the same order).
//! * **Transpose.** `y = Aᵀ x` is a *sequential* scatter over the rows (no transpose is formed).
//! * **Parameters** are the stored values in CSR order (row by row, columns increasing within a
//!   row). `∇θ ⟨u, A x⟩` has entry `u[i]·x[j]` for the stored entry `(i, j)`; the block form sums
//!   `Σ_c u_c[i] x_c[j]` in one pass over the pattern, parallel over rows (each stored entry is
//!   written by exactly one row, so no atomics or reductions are needed). For groups of up to
//!   [`SPMM_BLOCK`] pairs the columns that are read at the stored column index (`x`; `u` and `x`
//!   for [`SymCsrMatrix`]) are first copied row-interleaved, so an entry reads one contiguous run
//!   (one or two cache lines) instead of one value from each of up to 16 columns, and the
//!   per-entry sum runs across the pairs in SIMD lanes (compiled for the best instruction set at
//!   run time; the order of operations is fixed, so results are the same bits on every
//!   instruction set and thread count).
//!
//! ```
//! use gradmat_operators::{csr::CsrMatrix, Operator};
//! // [[1, 0, 2], [0, 3, 0]] from triplets; the two (0, 2) entries are summed.
//! let a = CsrMatrix::from_triplets(2, 3, &[0, 1, 0, 0], &[0, 1, 2, 2], &[1.0, 3.0, 1.5, 0.5])
//!     .unwrap();
//! assert_eq!(a.nnz(), 3);
//! assert_eq!(a.triplet_to_stored(), &[0, 2, 1, 1]);
//! let mut y = [0.0; 2];
//! a.apply(&[1.0, 1.0, 1.0], &mut y);
//! assert_eq!(y, [3.0, 3.0]);
//! ```

use crate::dense::DenseMatrix;
use crate::error::{require_finite, require_len};
use crate::traits::{check_block_len, check_len};
use crate::vector::with_best_isa;
use crate::{
    AdjointOperator, ColumnAccess, Operator, OperatorError, ParamVjp, Scalar, SelfAdjoint,
    SetParams,
};
use rayon::prelude::*;

/// Products on matrices with fewer than this many stored entries + rows run sequentially.
pub const PAR_THRESHOLD: usize = 32_768;
/// Smallest amount of work (stored entries + rows) given to one parallel task.
const MIN_CHUNK_WORK: usize = 16_384;
/// Number of block columns processed together (one register accumulator each) by the SpMM of
/// [`Operator::apply_block`].
pub const SPMM_BLOCK: usize = 8;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Row boundaries `0 = b_0 < b_1 < … < b_q = m` splitting the rows into chunks of roughly equal
/// work (`nnz + rows`). Depends only on the pattern and the number of threads; results do not
/// depend on it (each output entry is computed by one task).
fn row_partition(row_ptr: &[usize]) -> Vec<usize> {
    let m = row_ptr.len() - 1;
    let work = row_ptr[m] + m;
    let threads = rayon::current_num_threads().max(1);
    let nchunks = (work / MIN_CHUNK_WORK).clamp(1, 8 * threads);
    let mut bounds = Vec::with_capacity(nchunks + 1);
    bounds.push(0);
    for q in 1..nchunks {
        let target = ((q as u128 * work as u128) / nchunks as u128) as usize;
        // First row r with row_ptr[r] + r >= target (monotone in r).
        let (mut lo, mut hi) = (0usize, m + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if row_ptr[mid] + mid < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo > *bounds.last().unwrap_or(&0) && lo < m {
            bounds.push(lo);
        }
    }
    bounds.push(m);
    bounds
}

/// Splits `s` at the increasing absolute offsets (the last one must be `s.len()`).
fn split_at_offsets<T>(mut s: &mut [T], offsets: impl Iterator<Item = usize>) -> Vec<&mut [T]> {
    let mut out = Vec::new();
    let mut prev = 0;
    for o in offsets {
        let (a, b) = std::mem::take(&mut s).split_at_mut(o - prev);
        out.push(a);
        s = b;
        prev = o;
    }
    out
}

/// A vector of `len` copies of `value`, or an error instead of an allocation failure.
fn try_filled<U: Clone>(len: usize, value: U, what: &str) -> Result<Vec<U>, OperatorError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        OperatorError::InvalidArgument(format!("cannot allocate {len} entries for {what}"))
    })?;
    v.resize(len, value);
    Ok(v)
}

#[inline]
fn spmv_rows<T: Scalar>(
    row_ptr: &[usize],
    col_idx: &[usize],
    values: &[T],
    r0: usize,
    x: &[T],
    y: &mut [T],
) {
    for (w, yi) in row_ptr[r0..=r0 + y.len()].windows(2).zip(y.iter_mut()) {
        let (s, e) = (w[0], w[1]);
        let mut acc = T::ZERO;
        for (v, &c) in values[s..e].iter().zip(&col_idx[s..e]) {
            acc += *v * x[c];
        }
        *yi = acc;
    }
}

/// `Y[:, b] = A X[:, b]` for `B` columns on rows `r0..r0 + len`, one accumulator per column.
#[inline]
fn spmm_rows<T: Scalar, const B: usize>(
    row_ptr: &[usize],
    col_idx: &[usize],
    values: &[T],
    r0: usize,
    xs: &[&[T]; B],
    ys: &mut [&mut [T]],
) {
    let len = ys[0].len();
    for li in 0..len {
        let i = r0 + li;
        let (s, e) = (row_ptr[i], row_ptr[i + 1]);
        let mut acc = [T::ZERO; B];
        for (v, &c) in values[s..e].iter().zip(&col_idx[s..e]) {
            for b in 0..B {
                acc[b] += *v * xs[b][c];
            }
        }
        for b in 0..B {
            ys[b][li] = acc[b];
        }
    }
}

/// `grad[p] += u[i] x[j]` over stored entries of rows `r0..r1`; `g` starts at `row_ptr[r0]`.
#[inline]
fn vjp_rows<T: Scalar>(
    row_ptr: &[usize],
    col_idx: &[usize],
    r0: usize,
    r1: usize,
    u: &[T],
    x: &[T],
    g: &mut [T],
) {
    let base = row_ptr[r0];
    for i in r0..r1 {
        let ui = u[i];
        let (s, e) = (row_ptr[i], row_ptr[i + 1]);
        for (gp, &c) in g[s - base..e - base].iter_mut().zip(&col_idx[s..e]) {
            *gp += ui * x[c];
        }
    }
}

/// Block VJP through `vjp_group::<B>(u_cols, x_cols, grad)` in groups of 8, 4, 2 and 1 column
/// pairs (`u` columns of length `$ulen`, `x` columns of length `$xlen`).
/// `$w` is the number of columns the group interleaves per column pair (1 for a general
/// matrix: `x` only; 2 for a symmetric one: `u` and `x`).
macro_rules! vjp_blocked {
    ($self:ident, $u:ident, $x:ident, $k:ident, $ulen:expr, $xlen:expr, $grad:ident, $w:literal) => {{
        let (ul, xl) = ($ulen, $xlen);
        for (c, b) in column_groups($k) {
            let (ug, xg) = (&$u[c * ul..(c + b) * ul], &$x[c * xl..(c + b) * xl]);
            match b {
                SPMM_BLOCK => $self.vjp_group::<SPMM_BLOCK, { SPMM_BLOCK * $w }>(ug, xg, $grad),
                4 => $self.vjp_group::<4, { 4 * $w }>(ug, xg, $grad),
                2 => $self.vjp_group::<2, { 2 * $w }>(ug, xg, $grad),
                _ => $self.vjp_group::<1, { $w }>(ug, xg, $grad),
            }
        }
    }};
}

/// Position of column `j` in the sorted slice `cols`, if stored.
#[inline]
fn find_col(cols: &[usize], j: usize) -> Option<usize> {
    cols.binary_search(&j).ok()
}

/// Largest row-interleaved copy (bytes) the block VJPs make. The copy pays on mid-size
/// matrices whose columns lie within the caches (the FE meshes of the benchmark, N ≈ 10⁴–10⁵:
/// an entry then reads one run instead of one value from each of up to 16 columns); on the
/// N = 10⁶ grid it doubled the backward pass (bench_krylov, plain Lanczos, K = 100:
/// backward/forward 1.0 → 1.9): the copy streams twice the block through memory, and a
/// banded matrix reads its columns in order anyway. Above this size the direct loop runs, with
/// the same products and sums (the same bits).
const INTERLEAVE_MAX_BYTES: usize = 16 << 20;

/// `true` when a block of `len` values is above [`INTERLEAVE_MAX_BYTES`] (direct path).
fn too_big_to_interleave<T>(len: usize) -> bool {
    len.saturating_mul(std::mem::size_of::<T>()) > INTERLEAVE_MAX_BYTES
}

/// Rows per task of [`with_interleaved`].
const INTERLEAVE_ROWS: usize = 2048;

/// Largest scratch buffer (bytes) [`with_interleaved`] keeps on a thread between calls.
const SCRATCH_KEEP: usize = 64 << 20;

thread_local! {
    /// The row-interleaved scratch of the block VJPs (a `Vec<T>` behind `Any`), kept between
    /// calls so that a sequence of block VJPs (one per group of adjoint steps) neither
    /// allocates nor zero-fills per call.
    static SCRATCH: std::cell::RefCell<Option<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` on a row-interleaved copy of `W` columns (each of length `n`), for the vectorised
/// block VJPs: `w[i·W + t] = cols[t][i]`. A stored entry `(i, j)` then reads the `W` values of
/// row `j` from one contiguous run instead of from `W` columns. The copy goes by tiles of 8 rows
/// (8 consecutive values of each column, then the tile's `8·W` values written in order), in
/// parallel over fixed row blocks above [`PAR_THRESHOLD`] (a pure copy: deterministic), into a
/// buffer kept on the calling thread (up to [`SCRATCH_KEEP`] bytes).
fn with_interleaved<T: Scalar, const W: usize, R>(
    cols: [&[T]; W],
    n: usize,
    f: impl FnOnce(&[T]) -> R,
) -> R {
    const TILE: usize = 8;
    let len = n * W;
    let mut buf: Vec<T> = SCRATCH
        .with(|s| s.borrow_mut().take())
        .and_then(|b| b.downcast::<Vec<T>>().ok())
        .map(|b| *b)
        .unwrap_or_default();
    // Every entry is overwritten below: only a grown part is zero-filled.
    buf.resize(len, T::ZERO);
    let fill = |(blk, o): (usize, &mut [T])| {
        with_best_isa(
            #[inline(always)]
            || {
                let r0 = blk * INTERLEAVE_ROWS;
                let full = o.len() / (TILE * W) * TILE;
                let mut tiles = o.chunks_exact_mut(TILE * W);
                for (ti, out_tile) in tiles.by_ref().enumerate() {
                    let i0 = r0 + ti * TILE;
                    let tile: [&[T; TILE]; W] =
                        std::array::from_fn(|t| cols[t][i0..i0 + TILE].try_into().expect("a tile"));
                    for (l, row) in out_tile.chunks_exact_mut(W).enumerate() {
                        let row: &mut [T; W] = row.try_into().expect("a row");
                        for t in 0..W {
                            row[t] = tile[t][l];
                        }
                    }
                }
                let rest = tiles.into_remainder();
                let i0 = r0 + full;
                for (l, row) in rest.chunks_exact_mut(W).enumerate() {
                    for (t, col) in cols.iter().enumerate() {
                        row[t] = col[i0 + l];
                    }
                }
            },
        )
    };
    if len >= PAR_THRESHOLD && rayon::current_num_threads() > 1 {
        buf.par_chunks_mut(INTERLEAVE_ROWS * W)
            .enumerate()
            .for_each(fill);
    } else {
        buf.chunks_mut(INTERLEAVE_ROWS * W)
            .enumerate()
            .for_each(fill);
    }
    let out = f(&buf);
    if len * std::mem::size_of::<T>() <= SCRATCH_KEEP {
        SCRATCH.with(|s| *s.borrow_mut() = Some(Box::new(buf)));
    }
    out
}

/// `Σ_c t[c]` by halving (`t[c] + t[c + B/2]`, …): the order of a SIMD horizontal sum, fixed
/// for every instruction set (`B` a power of two).
#[inline(always)]
fn halving_sum<T: Scalar, const B: usize>(mut t: [T; B]) -> T {
    let mut h = B / 2;
    while h > 0 {
        for c in 0..h {
            t[c] += t[c + h];
        }
        h /= 2;
    }
    t[0]
}

/// `g[p − base] += Σ_c u_c[i]·x_c[j]` over the stored entries of rows `r0..r1` of a general
/// CSR matrix, with `xr` the row-interleaved `x` block ([`with_interleaved`]) and `us` the
/// `u` columns. Per entry: one contiguous run of `B` values of `x`, `B` products summed by
/// [`halving_sum`] (vectorised across the `B` column pairs).
#[inline(always)]
fn vjp_rows_interleaved<T: Scalar, const B: usize>(
    rp: &[usize],
    ci: &[usize],
    r0: usize,
    r1: usize,
    us: &[&[T]; B],
    xr: &[T],
    g: &mut [T],
) {
    let base = rp[r0];
    for i in r0..r1 {
        let ui: [T; B] = std::array::from_fn(|c| us[c][i]);
        let (s, e) = (rp[i], rp[i + 1]);
        for (gp, &j) in g[s - base..e - base].iter_mut().zip(&ci[s..e]) {
            let xj: &[T; B] = xr[j * B..j * B + B].try_into().expect("B values");
            let t: [T; B] = std::array::from_fn(|c| ui[c] * xj[c]);
            *gp += halving_sum(t);
        }
    }
}

/// `g[p − base] += Σ_c (u_c[i]·x_c[j] + u_c[j]·x_c[i])` (diagonal: `Σ_c u_c[i]·x_c[i]`) over the
/// stored lower-triangle entries of rows `r0..r1`, with `w` the row-interleaved `(u, x)` block
/// ([`with_interleaved`] of the `u` and `x` columns): an off-diagonal entry reads the `2B` values of row `j`
/// from one contiguous run.
#[inline(always)]
fn sym_vjp_rows_interleaved<T: Scalar, const B: usize>(
    rp: &[usize],
    ci: &[usize],
    r0: usize,
    r1: usize,
    w: &[T],
    g: &mut [T],
) {
    let base = rp[r0];
    for i in r0..r1 {
        let wi: &[T] = &w[i * 2 * B..(i + 1) * 2 * B];
        let ui: [T; B] = std::array::from_fn(|c| wi[c]);
        let xi: [T; B] = std::array::from_fn(|c| wi[B + c]);
        let (s, e) = (rp[i], rp[i + 1]);
        // Columns are strictly increasing: a stored diagonal ends the row.
        let diag = e > s && ci[e - 1] == i;
        let off = e - s - usize::from(diag);
        for (gp, &j) in g[s - base..s - base + off].iter_mut().zip(&ci[s..s + off]) {
            let o = j * 2 * B;
            let uj: &[T; B] = w[o..o + B].try_into().expect("B values");
            let xj: &[T; B] = w[o + B..o + 2 * B].try_into().expect("B values");
            let t: [T; B] = std::array::from_fn(|c| ui[c] * xj[c] + uj[c] * xi[c]);
            *gp += halving_sum(t);
        }
        if diag {
            let t: [T; B] = std::array::from_fn(|c| ui[c] * xi[c]);
            g[e - 1 - base] += halving_sum(t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CsrMatrix
// ---------------------------------------------------------------------------------------------

/// A sparse `m×n` matrix in compressed sparse row form.
///
/// Invariants (checked by every constructor): `row_ptr` has `m + 1` non-decreasing entries from
/// `0` to `nnz`; within each row the column indices are strictly increasing and `< n`; every
/// stored value is finite. Explicitly stored zeros are kept (they are parameters).
///
/// **Parameters:** the `nnz` stored values in CSR order, `θ[p] = values()[p]`; the stored entry
/// `p` of row `i` (with `row_ptr()[i] ≤ p < row_ptr()[i+1]`) is `A[i, col_idx()[p]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix<T: Scalar> {
    nrows: usize,
    ncols: usize,
    row_ptr: Vec<usize>,
    col_idx: Vec<usize>,
    values: Vec<T>,
    triplet_map: Vec<usize>,
}

impl<T: Scalar> CsrMatrix<T> {
    /// From coordinate triplets `(rows[e], cols[e], vals[e])` (0-based) in any order.
    ///
    /// **Duplicates are summed** (in input order) into one stored entry. The map from each input
    /// triplet `e` to the position of its stored value is kept and returned by
    /// [`triplet_to_stored`](Self::triplet_to_stored) (duplicates map to the same position), so
    /// that gradients with respect to the stored values can be written back in input order.
    ///
    /// Errors: length mismatches ([`OperatorError::DimensionMismatch`]), indices out of range
    /// ([`OperatorError::IndexOutOfRange`]), non-finite values or sums of duplicates
    /// ([`OperatorError::NonFinite`]), and dimensions too large to allocate.
    pub fn from_triplets(
        nrows: usize,
        ncols: usize,
        rows: &[usize],
        cols: &[usize],
        vals: &[T],
    ) -> Result<Self, OperatorError> {
        let nnz_in = rows.len();
        require_len("triplet column indices", cols.len(), nnz_in)?;
        require_len("triplet values", vals.len(), nnz_in)?;
        for (e, (&r, &c)) in rows.iter().zip(cols).enumerate() {
            if r >= nrows || c >= ncols {
                return Err(OperatorError::IndexOutOfRange {
                    what: "triplets",
                    entry: e,
                    row: r,
                    col: c,
                    nrows,
                    ncols,
                });
            }
        }
        require_finite("triplet values", vals)?;
        let m1 = nrows
            .checked_add(1)
            .ok_or_else(|| OperatorError::InvalidArgument("too many rows".into()))?;
        // Counting sort by row (stable: input order within a row) ...
        let mut start = try_filled(m1, 0usize, "row pointers")?;
        for &r in rows {
            start[r + 1] += 1;
        }
        for i in 0..nrows {
            start[i + 1] += start[i];
        }
        let mut next = start.clone();
        let mut order = vec![0usize; nnz_in];
        for (e, &r) in rows.iter().enumerate() {
            order[next[r]] = e;
            next[r] += 1;
        }
        drop(next);
        // ... then a stable sort by column within each row, and a merge of duplicates.
        let mut row_ptr = try_filled(m1, 0usize, "row pointers")?;
        let mut col_idx = Vec::with_capacity(nnz_in);
        let mut values: Vec<T> = Vec::with_capacity(nnz_in);
        let mut triplet_map = vec![0usize; nnz_in];
        for i in 0..nrows {
            let seg = &mut order[start[i]..start[i + 1]];
            seg.sort_by_key(|&e| cols[e]);
            let row_start = col_idx.len();
            for &e in seg.iter() {
                let c = cols[e];
                if col_idx.len() > row_start && col_idx.last() == Some(&c) {
                    let last = values.len() - 1;
                    values[last] += vals[e];
                    triplet_map[e] = last;
                } else {
                    col_idx.push(c);
                    values.push(vals[e]);
                    triplet_map[e] = values.len() - 1;
                }
            }
            row_ptr[i + 1] = col_idx.len();
        }
        require_finite("summed duplicate values", &values)?;
        Ok(Self {
            nrows,
            ncols,
            row_ptr,
            col_idx,
            values,
            triplet_map,
        })
    }

    /// From raw CSR arrays, validated: `row_ptr.len() == nrows + 1`, `row_ptr[0] == 0`,
    /// non-decreasing, `row_ptr[nrows] == col_idx.len() == values.len()`, columns `< ncols` and
    /// strictly increasing within each row (no duplicates), values finite.
    ///
    /// The triplet map ([`triplet_to_stored`](Self::triplet_to_stored)) is the identity.
    pub fn from_raw_parts(
        nrows: usize,
        ncols: usize,
        row_ptr: Vec<usize>,
        col_idx: Vec<usize>,
        values: Vec<T>,
    ) -> Result<Self, OperatorError> {
        let m1 = nrows
            .checked_add(1)
            .ok_or_else(|| OperatorError::InvalidArgument("too many rows".into()))?;
        require_len("row_ptr", row_ptr.len(), m1)?;
        if row_ptr[0] != 0 {
            return Err(OperatorError::InvalidStructure(format!(
                "row_ptr[0] = {}, expected 0",
                row_ptr[0]
            )));
        }
        require_len("col_idx", col_idx.len(), row_ptr[nrows])?;
        require_len("values", values.len(), row_ptr[nrows])?;
        for i in 0..nrows {
            let (s, e) = (row_ptr[i], row_ptr[i + 1]);
            if e < s {
                return Err(OperatorError::InvalidStructure(format!(
                    "row_ptr decreases at row {i}: {s} > {e}"
                )));
            }
            if e > col_idx.len() {
                return Err(OperatorError::InvalidStructure(format!(
                    "row_ptr[{}] = {e} exceeds nnz = {}",
                    i + 1,
                    col_idx.len()
                )));
            }
            for p in s..e {
                let c = col_idx[p];
                if c >= ncols {
                    return Err(OperatorError::IndexOutOfRange {
                        what: "col_idx",
                        entry: p,
                        row: i,
                        col: c,
                        nrows,
                        ncols,
                    });
                }
                if p > s && col_idx[p - 1] >= c {
                    return Err(OperatorError::InvalidStructure(format!(
                        "column indices of row {i} are not strictly increasing at entry {p} \
                         ({} then {c})",
                        col_idx[p - 1]
                    )));
                }
            }
        }
        require_finite("values", &values)?;
        let triplet_map = (0..values.len()).collect();
        Ok(Self {
            nrows,
            ncols,
            row_ptr,
            col_idx,
            values,
            triplet_map,
        })
    }

    /// Row pointers (`nrows + 1` entries).
    pub fn row_ptr(&self) -> &[usize] {
        &self.row_ptr
    }

    /// Column indices of the stored entries, in CSR order.
    pub fn col_idx(&self) -> &[usize] {
        &self.col_idx
    }

    /// Stored values in CSR order (the parameters).
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// For each input triplet of [`from_triplets`](Self::from_triplets), the position of the
    /// stored value it was added to (duplicates share a position). The identity for
    /// [`from_raw_parts`](Self::from_raw_parts).
    ///
    /// To report a gradient `g` over the stored values in input order: `map.iter().map(|&p| g[p])`.
    pub fn triplet_to_stored(&self) -> &[usize] {
        &self.triplet_map
    }

    /// Entry `(i, j)` (zero when not stored), or `None` when out of range.
    pub fn get(&self, i: usize, j: usize) -> Option<T> {
        if i >= self.nrows || j >= self.ncols {
            return None;
        }
        let (s, e) = (self.row_ptr[i], self.row_ptr[i + 1]);
        Some(find_col(&self.col_idx[s..e], j).map_or(T::ZERO, |q| self.values[s + q]))
    }

    /// The matrix as a dense matrix (for tests and small problems).
    ///
    /// # Panics
    /// If `nrows·ncols` overflows or cannot be allocated.
    pub fn to_dense(&self) -> DenseMatrix<T> {
        let m = self.nrows;
        let mut data = vec![T::ZERO; m.checked_mul(self.ncols).expect("dense size overflows")];
        for i in 0..m {
            for p in self.row_ptr[i]..self.row_ptr[i + 1] {
                data[i + self.col_idx[p] * m] += self.values[p];
            }
        }
        DenseMatrix::from_col_major(m, self.ncols, data).expect("stored values are finite")
    }

    /// Work measure `nnz + nrows` used to choose sequential or parallel products.
    fn work(&self) -> usize {
        self.values.len() + self.nrows
    }

    /// Runs `f(r0, r1, piece)` over row chunks, where `piece` is the part of `out` for rows
    /// `r0..r1` with `off(r)` the offset of row `r` in `out` (`off(0) == 0`). Sequential below
    /// [`PAR_THRESHOLD`].
    fn for_row_chunks<U: Send>(
        &self,
        out: &mut [U],
        off: impl Fn(usize) -> usize,
        f: impl Fn(usize, usize, &mut [U]) + Sync,
    ) {
        let m = self.nrows;
        if self.work() < PAR_THRESHOLD || rayon::current_num_threads() <= 1 {
            f(0, m, out);
            return;
        }
        let bounds = row_partition(&self.row_ptr);
        let pieces = split_at_offsets(out, bounds[1..].iter().map(|&r| off(r)));
        pieces
            .into_par_iter()
            .zip(bounds.par_windows(2))
            .for_each(|(piece, w)| f(w[0], w[1], piece));
    }

    /// Like [`for_row_chunks`](Self::for_row_chunks) for two outputs: `y` split by rows and
    /// `g` split at `goff(r)`.
    fn for_row_chunks2<U: Send, V: Send>(
        &self,
        y: &mut [U],
        g: &mut [V],
        goff: impl Fn(usize) -> usize,
        f: impl Fn(usize, usize, &mut [U], &mut [V]) + Sync,
    ) {
        let m = self.nrows;
        if self.work() < PAR_THRESHOLD || rayon::current_num_threads() <= 1 {
            f(0, m, y, g);
            return;
        }
        let bounds = row_partition(&self.row_ptr);
        let ys = split_at_offsets(y, bounds[1..].iter().copied());
        let gs = split_at_offsets(g, bounds[1..].iter().map(|&r| goff(r)));
        ys.into_par_iter()
            .zip(gs)
            .zip(bounds.par_windows(2))
            .for_each(|((yp, gp), w)| f(w[0], w[1], yp, gp));
    }

    /// `Y = A X` for one group of `B` columns (`x`: `n·B`, `y`: `m·B`, column-major).
    fn spmm_group<const B: usize>(&self, x: &[T], y: &mut [T]) {
        let (m, n) = (self.nrows, self.ncols);
        if m == 0 {
            return;
        }
        let xs: [&[T]; B] = std::array::from_fn(|b| &x[b * n..(b + 1) * n]);
        let (rp, ci, vals) = (&self.row_ptr[..], &self.col_idx[..], &self.values[..]);
        if self.work() < PAR_THRESHOLD || rayon::current_num_threads() <= 1 {
            let mut ys: Vec<&mut [T]> = y.chunks_mut(m).collect();
            spmm_rows::<T, B>(rp, ci, vals, 0, &xs, &mut ys);
            return;
        }
        let bounds = row_partition(rp);
        let mut per_col: Vec<std::vec::IntoIter<&mut [T]>> = y
            .chunks_mut(m)
            .map(|col| split_at_offsets(col, bounds[1..].iter().copied()).into_iter())
            .collect();
        let tasks: Vec<Vec<&mut [T]>> = (0..bounds.len() - 1)
            .map(|_| {
                per_col
                    .iter_mut()
                    .map(|it| it.next().expect("one piece per chunk"))
                    .collect()
            })
            .collect();
        tasks
            .into_par_iter()
            .zip(bounds.par_windows(2))
            .for_each(|(mut ys, w)| spmm_rows::<T, B>(rp, ci, vals, w[0], &xs, &mut ys));
    }

    /// `Y = Aᵀ X` for one group of `B` columns (sequential scatter).
    fn spmm_transpose_group<const B: usize>(&self, x: &[T], y: &mut [T]) {
        let (m, n) = (self.nrows, self.ncols);
        y.fill(T::ZERO);
        if n == 0 {
            return;
        }
        let xs: [&[T]; B] = std::array::from_fn(|b| &x[b * m..(b + 1) * m]);
        let mut ys: Vec<&mut [T]> = y.chunks_mut(n).collect();
        for i in 0..m {
            let xi: [T; B] = std::array::from_fn(|b| xs[b][i]);
            let (s, e) = (self.row_ptr[i], self.row_ptr[i + 1]);
            for (v, &c) in self.values[s..e].iter().zip(&self.col_idx[s..e]) {
                for b in 0..B {
                    ys[b][c] += *v * xi[b];
                }
            }
        }
    }

    fn vjp_block_impl(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        vjp_blocked!(self, u, x, k, self.nrows, self.ncols, grad, 1);
    }

    /// `grad[p] += Σ_c u_c[i]·x_c[j]` for one group of `B` column pairs, parallel over rows
    /// (`W = B`: the `x` columns, row-interleaved).
    fn vjp_group<const B: usize, const W: usize>(&self, u: &[T], x: &[T], grad: &mut [T]) {
        debug_assert_eq!(W, B);
        let (m, n) = (self.nrows, self.ncols);
        let us: [&[T]; B] = std::array::from_fn(|c| &u[c * m..(c + 1) * m]);
        let xs: [&[T]; W] = std::array::from_fn(|c| &x[c * n..(c + 1) * n]);
        let (rp, ci) = (&self.row_ptr[..], &self.col_idx[..]);
        if too_big_to_interleave::<T>(n * W) {
            // Direct reads, the same products and the same sums (same bits).
            self.for_row_chunks(
                grad,
                |r| rp[r],
                |r0, r1, g| {
                    let base = rp[r0];
                    for i in r0..r1 {
                        let ui: [T; B] = std::array::from_fn(|c| us[c][i]);
                        let (s, e) = (rp[i], rp[i + 1]);
                        for (gp, &j) in g[s - base..e - base].iter_mut().zip(&ci[s..e]) {
                            let t: [T; B] = std::array::from_fn(|c| ui[c] * xs[c][j]);
                            *gp += halving_sum(t);
                        }
                    }
                },
            );
            return;
        }
        // Row-interleaved x: entry (i, j) reads x_0[j]..x_{B−1}[j] from one run of B values.
        with_interleaved(xs, n, |xr| {
            self.for_row_chunks(
                grad,
                |r| rp[r],
                |r0, r1, g| {
                    with_best_isa(
                        #[inline(always)]
                        || vjp_rows_interleaved::<T, B>(rp, ci, r0, r1, &us, xr, g),
                    )
                },
            )
        });
    }
}

/// `(start, size)` of the column groups of a `k`-column block: groups of 8, then 4, 2 and 1.
fn column_groups(k: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut c = 0;
    std::iter::from_fn(move || {
        let b = match k - c {
            0 => return None,
            r if r >= SPMM_BLOCK => SPMM_BLOCK,
            r if r >= 4 => 4,
            r if r >= 2 => 2,
            _ => 1,
        };
        c += b;
        Some((c - b, b))
    })
}

/// Applies `group::<B>(x_cols, y_cols)` over the block in groups of 8, 4, 2 and 1 columns.
macro_rules! blocked {
    ($self:ident, $method:ident, $x:ident, $y:ident, $k:ident, $xlen:expr, $ylen:expr) => {{
        let (xl, yl) = ($xlen, $ylen);
        for (c, b) in column_groups($k) {
            let xg = &$x[c * xl..(c + b) * xl];
            let yg = &mut $y[c * yl..(c + b) * yl];
            match b {
                SPMM_BLOCK => $self.$method::<SPMM_BLOCK>(xg, yg),
                4 => $self.$method::<4>(xg, yg),
                2 => $self.$method::<2>(xg, yg),
                _ => $self.$method::<1>(xg, yg),
            }
        }
    }};
}

impl<T: Scalar> Operator<T> for CsrMatrix<T> {
    fn nrows(&self) -> usize {
        self.nrows
    }
    fn ncols(&self) -> usize {
        self.ncols
    }
    /// Parallel SpMV over row chunks (sequential below [`PAR_THRESHOLD`]); deterministic.
    ///
    /// # Panics
    /// If `x.len() != ncols()` or `y.len() != nrows()`.
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        check_len("CsrMatrix::apply x", x.len(), self.ncols);
        check_len("CsrMatrix::apply y", y.len(), self.nrows);
        let (rp, ci, vals) = (&self.row_ptr[..], &self.col_idx[..], &self.values[..]);
        self.for_row_chunks(y, |r| r, |r0, _r1, yc| spmv_rows(rp, ci, vals, r0, x, yc));
    }
    /// Blocked SpMM: groups of up to [`SPMM_BLOCK`] columns share one pass over the matrix.
    ///
    /// # Panics
    /// On block length mismatches.
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        check_block_len("CsrMatrix::apply_block x", x.len(), self.ncols, k);
        check_block_len("CsrMatrix::apply_block y", y.len(), self.nrows, k);
        blocked!(self, spmm_group, x, y, k, self.ncols, self.nrows);
    }
}

impl<T: Scalar> AdjointOperator<T> for CsrMatrix<T> {
    /// `y = Aᵀ x` by a sequential scatter over the rows, without forming `Aᵀ`.
    ///
    /// # Panics
    /// If `x.len() != nrows()` or `y.len() != ncols()`.
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        check_len("CsrMatrix::apply_transpose x", x.len(), self.nrows);
        check_len("CsrMatrix::apply_transpose y", y.len(), self.ncols);
        self.spmm_transpose_group::<1>(x, y);
    }
    /// Sequential scatter, groups of up to [`SPMM_BLOCK`] columns per pass over the matrix.
    ///
    /// # Panics
    /// On block length mismatches.
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        check_block_len("CsrMatrix::apply_transpose_block x", x.len(), self.nrows, k);
        check_block_len("CsrMatrix::apply_transpose_block y", y.len(), self.ncols, k);
        blocked!(self, spmm_transpose_group, x, y, k, self.nrows, self.ncols);
    }
}

impl<T: Scalar> ParamVjp<T> for CsrMatrix<T> {
    fn num_params(&self) -> usize {
        self.values.len()
    }
    /// `grad[p] += u[i]·x[j]` for each stored entry `p = (i, j)`; parallel over rows.
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        check_len("CsrMatrix::vjp_params u", u.len(), self.nrows);
        check_len("CsrMatrix::vjp_params x", x.len(), self.ncols);
        check_len("CsrMatrix::vjp_params grad", grad.len(), self.values.len());
        let (rp, ci) = (&self.row_ptr[..], &self.col_idx[..]);
        self.for_row_chunks(
            grad,
            |r| rp[r],
            |r0, r1, g| vjp_rows(rp, ci, r0, r1, u, x, g),
        );
    }
    /// `grad[p] += Σ_c u_c[i]·x_c[j]` in one pass over the pattern, parallel over rows.
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        check_block_len("CsrMatrix::vjp_params_block u", u.len(), self.nrows, k);
        check_block_len("CsrMatrix::vjp_params_block x", x.len(), self.ncols, k);
        check_len(
            "CsrMatrix::vjp_params_block grad",
            grad.len(),
            self.values.len(),
        );
        self.vjp_block_impl(u, x, k, grad);
    }
    /// `y = A x` and `grad[p] += u[i]·x[j]` in one row-parallel pass over the pattern.
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        check_len("CsrMatrix::apply_and_vjp_params x", x.len(), self.ncols);
        check_len("CsrMatrix::apply_and_vjp_params y", y.len(), self.nrows);
        check_len("CsrMatrix::apply_and_vjp_params u", u.len(), self.nrows);
        check_len(
            "CsrMatrix::apply_and_vjp_params grad",
            grad.len(),
            self.values.len(),
        );
        let (rp, ci, vals) = (&self.row_ptr[..], &self.col_idx[..], &self.values[..]);
        self.for_row_chunks2(
            y,
            grad,
            |r| rp[r],
            |r0, r1, yc, gc| {
                let base = rp[r0];
                for i in r0..r1 {
                    let ui = u[i];
                    let mut acc = T::ZERO;
                    for p in rp[i]..rp[i + 1] {
                        let xj = x[ci[p]];
                        acc += vals[p] * xj;
                        gc[p - base] += ui * xj;
                    }
                    yc[i - r0] = acc;
                }
            },
        );
    }
    /// [`SPMM_BLOCK`] (8).
    fn vjp_block_size(&self) -> usize {
        SPMM_BLOCK
    }
}

impl<T: Scalar> SetParams<T> for CsrMatrix<T> {
    fn params(&self, out: &mut [T]) {
        check_len("CsrMatrix::params", out.len(), self.values.len());
        out.copy_from_slice(&self.values);
    }
    /// Replaces the stored values (CSR order); the pattern is unchanged.
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("CsrMatrix parameters", theta.len(), self.values.len())?;
        require_finite("CsrMatrix parameters", theta)?;
        self.values.copy_from_slice(theta);
        Ok(())
    }
}

impl<T: Scalar> ColumnAccess<T> for CsrMatrix<T> {
    /// Binary search for the diagonal entry of each row.
    fn diagonal(&self, out: &mut [T]) {
        let d = self.nrows.min(self.ncols);
        check_len("CsrMatrix::diagonal", out.len(), d);
        for (i, o) in out.iter_mut().enumerate() {
            let (s, e) = (self.row_ptr[i], self.row_ptr[i + 1]);
            *o = find_col(&self.col_idx[s..e], i).map_or(T::ZERO, |q| self.values[s + q]);
        }
    }
    /// Column `j` by a binary search in every row (`O(m log(nnz/m))`).
    ///
    /// # Panics
    /// If `j >= ncols()` or `out.len() != nrows()`.
    fn column(&self, j: usize, out: &mut [T]) {
        assert!(j < self.ncols, "CsrMatrix::column: column {j} out of range");
        check_len("CsrMatrix::column", out.len(), self.nrows);
        for (i, o) in out.iter_mut().enumerate() {
            let (s, e) = (self.row_ptr[i], self.row_ptr[i + 1]);
            *o = find_col(&self.col_idx[s..e], j).map_or(T::ZERO, |q| self.values[s + q]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SymCsrMatrix
// ---------------------------------------------------------------------------------------------

/// A symmetric sparse `n×n` matrix stored by its **lower triangle** (`j ≤ i`) and applied as the
/// full symmetric matrix.
///
/// **Parameters:** the stored lower-triangle values in CSR order (row by row, columns increasing,
/// see [`lower`](Self::lower)). An off-diagonal parameter stands for both `A[i, j]` and `A[j, i]`,
/// so its gradient is `u_i x_j + u_j x_i`; a diagonal one gets `u_i x_i`.
///
/// **Memory:** for fast parallel products the expanded full matrix is kept as well, with a map
/// from each full position to its parameter: about `nnz_full·(8 + 2·size_of::<usize>())` bytes in
/// addition to the lower triangle (≈ 3× the memory of the triangle alone for `f64`). Products
/// (`apply`, `apply_block`) then run at the speed of [`CsrMatrix`]; [`SetParams::set_params`]
/// updates both copies. Gradients are computed on the triangle (parallel over its rows).
#[derive(Debug, Clone, PartialEq)]
pub struct SymCsrMatrix<T: Scalar> {
    lower: CsrMatrix<T>,
    full: CsrMatrix<T>,
    full_to_param: Vec<usize>,
    triplet_map: Vec<usize>,
}

impl<T: Scalar> SymCsrMatrix<T> {
    /// The five-point Laplacian `4u_ij − u_{i±1,j} − u_{i,j±1}` on a `g×g` grid with Dirichlet
    /// boundaries (`N = g²`, row index `i + j·g`), the standard large sparse SPD test matrix
    /// (eigenvalues in `(0, 8)`). Stored as its lower triangle: `N` diagonal entries `4` and the
    /// couplings to the left and lower neighbours (`−1`).
    ///
    /// ```
    /// use gradmat_operators::{csr::SymCsrMatrix, Operator};
    /// let a = SymCsrMatrix::<f64>::laplacian_2d(3).unwrap();
    /// assert_eq!((a.dim(), a.nnz()), (9, 9 + 2 * 6));
    /// let mut y = [0.0; 9];
    /// a.apply(&[1.0; 9], &mut y);
    /// assert_eq!(y[4].to_bits(), 0f64.to_bits()); // interior row sums to zero
    /// ```
    pub fn laplacian_2d(g: usize) -> Result<Self, OperatorError> {
        let n = g.checked_mul(g).ok_or_else(|| {
            OperatorError::InvalidArgument(format!("grid {g}×{g} overflows the index type"))
        })?;
        let cap = 3 * n;
        let (mut r, mut c, mut v) = (
            Vec::with_capacity(cap),
            Vec::with_capacity(cap),
            Vec::with_capacity(cap),
        );
        let four = T::from_f64(4.0);
        for j in 0..g {
            for i in 0..g {
                let p = i + j * g;
                r.push(p);
                c.push(p);
                v.push(four);
                if i > 0 {
                    r.push(p);
                    c.push(p - 1);
                    v.push(-T::ONE);
                }
                if j > 0 {
                    r.push(p);
                    c.push(p - g);
                    v.push(-T::ONE);
                }
            }
        }
        Self::from_triplets(n, &r, &c, &v)
    }

    /// From triplets of **one triangle**: every entry in the lower triangle (`i ≥ j`) or every
    /// entry in the upper triangle (`i ≤ j`); upper entries are stored as their mirror `(j, i)`.
    /// Each off-diagonal triplet stands for the pair `A[i, j] = A[j, i]`. Duplicates are summed.
    ///
    /// [`triplet_to_stored`](Self::triplet_to_stored) gives, for each triplet, its parameter.
    ///
    /// Errors as [`CsrMatrix::from_triplets`], plus [`OperatorError::InvalidArgument`] if the
    /// triplets mix strictly-lower and strictly-upper entries (ambiguous: use
    /// [`from_full_triplets`](Self::from_full_triplets) for a full symmetric matrix).
    pub fn from_triplets(
        n: usize,
        rows: &[usize],
        cols: &[usize],
        vals: &[T],
    ) -> Result<Self, OperatorError> {
        require_len("triplet column indices", cols.len(), rows.len())?;
        let (mut has_lower, mut has_upper) = (false, false);
        for (&r, &c) in rows.iter().zip(cols) {
            has_lower |= r > c;
            has_upper |= r < c;
        }
        if has_lower && has_upper {
            return Err(OperatorError::InvalidArgument(
                "symmetric triplets mix lower- and upper-triangle entries; give one triangle, \
                 or use SymCsrMatrix::from_full_triplets"
                    .into(),
            ));
        }
        let lower = if has_upper {
            CsrMatrix::from_triplets(n, n, cols, rows, vals)?
        } else {
            CsrMatrix::from_triplets(n, n, rows, cols, vals)?
        };
        let triplet_map = lower.triplet_map.clone();
        Ok(Self::from_lower_unchecked(lower, triplet_map))
    }

    /// From the lower triangle as a CSR matrix (square, every column index `≤` its row).
    /// The triplet map is the one of `lower`.
    pub fn from_lower_csr(lower: CsrMatrix<T>) -> Result<Self, OperatorError> {
        if lower.nrows != lower.ncols {
            return Err(OperatorError::NotSquare {
                nrows: lower.nrows,
                ncols: lower.ncols,
            });
        }
        for i in 0..lower.nrows {
            let (s, e) = (lower.row_ptr[i], lower.row_ptr[i + 1]);
            if e > s && lower.col_idx[e - 1] > i {
                return Err(OperatorError::InvalidStructure(format!(
                    "entry ({i}, {}) is above the diagonal in a lower triangle",
                    lower.col_idx[e - 1]
                )));
            }
        }
        let triplet_map = lower.triplet_map.clone();
        Ok(Self::from_lower_unchecked(lower, triplet_map))
    }

    /// From a full symmetric CSR matrix (pattern and values exactly symmetric); keeps the lower
    /// triangle as parameters. The triplet map sends each stored entry of `full` (in its CSR
    /// order) to its parameter: `(i, j)` and `(j, i)` share one.
    pub fn from_full_csr(full: &CsrMatrix<T>) -> Result<Self, OperatorError> {
        if full.nrows != full.ncols {
            return Err(OperatorError::NotSquare {
                nrows: full.nrows,
                ncols: full.ncols,
            });
        }
        let n = full.nrows;
        let mut row_ptr = Vec::with_capacity(n + 1);
        row_ptr.push(0);
        let (mut ci, mut vals) = (Vec::new(), Vec::new());
        for i in 0..n {
            for p in full.row_ptr[i]..full.row_ptr[i + 1] {
                if full.col_idx[p] <= i {
                    ci.push(full.col_idx[p]);
                    vals.push(full.values[p]);
                }
            }
            row_ptr.push(ci.len());
        }
        let lower = CsrMatrix::from_raw_parts(n, n, row_ptr, ci, vals)?;
        let s = Self::from_lower_unchecked(lower, Vec::new());
        if s.full.row_ptr != full.row_ptr || s.full.col_idx != full.col_idx {
            return Err(OperatorError::InvalidArgument(
                "matrix pattern is not symmetric".into(),
            ));
        }
        for i in 0..n {
            for p in full.row_ptr[i]..full.row_ptr[i + 1] {
                if s.full.values[p] != full.values[p] {
                    let j = full.col_idx[p];
                    return Err(OperatorError::InvalidArgument(format!(
                        "matrix is not symmetric: A[{i},{j}] = {:e} but A[{j},{i}] = {:e}",
                        full.values[p], s.full.values[p]
                    )));
                }
            }
        }
        let triplet_map = full
            .triplet_map
            .iter()
            .map(|&fp| s.full_to_param[fp])
            .collect();
        Ok(Self { triplet_map, ..s })
    }

    /// From triplets of a full symmetric matrix (both `(i, j)` and `(j, i)` given, duplicates
    /// summed, result exactly symmetric); keeps the lower triangle as parameters. The triplet map
    /// sends each triplet to its parameter (mirror entries share one).
    pub fn from_full_triplets(
        n: usize,
        rows: &[usize],
        cols: &[usize],
        vals: &[T],
    ) -> Result<Self, OperatorError> {
        let full = CsrMatrix::from_triplets(n, n, rows, cols, vals)?;
        Self::from_full_csr(&full)
    }

    /// Builds the expanded full matrix from a validated lower triangle.
    fn from_lower_unchecked(lower: CsrMatrix<T>, triplet_map: Vec<usize>) -> Self {
        let n = lower.nrows;
        let (lrp, lci) = (&lower.row_ptr, &lower.col_idx);
        // Row lengths of the full matrix: row i gets its lower row, plus the mirrors (j, i) of
        // strictly-lower entries (i, j) in row j.
        let mut full_ptr = vec![0usize; n + 1];
        for i in 0..n {
            full_ptr[i + 1] += lrp[i + 1] - lrp[i];
            for &j in &lci[lrp[i]..lrp[i + 1]] {
                if j < i {
                    full_ptr[j + 1] += 1;
                }
            }
        }
        for i in 0..n {
            full_ptr[i + 1] += full_ptr[i];
        }
        let nnz = full_ptr[n];
        let mut col_idx = vec![0usize; nnz];
        let mut values = vec![T::ZERO; nnz];
        let mut full_to_param = vec![0usize; nnz];
        // Lower part first in each row (columns ≤ i), then mirrors in increasing row order
        // (columns > i, increasing): rows stay sorted.
        let mut cursor = vec![0usize; n];
        for i in 0..n {
            let mut q = full_ptr[i];
            for p in lrp[i]..lrp[i + 1] {
                col_idx[q] = lci[p];
                values[q] = lower.values[p];
                full_to_param[q] = p;
                q += 1;
            }
            cursor[i] = q;
        }
        for i in 0..n {
            for p in lrp[i]..lrp[i + 1] {
                let j = lci[p];
                if j < i {
                    let q = cursor[j];
                    col_idx[q] = i;
                    values[q] = lower.values[p];
                    full_to_param[q] = p;
                    cursor[j] += 1;
                }
            }
        }
        let full = CsrMatrix {
            nrows: n,
            ncols: n,
            row_ptr: full_ptr,
            col_idx,
            values,
            triplet_map: (0..nnz).collect(),
        };
        Self {
            lower,
            full,
            full_to_param,
            triplet_map,
        }
    }

    /// Dimension `n`.
    pub fn dim(&self) -> usize {
        self.lower.nrows
    }

    /// The stored lower triangle (its values are the parameters).
    pub fn lower(&self) -> &CsrMatrix<T> {
        &self.lower
    }

    /// The expanded full matrix used for products.
    pub fn full(&self) -> &CsrMatrix<T> {
        &self.full
    }

    /// For each position of [`full`](Self::full)'s stored values, the parameter it copies.
    pub fn full_to_param(&self) -> &[usize] {
        &self.full_to_param
    }

    /// Number of stored (lower-triangle) entries, equal to the number of parameters.
    pub fn nnz(&self) -> usize {
        self.lower.nnz()
    }

    /// For each input triplet of the constructor, the parameter it was added to (duplicates, and
    /// mirror entries for [`from_full_triplets`](Self::from_full_triplets), share one).
    pub fn triplet_to_stored(&self) -> &[usize] {
        &self.triplet_map
    }

    /// The full symmetric matrix as a dense matrix (for tests).
    ///
    /// # Panics
    /// If `n²` overflows or cannot be allocated.
    pub fn to_dense(&self) -> DenseMatrix<T> {
        self.full.to_dense()
    }
}

impl<T: Scalar> Operator<T> for SymCsrMatrix<T> {
    fn nrows(&self) -> usize {
        self.dim()
    }
    fn ncols(&self) -> usize {
        self.dim()
    }
    /// Parallel SpMV on the expanded full matrix.
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.full.apply(x, y)
    }
    /// Blocked SpMM on the expanded full matrix.
    ///
    /// # Panics
    /// On block length mismatches.
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.full.apply_block(x, y, k)
    }
}

impl<T: Scalar> AdjointOperator<T> for SymCsrMatrix<T> {
    /// Same as [`apply`](Operator::apply) (parallel).
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.full.apply(x, y)
    }
    /// Same as [`apply_block`](Operator::apply_block).
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.full.apply_block(x, y, k)
    }
}

impl<T: Scalar> SelfAdjoint<T> for SymCsrMatrix<T> {}

impl<T: Scalar> ParamVjp<T> for SymCsrMatrix<T> {
    fn num_params(&self) -> usize {
        self.lower.nnz()
    }
    /// `grad[p] += u_i x_j + u_j x_i` (`u_i x_i` on the diagonal); parallel over rows.
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    /// `grad[p] += Σ_c (u_c[i] x_c[j] + u_c[j] x_c[i])` in one pass over the triangle, parallel
    /// over rows.
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        let n = self.dim();
        check_block_len("SymCsrMatrix::vjp_params_block u", u.len(), n, k);
        check_block_len("SymCsrMatrix::vjp_params_block x", x.len(), n, k);
        check_len(
            "SymCsrMatrix::vjp_params_block grad",
            grad.len(),
            self.nnz(),
        );
        // Groups of 8, 4, 2, 1 column pairs per pass over the triangle: the per-entry index
        // and gradient traffic is shared by the group, and the group's columns stream together.
        vjp_blocked!(self, u, x, k, n, n, grad, 2);
    }
    /// [`SPMM_BLOCK`] (8).
    fn vjp_block_size(&self) -> usize {
        SPMM_BLOCK
    }
    /// `y = A x` and the parameter VJP in one row-parallel pass over the expanded matrix: row
    /// `i` handles its lower-triangle parameters (`u_i x_j + u_j x_i`, diagonal `u_i x_i`),
    /// which no other row touches.
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        let n = self.dim();
        check_len("SymCsrMatrix::apply_and_vjp_params x", x.len(), n);
        check_len("SymCsrMatrix::apply_and_vjp_params y", y.len(), n);
        check_len("SymCsrMatrix::apply_and_vjp_params u", u.len(), n);
        check_len(
            "SymCsrMatrix::apply_and_vjp_params grad",
            grad.len(),
            self.nnz(),
        );
        let (rp, ci, vals) = (
            &self.full.row_ptr[..],
            &self.full.col_idx[..],
            &self.full.values[..],
        );
        // Row i of the expanded matrix starts with its lower row (columns ≤ i, in parameter
        // order; see `from_lower_unchecked`), so the parameters it owns are the contiguous
        // `lrp[i]..lrp[i+1]` and need no index map; the mirrored entries that follow only enter
        // the product.
        let lrp = &self.lower.row_ptr[..];
        self.full.for_row_chunks2(
            y,
            grad,
            |r| lrp[r],
            |r0, r1, yc, gc| {
                let base = lrp[r0];
                for i in r0..r1 {
                    let (ui, xi) = (u[i], x[i]);
                    let (s, e) = (rp[i], rp[i + 1]);
                    let (gs, nl) = (lrp[i] - base, lrp[i + 1] - lrp[i]);
                    // Columns are strictly increasing: a stored diagonal ends the lower row.
                    let diag = nl > 0 && ci[s + nl - 1] == i;
                    let off = nl - usize::from(diag);
                    let mut acc = T::ZERO;
                    for t in 0..off {
                        let j = ci[s + t];
                        let xj = x[j];
                        acc += vals[s + t] * xj;
                        gc[gs + t] += ui * xj + u[j] * xi;
                    }
                    if diag {
                        acc += vals[s + off] * xi;
                        gc[gs + off] += ui * xi;
                    }
                    for p in s + nl..e {
                        acc += vals[p] * x[ci[p]];
                    }
                    yc[i - r0] = acc;
                }
            },
        );
    }
}

impl<T: Scalar> SymCsrMatrix<T> {
    /// `grad[p] += Σ_c (u_c[i] x_c[j] + u_c[j] x_c[i])` (diagonal: `u_c[i] x_c[i]`) for one
    /// group of `B` column pairs, parallel over rows of the triangle.
    fn vjp_group<const B: usize, const W: usize>(&self, u: &[T], x: &[T], grad: &mut [T]) {
        debug_assert_eq!(W, 2 * B);
        let n = self.dim();
        let cols: [&[T]; W] = std::array::from_fn(|t| {
            if t < B {
                &u[t * n..(t + 1) * n]
            } else {
                &x[(t - B) * n..(t - B + 1) * n]
            }
        });
        let (rp, ci) = (&self.lower.row_ptr[..], &self.lower.col_idx[..]);
        if too_big_to_interleave::<T>(n * W) {
            // Direct reads, the same products and the same sums (same bits).
            let (us, xs) = (&cols[..B], &cols[B..]);
            self.lower.for_row_chunks(
                grad,
                |r| rp[r],
                |r0, r1, g| {
                    let base = rp[r0];
                    for i in r0..r1 {
                        let ui: [T; B] = std::array::from_fn(|c| us[c][i]);
                        let xi: [T; B] = std::array::from_fn(|c| xs[c][i]);
                        let (s, e) = (rp[i], rp[i + 1]);
                        let diag = e > s && ci[e - 1] == i;
                        let off = e - s - usize::from(diag);
                        for (gp, &j) in g[s - base..s - base + off].iter_mut().zip(&ci[s..s + off])
                        {
                            let t: [T; B] =
                                std::array::from_fn(|c| ui[c] * xs[c][j] + us[c][j] * xi[c]);
                            *gp += halving_sum(t);
                        }
                        if diag {
                            let t: [T; B] = std::array::from_fn(|c| ui[c] * xi[c]);
                            g[e - 1 - base] += halving_sum(t);
                        }
                    }
                },
            );
            return;
        }
        // Row-interleaved (u, x): entry (i, j) reads the 2B values of row j from one run.
        with_interleaved(cols, n, |w| {
            self.lower.for_row_chunks(
                grad,
                |r| rp[r],
                |r0, r1, g| {
                    with_best_isa(
                        #[inline(always)]
                        || sym_vjp_rows_interleaved::<T, B>(rp, ci, r0, r1, w, g),
                    )
                },
            )
        });
    }
}

impl<T: Scalar> SetParams<T> for SymCsrMatrix<T> {
    fn params(&self, out: &mut [T]) {
        self.lower.params(out)
    }
    /// Replaces the lower-triangle values (CSR order) and refreshes the expanded copy.
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        self.lower.set_params(theta)?;
        for (v, &p) in self.full.values.iter_mut().zip(&self.full_to_param) {
            *v = theta[p];
        }
        Ok(())
    }
}

impl<T: Scalar> ColumnAccess<T> for SymCsrMatrix<T> {
    /// The last stored entry of each lower row, when it is on the diagonal.
    fn diagonal(&self, out: &mut [T]) {
        check_len("SymCsrMatrix::diagonal", out.len(), self.dim());
        let l = &self.lower;
        for (i, o) in out.iter_mut().enumerate() {
            let (s, e) = (l.row_ptr[i], l.row_ptr[i + 1]);
            *o = if e > s && l.col_idx[e - 1] == i {
                l.values[e - 1]
            } else {
                T::ZERO
            };
        }
    }
    /// Column `j` = row `j` of the full symmetric matrix (`O(row length)` after zeroing).
    ///
    /// # Panics
    /// If `j >= n` or `out.len() != n`.
    fn column(&self, j: usize, out: &mut [T]) {
        assert!(
            j < self.dim(),
            "SymCsrMatrix::column: column {j} out of range"
        );
        check_len("SymCsrMatrix::column", out.len(), self.dim());
        out.fill(T::ZERO);
        let f = &self.full;
        for p in f.row_ptr[j]..f.row_ptr[j + 1] {
            out[f.col_idx[p]] = f.values[p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_covers_rows() {
        let rp: Vec<usize> = (0..=100_000).map(|i| i * 5).collect();
        let b = row_partition(&rp);
        assert_eq!(b[0], 0);
        assert_eq!(*b.last().unwrap(), 100_000);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
    }

    /// Deterministic values in [-1, 1) without a random number generator.
    fn vals(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| (((i + seed) * 7919 + seed * 104_729) % 2003) as f64 / 1001.5 - 1.0)
            .collect()
    }

    /// A symmetric matrix with an irregular pattern (some rows without a diagonal, an empty
    /// row) and a general rectangular one, both with `n` rows.
    fn test_matrices(n: usize) -> (SymCsrMatrix<f64>, CsrMatrix<f64>) {
        let (mut r, mut c) = (Vec::new(), Vec::new());
        for i in 0..n {
            if i % 7 != 3 && i != 5 {
                r.push(i);
                c.push(i);
            }
            for d in [1, 2, 17, 300, 4099] {
                if i >= d && (i * 31 + d) % 5 != 0 && i != 5 && i - d != 5 {
                    r.push(i);
                    c.push(i - d);
                }
            }
        }
        let v = vals(r.len(), 3);
        let sym = SymCsrMatrix::from_triplets(n, &r, &c, &v).unwrap();
        let cols: Vec<usize> = c.iter().map(|&j| (j * 13) % (n + 9)).collect();
        let gen = CsrMatrix::from_triplets(n, n + 9, &r, &cols, &v).unwrap();
        (sym, gen)
    }

    /// The reference block VJPs: every stored entry summed over the pairs in pair order.
    fn reference_vjps(
        sym: &SymCsrMatrix<f64>,
        gen: &CsrMatrix<f64>,
        u: &[f64],
        x: &[f64],
        k: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let (n, m) = (sym.dim(), gen.ncols());
        let l = sym.lower();
        let mut gs = vec![0.0; sym.nnz()];
        for i in 0..n {
            for p in l.row_ptr()[i]..l.row_ptr()[i + 1] {
                let j = l.col_idx()[p];
                for c in 0..k {
                    let (uc, xc) = (&u[c * n..], &x[c * n..]);
                    gs[p] += if i == j {
                        uc[i] * xc[i]
                    } else {
                        uc[i] * xc[j] + uc[j] * xc[i]
                    };
                }
            }
        }
        let mut gg = vec![0.0; gen.nnz()];
        for i in 0..n {
            for p in gen.row_ptr()[i]..gen.row_ptr()[i + 1] {
                let j = gen.col_idx()[p];
                for c in 0..k {
                    gg[p] += u[c * n + i] * x[c * m + j];
                }
            }
        }
        (gs, gg)
    }

    #[test]
    fn interleaved_copy_is_the_transpose() {
        // Ragged last tile and last row block, below and above the parallel threshold.
        for n in [13usize, 3 * INTERLEAVE_ROWS + 21] {
            let a = vals(n * 16, 1);
            let cols: [&[f64]; 16] = std::array::from_fn(|t| &a[t * n..(t + 1) * n]);
            with_interleaved(cols, n, |w| {
                for i in 0..n {
                    for t in 0..16 {
                        assert_eq!(w[i * 16 + t].to_bits(), a[t * n + i].to_bits());
                    }
                }
            });
            let cols: [&[f64]; 2] = std::array::from_fn(|t| &a[t * n..(t + 1) * n]);
            with_interleaved(cols, n, |w| {
                assert_eq!(w.len(), 2 * n);
                for i in 0..n {
                    assert_eq!(w[2 * i + 1].to_bits(), a[n + i].to_bits());
                }
            });
        }
    }

    #[test]
    fn vectorised_block_vjps_equal_the_entrywise_sums() {
        // k = 11: groups of 8, 2 and 1 pairs. Per entry the kernels sum the 2k (resp. k)
        // products in another order: rounding-level differences only.
        let n = 2 * INTERLEAVE_ROWS + 5000;
        let (sym, gen) = test_matrices(n);
        for k in [1usize, 3, 8, 11] {
            let (u, x) = (vals(n * k, 5), vals((n + 9) * k, 11));
            let (rs, rg) = reference_vjps(&sym, &gen, &u, &x, k);
            let mut gs = vals(sym.nnz(), 2);
            let gs0 = gs.clone();
            sym.vjp_params_block(&u, &x[..n * k], k, &mut gs);
            for ((g, g0), r) in gs.iter().zip(&gs0).zip(&rs) {
                assert!((g - g0 - r).abs() <= 1e-14 * (2 * k) as f64, "sym k = {k}");
            }
            let mut gg = vec![0.0; gen.nnz()];
            gen.vjp_params_block(&u, &x, k, &mut gg);
            for (g, r) in gg.iter().zip(&rg) {
                assert!((g - r).abs() <= 1e-14 * k as f64, "general k = {k}");
            }
        }
    }

    #[test]
    fn direct_block_vjps_above_the_interleave_limit_give_the_same_bits() {
        // n·16·8 and n·8·8 bytes are above INTERLEAVE_MAX_BYTES: the public block VJPs take
        // the direct path, which must equal the interleaved kernels bit for bit.
        let n = 270_000;
        assert!(too_big_to_interleave::<f64>(n * 8) && too_big_to_interleave::<f64>(n * 16));
        let (sym, gen) = test_matrices(n);
        let (u, x) = (vals(n * 8, 5), vals((n + 9) * 8, 11));
        let mut gs = vec![0.0; sym.nnz()];
        sym.vjp_params_block(&u, &x[..n * 8], 8, &mut gs);
        let mut w = vec![0.0; n * 16];
        for i in 0..n {
            for c in 0..8 {
                w[i * 16 + c] = u[c * n + i];
                w[i * 16 + 8 + c] = x[c * n + i];
            }
        }
        let (rp, ci) = (sym.lower().row_ptr(), sym.lower().col_idx());
        let mut rs = vec![0.0; sym.nnz()];
        sym_vjp_rows_interleaved::<f64, 8>(rp, ci, 0, n, &w, &mut rs);
        assert!(gs.iter().zip(&rs).all(|(a, b)| a.to_bits() == b.to_bits()));
        let m = n + 9;
        let mut gg = vec![0.0; gen.nnz()];
        gen.vjp_params_block(&u, &x, 8, &mut gg);
        let mut xr = vec![0.0; m * 8];
        for j in 0..m {
            for c in 0..8 {
                xr[j * 8 + c] = x[c * m + j];
            }
        }
        let us: [&[f64]; 8] = std::array::from_fn(|c| &u[c * n..(c + 1) * n]);
        let (rp, ci) = (gen.row_ptr(), gen.col_idx());
        let mut rg = vec![0.0; gen.nnz()];
        vjp_rows_interleaved::<f64, 8>(rp, ci, 0, n, &us, &xr, &mut rg);
        assert!(gg.iter().zip(&rg).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn vectorised_kernels_do_not_depend_on_the_instruction_set_or_threads() {
        // The kernels fix their order of operations: the dispatched (AVX-512 / AVX2) build and
        // the baseline build of the same function give the same bits, and so do 1 and 3
        // threads.
        let n = 3 * INTERLEAVE_ROWS + 77;
        let (sym, gen) = test_matrices(n);
        let w = vals(n * 16, 7);
        let (rp, ci) = (sym.lower().row_ptr(), sym.lower().col_idx());
        let mut g1 = vec![0.0; sym.nnz()];
        let mut g2 = g1.clone();
        sym_vjp_rows_interleaved::<f64, 8>(rp, ci, 0, n, &w, &mut g1);
        with_best_isa(
            #[inline(always)]
            || sym_vjp_rows_interleaved::<f64, 8>(rp, ci, 0, n, &w, &mut g2),
        );
        assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
        let xr = vals((n + 9) * 8, 9);
        let ucols = vals(n * 8, 4);
        let us: [&[f64]; 8] = std::array::from_fn(|c| &ucols[c * n..(c + 1) * n]);
        let (rp, ci) = (gen.row_ptr(), gen.col_idx());
        let mut h1 = vec![0.0; gen.nnz()];
        let mut h2 = h1.clone();
        vjp_rows_interleaved::<f64, 8>(rp, ci, 0, n, &us, &xr, &mut h1);
        with_best_isa(
            #[inline(always)]
            || vjp_rows_interleaved::<f64, 8>(rp, ci, 0, n, &us, &xr, &mut h2),
        );
        assert!(h1.iter().zip(&h2).all(|(a, b)| a.to_bits() == b.to_bits()));

        let (u, x) = (vals(n * 11, 5), vals((n + 9) * 11, 11));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut gs = vec![0.0; sym.nnz()];
                sym.vjp_params_block(&u, &x[..n * 11], 11, &mut gs);
                let mut gg = vec![0.0; gen.nnz()];
                gen.vjp_params_block(&u, &x, 11, &mut gg);
                (gs, gg)
            })
        };
        let ((s1, q1), (s3, q3)) = (run(1), run(3));
        assert!(s1.iter().zip(&s3).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(q1.iter().zip(&q3).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn sym_expansion_is_sorted() {
        let s = SymCsrMatrix::from_triplets(
            3,
            &[0, 1, 2, 2, 2],
            &[0, 0, 0, 1, 2],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        )
        .unwrap();
        assert_eq!(s.full().row_ptr(), &[0, 3, 5, 8]);
        assert_eq!(s.full().col_idx(), &[0, 1, 2, 0, 2, 0, 1, 2]);
        assert_eq!(s.full_to_param(), &[0, 1, 2, 1, 3, 2, 3, 4]);
    }
}

// ---------------------------------------------------------------------------------------------
// CheckedSymmetricCsr
// ---------------------------------------------------------------------------------------------

/// The first pair of mirror entries of a general-storage matrix that differ
/// ([`check_symmetric`]), 0-based: `A[row, col] = value` but `A[col, row] = mirror` (0 when not
/// stored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Asymmetry {
    /// Row of the stored entry.
    pub row: usize,
    /// Column of the stored entry.
    pub col: usize,
    /// `A[row, col]`.
    pub value: f64,
    /// `A[col, row]` (0 when not stored).
    pub mirror: f64,
}

impl std::fmt::Display for Asymmetry {
    /// `A[i,j] = … but A[j,i] = …` with **1-based** indices (the numbering of Matrix Market
    /// files and of most users' tools).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "A[{},{}] = {:e} but A[{},{}] = {:e}",
            self.row + 1,
            self.col + 1,
            self.value,
            self.col + 1,
            self.row + 1,
            self.mirror
        )
    }
}

/// Why a general-storage matrix cannot be used as a symmetric one
/// ([`check_symmetric`], [`CheckedSymmetricCsr::new`]).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SymmetryError {
    /// The matrix is not square.
    #[error("the matrix is {nrows}×{ncols}; a symmetric matrix must be square")]
    NotSquare {
        /// Rows.
        nrows: usize,
        /// Columns.
        ncols: usize,
    },
    /// A stored entry differs from its mirror (the first such pair in CSR order).
    #[error("the matrix is not symmetric ({0})")]
    Asymmetric(Asymmetry),
}

/// Checks `A[i, j] = A[j, i]` for every stored entry, up to a relative `4ε` of the larger of
/// the two (values that went through a decimal round trip may differ in the last bit). An entry
/// whose mirror is not stored is compared with 0.
///
/// # Errors
/// [`SymmetryError::NotSquare`], or [`SymmetryError::Asymmetric`] naming the first differing
/// pair in CSR order.
pub fn check_symmetric<T: Scalar>(a: &CsrMatrix<T>) -> Result<(), SymmetryError> {
    if a.nrows() != a.ncols() {
        return Err(SymmetryError::NotSquare {
            nrows: a.nrows(),
            ncols: a.ncols(),
        });
    }
    let (rp, ci, v) = (a.row_ptr(), a.col_idx(), a.values());
    let four_eps = T::from_f64(4.0) * T::EPS;
    for i in 0..a.nrows() {
        for p in rp[i]..rp[i + 1] {
            let j = ci[p];
            let aij = v[p];
            let aji = a.get(j, i).unwrap_or(T::ZERO);
            let tol = four_eps * aij.abs().max(aji.abs());
            if (aij - aji).abs() > tol {
                return Err(SymmetryError::Asymmetric(Asymmetry {
                    row: i,
                    col: j,
                    value: aij.to_f64(),
                    mirror: aji.to_f64(),
                }));
            }
        }
    }
    Ok(())
}

/// A general-storage [`CsrMatrix`] that was checked to be symmetric ([`check_symmetric`]), so
/// that Lanczos (which needs [`SelfAdjoint`]) can run on it — e.g. a `general` Matrix Market
/// file holding a symmetric matrix.
///
/// **Parameters** are those of the [`CsrMatrix`]: every stored entry `A[i, j]` is its own
/// parameter, and its gradient is `∂/∂A[i, j]` with the entries treated as independent
/// (`CsrMatrix::vjp_params`: `u[i]·x[j]`). The sum of the gradients of a mirror pair
/// `A[i, j]`, `A[j, i]` is the derivative along the symmetric perturbation that changes both.
///
/// The [`SelfAdjoint`] promise holds for the values checked at construction; the wrapper gives
/// no way to change them (no [`SetParams`]).
///
/// ```
/// use gradmat_operators::csr::{CheckedSymmetricCsr, CsrMatrix, SymmetryError};
/// let a = CsrMatrix::from_triplets(2, 2, &[0, 0, 1, 1], &[0, 1, 0, 1], &[2.0, 1.0, 1.0, 3.0])
///     .unwrap();
/// let s = CheckedSymmetricCsr::new(a).unwrap();
/// assert_eq!(s.inner().nnz(), 4);
/// let b = CsrMatrix::from_triplets(2, 2, &[0, 1], &[1, 1], &[1.0, 3.0]).unwrap();
/// match CheckedSymmetricCsr::new(b) {
///     Err(SymmetryError::Asymmetric(p)) => assert_eq!((p.row, p.col, p.mirror), (0, 1, 0.0)),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CheckedSymmetricCsr<T: Scalar>(CsrMatrix<T>);

impl<T: Scalar> CheckedSymmetricCsr<T> {
    /// Wraps `a` after checking that it is square and symmetric.
    ///
    /// # Errors
    /// See [`check_symmetric`].
    pub fn new(a: CsrMatrix<T>) -> Result<Self, SymmetryError> {
        check_symmetric(&a)?;
        Ok(Self(a))
    }
    /// The wrapped matrix.
    pub fn inner(&self) -> &CsrMatrix<T> {
        &self.0
    }
    /// The wrapped matrix, by value.
    pub fn into_inner(self) -> CsrMatrix<T> {
        self.0
    }
}

impl<T: Scalar> Operator<T> for CheckedSymmetricCsr<T> {
    fn nrows(&self) -> usize {
        self.0.nrows()
    }
    fn ncols(&self) -> usize {
        self.0.ncols()
    }
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_block(x, y, k)
    }
}

impl<T: Scalar> AdjointOperator<T> for CheckedSymmetricCsr<T> {
    /// `Aᵀx = Ax` (symmetric), by the parallel SpMV rather than the sequential scatter.
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_block(x, y, k)
    }
}

impl<T: Scalar> SelfAdjoint<T> for CheckedSymmetricCsr<T> {}

impl<T: Scalar> ParamVjp<T> for CheckedSymmetricCsr<T> {
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.0.vjp_params(u, x, grad)
    }
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        self.0.vjp_params_block(u, x, k, grad)
    }
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        self.0.apply_and_vjp_params(x, y, u, grad)
    }
    fn vjp_block_size(&self) -> usize {
        self.0.vjp_block_size()
    }
}

impl<T: Scalar> ColumnAccess<T> for CheckedSymmetricCsr<T> {
    fn diagonal(&self, out: &mut [T]) {
        self.0.diagonal(out)
    }
    fn column(&self, j: usize, out: &mut [T]) {
        self.0.column(j, out)
    }
}
