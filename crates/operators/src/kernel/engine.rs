//! The tile engine behind [`KernelMatrix`](super::KernelMatrix): packed layouts, the symmetric
//! round-robin schedule of tile pairs, and the SIMD tile-pair kernel shared by every product.
//!
//! **Layout (per call, per instruction set with `L` lanes).** Points are split into tiles of
//! `tile` consecutive points; each tile is padded to `tp = tile` rounded up to a multiple of
//! `max(L, JB)`, i.e. `niv = tp / L` vectors. The scaled points of a tile are stored
//! `[iv][a][lane]` (the `d` coordinates of one vector of points are contiguous), the pad lanes
//! repeating the tile's last point so that every padded kernel value is finite; blocks of `k`
//! vectors are stored `[iv][c][lane]` with zero pads, so padded points contribute exactly
//! nothing. The column ("B") side of a tile pair is packed the same way with `JB = 8` lanes and
//! read as broadcast scalars, `JB` points at a time.
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
/// (a multiple of `l` and of [`JB`]). Row ("A") sides are packed with `l` lanes, column ("B")
/// sides with [`JB`] lanes, in the same `[block][a or c][lane]` pattern.
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

    /// Position of point `j` of a tile, entry `c` of `k`, in a tile packed with `lanes` lanes.
    #[inline(always)]
    fn at(j: usize, c: usize, k: usize, lanes: usize) -> usize {
        ((j / lanes) * k + c) * lanes + j % lanes
    }

    /// Packs `n` row-major points of dimension `d`, `[t][block][a][lane]` with `lanes` lanes;
    /// the pads repeat the tile's last point.
    fn points<T: Scalar>(&self, z: &[T], n: usize, d: usize, lanes: usize) -> Vec<T> {
        let per = self.tp * d;
        let mut out = vec![T::ZERO; self.num_tiles(n) * per];
        out.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
            let (start, len) = self.range(n, t);
            for i in 0..self.tp {
                let p = start + i.min(len - 1);
                for a in 0..d {
                    o[Self::at(i, a, d, lanes)] = z[p * d + a];
                }
            }
        });
        out
    }

    /// Packs `k` column-major vectors of length `n`, `[t][block][c][lane]`, zero pads.
    fn cols<T: Scalar>(&self, x: &[T], n: usize, k: usize, lanes: usize) -> Vec<T> {
        let per = self.tp * k;
        let mut out = vec![T::ZERO; self.num_tiles(n) * per];
        out.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
            let (start, len) = self.range(n, t);
            for c in 0..k {
                for j in 0..len {
                    o[Self::at(j, c, k, lanes)] = x[c * n + start + j];
                }
            }
        });
        out
    }

    /// Inverse of [`cols`](Self::cols) with `l` lanes (pads dropped).
    fn uncols<T: Scalar>(&self, packed: &[T], n: usize, k: usize, out: &mut [T]) {
        let per = self.tp * k;
        for c in 0..k {
            let col = &mut out[c * n..(c + 1) * n];
            for (t, chunk) in col.chunks_mut(self.tile).enumerate() {
                let p = &packed[t * per..(t + 1) * per];
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v = p[Self::at(j, c, k, self.l)];
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

/// One tile of a tile pair, packed with `l` lanes as the row side or with [`JB`] lanes as the
/// column side (empty slices for what a product does not use).
#[derive(Clone, Copy)]
struct TileRef<'a, T> {
    /// Points in the tile.
    len: usize,
    /// Packed points.
    z: &'a [T],
    /// Packed right-hand sides (for the products and the weights).
    x: &'a [T],
    /// Packed left vectors of the VJP.
    u: &'a [T],
}

/// The shared inner kernel: one tile pair (`a` = rows, SIMD lanes; `b` = columns, broadcast
/// [`JB`] at a time).
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
    a: TileRef<'_, T>,
    b: TileRef<'_, T>,
    sym: bool,
    mut ya: Option<&mut [T]>,
    mut yb: Option<&mut [T]>,
    gacc: &mut [T],
) {
    let l = lay.l;
    let niv = a.len.div_ceil(l);
    let zero = T::vsplat(s, T::ZERO);
    let sc = T::vsplat(s, scale);
    let za = T::as_simd::<S>(&a.z[..niv * d * l]).0;
    let xa = T::as_simd::<S>(a.x).0;
    let ua = T::as_simd::<S>(a.u).0;
    let (zb, _) = b.z.as_chunks::<JB>();
    let (xb, _) = b.x.as_chunks::<JB>();
    let (ub, _) = b.u.as_chunks::<JB>();
    let mut kb = vec![[zero; JB]; if FWD { niv } else { 0 }];
    let mut wg = vec![[zero; JB]; if VJP { niv } else { 0 }];
    let mut acc_s = zero;
    let transposed = yb.is_some();
    for jb in 0..b.len.div_ceil(JB) {
        let j0 = jb * JB;
        let bq = &zb[jb * d..(jb + 1) * d];
        let xq = &xb[if xb.is_empty() {
            0..0
        } else {
            jb * k..(jb + 1) * k
        }];
        let uq = &ub[if ub.is_empty() {
            0..0
        } else {
            jb * k..(jb + 1) * k
        }];
        // Phase 1: distances, kernel values (and derivatives, weights).
        for iv in 0..niv {
            let mut r2 = [zero; JB];
            for (zv, q) in za[iv * d..(iv + 1) * d].iter().zip(bq) {
                for jj in 0..JB {
                    let t = T::vsub(s, *zv, T::vsplat(s, q[jj]));
                    r2[jj] = T::vmul_add(s, t, t, r2[jj]);
                }
            }
            let mut w = [zero; JB];
            if VJP {
                for (uv, q) in ua[iv * k..(iv + 1) * k].iter().zip(xq) {
                    for jj in 0..JB {
                        w[jj] = T::vmul_add(s, *uv, T::vsplat(s, q[jj]), w[jj]);
                    }
                }
                if sym {
                    for (xv, q) in xa[iv * k..(iv + 1) * k].iter().zip(uq) {
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
                            yb[Layout::at(j, c, k, l)] += T::vreduce_sum(s, *v);
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

/// A tile pair as a [`WithIsa`] task (entered with the instruction set's features), returning
/// its gradient partials (`d + 1`, lanes summed; empty without `VJP`).
struct PairTask<'a, 'b, T, P, const FWD: bool, const VJP: bool> {
    lay: &'b Layout,
    d: usize,
    k: usize,
    scale: T,
    a: TileRef<'b, T>,
    b: TileRef<'b, T>,
    sym: bool,
    ya: Option<&'a mut [T]>,
    yb: Option<&'a mut [T]>,
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile, const FWD: bool, const VJP: bool> WithIsa
    for PairTask<'_, '_, T, P, FWD, VJP>
{
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

/// The inputs packed for both sides of tile pairs, and the vectors of a call.
struct Packed<T> {
    /// Per tile: packed points with `l` lanes (rows) and with [`JB`] lanes (columns).
    za: Vec<T>,
    zb: Vec<T>,
    xa: Vec<T>,
    xb: Vec<T>,
    ua: Vec<T>,
    ub: Vec<T>,
    n: usize,
    d: usize,
    k: usize,
}

impl<T: Scalar> Packed<T> {
    fn new(lay: &Layout, z: &[T], n: usize, d: usize, k: usize, x: &[T], u: Option<&[T]>) -> Self {
        let pack = |v: &[T], lanes| lay.cols(v, n, k, lanes);
        Packed {
            za: lay.points(z, n, d, lay.l),
            zb: lay.points(z, n, d, JB),
            xa: pack(x, lay.l),
            xb: pack(x, JB),
            ua: u.map(|u| pack(u, lay.l)).unwrap_or_default(),
            ub: u.map(|u| pack(u, JB)).unwrap_or_default(),
            n,
            d,
            k,
        }
    }

    /// Tile `t` of a packed array (`per` entries per tile; empty stays empty).
    fn tile(v: &[T], t: usize, per: usize) -> &[T] {
        if v.is_empty() {
            &[]
        } else {
            &v[t * per..(t + 1) * per]
        }
    }

    /// Tile `t` as the row side.
    fn rows(&self, lay: &Layout, t: usize) -> TileRef<'_, T> {
        let (zp, xp) = (lay.tp * self.d, lay.tp * self.k);
        TileRef {
            len: lay.range(self.n, t).1,
            z: Self::tile(&self.za, t, zp),
            x: Self::tile(&self.xa, t, xp),
            u: Self::tile(&self.ua, t, xp),
        }
    }

    /// Tile `t` as the column side.
    fn cols(&self, lay: &Layout, t: usize) -> TileRef<'_, T> {
        let (zp, xp) = (lay.tp * self.d, lay.tp * self.k);
        TileRef {
            len: lay.range(self.n, t).1,
            z: Self::tile(&self.zb, t, zp),
            x: Self::tile(&self.xb, t, xp),
            u: Self::tile(&self.ub, t, xp),
        }
    }
}

/// The symmetric products over all tile pairs, as a [`WithIsa`] computation.
struct SymOp<'a, 'e, T, P> {
    e: &'e Engine<'e, T>,
    k: usize,
    x: &'a [T],
    u: Option<&'a [T]>,
    y: Option<&'a mut [T]>,
    /// Only the tile pairs `(i, j)` for which this is `true` (all pairs when `None`): a rank's
    /// share of the pairs in a distributed product.
    select: Option<PairFilter<'a>>,
    _p: PhantomData<P>,
}

/// A selection of tile pairs `(i, j)`, `i ≤ j`.
pub(crate) type PairFilter<'a> = &'a (dyn Fn(usize, usize) -> bool + Sync);

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
    let packed = Packed::new(&lay, e.z, n, d, k, op.x, op.u);
    let per = lay.tp * k;
    let mut yp = vec![T::ZERO; if FWD { nt * per } else { 0 }];
    let mut total = vec![T::ZERO; d + 1];
    for r in 0..num_rounds(nt) {
        let mut slots: Vec<Option<&mut [T]>> = yp.chunks_mut(per).map(Some).collect();
        let jobs: Vec<_> = round(nt, r)
            .into_iter()
            .filter(|&(i, j)| op.select.is_none_or(|f| f(i, j)))
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
                    a: packed.rows(&lay, i),
                    b: packed.cols(&lay, j),
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

/// `y_a = K(a, X) B` for one row tile `a` against every column tile of the inputs, in order
/// (`k` columns of `B`, packed in `bx` over the inputs' tiles).
struct RowTask<'a, 'e, T, P> {
    e: &'e Engine<'e, T>,
    lay: &'a Layout,
    a: TileRef<'a, T>,
    cols: &'a [TileRef<'a, T>],
    k: usize,
    y: &'a mut [T],
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile> WithIsa for RowTask<'_, '_, T, P> {
    type Output = ();
    #[inline(always)]
    fn run<S: Isa>(self, s: S) {
        for b in self.cols {
            tile_pair::<S, T, P, true, false>(
                s,
                self.lay,
                self.e.d,
                self.k,
                self.e.scale,
                self.a,
                *b,
                false,
                Some(&mut *self.y),
                None,
                &mut [],
            );
        }
    }
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
        let zb = lay.points(e.z, n, d, JB);
        let vb = lay.cols(self.v, n, 1, JB);
        let cols: Vec<TileRef<T>> = (0..lay.num_tiles(n))
            .map(|t| TileRef {
                len: lay.range(n, t).1,
                z: &zb[t * lay.tp * d..(t + 1) * lay.tp * d],
                x: &vb[t * lay.tp..(t + 1) * lay.tp],
                u: &[],
            })
            .collect();
        let qa = lay.points(self.q, m, d, lay.l);
        let parts: Vec<Vec<T>> = (0..lay.num_tiles(m))
            .into_par_iter()
            .with_max_len(1)
            .map(|qt| {
                let mut ya = vec![T::ZERO; lay.tp];
                s.enter(RowTask::<T, P> {
                    e,
                    lay: &lay,
                    a: TileRef {
                        len: lay.range(m, qt).1,
                        z: &qa[qt * lay.tp * d..(qt + 1) * lay.tp * d],
                        x: &[],
                        u: &[],
                    },
                    cols: &cols,
                    k: 1,
                    y: &mut ya,
                    _p: PhantomData,
                });
                ya
            })
            .collect();
        lay.uncols(&parts.concat(), m, 1, self.out);
    }
}

/// Groups of at most [`JB`] consecutive columns of `K`, column-major, as a [`WithIsa`]
/// computation (groups in parallel, each over every row tile).
struct ColumnOp<'a, 'e, T, P> {
    e: &'e Engine<'e, T>,
    /// First column of each group and its output (`n` times the group's width).
    groups: Vec<(usize, &'a mut [T])>,
    _p: PhantomData<P>,
}

impl<T: Scalar, P: Profile> WithIsa for ColumnOp<'_, '_, T, P> {
    type Output = ();
    fn run<S: Isa>(self, s: S) {
        let e = self.e;
        let (n, d) = (e.n, e.d);
        let lay = Layout::new::<S, T>(e.tile);
        let za = lay.points(e.z, n, d, lay.l);
        let zper = lay.tp * d;
        self.groups.into_par_iter().for_each(|(j0, out)| {
            let cols = out.len() / n;
            // The column side is the group itself (one short tile) with identity weights, so
            // the products return the kernel values exactly (`k·1 + 0`, `k·0 = 0`).
            let group = Layout { tile: cols, ..lay };
            let zb = group.points(&e.z[j0 * d..(j0 + cols) * d], cols, d, JB);
            let mut bx = vec![T::ZERO; JB * cols];
            for c in 0..cols {
                bx[Layout::at(c, c, cols, JB)] = T::ONE;
            }
            let b = [TileRef {
                len: cols,
                z: &zb[..JB * d],
                x: &bx,
                u: &[],
            }];
            for t in 0..lay.num_tiles(n) {
                let (start, len) = lay.range(n, t);
                let mut ya = vec![T::ZERO; lay.tp * cols];
                s.enter(RowTask::<T, P> {
                    e,
                    lay: &lay,
                    a: TileRef {
                        len,
                        z: &za[t * zper..(t + 1) * zper],
                        x: &[],
                        u: &[],
                    },
                    cols: &b,
                    k: cols,
                    y: &mut ya,
                    _p: PhantomData,
                });
                for c in 0..cols {
                    for i in 0..len {
                        out[c * n + start + i] = ya[Layout::at(i, c, cols, lay.l)];
                    }
                }
            }
        });
    }
}

impl<T: Scalar> Engine<'_, T> {
    /// `y = K x` for `k` columns (`n ≥ 1`, `k ≥ 1`).
    pub(crate) fn apply(&self, x: &[T], y: &mut [T], k: usize) {
        with_profile!(self.kind, P => dispatch(self.level, SymOp::<T, P> {
            e: self, k, x, u: None, y: Some(y), select: None, _p: PhantomData,
        }));
    }

    /// The gradient sums `[Σ W g Δ_a² (a < d), Σ W k]` of `Σ_c ⟨u_c, K x_c⟩`.
    pub(crate) fn vjp(&self, u: &[T], x: &[T], k: usize) -> Vec<T> {
        with_profile!(self.kind, P => dispatch(self.level, SymOp::<T, P> {
            e: self, k, x, u: Some(u), y: None, select: None, _p: PhantomData,
        }))
    }

    /// Both in one pass.
    pub(crate) fn apply_vjp(&self, x: &[T], y: &mut [T], u: &[T], k: usize) -> Vec<T> {
        with_profile!(self.kind, P => dispatch(self.level, SymOp::<T, P> {
            e: self, k, x, u: Some(u), y: Some(y), select: None, _p: PhantomData,
        }))
    }

    /// The products of [`apply`](Self::apply) / [`vjp`](Self::vjp) /
    /// [`apply_vjp`](Self::apply_vjp) restricted to the tile pairs `select` accepts (`y` is
    /// overwritten with the partial product; pairs run in schedule order): a rank's share of a
    /// distributed product. Returns the gradient sums (empty without `u`).
    pub(crate) fn select_products(
        &self,
        x: &[T],
        y: Option<&mut [T]>,
        u: Option<&[T]>,
        k: usize,
        select: PairFilter<'_>,
    ) -> Vec<T> {
        let want_grad = u.is_some();
        let sums = with_profile!(self.kind, P => dispatch(self.level, SymOp::<T, P> {
            e: self, k, x, u, y, select: Some(select), _p: PhantomData,
        }));
        if want_grad {
            sums
        } else {
            Vec::new()
        }
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
