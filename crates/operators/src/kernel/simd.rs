//! SIMD building blocks of the kernel engine, on `pulp`'s safe API (no `unsafe` here): the
//! instruction-set tokens and their run-time dispatch, the lane operations over `f32`/`f64`,
//! and the vectorised `exp`.
//!
//! Three levels: [`SimdLevel::Avx512`] (pulp's `V4`: 8 `f64` / 16 `f32` lanes),
//! [`SimdLevel::Avx2`] (pulp's `V3`, AVX2 + FMA: 4 / 8 lanes) and [`SimdLevel::Scalar`] (one lane,
//! plain Rust, unfused multiply-adds). Code generic over [`Isa`] is compiled once per level;
//! [`Isa::enter`] runs it with the level's target features enabled (pulp's `vectorize`), so
//! everything below it must be `#[inline(always)]`.

use pulp::{NullaryFnOnce, Simd};

#[cfg(target_arch = "x86_64")]
use pulp::x86::{V3, V4};

/// The instruction sets the kernel engine is compiled for, chosen at run time.
///
/// Results differ between levels by rounding only (lane counts change the order of the
/// in-register sums; the scalar level does not fuse multiply-adds); for one level they are
/// bit-identical for every thread count. Pin a level with
/// [`KernelMatrix::with_simd_level`](super::KernelMatrix::with_simd_level) to make results
/// bit-reproducible across machines that support it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SimdLevel {
    /// One lane, portable Rust (the fallback on every target).
    Scalar,
    /// x86-64 AVX2 with FMA (x86-64-v3): 256-bit vectors.
    Avx2,
    /// x86-64 AVX-512 F/BW/CD/DQ/VL (x86-64-v4): 512-bit vectors.
    Avx512,
}

impl SimdLevel {
    /// All levels, lowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512];

    /// The best level this CPU supports (detected once, cached by pulp).
    pub fn best() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if V4::is_available() {
                return SimdLevel::Avx512;
            }
            if V3::is_available() {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Scalar
    }

    /// Whether this CPU supports the level.
    pub fn is_supported(self) -> bool {
        self <= SimdLevel::best()
    }

    /// Short name (`"scalar"`, `"avx2"`, `"avx512"`).
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// A computation generic over the instruction set (pulp's `WithSimd`, bounded by [`Isa`]).
pub trait WithIsa {
    /// The result.
    type Output;
    /// Runs with the token `s`.
    fn run<S: Isa>(self, s: S) -> Self::Output;
}

/// Calls `op` with the token of `level`, or of the best supported level below it.
pub fn dispatch<Op: WithIsa>(level: SimdLevel, op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if level >= SimdLevel::Avx512 {
            if let Some(s) = V4::try_new() {
                return op.run(s);
            }
        }
        if level >= SimdLevel::Avx2 {
            if let Some(s) = V3::try_new() {
                return op.run(s);
            }
        }
    }
    let _ = level;
    op.run(pulp::Scalar::new())
}

/// A pulp SIMD token, plus what the engine needs beyond pulp's generic [`Simd`] trait.
pub trait Isa: Simd {
    /// Runs `op` with this token's target features enabled.
    fn enter<Op: WithIsa>(self, op: Op) -> Op::Output;
    /// `x << 52` in every 64-bit lane.
    fn shl52_u64s(self, x: Self::u64s) -> Self::u64s;
    /// `x << 23` in every 32-bit lane.
    fn shl23_u32s(self, x: Self::u32s) -> Self::u32s;
}

/// `op` bound to its token, as a pulp `NullaryFnOnce` (what `vectorize` takes).
struct Entered<S, Op> {
    s: S,
    op: Op,
}

impl<S: Isa, Op: WithIsa> NullaryFnOnce for Entered<S, Op> {
    type Output = Op::Output;
    #[inline(always)]
    fn call(self) -> Op::Output {
        self.op.run(self.s)
    }
}

impl Isa for pulp::Scalar {
    #[inline(always)]
    fn enter<Op: WithIsa>(self, op: Op) -> Op::Output {
        Entered { s: self, op }.call()
    }
    #[inline(always)]
    fn shl52_u64s(self, x: u64) -> u64 {
        x << 52
    }
    #[inline(always)]
    fn shl23_u32s(self, x: u32) -> u32 {
        x << 23
    }
}

