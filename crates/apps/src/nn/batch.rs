//! [`MlpBatch`]: an [`Mlp`] evaluated on a batch, and its JVP/VJP as blocked GEMMs.

use super::kernels::{data_block, data_chunk, gemm, unit_block, Scratch};
use super::{Mlp, Targets};
use faer::{Accum, MatMut, MatRef};
use gradmat_operators::ggn::{Model, OutputLoss};
use gradmat_operators::traits::check_len;
use gradmat_operators::{require_finite, require_len, OperatorError, Scalar};
use rayon::prelude::*;

/// An [`Mlp`] evaluated on a batch of `N` data points, with the activations of every layer
/// cached; the [`Model`] that [`GaussNewton`](gradmat_operators::ggn::GaussNewton)
/// differentiates.
///
/// * Forward mode ([`jvp_block`](MlpBatch::jvp_block)): `Ż_l = W_l Ȧ_l + Ẇ_l A_l + ḃ_l 1ᵀ`,
///   `Ȧ_{l+1} = σ'(Z_l) ∘ Ż_l` — two GEMMs per layer on each block of data columns; the blocks
///   are independent, so each task runs the whole layer chain.
/// * Reverse mode ([`vjp_block`](MlpBatch::vjp_block)): `Δ_l = σ'(Z_l) ∘ W_{l+1}ᵀ Δ_{l+1}`
///   (GEMMs on blocks of data columns) and `∇W_l = Δ_l A_lᵀ`, `∇b_l = Δ_l 1` (GEMMs on blocks of
///   output units), the two halves of a layer run side by side.
pub struct MlpBatch<T: Scalar> {
    mlp: Mlp<T>,
    n: usize,
    /// `acts[l]` is the input of layer `l` (column-major `in_l × N`); `acts[0]` are the inputs.
    acts: Vec<Vec<T>>,
    /// Outputs of the last layer, column-major `C × N` (= row-major `N × C`).
    out: Vec<T>,
    scratch: Scratch<T>,
}

impl<T: Scalar> Clone for MlpBatch<T> {
    fn clone(&self) -> Self {
        Self {
            mlp: self.mlp.clone(),
            n: self.n,
            acts: self.acts.clone(),
            out: self.out.clone(),
            scratch: Scratch::default(),
        }
    }
}

impl<T: Scalar> std::fmt::Debug for MlpBatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlpBatch")
            .field("layer_sizes", &self.mlp.layer_sizes())
            .field("activation", &self.mlp.activation())
            .field("num_data", &self.n)
            .finish_non_exhaustive()
    }
}

/// `W_l` (row-major `out×in`) of a flat parameter-shaped slice as an `out×in` matrix.
fn w_mat<'a, T: Scalar>(mlp: &Mlp<T>, flat: &'a [T], l: usize) -> MatRef<'a, T> {
    let (fi, fo) = (mlp.sizes[l], mlp.sizes[l + 1]);
    MatRef::from_column_major_slice(mlp.w_of(flat, l), fi, fo).transpose()
}

/// `z[:, c] += b` for every column of the column-major `b.len() × cols` block `z`.
fn add_bias<T: Scalar>(z: &mut [T], b: &[T]) {
    for col in z.chunks_mut(b.len()) {
        col.iter_mut().zip(b).for_each(|(v, bi)| *v += *bi);
    }
}

impl<T: Scalar> MlpBatch<T> {
    /// The forward pass (inputs already validated by [`Mlp::forward`]).
    pub(super) fn new(mlp: Mlp<T>, x: &[T], n: usize) -> Self {
        let nl = mlp.num_layers();
        let nb = data_block(n);
        let mut acts: Vec<Vec<T>> = Vec::with_capacity(nl);
        acts.push(x.to_vec());
        let mut out = Vec::new();
        for l in 0..nl {
            let (fi, fo) = (mlp.sizes[l], mlp.sizes[l + 1]);
            let hidden = l + 1 < nl;
            let mut z = vec![T::ZERO; fo * n];
            let w = w_mat(&mlp, &mlp.params, l);
            let b = mlp.b_of(&mlp.params, l);
            let act = mlp.activation;
            z.par_chunks_mut(fo * nb)
                .zip(acts[l].par_chunks(fi * nb))
                .for_each(|(zb, ab)| {
                    let cols = zb.len() / fo;
                    gemm(
                        MatMut::from_column_major_slice_mut(zb, fo, cols),
                        Accum::Replace,
                        w,
                        MatRef::from_column_major_slice(ab, fi, cols),
                    );
                    add_bias(zb, b);
                    if hidden {
                        zb.iter_mut().for_each(|v| *v = act.eval(*v));
                    }
                });
            if hidden {
                acts.push(z);
            } else {
                out = z;
            }
        }
        Self {
            mlp,
            n,
            acts,
            out,
            scratch: Scratch::default(),
        }
    }

