//! [`DistKernel`]: a kernel matrix partitioned by rows, inputs and parameters replicated.

use super::{agree, allgather_block, RowPartition};
use crate::comm::{sum_in_rank_order, Comm};
use crate::kernel::KernelMatrix;
use crate::traits::{check_block_len, check_len};
use crate::{AdjointOperator, Operator, OperatorError, ParamVjp, Scalar, SelfAdjoint, SetParams};
use std::sync::Arc;

/// Bytes of gathered `(u, x)` column pairs one block VJP may hold (larger blocks are processed
/// in groups of columns, each group one pass over the rank's tile pairs).
const VJP_GATHER_BYTES: usize = 1 << 30;

/// `K = k_θ(X, X) (+ σ²I)` partitioned by rows (see the [module documentation](super)).
///
/// Every rank holds the inputs `X` and `θ` (the kernel itself is never stored). Rows are owned
/// in blocks aligned to the kernel's tiles ([`tile_partition`](Self::tile_partition)); a
/// symmetric tile pair `(I, J)`, `I ≤ J`, is evaluated by one rank: the owner of `I` when
/// `J − I < nt/2` (or `= nt/2`), else the owner of `J` — every tile is the first of about
/// `nt/2` pairs, so the `n(n + tile)/2` kernel values of a product are split evenly.
///
/// **A product** `Y = K X` (`k` columns): one all-gather of `X` (`n·k` values received per
/// rank), the rank's tile pairs in schedule order into a partial `n × k` product, one
/// all-to-all sending every rank the partial rows it owns (only between ranks whose pairs
/// touch each other's tiles), and the partials added in rank order.
/// **The parameter VJP**: one all-gather of `(U, X)`, the rank's pairs, and the `d + 1` (+1)
/// partial sums all-gathered and added in rank order: the same `θ̄` on every rank.
///
/// Results are deterministic for a given number of ranks and equal the serial
/// [`KernelMatrix`] (or `Shifted<KernelMatrix>`) products to rounding (the contributions to a
/// row are added in a different order); with one rank they are bit-identical.
///
/// **Parameters:** `(ℓ_0 … ℓ_{d−1}, s)` as [`KernelMatrix`], followed by the noise variance
/// `σ²` if there is one ([`with_noise`](Self::with_noise)).
pub struct DistKernel<T: Scalar> {
    kern: KernelMatrix<T>,
    noise: Option<T>,
    part: RowPartition,
    comm: Arc<dyn Comm>,
    /// Owner rank of every tile.
    tile_owner: Vec<usize>,
    /// `sends[q]`: whether this rank's pairs touch a tile of rank `q`; `recvs[q]`: whether
    /// rank `q`'s pairs touch a tile of this rank.
    sends: Vec<bool>,
    recvs: Vec<bool>,
    /// Pairs evaluated by this rank (diagnostics).
    my_pairs: usize,
}

impl<T: Scalar> std::fmt::Debug for DistKernel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistKernel")
            .field("rank", &self.comm.rank())
            .field("n", &self.part.len())
            .field("local_rows", &self.part.count(self.comm.rank()))
            .field("pairs", &self.my_pairs)
            .finish()
    }
}

/// Owner of the pair `(i, j)`, `i ≤ j`, of `nt` tiles (see [`DistKernel`]).
fn pair_owner(i: usize, j: usize, nt: usize, owner: &[usize]) -> usize {
    if 2 * (j - i) <= nt {
        owner[i]
    } else {
        owner[j]
    }
}

impl<T: Scalar> DistKernel<T> {
    /// The partition of `n` points over `p` ranks in whole tiles of `tile` points, as equal as
    /// whole tiles allow (what [`new`](Self::new) needs).
    pub fn tile_partition(n: usize, p: usize, tile: usize) -> RowPartition {
        RowPartition::aligned(n, p, tile)
    }

