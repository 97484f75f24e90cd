//! [`DistCsr`]: a sparse matrix partitioned by rows, with halo exchange.

use super::{agree, RowPartition};
use crate::comm::{sum_in_rank_order, Comm};
use crate::csr::CsrMatrix;
use crate::traits::{check_block_len, check_len};
use crate::{AdjointOperator, Operator, OperatorError, ParamVjp, Scalar, SelfAdjoint};
use std::sync::{Arc, Mutex};

/// A sparse `n × n` matrix partitioned by rows (see the [module documentation](super)):
/// rank `q` stores its rows `part.range(q)` with **global** column indices remapped to an
/// extended local vector `x_ext = [halo below | owned | halo above]` (ordered by global
/// index, so every row keeps its stored order and its sum is computed exactly as the serial
/// product computes it).
///
/// **Products** exchange the halo (one all-to-all of the referenced entries per product, for
/// all `k` columns of a block at once) and run [`CsrMatrix`]'s row-parallel kernels on the
/// owned rows: for the same `x`, the owned entries of `y = A x` are **bit-identical** to the
/// serial [`CsrMatrix`] (or [`SymCsrMatrix`](crate::csr::SymCsrMatrix), whose products use the
/// expanded rows) product, for any partition.
///
/// **Parameters:** the owned stored entries in CSR order (row by row, stored order), followed
/// by the shift `σ` if there is one ([`with_shift`](Self::with_shift): `A + σI`). The entry
/// gradients are local (`grad[p] += u_i x_j` for an owned row `i`); `σ̄ += ⟨u, x⟩` is a global
/// sum, added over ranks in rank order, and the same on every rank. Gather the entry gradients
/// of all ranks in global CSR order with [`gather_entries`](Self::gather_entries).
///
/// [`SelfAdjoint`] is implemented as a promise: build from a symmetric matrix to use Lanczos.
pub struct DistCsr<T: Scalar> {
    comm: Arc<dyn Comm>,
    part: RowPartition,
    /// Owned rows, columns in the extended local numbering.
    local: CsrMatrix<T>,
    /// Halo entries below / above the owned block.
    halo_lo: usize,
    halo_hi: usize,
    /// Halo entries received from each rank (in rank order = global order).
    recv_counts: Vec<usize>,
    /// Local indices of owned entries sent to each rank, concatenated by destination.
    send_idx: Vec<usize>,
    send_counts: Vec<usize>,
    shift: Option<T>,
    /// `(x_ext block, send buffer, receive buffer)` reused across products.
    scratch: Mutex<(Vec<T>, Vec<f64>, Vec<f64>)>,
}

impl<T: Scalar> std::fmt::Debug for DistCsr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistCsr")
            .field("rank", &self.comm.rank())
            .field("n", &self.part.len())
            .field("local_rows", &self.local.nrows())
            .field("local_nnz", &self.local.nnz())
            .field("halo", &(self.halo_lo + self.halo_hi))
            .field("shift", &self.shift.map(|s| s.to_f64()))
            .finish()
    }
}

impl<T: Scalar> DistCsr<T> {
    /// From every rank's copy of the whole matrix: each rank keeps its rows. No communication
    /// beyond the agreement (every rank can compute the exchange plan from the whole pattern).
    ///
    /// # Errors
    /// A non-square matrix or a partition of the wrong length (on every rank).
    pub fn from_replicated(
        full: &CsrMatrix<T>,
        part: RowPartition,
        comm: Arc<dyn Comm>,
    ) -> Result<Self, OperatorError> {
        let check = if full.nrows() != full.ncols() {
            Err(OperatorError::NotSquare {
                nrows: full.nrows(),
                ncols: full.ncols(),
            })
        } else if part.len() != full.nrows() || part.num_ranks() != comm.size() {
            Err(OperatorError::DimensionMismatch {
                what: "row partition of the distributed matrix",
                expected: full.nrows(),
                got: part.len(),
            })
        } else {
            Ok(())
        };
        agree(&*comm, check)?;
        let r = part.range(comm.rank());
        let rp = full.row_ptr();
        let (s, e) = (rp[r.start], rp[r.end]);
        let row_ptr: Vec<usize> = rp[r.start..=r.end].iter().map(|p| p - s).collect();
        Self::from_local_rows(
            row_ptr,
            full.col_idx()[s..e].to_vec(),
            full.values()[s..e].to_vec(),
            part,
            comm,
        )
    }