    /// The network.
    pub fn mlp(&self) -> &Mlp<T> {
        &self.mlp
    }

    /// The outputs, consuming the batch.
    pub fn into_outputs(self) -> Vec<T> {
        self.out
    }

    fn max_width(&self) -> usize {
        self.mlp.sizes.iter().copied().max().unwrap_or(0)
    }

    /// Forward mode for `k` parameter directions at once: `out[:, j] = J v[:, j]` (`v` is
    /// column-major `P×k`, `out` column-major `(N·C)×k` with each column row-major `N×C`).
    ///
    /// # Panics
    /// If `v.len() != P·k` or `out.len() != N·C·k`.
    #[track_caller]
    pub fn jvp_block(&self, v: &[T], k: usize, out: &mut [T]) {
        let m = &self.mlp;
        let (n, p, c, nl) = (self.n, m.num_params(), m.output_dim(), m.num_layers());
        check_len("MlpBatch::jvp_block v", v.len(), p * k);
        check_len("MlpBatch::jvp_block out", out.len(), n * c * k);
        if n == 0 || k == 0 {
            return;
        }
        let nb = data_block(n);
        let maxw = self.max_width();
        out.par_chunks_mut(n * c)
            .enumerate()
            .flat_map(|(j, oj)| {
                oj.par_chunks_mut(c * nb)
                    .enumerate()
                    .map(move |(b, blk)| (j, b, blk))
            })
            .for_each(|(j, b, oblk)| {
                let (c0, cols) = (b * nb, oblk.len() / c);
                let vj = &v[j * p..(j + 1) * p];
                let mut cur = self.scratch.take(maxw * cols);
                let mut nxt = self.scratch.take(maxw * cols);
                for l in 0..nl {
                    let (fi, fo) = (m.sizes[l], m.sizes[l + 1]);
                    let last = l + 1 == nl;
                    let dst: &mut [T] = if last {
                        &mut *oblk
                    } else {
                        &mut nxt[..fo * cols]
                    };
                    let a = &self.acts[l][fi * c0..fi * (c0 + cols)];
                    gemm(
                        MatMut::from_column_major_slice_mut(dst, fo, cols),
                        Accum::Replace,
                        w_mat(m, vj, l),
                        MatRef::from_column_major_slice(a, fi, cols),
                    );
                    if l > 0 {
                        gemm(
                            MatMut::from_column_major_slice_mut(dst, fo, cols),
                            Accum::Add,
                            w_mat(m, &m.params, l),
                            MatRef::from_column_major_slice(&cur[..fi * cols], fi, cols),
                        );
                    }
                    add_bias(dst, m.b_of(vj, l));
                    if !last {
                        let next = &self.acts[l + 1][fo * c0..fo * (c0 + cols)];
                        for (d, a) in dst.iter_mut().zip(next) {
                            *d *= m.activation.deriv_from_output(*a);
                        }
                        std::mem::swap(&mut cur, &mut nxt);
                    }
                }
                self.scratch.put(cur);
                self.scratch.put(nxt);
            });
    }