#[cfg(target_arch = "x86_64")]
impl Isa for V3 {
    #[inline(always)]
    fn enter<Op: WithIsa>(self, op: Op) -> Op::Output {
        self.vectorize(Entered { s: self, op })
    }
    #[inline(always)]
    fn shl52_u64s(self, x: pulp::u64x4) -> pulp::u64x4 {
        self.shl_const_u64x4::<52>(x)
    }
    #[inline(always)]
    fn shl23_u32s(self, x: pulp::u32x8) -> pulp::u32x8 {
        self.shl_const_u32x8::<23>(x)
    }
}

#[cfg(target_arch = "x86_64")]
impl Isa for V4 {
    #[inline(always)]
    fn enter<Op: WithIsa>(self, op: Op) -> Op::Output {
        self.vectorize(Entered { s: self, op })
    }
    #[inline(always)]
    fn shl52_u64s(self, x: pulp::u64x8) -> pulp::u64x8 {
        self.shl_const_u64x8::<52>(x)
    }
    #[inline(always)]
    fn shl23_u32s(self, x: pulp::u32x16) -> pulp::u32x16 {
        self.shl_const_u32x16::<23>(x)
    }
}

/// Lane operations of a real type for every instruction set: `Self::V<S>` is the vector of
/// `Self` for token `S` (pulp's `f64s`/`f32s`). A supertrait of the sealed `Scalar`, so every
/// `T: Scalar` has them. `mul_add` is fused on the AVX levels and `a·b + c` on the scalar one.
pub trait SimdReal: Copy + Send + Sync + 'static {
    /// A vector of lanes.
    type V<S: Isa>: Copy;
    /// A lane mask.
    type M<S: Isa>: Copy;
    /// Lanes per vector.
    fn lanes<S: Isa>() -> usize;
    /// All lanes `x`.
    fn vsplat<S: Isa>(s: S, x: Self) -> Self::V<S>;
    /// `a + b`.
    fn vadd<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// `a − b`.
    fn vsub<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// `a · b`.
    fn vmul<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// `a / b`.
    fn vdiv<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// Lane-wise maximum.
    fn vmax<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// Lane-wise minimum.
    fn vmin<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// `a · b + c`.
    fn vmul_add<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>, c: Self::V<S>) -> Self::V<S>;
    /// Correctly rounded square root (IEEE `sqrt` on every level).
    fn vsqrt<S: Isa>(s: S, a: Self::V<S>) -> Self::V<S>;
    /// `a < b`.
    fn vless_than<S: Isa>(s: S, a: Self::V<S>, b: Self::V<S>) -> Self::M<S>;
    /// `m ? a : b`.
    fn vselect<S: Isa>(s: S, m: Self::M<S>, a: Self::V<S>, b: Self::V<S>) -> Self::V<S>;
    /// Sum of the lanes (pulp's fixed pairwise order).
    fn vreduce_sum<S: Isa>(s: S, a: Self::V<S>) -> Self;
    /// Whole vectors of a slice, and the remainder.
    fn as_simd<S: Isa>(x: &[Self]) -> (&[Self::V<S>], &[Self]);
    /// Whole vectors of a mutable slice, and the remainder.
    fn as_mut_simd<S: Isa>(x: &mut [Self]) -> (&mut [Self::V<S>], &mut [Self]);
    /// `2^k` from `kf = k + EXP_MAGIC` (the integer `k + bias` sits in the low mantissa bits of
    /// `kf` and is shifted into the exponent field).
    fn exp2_of_magic<S: Isa>(s: S, kf: Self::V<S>) -> Self::V<S>;

    /// `log₂ e`.
    const LOG2E: Self;
    /// `−ln 2`, high part (few enough bits that `k·ln2_hi` is exact).
    const NEG_LN2_HI: Self;
    /// `−ln 2`, low part.
    const NEG_LN2_LO: Self;
    /// `1.5·2^p + bias` (`p` mantissa bits): adding it rounds to an integer and leaves
    /// `k + bias` in the low bits.
    const EXP_MAGIC: Self;
    /// Below this `exp` returns 0 (`ln` of the smallest normal number, rounded up).
    const EXP_LO: Self;
    /// Above this `exp` saturates.
    const EXP_HI: Self;
    /// `q_0, q_1, …`: `e^r ≈ 1 + r + r²·Σ q_i r^i` on `|r| ≤ ln2/2`.
    const EXP_Q: &'static [Self];
}