    /// The matrix held by rank `root` (the other ranks pass `None`), sent to the ranks by
    /// rows: Matrix Market input read once and scattered. Three all-to-alls (row lengths,
    /// columns, values) from the root.
    ///
    /// # Errors
    /// As [`from_replicated`](Self::from_replicated), on every rank.
    pub fn scatter_from(
        full: Option<&CsrMatrix<T>>,
        root: usize,
        part: RowPartition,
        comm: Arc<dyn Comm>,
    ) -> Result<Self, OperatorError> {
        let (p, me) = (comm.size(), comm.rank());
        let check = match (me == root, full) {
            (true, None) => Err(OperatorError::InvalidArgument(
                "the root of a scatter must hold the matrix".into(),
            )),
            (true, Some(m)) if m.nrows() != m.ncols() => Err(OperatorError::NotSquare {
                nrows: m.nrows(),
                ncols: m.ncols(),
            }),
            (true, Some(m)) if m.nrows() != part.len() => Err(OperatorError::DimensionMismatch {
                what: "row partition of the distributed matrix",
                expected: m.nrows(),
                got: part.len(),
            }),
            _ if part.num_ranks() != p => Err(OperatorError::DimensionMismatch {
                what: "ranks of the row partition",
                expected: p,
                got: part.num_ranks(),
            }),
            _ => Ok(()),
        };
        agree(&*comm, check)?;
        let nl = part.count(me);
        // Row lengths.
        let (mut sc, mut lens) = (vec![0usize; p], Vec::new());
        if me == root {
            let m = full.expect("checked above");
            for q in 0..p {
                sc[q] = part.count(q);
                lens.extend(
                    part.range(q)
                        .map(|i| (m.row_ptr()[i + 1] - m.row_ptr()[i]) as u64),
                );
            }
        }
        let mut rc = vec![0usize; p];
        rc[root] = nl;
        let mut my_lens = vec![0u64; nl];
        comm.alltoallv_u64(&lens, &sc, &mut my_lens, &rc);
        let mut row_ptr = Vec::with_capacity(nl + 1);
        row_ptr.push(0usize);
        for l in &my_lens {
            row_ptr.push(row_ptr.last().copied().unwrap_or(0) + *l as usize);
        }
        let nnz = *row_ptr.last().unwrap_or(&0);
        // Columns and values.
        let (mut cols, mut vals) = (Vec::new(), Vec::new());
        if me == root {
            let m = full.expect("checked above");
            for q in 0..p {
                let r = part.range(q);
                let (s, e) = (m.row_ptr()[r.start], m.row_ptr()[r.end]);
                sc[q] = e - s;
                cols.extend(m.col_idx()[s..e].iter().map(|c| *c as u64));
                vals.extend(m.values()[s..e].iter().map(|v| v.to_f64()));
            }
        }
        rc[root] = nnz;
        let mut my_cols = vec![0u64; nnz];
        comm.alltoallv_u64(&cols, &sc, &mut my_cols, &rc);
        let mut my_vals = vec![0.0f64; nnz];
        comm.alltoallv_f64(&vals, &sc, &mut my_vals, &rc);
        Self::from_local_rows(
            row_ptr,
            my_cols.into_iter().map(|c| c as usize).collect(),
            my_vals.into_iter().map(T::from_f64).collect(),
            part,
            comm,
        )
    }

