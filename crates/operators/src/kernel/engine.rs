//! The tile engine behind [`KernelMatrix`](super::KernelMatrix): packed layouts, the symmetric
//! round-robin schedule of tile pairs, and the SIMD tile-pair kernel shared by every product.
//!
//! **Layout (per call, per instruction set with `L` lanes).** Points are split into tiles of
//! `tile` consecutive points; each tile is padded to `tp = tile` rounded up to a multiple of
//! `max(L, JB)`, i.e. `niv = tp / L` vectors. The scaled points of a tile are stored
//! `[iv][a][lane]` (the `d` coordinates of one vector of points are contiguous), the pad lanes
//! repeating the tile's last point so that every padded kernel value is finite; blocks of `k`
//! vectors are stored `[iv][c][lane]` with zero pads, so padded points contribute exactly
//! nothing. The column ("B") side of a tile pair is read as scalars, `JB = 4` points at a time.
//!
//! **Tile pair `(I, J)`.** For each block of `JB` columns `j` of `J` and each vector of rows `i`
//! of `I`: the squared scaled distances by direct differences `Σ_a (z_ia − z_ja)²` (fused
//! multiply-adds, dimension order fixed), then the kernel value `k` and, for gradients,
//! `g = dk/dr²` ([`Profile::eval`]); then the products — `y_I += K_IJ x_J` (lanes over `i`,
//! broadcast `x_j`) and, for `I ≠ J`, `y_J += K_IJᵀ x_I` (one vector accumulator per `j`
//! across the whole of `I`, summed over lanes once per block) — and, for the parameter VJP, the
//! weights `W_ij = Σ_c u_ic x_jc + x_ic u_jc` and the sums `Σ W g (z_ia − z_ja)²` per dimension
//! and `Σ W k`.
//!
//! **Schedule.** The pairs `I ≤ J` of the `nt` tiles are processed in the rounds of the circle
//! method (`m = nt` or `nt + 1`, whichever is odd; round `r` pairs `r + s` with `r − s` mod `m`
//! and does the diagonal tile `r`), so that the tasks of one round touch disjoint output tiles.
//! Rounds run one after another, the tasks of a round in parallel; every output tile receives its
//! contributions in an order fixed by the schedule, and gradient partials are added in round and
//! task order. Nothing depends on the number of threads.

use super::simd::{dispatch, exp, Isa, SimdLevel, WithIsa};
use super::KernelKind;
use crate::Scalar;
use rayon::prelude::*;
use std::marker::PhantomData;

/// Columns of the B side evaluated together (register block).
pub(crate) const JB: usize = 8;

/// The radial profile `k(r²)` of a kernel, vectorised.
pub(crate) trait Profile: Send + Sync + 'static {
    /// The value `k(r²)` (scale `sc` included) and the derivative `g = dk/d(r²)`, finite at
    /// `r = 0` for every kernel (for Matérn-1/2, whose `g` is singular there, `0`: every term it
    /// enters is multiplied by a zero difference).
    fn eval<S: Isa, T: Scalar>(s: S, r2: T::V<S>, sc: T::V<S>) -> (T::V<S>, T::V<S>);
}

/// `s·exp(−r²/2)`, `g = −k/2`.
pub(crate) struct Se;
/// `s·exp(−r)`, `g = −k/(2r)` (`0` at `r = 0`).
pub(crate) struct M12;
/// `s·(1 + √3 r)·exp(−√3 r)`, `g = −(3/2)·s·exp(−√3 r)`.
pub(crate) struct M32;
/// `s·(1 + √5 r + 5r²/3)·exp(−√5 r)`, `g = −(5/6)·s·(1 + √5 r)·exp(−√5 r)`.
pub(crate) struct M52;