    /// The kernel `kern` (every rank passes the same inputs and parameters) distributed by
    /// `part`, whose boundaries must be multiples of the kernel's tile size (except `n`).
    ///
    /// # Errors
    /// A partition of the wrong length or not aligned to tiles, or ranks that disagree on the
    /// parameters (on every rank).
    pub fn new(
        kern: KernelMatrix<T>,
        part: RowPartition,
        comm: Arc<dyn Comm>,
    ) -> Result<Self, OperatorError> {
        let (n, tile, p) = (kern.num_points(), kern.tile_size(), comm.size());
        let check = if part.len() != n || part.num_ranks() != p {
            Err(OperatorError::DimensionMismatch {
                what: "row partition of the distributed kernel",
                expected: n,
                got: part.len(),
            })
        } else if part.offsets().iter().any(|o| *o % tile != 0 && *o != n) {
            Err(OperatorError::InvalidArgument(format!(
                "the row partition {:?} is not aligned to the kernel's tiles of {tile} points",
                part.offsets()
            )))
        } else {
            Ok(())
        };
        agree(&*comm, check)?;
        // Every rank must hold the same parameters (they are replicated, not communicated).
        let theta: Vec<f64> = kern.params_vec().iter().map(|v| v.to_f64()).collect();
        let mut root = theta.clone();
        comm.broadcast_f64(&mut root, 0);
        agree(
            &*comm,
            if root
                .iter()
                .zip(&theta)
                .all(|(a, b)| a.to_bits() == b.to_bits())
            {
                Ok(())
            } else {
                Err(OperatorError::InvalidArgument(
                    "kernel parameters differ from rank 0's".into(),
                ))
            },
        )?;
        let nt = n.div_ceil(tile);
        let tile_owner: Vec<usize> = (0..nt).map(|t| part.owner(t * tile)).collect();
        let me = comm.rank();
        // The pairs of tile t (those it is the owner-tile of) are (t, j) for
        // j ∈ [t, t + ⌊nt/2⌋] and (i, t) for i ∈ [0, t − ⌊nt/2⌋ − 1]: rank owner[t] touches the
        // tiles of those two ranges. O(nt·P).
        let h = nt / 2;
        let tiles_of = |q: usize| -> (usize, usize) {
            let r = part.range(q);
            (r.start.div_ceil(tile), r.end.div_ceil(tile))
        };
        let mut touch = vec![vec![false; p]; p];
        let mut my_pairs = 0;
        for t in 0..nt {
            let o = tile_owner[t];
            let hi = (t + h).min(nt - 1);
            let wrap = t.checked_sub(h + 1); // last i of the second range
            if o == me {
                my_pairs += hi - t + 1 + wrap.map_or(0, |w| w + 1);
            }
            for q in 0..p {
                let (a, b) = tiles_of(q);
                let hits_first = a <= hi && b > t;
                let hits_wrap = wrap.is_some_and(|w| a <= w && b > 0);
                if a < b && (hits_first || hits_wrap) {
                    touch[o][q] = true;
                }
            }
        }
        let sends = touch[me].clone();
        let recvs = (0..p).map(|q| touch[q][me]).collect();
        Ok(Self {
            kern,
            noise: None,
            part,
            comm,
            tile_owner,
            sends,
            recvs,
            my_pairs,
        })
    }

    /// `K + σ²I` (`σ²` appended to the parameters).
    ///
    /// # Errors
    /// A non-finite `σ²`.
    pub fn with_noise(mut self, noise: T) -> Result<Self, OperatorError> {
        if !noise.is_finite() {
            return Err(OperatorError::InvalidParameter {
                index: self.kern.num_params(),
                name: "noise".into(),
                reason: format!("must be finite, got {:e}", noise.to_f64()),
            });
        }
        self.noise = Some(noise);
        Ok(self)
    }

    /// The replicated kernel (every rank's copy, for what needs single entries: columns, the
    /// diagonal, a partial Cholesky factor).
    pub fn kernel(&self) -> &KernelMatrix<T> {
        &self.kern
    }
    /// The noise variance, if any.
    pub fn noise(&self) -> Option<T> {
        self.noise
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
    /// The tile pairs this rank evaluates per product.
    pub fn local_pairs(&self) -> usize {
        self.my_pairs
    }

    fn select(&self) -> impl Fn(usize, usize) -> bool + Sync + '_ {
        let (nt, me) = (self.tile_owner.len(), self.comm.rank());
        move |i, j| pair_owner(i, j, nt, &self.tile_owner) == me
    }