    /// From this rank's rows (CSR arrays of the owned rows with **global** column indices,
    /// strictly increasing within each row): rows read by row ranges. Two all-to-alls build
    /// the exchange plan (which owned entries each rank needs).
    ///
    /// # Errors
    /// Invalid structure or non-finite values in any rank's rows (on every rank, naming the
    /// first rank that failed).
    pub fn from_local_rows(
        row_ptr: Vec<usize>,
        col_idx: Vec<usize>,
        values: Vec<T>,
        part: RowPartition,
        comm: Arc<dyn Comm>,
    ) -> Result<Self, OperatorError> {
        let (p, me) = (comm.size(), comm.rank());
        let n = part.len();
        let r = part.range(me);
        let nl = r.len();
        // Validate the local rows against the global dimension (columns < n, increasing).
        let local = agree(
            &*comm,
            if part.num_ranks() == p {
                CsrMatrix::from_raw_parts(nl, n, row_ptr, col_idx, values)
            } else {
                Err(OperatorError::DimensionMismatch {
                    what: "ranks of the row partition",
                    expected: p,
                    got: part.num_ranks(),
                })
            },
        )?;
        // Halo: referenced columns outside the owned block, sorted (= grouped by owner).
        let mut halo: Vec<usize> = local
            .col_idx()
            .iter()
            .copied()
            .filter(|c| !r.contains(c))
            .collect();
        halo.sort_unstable();
        halo.dedup();
        let halo_lo = halo.partition_point(|c| *c < r.start);
        let halo_hi = halo.len() - halo_lo;
        let mut recv_counts = vec![0usize; p];
        for c in &halo {
            recv_counts[part.owner(*c)] += 1;
        }
        // Tell the owners which entries we need: counts, then the indices.
        let want: Vec<u64> = recv_counts.iter().map(|c| *c as u64).collect();
        let ones = vec![1usize; p];
        let mut asked = vec![0u64; p];
        comm.alltoallv_u64(&want, &ones, &mut asked, &ones);
        let send_counts: Vec<usize> = asked.iter().map(|c| *c as usize).collect();
        let halo64: Vec<u64> = halo.iter().map(|c| *c as u64).collect();
        let mut req = vec![0u64; send_counts.iter().sum()];
        comm.alltoallv_u64(&halo64, &recv_counts, &mut req, &send_counts);
        let send_idx: Vec<usize> = req.iter().map(|g| *g as usize - r.start).collect();
        // Remap columns to the extended local numbering (monotone: rows stay sorted).
        let ext = |c: usize| -> usize {
            if c < r.start {
                halo[..halo_lo].partition_point(|h| *h < c)
            } else if c < r.end {
                halo_lo + (c - r.start)
            } else {
                halo_lo + nl + halo[halo_lo..].partition_point(|h| *h < c)
            }
        };
        let cols: Vec<usize> = local.col_idx().iter().map(|c| ext(*c)).collect();
        let local = CsrMatrix::from_raw_parts(
            nl,
            nl + halo.len(),
            local.row_ptr().to_vec(),
            cols,
            local.values().to_vec(),
        )?;
        Ok(Self {
            comm,
            part,
            local,
            halo_lo,
            halo_hi,
            recv_counts,
            send_idx,
            send_counts,
            shift: None,
            scratch: Mutex::new((Vec::new(), Vec::new(), Vec::new())),
        })
    }

    /// `A + σI` (`σ` appended to the parameters).
    ///
    /// # Errors
    /// A non-finite `σ`.
    pub fn with_shift(mut self, sigma: T) -> Result<Self, OperatorError> {
        if !sigma.is_finite() {
            return Err(OperatorError::InvalidParameter {
                index: self.local.nnz(),
                name: "shift".into(),
                reason: format!("must be finite, got {:e}", sigma.to_f64()),
            });
        }
        self.shift = Some(sigma);
        Ok(self)
    }

    /// The communicator.
    pub fn comm(&self) -> &Arc<dyn Comm> {
        &self.comm
    }
    /// The row partition.
    pub fn partition(&self) -> &RowPartition {
        &self.part
    }
    /// The global dimension `n`.
    pub fn global_dim(&self) -> usize {
        self.part.len()
    }
    /// Owned rows.
    pub fn local_rows(&self) -> usize {
        self.local.nrows()
    }
    /// Owned stored entries (the entry parameters of this rank).
    pub fn local_nnz(&self) -> usize {
        self.local.nnz()
    }
    /// Halo entries received per product and column.
    pub fn halo_len(&self) -> usize {
        self.halo_lo + self.halo_hi
    }
    /// Owned entries sent to other ranks per product and column.
    pub fn send_len(&self) -> usize {
        self.send_idx.len()
    }