macro_rules! simd_real {
    (
        $t:ty, $v:ident, $m:ident, $lanes:ident,
        [$splat:ident, $add:ident, $sub:ident, $mul:ident, $div:ident, $max:ident, $min:ident,
         $fma:ident, $sqrt:ident, $lt:ident, $select:ident, $sum:ident, $as:ident,
         $as_mut:ident, $to_bits:ident, $from_bits:ident, $shl:ident],
        log2e: $log2e:expr, ln2: ($hi:expr, $lo:expr), magic: $magic:expr,
        range: ($elo:expr, $ehi:expr), q: $q:expr $(,)?
    ) => {
        impl SimdReal for $t {
            type V<S: Isa> = S::$v;
            type M<S: Isa> = S::$m;
            #[inline(always)]
            fn lanes<S: Isa>() -> usize {
                S::$lanes
            }
            #[inline(always)]
            fn vsplat<S: Isa>(s: S, x: Self) -> S::$v {
                s.$splat(x)
            }
            #[inline(always)]
            fn vadd<S: Isa>(s: S, a: S::$v, b: S::$v) -> S::$v {
                s.$add(a, b)
            }
            #[inline(always)]
            fn vsub<S: Isa>(s: S, a: S::$v, b: S::$v) -> S::$v {
                s.$sub(a, b)
            }
            #[inline(always)]
            fn vmul<S: Isa>(s: S, a: S::$v, b: S::$v) -> S::$v {
                s.$mul(a, b)
            }
            #[inline(always)]
            fn vdiv<S: Isa>(s: S, a: S::$v, b: S::$v) -> S::$v {
                s.$div(a, b)
            }
            #[inline(always)]
            fn vmax<S: Isa>(s: S, a: S::$v, b: S::$v) -> S::$v {
                s.$max(a, b)
            }
            #[inline(always)]
            fn vmin<S: Isa>(s: S, a: S::$v, b: S::$v) -> S::$v {
                s.$min(a, b)
            }
            #[inline(always)]
            fn vmul_add<S: Isa>(s: S, a: S::$v, b: S::$v, c: S::$v) -> S::$v {
                s.$fma(a, b, c)
            }
            #[inline(always)]
            fn vsqrt<S: Isa>(s: S, a: S::$v) -> S::$v {
                s.$sqrt(a)
            }
            #[inline(always)]
            fn vless_than<S: Isa>(s: S, a: S::$v, b: S::$v) -> S::$m {
                s.$lt(a, b)
            }
            #[inline(always)]
            fn vselect<S: Isa>(s: S, m: S::$m, a: S::$v, b: S::$v) -> S::$v {
                s.$select(m, a, b)
            }
            #[inline(always)]
            fn vreduce_sum<S: Isa>(s: S, a: S::$v) -> Self {
                s.$sum(a)
            }
            #[inline(always)]
            fn as_simd<S: Isa>(x: &[Self]) -> (&[S::$v], &[Self]) {
                S::$as(x)
            }
            #[inline(always)]
            fn as_mut_simd<S: Isa>(x: &mut [Self]) -> (&mut [S::$v], &mut [Self]) {
                S::$as_mut(x)
            }
            #[inline(always)]
            fn exp2_of_magic<S: Isa>(s: S, kf: S::$v) -> S::$v {
                s.$from_bits(s.$shl(s.$to_bits(kf)))
            }
            const LOG2E: Self = $log2e;
            const NEG_LN2_HI: Self = -$hi;
            const NEG_LN2_LO: Self = -$lo;
            const EXP_MAGIC: Self = $magic;
            const EXP_LO: Self = $elo;
            const EXP_HI: Self = $ehi;
            const EXP_Q: &'static [Self] = &$q;
        }
    };
}