    /// Reverse mode for `k` output cotangents at once: `out[:, j] = Jᵀ w[:, j]` (`w` column-major
    /// `(N·C)×k` with each column row-major `N×C`, `out` column-major `P×k`, overwritten).
    ///
    /// # Panics
    /// If `w.len() != N·C·k` or `out.len() != P·k`.
    #[track_caller]
    pub fn vjp_block(&self, w: &[T], k: usize, out: &mut [T]) {
        let m = &self.mlp;
        let (n, p, c, nl) = (self.n, m.num_params(), m.output_dim(), m.num_layers());
        check_len("MlpBatch::vjp_block w", w.len(), n * c * k);
        check_len("MlpBatch::vjp_block out", out.len(), p * k);
        if k == 0 {
            return;
        }
        if n == 0 {
            out.fill(T::ZERO);
            return;
        }
        let nb = data_block(n);
        let len = if nl > 1 { self.max_width() * n * k } else { 0 };
        let mut bufs = [self.scratch.take(len), self.scratch.take(len)];
        // Where Δ of the current layer lives: `None` = the cotangent `w`, else `bufs[i]`.
        let mut cur: Option<usize> = None;
        for l in (0..nl).rev() {
            let (fi, fo) = (m.sizes[l], m.sizes[l + 1]);
            let (b0, b1) = bufs.split_at_mut(1);
            let (delta, next): (&[T], &mut [T]) = match cur {
                None => (w, &mut b0[0][..]),
                Some(0) => (&b0[0][..fo * n * k], &mut b1[0][..]),
                Some(_) => (&b1[0][..fo * n * k], &mut b0[0][..]),
            };
            // Weight and bias gradients of this layer.
            let mut grads = || self.weight_grads(l, delta, &mut *out, k);
            if l == 0 {
                grads();
                break;
            }
            // Δ of the layer below: tasks over (vector, block of data columns).
            let acts = &self.acts[l];
            let wt = MatRef::from_column_major_slice(m.w_of(&m.params, l), fi, fo);
            let act = m.activation;
            let below = || {
                next[..fi * n * k]
                    .par_chunks_mut(fi * n)
                    .enumerate()
                    .flat_map(|(j, nj)| {
                        nj.par_chunks_mut(fi * nb)
                            .enumerate()
                            .map(move |(b, blk)| (j, b, blk))
                    })
                    .for_each(|(j, b, blk)| {
                        let (c0, cols) = (b * nb, blk.len() / fi);
                        let d = &delta[j * fo * n + fo * c0..j * fo * n + fo * (c0 + cols)];
                        gemm(
                            MatMut::from_column_major_slice_mut(blk, fi, cols),
                            Accum::Replace,
                            wt,
                            MatRef::from_column_major_slice(d, fo, cols),
                        );
                        let a = &acts[fi * c0..fi * (c0 + cols)];
                        for (x, ai) in blk.iter_mut().zip(a) {
                            *x *= act.deriv_from_output(*ai);
                        }
                    });
            };
            rayon::join(grads, below);
            cur = Some(match cur {
                None | Some(1) => 0,
                Some(_) => 1,
            });
        }
        let [x, y] = bufs;
        self.scratch.put(x);
        self.scratch.put(y);
    }

    /// Writes `∇W_l = Δ A_lᵀ` and `∇b_l = Δ 1` of every vector `j` into `out[:, j]` (its layer-`l`
    /// range). Two fixed splits, chosen from the sizes alone: for many data points
    /// (`N ≥ 2·`[`data_chunk`]) the sum over points is cut into chunks of [`data_chunk`] points
    /// whose partial gradients are added in chunk order (every activation is read once); for
    /// fewer, the output units are split (no partial sums).
    fn weight_grads(&self, l: usize, delta: &[T], out: &mut [T], k: usize) {
        let m = &self.mlp;
        let (n, p) = (self.n, m.num_params());
        let (fi, fo) = (m.sizes[l], m.sizes[l + 1]);
        let off = m.offsets[l];
        let acts = &self.acts[l];
        let plen = fi * fo + fo;
        let kc = data_chunk();
        if n >= 2 * kc {
            let nkb = n.div_ceil(kc);
            let mut partial = self.scratch.take(k * nkb * plen);
            partial
                .par_chunks_mut(plen)
                .enumerate()
                .for_each(|(t, pb)| {
                    let (j, b) = (t / nkb, t % nkb);
                    let (c0, cols) = (b * kc, kc.min(n - b * kc));
                    let d = &delta[j * fo * n + fo * c0..j * fo * n + fo * (c0 + cols)];
                    let a = &acts[fi * c0..fi * (c0 + cols)];
                    let (pw, pbias) = pb.split_at_mut(fi * fo);
                    // ∇Wᵀ (in × out: the row-major storage of ∇W) = A Δᵀ on this chunk.
                    gemm(
                        MatMut::from_column_major_slice_mut(pw, fi, fo),
                        Accum::Replace,
                        MatRef::from_column_major_slice(a, fi, cols),
                        MatRef::from_column_major_slice(d, fo, cols).transpose(),
                    );
                    pbias.fill(T::ZERO);
                    for col in d.chunks(fo) {
                        pbias.iter_mut().zip(col).for_each(|(g, v)| *g += *v);
                    }
                });
            const SUM: usize = 4096;
            for (j, oj) in out.chunks_mut(p).enumerate() {
                let parts = &partial[j * nkb * plen..(j + 1) * nkb * plen];
                oj[off..off + plen]
                    .par_chunks_mut(SUM)
                    .enumerate()
                    .for_each(|(c, dst)| {
                        let r = c * SUM;
                        dst.copy_from_slice(&parts[r..r + dst.len()]);
                        for b in 1..nkb {
                            let src = &parts[b * plen + r..b * plen + r + dst.len()];
                            dst.iter_mut().zip(src).for_each(|(x, y)| *x += *y);
                        }
                    });
            }
            self.scratch.put(partial);
            return;
        }
        let ub = unit_block(fo);
        let mut tasks = Vec::new();
        for (j, oj) in out.chunks_mut(p).enumerate() {
            let (gw, gb) = oj[off..off + plen].split_at_mut(fi * fo);
            for (u, (gwb, gbb)) in gw.chunks_mut(fi * ub).zip(gb.chunks_mut(ub)).enumerate() {
                tasks.push((j, u * ub, gwb, gbb));
            }
        }
        tasks.into_par_iter().for_each(|(j, o0, gwb, gbb)| {
            let nu = gbb.len();
            let dslice = &delta[j * fo * n..(j + 1) * fo * n];
            let dj = MatRef::from_column_major_slice(dslice, fo, n);
            // ∇Wᵀ (in × units) = A Δ[units, :]ᵀ.
            gemm(
                MatMut::from_column_major_slice_mut(gwb, fi, nu),
                Accum::Replace,
                MatRef::from_column_major_slice(acts, fi, n),
                dj.subrows(o0, nu).transpose(),
            );
            gbb.fill(T::ZERO);
            for col in dslice.chunks(fo) {
                gbb.iter_mut()
                    .zip(&col[o0..o0 + nu])
                    .for_each(|(g, d)| *g += *d);
            }
        });
    }