impl Profile for Se {
    #[inline(always)]
    fn eval<S: Isa, T: Scalar>(s: S, r2: T::V<S>, sc: T::V<S>) -> (T::V<S>, T::V<S>) {
        let h = T::vsplat(s, T::from_f64(-0.5));
        let k = T::vmul(s, sc, exp::<S, T>(s, T::vmul(s, r2, h)));
        (k, T::vmul(s, k, h))
    }
}

impl Profile for M12 {
    #[inline(always)]
    fn eval<S: Isa, T: Scalar>(s: S, r2: T::V<S>, sc: T::V<S>) -> (T::V<S>, T::V<S>) {
        let zero = T::vsplat(s, T::ZERO);
        let r = T::vsqrt(s, r2);
        let k = T::vmul(s, sc, exp::<S, T>(s, T::vsub(s, zero, r)));
        let g = T::vdiv(s, T::vmul(s, k, T::vsplat(s, T::from_f64(-0.5))), r);
        (k, T::vselect(s, T::vless_than(s, zero, r), g, zero))
    }
}

impl Profile for M32 {
    #[inline(always)]
    fn eval<S: Isa, T: Scalar>(s: S, r2: T::V<S>, sc: T::V<S>) -> (T::V<S>, T::V<S>) {
        let r = T::vsqrt(s, T::vmul(s, r2, T::vsplat(s, T::from_f64(3.0))));
        let e = T::vmul(s, sc, exp::<S, T>(s, T::vsub(s, T::vsplat(s, T::ZERO), r)));
        (
            T::vmul_add(s, e, r, e),
            T::vmul(s, e, T::vsplat(s, T::from_f64(-1.5))),
        )
    }
}

impl Profile for M52 {
    #[inline(always)]
    fn eval<S: Isa, T: Scalar>(s: S, r2: T::V<S>, sc: T::V<S>) -> (T::V<S>, T::V<S>) {
        let r = T::vsqrt(s, T::vmul(s, r2, T::vsplat(s, T::from_f64(5.0))));
        let e = T::vmul(s, sc, exp::<S, T>(s, T::vsub(s, T::vsplat(s, T::ZERO), r)));
        let p = T::vadd(s, T::vsplat(s, T::ONE), r);
        // 1 + r + r²/3 with r²/3 = (5/3)·r².
        let poly = T::vmul_add(s, r2, T::vsplat(s, T::from_f64(5.0 / 3.0)), p);
        (
            T::vmul(s, e, poly),
            T::vmul(s, T::vmul(s, e, p), T::vsplat(s, T::from_f64(-5.0 / 6.0))),
        )
    }
}

/// Runs `$body` with the type alias `$p` set to the [`Profile`] of `$kind`.
macro_rules! with_profile {
    ($kind:expr, $p:ident => $body:expr) => {
        match $kind {
            KernelKind::SquaredExponential => {
                type $p = $crate::kernel::engine::Se;
                $body
            }
            KernelKind::Matern12 => {
                type $p = $crate::kernel::engine::M12;
                $body
            }
            KernelKind::Matern32 => {
                type $p = $crate::kernel::engine::M32;
                $body
            }
            KernelKind::Matern52 => {
                type $p = $crate::kernel::engine::M52;
                $body
            }
        }
    };
}

/// The value and derivative of `kind` at one squared distance, through the same vector code on
/// the one-lane scalar token (so the scalar [`KernelKind`] methods share the engine's formulas).
#[inline]
pub(crate) fn eval_scalar<T: Scalar>(kind: KernelKind, r2: T, scale: T) -> (T, T) {
    let s = pulp::Scalar::new();
    let (k, g) = with_profile!(kind, P => P::eval::<pulp::Scalar, T>(s, T::vsplat(s, r2), T::vsplat(s, scale)));
    (T::vreduce_sum(s, k), T::vreduce_sum(s, g))
}

/// The packed layout for one instruction set: `l` lanes, tiles of `tile` points padded to `tp`
/// (a multiple of `l` and of [`JB`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    l: usize,
    tile: usize,
    tp: usize,
}