simd_real!(
    f64, f64s, m64s, F64_LANES,
    [splat_f64s, add_f64s, sub_f64s, mul_f64s, div_f64s, max_f64s, min_f64s, mul_add_e_f64s,
     sqrt_f64s, less_than_f64s, select_f64s, reduce_sum_f64s, as_simd_f64s, as_mut_simd_f64s,
     transmute_u64s_f64s, transmute_f64s_u64s, shl52_u64s],
    log2e: std::f64::consts::LOG2_E,
    // fdlibm's split: ln2_hi has 32 significant bits, so k·ln2_hi is exact for |k| < 2^21.
    ln2: (6.931_471_803_691_238e-1, 1.908_214_929_270_587_7e-10),
    // 1.5·2^52 + 1023.
    magic: 6_755_399_441_056_767.0,
    // ln(2^-1022) = −708.3964…: below it e^x is subnormal and returned as 0.
    range: (-708.39, 709.0),
    // Chebyshev fit of (e^r − 1 − r)/r² on [−ln2/2, ln2/2] (mpmath `chebyfit`, 10 terms,
    // rounded to f64): the polynomial's relative error is 1.6·10⁻¹⁷ (0.07 ulp).
    q: [
        0.500_000_000_000_000_1,
        0.166_666_666_666_666_69,
        0.041_666_666_666_624_164,
        0.008_333_333_333_330_065,
        0.001_388_888_891_719_671_9,
        0.000_198_412_698_630_405_45,
        2.480_152_132_236_869_2e-5,
        2.755_726_848_031_002_4e-6,
        2.762_007_587_998_336_7e-7,
        2.510_037_583_256_123_4e-8,
    ],
);

simd_real!(
    f32, f32s, m32s, F32_LANES,
    [splat_f32s, add_f32s, sub_f32s, mul_f32s, div_f32s, max_f32s, min_f32s, mul_add_e_f32s,
     sqrt_f32s, less_than_f32s, select_f32s, reduce_sum_f32s, as_simd_f32s, as_mut_simd_f32s,
     transmute_u32s_f32s, transmute_f32s_u32s, shl23_u32s],
    log2e: std::f32::consts::LOG2_E,
    // Cephes' split: ln2_hi = 355/512 (9 bits), k·ln2_hi exact.
    ln2: (0.693_359_4, -2.121_944_4e-4),
    // 1.5·2^23 + 127.
    magic: 12_583_039.0,
    // ln(2^-126) = −87.3365…
    range: (-87.33, 88.0),
    // Chebyshev fit as for f64, 5 terms rounded to f32: relative error 9.7·10⁻⁹ (0.08 ulp).
    q: [
        0.5,
        0.166_665_78,
        0.041_666_556,
        0.008_363_173,
        0.001_392_617_6,
    ],
);

/// Vectorised `e^x` — **maximum error 1 ulp** relative to the correctly rounded result for
/// `EXP_LO ≤ x ≤ EXP_HI` (measured against std's `exp` in the tests: 1 ulp in `f64` over
/// `[−708.39, 709]`, 1 ulp in `f32` over `[−87.33, 88]`); exactly `1` at `x = 0`; `0` for
/// `x < EXP_LO` (where `e^x` is below the smallest normal number, so the absolute error is
/// below `2^−1022` resp. `2^−126`, and `−∞` gives 0); saturates at `e^EXP_HI` above.
///
/// Cody–Waite reduction `x = k·ln2 + r`, `|r| ≤ ln2/2` (`k` by the `1.5·2^p` rounding trick,
/// `r` by two fused multiply-adds with a split `ln 2`), `e^r = 1 + (r + r²·q(r))` with the
/// Chebyshev polynomial `q` by Horner's rule (degree 9 for `f64`, 4 for `f32`), and `2^k`
/// assembled in the exponent bits. No table, no division, no branch.
#[inline(always)]
pub fn exp<S: Isa, T: crate::Scalar>(s: S, x: T::V<S>) -> T::V<S> {
    let lo = T::vsplat(s, T::EXP_LO);
    let xc = T::vmin(s, T::vmax(s, x, lo), T::vsplat(s, T::EXP_HI));
    let magic = T::vsplat(s, T::EXP_MAGIC);
    let kf = T::vmul_add(s, xc, T::vsplat(s, T::LOG2E), magic);
    let k = T::vsub(s, kf, magic);
    let r = T::vmul_add(s, k, T::vsplat(s, T::NEG_LN2_HI), xc);
    let r = T::vmul_add(s, k, T::vsplat(s, T::NEG_LN2_LO), r);
    let q = T::EXP_Q;
    let mut p = T::vsplat(s, q[q.len() - 1]);
    for &c in q[..q.len() - 1].iter().rev() {
        p = T::vmul_add(s, p, r, T::vsplat(s, c));
    }
    let er = T::vadd(
        s,
        T::vsplat(s, T::ONE),
        T::vmul_add(s, T::vmul(s, r, r), p, r),
    );
    let y = T::vmul(s, er, T::exp2_of_magic(s, kf));
    T::vselect(s, T::vless_than(s, x, lo), T::vsplat(s, T::ZERO), y)
}