    /// Mean loss and its gradient with respect to the outputs (row-major `N×C`).
    pub(super) fn loss_cotangent(
        &self,
        targets: Targets<'_, T>,
        loss: OutputLoss,
    ) -> Result<(T, Vec<T>), OperatorError> {
        let (n, c) = (self.n, self.mlp.output_dim());
        if n == 0 {
            return Err(OperatorError::InvalidArgument(
                "loss of an empty batch".into(),
            ));
        }
        let f = &self.out;
        let mut cot = vec![T::ZERO; n * c];
        let mut total = T::ZERO;
        match (loss, targets) {
            (OutputLoss::SquaredError, Targets::Values(y)) => {
                require_len("regression targets", y.len(), n * c)?;
                require_finite("regression targets", y)?;
                for s in 0..n {
                    let r = s * c..(s + 1) * c;
                    total +=
                        loss.sample_value_and_grad(&f[r.clone()], &y[r.clone()], 0, &mut cot[r]);
                }
            }
            (OutputLoss::SoftmaxCrossEntropy, Targets::Classes(y)) => {
                require_len("class labels", y.len(), n)?;
                if let Some(i) = y.iter().position(|&k| k >= c) {
                    return Err(OperatorError::InvalidArgument(format!(
                        "class label {} at position {i} out of range 0..{c}",
                        y[i]
                    )));
                }
                for s in 0..n {
                    let r = s * c..(s + 1) * c;
                    total += loss.sample_value_and_grad(&f[r.clone()], &[], y[s], &mut cot[r]);
                }
            }
            (l, _) => {
                return Err(OperatorError::InvalidArgument(format!(
                    "targets of the wrong kind for {l:?}"
                )))
            }
        }
        let inv = T::ONE / T::from_usize(n);
        cot.iter_mut().for_each(|v| *v *= inv);
        Ok((total * inv, cot))
    }
}

impl<T: Scalar> Model<T> for MlpBatch<T> {
    fn num_params(&self) -> usize {
        self.mlp.num_params()
    }
    fn output_dim(&self) -> usize {
        self.mlp.output_dim()
    }
    fn num_data(&self) -> usize {
        self.n
    }
    fn outputs(&self) -> &[T] {
        &self.out
    }
    #[track_caller]
    fn jvp(&self, v: &[T], out: &mut [T]) {
        self.jvp_block(v, 1, out)
    }
    #[track_caller]
    fn vjp(&self, w: &[T], out: &mut [T]) {
        self.vjp_block(w, 1, out)
    }
    #[track_caller]
    fn jvp_block(&self, v: &[T], k: usize, out: &mut [T]) {
        MlpBatch::jvp_block(self, v, k, out)
    }
    #[track_caller]
    fn vjp_block(&self, w: &[T], k: usize, out: &mut [T]) {
        MlpBatch::vjp_block(self, w, k, out)
    }
}