impl Layout {
    fn new<S: Isa, T: Scalar>(tile: usize) -> Self {
        let l = T::lanes::<S>();
        let tp = tile.next_multiple_of(l.max(JB));
        Layout { l, tile, tp }
    }

    /// Number of tiles of `n` points.
    fn num_tiles(&self, n: usize) -> usize {
        n.div_ceil(self.tile)
    }

    /// First point and number of points of tile `t` of `n`.
    fn range(&self, n: usize, t: usize) -> (usize, usize) {
        let start = t * self.tile;
        (start, self.tile.min(n - start))
    }

    /// Position of point `j` of a tile, column `c` of `k`, in its packed tile.
    #[inline(always)]
    fn at(&self, j: usize, c: usize, k: usize) -> usize {
        ((j / self.l) * k + c) * self.l + j % self.l
    }

    /// Packs `n` row-major points of dimension `d` (`[t][iv][a][lane]`, pads repeat the tile's
    /// last point).
    fn points<T: Scalar>(&self, z: &[T], n: usize, d: usize) -> Vec<T> {
        let nt = self.num_tiles(n);
        let per = self.tp * d;
        let mut out = vec![T::ZERO; nt * per];
        out.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
            let (start, len) = self.range(n, t);
            for i in 0..self.tp {
                let p = start + i.min(len - 1);
                let (iv, lane) = (i / self.l, i % self.l);
                for a in 0..d {
                    o[(iv * d + a) * self.l + lane] = z[p * d + a];
                }
            }
        });
        out
    }

    /// Packs `k` column-major vectors of length `n` (`[t][iv][c][lane]`, zero pads).
    fn cols<T: Scalar>(&self, x: &[T], n: usize, k: usize) -> Vec<T> {
        let nt = self.num_tiles(n);
        let per = self.tp * k;
        let mut out = vec![T::ZERO; nt * per];
        out.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
            let (start, len) = self.range(n, t);
            for c in 0..k {
                for j in 0..len {
                    o[self.at(j, c, k)] = x[c * n + start + j];
                }
            }
        });
        out
    }

    /// Inverse of [`cols`](Self::cols) (pads dropped).
    fn uncols<T: Scalar>(&self, packed: &[T], n: usize, k: usize, out: &mut [T]) {
        let per = self.tp * k;
        for c in 0..k {
            let col = &mut out[c * n..(c + 1) * n];
            for (t, chunk) in col.chunks_mut(self.tile).enumerate() {
                let p = &packed[t * per..(t + 1) * per];
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v = p[self.at(j, c, k)];
                }
            }
        }
    }
}

/// Number of rounds of the schedule of `nt` tiles.
pub(crate) fn num_rounds(nt: usize) -> usize {
    if nt == 0 {
        0
    } else {
        nt | 1
    }
}

/// The tile pairs `(i, j)`, `i ≤ j`, of round `r`: the diagonal tile `r` (if it exists) and
/// `{r + s, r − s} mod m` for `s = 1, …, (m − 1)/2`, `m = nt | 1`, skipping the phantom tile
/// `nt` when `nt` is even. Over all rounds every pair appears exactly once; within a round the
/// pairs are disjoint.
pub(crate) fn round(nt: usize, r: usize) -> Vec<(usize, usize)> {
    let m = nt | 1;
    let mut pairs = Vec::with_capacity(m.div_ceil(2));
    if r < nt {
        pairs.push((r, r));
    }
    for s in 1..=(m - 1) / 2 {
        let (a, b) = ((r + s) % m, (r + m - s) % m);
        if a < nt && b < nt {
            pairs.push((a.min(b), a.max(b)));
        }
    }
    pairs
}