    /// The entry gradients of every rank (the first `local_nnz()` entries of a parameter
    /// gradient) in global CSR order, on every rank (one all-gather).
    pub fn gather_entries(&self, local_grad: &[T]) -> Vec<T> {
        let nnz = self.local.nnz();
        let p = self.comm.size();
        let mut counts = vec![0u64; p];
        self.comm.allgather_u64(&[nnz as u64], &mut counts);
        let counts: Vec<usize> = counts.iter().map(|c| *c as usize).collect();
        let send: Vec<f64> = local_grad[..nnz].iter().map(|v| v.to_f64()).collect();
        let mut all = vec![0.0; counts.iter().sum()];
        self.comm.allgatherv_f64(&send, &counts, &mut all);
        all.into_iter().map(T::from_f64).collect()
    }

    /// Fills the extended block (`[halo below | x | halo above]` per column) after the halo
    /// exchange, and runs `f` on it.
    fn with_extended<R>(&self, x: &[T], k: usize, f: impl FnOnce(&[T]) -> R) -> R {
        let nl = self.local.nrows();
        let ne = self.local.ncols();
        let p = self.comm.size();
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let (xe, send, recv) = &mut *guard;
        xe.resize(ne * k, T::ZERO);
        send.clear();
        // Send buffer: for each destination rank, its entries for every column.
        let mut at = 0;
        for q in 0..p {
            let idx = &self.send_idx[at..at + self.send_counts[q]];
            for c in 0..k {
                send.extend(idx.iter().map(|i| x[c * nl + *i].to_f64()));
            }
            at += self.send_counts[q];
        }
        let sc: Vec<usize> = self.send_counts.iter().map(|c| c * k).collect();
        let rc: Vec<usize> = self.recv_counts.iter().map(|c| c * k).collect();
        recv.resize(rc.iter().sum(), 0.0);
        if p > 1 {
            self.comm.alltoallv_f64(send, &sc, recv, &rc);
        }
        // Unpack: rank q's part is [column][its halo entries]; halo entries are in global
        // order, so rank q's entries are the next recv_counts[q] halo slots.
        let mut at = 0;
        let mut slot = 0;
        for q in 0..p {
            let m = self.recv_counts[q];
            for c in 0..k {
                for t in 0..m {
                    let h = slot + t;
                    let pos = if h < self.halo_lo { h } else { h + nl };
                    xe[c * ne + pos] = T::from_f64(recv[at + c * m + t]);
                }
            }
            at += m * k;
            slot += m;
        }
        for c in 0..k {
            xe[c * ne + self.halo_lo..c * ne + self.halo_lo + nl]
                .copy_from_slice(&x[c * nl..(c + 1) * nl]);
        }
        f(xe)
    }

    /// `σ̄ += Σ ⟨u_c, x_c⟩` over ranks (rank order).
    fn shift_grad(&self, u: &[T], x: &[T]) -> T {
        let local: f64 = crate::vector::dot(u, x).to_f64();
        T::from_f64(sum_in_rank_order(&*self.comm, &[local])[0])
    }
}

impl<T: Scalar> Operator<T> for DistCsr<T> {
    fn nrows(&self) -> usize {
        self.local.nrows()
    }
    fn ncols(&self) -> usize {
        self.local.nrows()
    }
    /// `y = A x` on the owned rows (one halo exchange).
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.apply_block(x, y, 1)
    }
    /// `Y = A X` on the owned rows (one halo exchange for all columns, then the blocked SpMM).
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        let nl = self.local.nrows();
        check_block_len("DistCsr::apply_block x", x.len(), nl, k);
        check_block_len("DistCsr::apply_block y", y.len(), nl, k);
        self.with_extended(x, k, |xe| {
            if k == 1 {
                self.local.apply(xe, y)
            } else {
                self.local.apply_block(xe, y, k)
            }
        });
        if let Some(s) = self.shift {
            y.iter_mut().zip(x).for_each(|(a, b)| *a += s * *b);
        }
    }
}