    /// Sends every rank its rows of the partial `n × k` product and adds what this rank
    /// receives, in rank order (the first contribution copied, so one rank gives the partial
    /// product unchanged).
    fn reduce_rows(&self, partial: &[T], k: usize, y: &mut [T]) {
        let (p, me, n) = (self.comm.size(), self.comm.rank(), self.part.len());
        let nl = self.part.count(me);
        if p == 1 {
            y.copy_from_slice(partial);
            return;
        }
        let mut send = Vec::new();
        let mut sc = vec![0usize; p];
        for q in 0..p {
            if self.sends[q] {
                let r = self.part.range(q);
                sc[q] = r.len() * k;
                for c in 0..k {
                    send.extend(
                        partial[c * n + r.start..c * n + r.end]
                            .iter()
                            .map(|v| v.to_f64()),
                    );
                }
            }
        }
        let rc: Vec<usize> = (0..p)
            .map(|q| if self.recvs[q] { nl * k } else { 0 })
            .collect();
        let mut recv = vec![0.0; rc.iter().sum()];
        self.comm.alltoallv_f64(&send, &sc, &mut recv, &rc);
        let mut first = true;
        for part in recv
            .chunks_exact((nl * k).max(1))
            .take(rc.iter().filter(|c| **c > 0).count())
        {
            if first {
                y.iter_mut()
                    .zip(part)
                    .for_each(|(a, b)| *a = T::from_f64(*b));
                first = false;
            } else {
                y.iter_mut()
                    .zip(part)
                    .for_each(|(a, b)| *a += T::from_f64(*b));
            }
        }
        if first {
            y.fill(T::ZERO);
        }
    }

    /// `θ̄` partial sums (kernel `d + 1`, then `σ̄` if noise) added over ranks into `grad`.
    fn add_grad(&self, sums: &[T], ux_local: f64, grad: &mut [T]) {
        let d1 = self.kern.num_params();
        let mut mine = vec![T::ZERO; d1];
        if !sums.is_empty() {
            self.kern.add_gradient(sums, &mut mine);
        }
        let mut local: Vec<f64> = mine.iter().map(|v| v.to_f64()).collect();
        if self.noise.is_some() {
            local.push(ux_local);
        }
        let total = sum_in_rank_order(&*self.comm, &local);
        for (g, t) in grad.iter_mut().zip(&total) {
            *g += T::from_f64(*t);
        }
    }

    /// The fused product and/or VJP on `k` gathered columns.
    fn run(&self, x: &[T], y: Option<&mut [T]>, u: Option<&[T]>, k: usize, grad: Option<&mut [T]>) {
        let n = self.part.len();
        let nl = self.part.count(self.comm.rank());
        let mut xf = vec![T::ZERO; n * k];
        let mut uf = Vec::new();
        match u {
            Some(u) => {
                // One all-gather for both blocks: [x columns | u columns].
                let mut both = Vec::with_capacity(2 * nl * k);
                both.extend_from_slice(x);
                both.extend_from_slice(u);
                let mut full = vec![T::ZERO; 2 * n * k];
                allgather_block(&*self.comm, &self.part, &both, 2 * k, &mut full);
                uf = full.split_off(n * k);
                xf = full;
            }
            None => allgather_block(&*self.comm, &self.part, x, k, &mut xf),
        }
        let sel = self.select();
        let want_y = y.is_some();
        let mut partial = if want_y {
            vec![T::ZERO; n * k]
        } else {
            Vec::new()
        };
        let sums = if n == 0 {
            Vec::new()
        } else {
            self.kern.engine().select_products(
                &xf,
                want_y.then_some(&mut partial[..]),
                u.map(|_| &uf[..]),
                k,
                &sel,
            )
        };
        if let Some(y) = y {
            self.reduce_rows(&partial, k, y);
            if let Some(s) = self.noise {
                y.iter_mut().zip(x).for_each(|(a, b)| *a += s * *b);
            }
        }
        if let (Some(g), Some(u)) = (grad, u) {
            let ux = crate::vector::dot(u, x).to_f64();
            self.add_grad(&sums, ux, g);
        }
    }
}