/// One tile of a tile pair.
#[derive(Clone, Copy)]
struct Side<'a, T> {
    /// Points in the tile.
    len: usize,
    /// Packed points (`[iv][a][lane]`).
    zv: &'a [T],
    /// The same points row-major (`len·d`).
    zrows: &'a [T],
    /// Packed right-hand sides (`[iv][c][lane]`; empty when unused).
    x: &'a [T],
    /// Packed left vectors of the VJP (empty when unused).
    u: &'a [T],
}

/// The shared inner kernel: one tile pair (`a` = rows, SIMD lanes; `b` = columns, broadcast).
///
/// With `FWD`: `ya += K_ab x_b` and, if `yb` is given, `yb += K_abᵀ x_a`. With `VJP`:
/// `gacc[a·L..] += Σ W g (z_ia − z_ja)²` per dimension and `gacc[d·L..] += Σ W k`, lane-wise,
/// with `W = u_a x_bᵀ (+ x_a u_bᵀ if sym)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_pair<S: Isa, T: Scalar, P: Profile, const FWD: bool, const VJP: bool>(
    s: S,
    lay: &Layout,
    d: usize,
    k: usize,
    scale: T,
    a: Side<'_, T>,
    b: Side<'_, T>,
    sym: bool,
    mut ya: Option<&mut [T]>,
    mut yb: Option<&mut [T]>,
    gacc: &mut [T],
) {
    let l = lay.l;
    let niv = a.len.div_ceil(l);
    let zero = T::vsplat(s, T::ZERO);
    let sc = T::vsplat(s, scale);
    let za = T::as_simd::<S>(&a.zv[..niv * d * l]).0;
    let xa = T::as_simd::<S>(a.x).0;
    let ua = T::as_simd::<S>(a.u).0;
    let mut kb = vec![[zero; JB]; if FWD { niv } else { 0 }];
    let mut wg = vec![[zero; JB]; if VJP { niv } else { 0 }];
    let mut bq = vec![[T::ZERO; JB]; d];
    let mut xq = vec![[T::ZERO; JB]; k];
    let mut uq = vec![[T::ZERO; JB]; if VJP && sym { k } else { 0 }];
    let mut acc_s = zero;
    let transposed = yb.is_some();
    for j0 in (0..b.len).step_by(JB) {
        // The B-side scalars of this block (points past the tile repeat its last point and
        // carry zero weights).
        for jj in 0..JB {
            let j = j0 + jj;
            let jc = j.min(b.len - 1);
            for (q, z) in bq.iter_mut().zip(&b.zrows[jc * d..(jc + 1) * d]) {
                q[jj] = *z;
            }
            for (c, q) in xq.iter_mut().enumerate() {
                q[jj] = if j < b.len { b.x[lay.at(j, c, k)] } else { T::ZERO };
            }
            for (c, q) in uq.iter_mut().enumerate() {
                q[jj] = if j < b.len { b.u[lay.at(j, c, k)] } else { T::ZERO };
            }
        }
        // Phase 1: distances, kernel values (and derivatives, weights).
        for iv in 0..niv {
            let mut r2 = [zero; JB];
            for (zv, q) in za[iv * d..(iv + 1) * d].iter().zip(&bq) {
                for jj in 0..JB {
                    let t = T::vsub(s, *zv, T::vsplat(s, q[jj]));
                    r2[jj] = T::vmul_add(s, t, t, r2[jj]);
                }
            }
            let mut w = [zero; JB];
            if VJP {
                let ui = &ua[iv * k..(iv + 1) * k];
                for (uv, q) in ui.iter().zip(&xq) {
                    for jj in 0..JB {
                        w[jj] = T::vmul_add(s, *uv, T::vsplat(s, q[jj]), w[jj]);
                    }
                }
                if sym {
                    let xi = &xa[iv * k..(iv + 1) * k];
                    for (xv, q) in xi.iter().zip(&uq) {
                        for jj in 0..JB {
                            w[jj] = T::vmul_add(s, *xv, T::vsplat(s, q[jj]), w[jj]);
                        }
                    }
                }
            }
            for jj in 0..JB {
                let (kv, gv) = P::eval::<S, T>(s, r2[jj], sc);
                if FWD {
                    kb[iv][jj] = kv;
                }
                if VJP {
                    wg[iv][jj] = T::vmul(s, w[jj], gv);
                    acc_s = T::vmul_add(s, w[jj], kv, acc_s);
                }
            }
        }
        // Phase 2a: products.
        if let (true, Some(ya)) = (FWD, ya.as_deref_mut()) {
            let yav = T::as_mut_simd::<S>(ya).0;
            for (c, q) in xq.iter().enumerate() {
                let xs = q.map(|v| T::vsplat(s, v));
                let mut acc = [zero; JB];
                for (iv, kv) in kb.iter().enumerate() {
                    let y = &mut yav[iv * k + c];
                    let mut t = *y;
                    for jj in 0..JB {
                        t = T::vmul_add(s, kv[jj], xs[jj], t);
                    }
                    *y = t;
                    if transposed {
                        let xv = xa[iv * k + c];
                        for jj in 0..JB {
                            acc[jj] = T::vmul_add(s, kv[jj], xv, acc[jj]);
                        }
                    }
                }
                if let Some(yb) = yb.as_deref_mut() {
                    for (jj, v) in acc.iter().enumerate() {
                        let j = j0 + jj;
                        if j < b.len {
                            yb[lay.at(j, c, k)] += T::vreduce_sum(s, *v);
                        }
                    }
                }
            }
        }
        // Phase 2b: Σ W g (z_ia − z_ja)² per dimension.
        if VJP {
            let gv = T::as_mut_simd::<S>(gacc).0;
            for (dim, q) in bq.iter().enumerate() {
                let bz = q.map(|v| T::vsplat(s, v));
                let mut acc = [zero; JB];
                for (iv, w) in wg.iter().enumerate() {
                    let z = za[iv * d + dim];
                    for jj in 0..JB {
                        let t = T::vsub(s, z, bz[jj]);
                        acc[jj] = T::vmul_add(s, w[jj], T::vmul(s, t, t), acc[jj]);
                    }
                }
                gv[dim] = T::vadd(s, gv[dim], pairwise::<S, T>(s, acc));
            }
        }
    }
    if VJP {
        let gv = T::as_mut_simd::<S>(gacc).0;
        gv[d] = T::vadd(s, gv[d], acc_s);
    }
}