impl<T: Scalar> AdjointOperator<T> for DistCsr<T> {
    /// `y = Aᵀ x`: each rank scatters its rows' contributions (owned and halo columns), the
    /// halo contributions travel back to their owners (the reverse exchange) and are added
    /// after the owned ones, in rank order.
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        let (nl, ne, p) = (self.local.nrows(), self.local.ncols(), self.comm.size());
        check_len("DistCsr::apply_transpose x", x.len(), nl);
        check_len("DistCsr::apply_transpose y", y.len(), nl);
        let mut ye = vec![T::ZERO; ne];
        self.local.apply_transpose(x, &mut ye);
        // Halo slots go back to their owners (reverse plan: we send recv_counts[q] values to
        // q and receive send_counts[q] values from q, for the send_idx entries).
        let mut send = Vec::with_capacity(self.halo_len());
        for h in 0..self.halo_len() {
            let pos = if h < self.halo_lo { h } else { h + nl };
            send.push(ye[pos].to_f64());
        }
        let mut recv = vec![0.0; self.send_idx.len()];
        if p > 1 {
            self.comm
                .alltoallv_f64(&send, &self.recv_counts, &mut recv, &self.send_counts);
        }
        y.copy_from_slice(&ye[self.halo_lo..self.halo_lo + nl]);
        for (i, v) in self.send_idx.iter().zip(&recv) {
            y[*i] += T::from_f64(*v);
        }
        if let Some(s) = self.shift {
            y.iter_mut().zip(x).for_each(|(a, b)| *a += s * *b);
        }
    }
}

impl<T: Scalar> SelfAdjoint<T> for DistCsr<T> {}

impl<T: Scalar> ParamVjp<T> for DistCsr<T> {
    fn num_params(&self) -> usize {
        self.local.nnz() + usize::from(self.shift.is_some())
    }
    /// `grad[p] += u_i x_j` for the owned entries (one halo exchange); `σ̄` summed over ranks.
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    /// `grad[p] += Σ_c u_c[i] x_c[j]` for the owned entries (one halo exchange for all
    /// columns); `σ̄ += Σ_c ⟨u_c, x_c⟩` summed over ranks.
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        let nl = self.local.nrows();
        check_block_len("DistCsr::vjp_params_block u", u.len(), nl, k);
        check_block_len("DistCsr::vjp_params_block x", x.len(), nl, k);
        check_len(
            "DistCsr::vjp_params_block grad",
            grad.len(),
            self.num_params(),
        );
        let nnz = self.local.nnz();
        self.with_extended(x, k, |xe| {
            self.local.vjp_params_block(u, xe, k, &mut grad[..nnz])
        });
        if self.shift.is_some() {
            grad[nnz] += self.shift_grad(u, x);
        }
    }
    /// `y = A x` and the parameter VJP in one pass over the owned rows (one halo exchange).
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        let nl = self.local.nrows();
        check_len("DistCsr::apply_and_vjp_params x", x.len(), nl);
        check_len("DistCsr::apply_and_vjp_params y", y.len(), nl);
        check_len("DistCsr::apply_and_vjp_params u", u.len(), nl);
        check_len(
            "DistCsr::apply_and_vjp_params grad",
            grad.len(),
            self.num_params(),
        );
        let nnz = self.local.nnz();
        self.with_extended(x, 1, |xe| {
            self.local.apply_and_vjp_params(xe, y, u, &mut grad[..nnz])
        });
        if let Some(s) = self.shift {
            y.iter_mut().zip(x).for_each(|(a, b)| *a += s * *b);
            grad[nnz] += self.shift_grad(u, x);
        }
    }
    fn vjp_block_size(&self) -> usize {
        self.local.vjp_block_size()
    }
}

impl<T: Scalar> DistCsr<T> {
    /// This rank's parameters: its owned entries (row-major) and the shift, if any.
    pub fn params(&self, out: &mut [T]) {
        check_len("DistCsr::params", out.len(), self.num_params());
        let nnz = self.local.nnz();
        out[..nnz].copy_from_slice(self.local.values());
        if let Some(s) = self.shift {
            out[nnz] = s;
        }
    }
}