impl<T: Scalar> Operator<T> for DistKernel<T> {
    fn nrows(&self) -> usize {
        self.part.count(self.comm.rank())
    }
    fn ncols(&self) -> usize {
        self.nrows()
    }
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.apply_block(x, y, 1)
    }
    /// `Y = K X` (+ `σ² X`) on the owned rows (see the type's documentation).
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        let nl = self.nrows();
        check_block_len("DistKernel::apply_block x", x.len(), nl, k);
        check_block_len("DistKernel::apply_block y", y.len(), nl, k);
        if k == 0 {
            return;
        }
        self.run(x, Some(y), None, k, None);
    }
}

impl<T: Scalar> AdjointOperator<T> for DistKernel<T> {
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.apply(x, y)
    }
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.apply_block(x, y, k)
    }
}

impl<T: Scalar> SelfAdjoint<T> for DistKernel<T> {}

impl<T: Scalar> ParamVjp<T> for DistKernel<T> {
    fn num_params(&self) -> usize {
        self.kern.num_params() + usize::from(self.noise.is_some())
    }
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    /// `θ̄ += Σ_c ∇θ⟨u_c, K x_c⟩` (the same on every rank); column groups bounded by 1 GiB of
    /// gathered vectors.
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        let nl = self.nrows();
        check_block_len("DistKernel::vjp_params_block u", u.len(), nl, k);
        check_block_len("DistKernel::vjp_params_block x", x.len(), nl, k);
        check_len(
            "DistKernel::vjp_params_block grad",
            grad.len(),
            self.num_params(),
        );
        let per = (VJP_GATHER_BYTES / (16 * self.part.len().max(1))).max(1);
        let mut c0 = 0;
        while c0 < k {
            let m = per.min(k - c0);
            let (us, xs) = (&u[c0 * nl..(c0 + m) * nl], &x[c0 * nl..(c0 + m) * nl]);
            self.run(xs, None, Some(us), m, Some(grad));
            c0 += m;
        }
    }
    /// Both in one pass over the rank's tile pairs.
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        let nl = self.nrows();
        check_len("DistKernel::apply_and_vjp_params x", x.len(), nl);
        check_len("DistKernel::apply_and_vjp_params y", y.len(), nl);
        check_len("DistKernel::apply_and_vjp_params u", u.len(), nl);
        check_len(
            "DistKernel::apply_and_vjp_params grad",
            grad.len(),
            self.num_params(),
        );
        self.run(x, Some(y), Some(u), 1, Some(grad));
    }
    fn vjp_block_size(&self) -> usize {
        usize::MAX
    }
}

impl<T: Scalar> SetParams<T> for DistKernel<T> {
    fn params(&self, out: &mut [T]) {
        check_len("DistKernel::params", out.len(), self.num_params());
        let d1 = self.kern.num_params();
        self.kern.params(&mut out[..d1]);
        if let Some(s) = self.noise {
            out[d1] = s;
        }
    }
    /// Replaces `θ` (every rank must pass the same values; not checked here, to keep this free
    /// of communication).
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        crate::error::require_len("DistKernel parameters", theta.len(), self.num_params())?;
        let d1 = self.kern.num_params();
        if self.noise.is_some() && !theta[d1].is_finite() {
            return Err(OperatorError::InvalidParameter {
                index: d1,
                name: "noise".into(),
                reason: format!("must be finite, got {:e}", theta[d1].to_f64()),
            });
        }
        self.kern.set_params(&theta[..d1])?;
        if self.noise.is_some() {
            self.noise = Some(theta[d1]);
        }
        Ok(())
    }
}