/// `Σ_jj v[jj]` by pairwise halving (a fixed order).
#[inline(always)]
fn pairwise<S: Isa, T: Scalar>(s: S, mut v: [T::V<S>; JB]) -> T::V<S> {
    let mut len = JB;
    while len > 1 {
        len /= 2;
        for i in 0..len {
            v[i] = T::vadd(s, v[i], v[i + len]);
        }
    }
    v[0]
}

/// What a product needs from the operator.
#[derive(Clone, Copy)]
pub(crate) struct Engine<'a, T> {
    pub kind: KernelKind,
    pub n: usize,
    pub d: usize,
    pub tile: usize,
    pub scale: T,
    pub level: SimdLevel,
    /// Scaled inputs `x/ℓ`, row-major `n×d`.
    pub z: &'a [T],
}

/// A tile pair as a [`WithIsa`] task (entered with the instruction set's features).
struct PairTask<'a, 'b, T, P, const FWD: bool, const VJP: bool> {
    lay: &'b Layout,
    d: usize,
    k: usize,
    scale: T,
    a: Side<'b, T>,
    b: Side<'b, T>,
    sym: bool,
    ya: Option<&'a mut [T]>,
    yb: Option<&'a mut [T]>,
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile, const FWD: bool, const VJP: bool> WithIsa
    for PairTask<'_, '_, T, P, FWD, VJP>
{
    /// The task's gradient partials (`d + 1`, lanes summed), empty without `VJP`.
    type Output = Vec<T>;
    #[inline(always)]
    fn run<S: Isa>(self, s: S) -> Vec<T> {
        let l = T::lanes::<S>();
        let mut gacc = vec![T::ZERO; if VJP { (self.d + 1) * l } else { 0 }];
        tile_pair::<S, T, P, FWD, VJP>(
            s, self.lay, self.d, self.k, self.scale, self.a, self.b, self.sym, self.ya, self.yb,
            &mut gacc,
        );
        let gv = T::as_simd::<S>(&gacc).0;
        gv.iter().map(|v| T::vreduce_sum(s, *v)).collect()
    }
}

/// The symmetric products over all tile pairs, as a [`WithIsa`] computation.
struct SymOp<'a, 'e, T, P> {
    e: &'e Engine<'e, T>,
    k: usize,
    x: &'a [T],
    u: Option<&'a [T]>,
    y: Option<&'a mut [T]>,
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile> WithIsa for SymOp<'_, '_, T, P> {
    type Output = Vec<T>;
    fn run<S: Isa>(self, s: S) -> Vec<T> {
        match (self.y.is_some(), self.u.is_some()) {
            (true, false) => sym_products::<S, T, P, true, false>(s, self),
            (false, true) => sym_products::<S, T, P, false, true>(s, self),
            _ => sym_products::<S, T, P, true, true>(s, self),
        }
    }
}

/// Runs the schedule: `y = K x` (`FWD`) and/or the gradient sums (`VJP`, returned as
/// `[Σ W g Δ_a² for a < d, Σ W k]`).
fn sym_products<S: Isa, T: Scalar, P: Profile, const FWD: bool, const VJP: bool>(
    s: S,
    op: SymOp<'_, '_, T, P>,
) -> Vec<T> {
    let e = op.e;
    let (n, d, k) = (e.n, e.d, op.k);
    let lay = Layout::new::<S, T>(e.tile);
    let nt = lay.num_tiles(n);
    let zp = lay.points(e.z, n, d);
    let xp = lay.cols(op.x, n, k);
    let up = op.u.map(|u| lay.cols(u, n, k)).unwrap_or_default();
    let (zper, xper) = (lay.tp * d, lay.tp * k);
    let side = |t: usize| {
        let (start, len) = lay.range(n, t);
        Side {
            len,
            zv: &zp[t * zper..(t + 1) * zper],
            zrows: &e.z[start * d..(start + len) * d],
            x: &xp[t * xper..(t + 1) * xper],
            u: if VJP { &up[t * xper..(t + 1) * xper] } else { &[] },
        }
    };
    let mut yp = vec![T::ZERO; if FWD { nt * xper } else { 0 }];
    let mut total = vec![T::ZERO; d + 1];
    for r in 0..num_rounds(nt) {
        let mut slots: Vec<Option<&mut [T]>> = yp.chunks_mut(xper.max(1)).map(Some).collect();
        let jobs: Vec<_> = round(nt, r)
            .into_iter()
            .map(|(i, j)| {
                let (yi, yj) = if FWD {
                    let yi = slots[i].take();
                    (yi, if i != j { slots[j].take() } else { None })
                } else {
                    (None, None)
                };
                (i, j, yi, yj)
            })
            .collect();
        let parts: Vec<Vec<T>> = jobs
            .into_par_iter()
            .with_max_len(1)
            .map(|(i, j, yi, yj)| {
                s.enter(PairTask::<T, P, FWD, VJP> {
                    lay: &lay,
                    d,
                    k,
                    scale: e.scale,
                    a: side(i),
                    b: side(j),
                    sym: i != j,
                    ya: yi,
                    yb: yj,
                    _p: PhantomData,
                })
            })
            .collect();
        if VJP {
            for p in &parts {
                for (t, v) in total.iter_mut().zip(p) {
                    *t += *v;
                }
            }
        }
    }
    if let (true, Some(y)) = (FWD, op.y) {
        lay.uncols(&yp, n, k, y);
    }
    total
}

/// `out = K(Q, X) v` for `m` scaled query points `q` (row-major), as a [`WithIsa`] computation.
struct CrossOp<'a, 'e, T, P> {
    e: &'e Engine<'e, T>,
    q: &'a [T],
    m: usize,
    v: &'a [T],
    out: &'a mut [T],
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile> WithIsa for CrossOp<'_, '_, T, P> {
    type Output = ();
    fn run<S: Isa>(self, s: S) {
        let e = self.e;
        let (n, d, m) = (e.n, e.d, self.m);
        let lay = Layout::new::<S, T>(e.tile);
        let vp = lay.cols(self.v, n, 1);
        let qp = lay.points(self.q, m, d);
        let parts: Vec<Vec<T>> = (0..lay.num_tiles(m))
            .into_par_iter()
            .with_max_len(1)
            .map(|qt| {
                let (_, qlen) = lay.range(m, qt);
                let zq = &qp[qt * lay.tp * d..(qt + 1) * lay.tp * d];
                let mut ya = vec![T::ZERO; lay.tp];
                s.enter(ColumnsTask::<T, P> {
                    e,
                    lay: &lay,
                    a: Side {
                        len: qlen,
                        zv: zq,
                        zrows: &[],
                        x: &[],
                        u: &[],
                    },
                    k: 1,
                    bx: &vp,
                    y: &mut ya,
                    _p: PhantomData,
                });
                ya
            })
            .collect();
        let packed: Vec<T> = parts.concat();
        lay.uncols(&packed, m, 1, self.out);
    }
}

/// `y_a = K(a, X) B` for one packed row tile `a` against all tiles of the inputs (in order), with
/// `bx` the packed `k` columns of `B` over the inputs.
struct ColumnsTask<'a, 'e, T, P> {
    e: &'e Engine<'e, T>,
    lay: &'a Layout,
    a: Side<'a, T>,
    k: usize,
    bx: &'a [T],
    y: &'a mut [T],
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile> WithIsa for ColumnsTask<'_, '_, T, P> {
    type Output = ();
    #[inline(always)]
    fn run<S: Isa>(self, s: S) {
        let (e, lay, k) = (self.e, self.lay, self.k);
        let per = lay.tp * k;
        for jt in 0..lay.num_tiles(e.n) {
            let (start, len) = lay.range(e.n, jt);
            let b = Side {
                len,
                zv: &[],
                zrows: &e.z[start * e.d..(start + len) * e.d],
                x: &self.bx[jt * per..(jt + 1) * per],
                u: &[],
            };
            tile_pair::<S, T, P, true, false>(
                s,
                lay,
                e.d,
                k,
                e.scale,
                self.a,
                b,
                false,
                Some(&mut *self.y),
                None,
                &mut [],
            );
        }
    }
}

/// Groups of at most [`JB`] consecutive columns of `K`, column-major, as a [`WithIsa`]
/// computation (groups in parallel, each over every row tile).
struct ColumnOp<'a, 'e, T, P> {
    e: &'e Engine<'e, T>,
    /// Groups of `JB` columns, and their outputs (`n·JB` each; the last group may be short).
    groups: Vec<(usize, &'a mut [T])>,
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile> WithIsa for ColumnOp<'_, '_, T, P> {
    type Output = ();
    fn run<S: Isa>(self, s: S) {
        let e = self.e;
        let (n, d) = (e.n, e.d);
        let lay = Layout::new::<S, T>(e.tile);
        let zp = lay.points(e.z, n, d);
        let zper = lay.tp * d;
        self.groups.into_par_iter().for_each(|(j0, out)| {
            let cols = out.len() / n;
            // The B side is the group itself (one short tile) with identity weights, so the
            // products return the kernel values exactly (`k·1 + 0`, `k·0 = 0`).
            let mut bx = vec![T::ZERO; lay.tp * cols];
            for c in 0..cols {
                bx[lay.at(c, c, cols)] = T::ONE;
            }
            let b = Side {
                len: cols,
                zv: &[],
                zrows: &e.z[j0 * d..(j0 + cols) * d],
                x: &bx,
                u: &[],
            };
            for t in 0..lay.num_tiles(n) {
                let (start, len) = lay.range(n, t);
                let a = Side {
                    len,
                    zv: &zp[t * zper..(t + 1) * zper],
                    zrows: &[],
                    x: &[],
                    u: &[],
                };
                let mut ya = vec![T::ZERO; lay.tp * cols];
                s.enter(OneTask::<T, P> {
                    lay: &lay,
                    d,
                    k: cols,
                    scale: e.scale,
                    a,
                    b,
                    y: &mut ya,
                    _p: PhantomData,
                });
                for c in 0..cols {
                    for i in 0..len {
                        out[c * n + start + i] = ya[lay.at(i, c, cols)];
                    }
                }
            }
        });
    }
}

/// One forward, non-symmetric tile pair.
struct OneTask<'a, T, P> {
    lay: &'a Layout,
    d: usize,
    k: usize,
    scale: T,
    a: Side<'a, T>,
    b: Side<'a, T>,
    y: &'a mut [T],
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile> WithIsa for OneTask<'_, T, P> {
    type Output = ();
    #[inline(always)]
    fn run<S: Isa>(self, s: S) {
        tile_pair::<S, T, P, true, false>(
            s,
            self.lay,
            self.d,
            self.k,
            self.scale,
            self.a,
            self.b,
            false,
            Some(self.y),
            None,
            &mut [],
        );
    }
}

impl<T: Scalar> Engine<'_, T> {
    /// `y = K x` for `k` columns (`n ≥ 1`, `k ≥ 1`).
    pub(crate) fn apply(&self, x: &[T], y: &mut [T], k: usize) {
        with_profile!(self.kind, P => dispatch(self.level, SymOp::<T, P> {
            e: self, k, x, u: None, y: Some(y), _p: PhantomData,
        }));
    }

    /// The gradient sums `[Σ W g Δ_a² (a < d), Σ W k]` of `Σ_c ⟨u_c, K x_c⟩`.
    pub(crate) fn vjp(&self, u: &[T], x: &[T], k: usize) -> Vec<T> {
        with_profile!(self.kind, P => dispatch(self.level, SymOp::<T, P> {
            e: self, k, x, u: Some(u), y: None, _p: PhantomData,
        }))
    }

    /// Both in one pass.
    pub(crate) fn apply_vjp(&self, x: &[T], y: &mut [T], u: &[T], k: usize) -> Vec<T> {
        with_profile!(self.kind, P => dispatch(self.level, SymOp::<T, P> {
            e: self, k, x, u: Some(u), y: Some(y), _p: PhantomData,
        }))
    }

    /// `out = K(Q, X) v` for `m` scaled query points.
    pub(crate) fn cross(&self, q: &[T], m: usize, v: &[T], out: &mut [T]) {
        with_profile!(self.kind, P => dispatch(self.level, CrossOp::<T, P> {
            e: self, q, m, v, out, _p: PhantomData,
        }));
    }

    /// Columns of `K`: `out` holds consecutive columns starting at `j0` (`out.len()` a multiple
    /// of `n`), computed in groups of [`JB`] in parallel.
    pub(crate) fn columns(&self, j0: usize, out: &mut [T]) {
        let n = self.n;
        let groups: Vec<(usize, &mut [T])> = out
            .chunks_mut(n * JB)
            .enumerate()
            .map(|(g, o)| (j0 + g * JB, o))
            .collect();
        with_profile!(self.kind, P => dispatch(self.level, ColumnOp::<T, P> {
            e: self, groups, _p: PhantomData,
        }));
    }
}
