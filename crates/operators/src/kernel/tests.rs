//! Unit tests of the engine's internals: `exp` and `sqrt` against `std` on every instruction
//! set, the closed-form derivatives at `r = 0`, and the round-robin schedule. The products
//! themselves are tested against a scalar reference in `tests/kernel_engine.rs`.

use super::engine::{num_rounds, round};
use super::simd::{dispatch, exp, Isa, SimdLevel, WithIsa};
use super::KernelKind;
use crate::Scalar;

/// The levels this CPU supports (all three on an AVX-512 machine).
fn levels() -> Vec<SimdLevel> {
    SimdLevel::ALL
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

/// Applies the vector `exp` (or `sqrt`) of `level` lane-wise to `x` (length a multiple of 16),
/// inside the level's target-feature context.
struct Map<'a, T> {
    sqrt: bool,
    x: &'a [T],
    out: &'a mut [T],
}

impl<T: Scalar> WithIsa for Map<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<S: Isa>(self, s: S) {
        let (xs, rest) = T::as_simd::<S>(self.x);
        assert!(rest.is_empty());
        let (os, _) = T::as_mut_simd::<S>(self.out);
        for (o, x) in os.iter_mut().zip(xs) {
            *o = if self.sqrt {
                T::vsqrt(s, *x)
            } else {
                exp::<S, T>(s, *x)
            };
        }
    }
}

/// Enters the target-feature context before running (as the engine's tasks do).
struct Entered<Op>(Op);

impl<Op: WithIsa> WithIsa for Entered<Op> {
    type Output = Op::Output;
    fn run<S: Isa>(self, s: S) -> Op::Output {
        s.enter(self.0)
    }
}

fn map<T: Scalar>(level: SimdLevel, sqrt: bool, x: &[T]) -> Vec<T> {
    let mut x = x.to_vec();
    let len = x.len();
    x.resize(len.next_multiple_of(16), T::ZERO);
    let mut out = vec![T::ZERO; x.len()];
    dispatch(
        level,
        Entered(Map {
            sqrt,
            x: &x,
            out: &mut out,
        }),
    );
    out.truncate(len);
    out
}

/// Distance in units in the last place of `reference` (spacing of `T` at `|reference|`;
/// the smallest normal number's spacing below it).
fn ulps<T: Scalar>(value: T, reference: f64) -> f64 {
    let r = T::from_f64(reference);
    let spacing = if T::EPS.to_f64() > 1e-10 {
        // f32
        let b = (r.to_f64() as f32).abs().max(f32::MIN_POSITIVE);
        f64::from(f32::from_bits(b.to_bits() + 1) - b)
    } else {
        let b = r.to_f64().abs().max(f64::MIN_POSITIVE);
        f64::from_bits(b.to_bits() + 1) - b
    };
    (value.to_f64() - reference).abs() / spacing
}

/// Sample points: a dense uniform grid over `[lo, hi]` plus pseudo-random points, small
/// arguments around 0 and the ends of the range.
fn sample(lo: f64, hi: f64, grid: usize) -> Vec<f64> {
    let mut x: Vec<f64> = (0..=grid)
        .map(|i| lo + (hi - lo) * i as f64 / grid as f64)
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..grid {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        x.push(lo + (hi - lo) * (state >> 11) as f64 / (1u64 << 53) as f64);
    }
    for e in -30..0 {
        let t = 2f64.powi(e);
        x.extend([t, -t, 1.5 * t, -1.5 * t]);
    }
    x.extend([0.0, lo, hi, -0.5, 0.5, -1.0, -10.0, -100.0]);
    x
}

/// The error bound stated in the module docs: 1 ulp against the correctly rounded `e^x`
/// (approximated by `f64::exp` for `f32`, and by `std`'s `exp`, itself within one ulp, for
/// `f64`: the check allows the reference's own error on top).
fn check_exp<T: Scalar>(level: SimdLevel) {
    let (lo, hi) = (T::EXP_LO.to_f64(), T::EXP_HI.to_f64());
    let is32 = T::EPS.to_f64() > 1e-10;
    let xs: Vec<T> = sample(
        lo,
        hi,
        std::env::var("GRADMAT_EXP_SAMPLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400_000),
    )
    .into_iter()
    .map(T::from_f64)
    .filter(|x| (lo..=hi).contains(&x.to_f64()))
    .collect();
    let got = map(level, false, &xs);
    let mut worst = 0.0f64;
    let mut at = 0.0;
    for (x, y) in xs.iter().zip(&got) {
        let xr = x.to_f64();
        let reference = if is32 {
            f64::from(xr.exp() as f32)
        } else {
            xr.exp()
        };
        let e = ulps(*y, reference);
        if e > worst {
            worst = e;
            at = xr;
        }
    }
    // 1 ulp for the function; for f64 the reference is std's exp (glibc: < 1 ulp), so the
    // observed distance may reach 1 + (reference error); the f32 reference is correctly
    // rounded up to a double rounding (0.5 ulp of f64, negligible).
    let bound = if is32 { 1.0 } else { 1.5 };
    eprintln!(
        "{} {level:?}: worst exp error {worst:.3} ulp at x = {at:e}",
        T::NAME
    );
    assert!(
        worst <= bound,
        "{} {level:?}: exp error {worst} ulp at x = {at:e}",
        T::NAME
    );
    // Exact special values.
    let special: Vec<T> = [0.0, lo - 1e-3, lo - 1.0, -1e4, -1e30, f64::NEG_INFINITY]
        .into_iter()
        .map(T::from_f64)
        .collect();
    let out = map(level, false, &special);
    assert_eq!(
        out[0].to_f64().to_bits(),
        1f64.to_bits(),
        "exp(0) = 1 exactly"
    );
    for (x, y) in special[1..].iter().zip(&out[1..]) {
        assert_eq!(
            y.to_f64().to_bits(),
            0f64.to_bits(),
            "exp({x:e}) underflows to 0"
        );
    }
    // The underflow tail: between `ln(smallest subnormal)` and `EXP_LO`, std returns
    // subnormals and the engine 0: absolute error below the smallest normal number.
    let tiny = if is32 {
        f64::from(f32::MIN_POSITIVE)
    } else {
        f64::MIN_POSITIVE
    };
    let tail: Vec<T> = (0..1000)
        .map(|i| T::from_f64(lo - 40.0 + 40.01 * i as f64 / 999.0))
        .collect();
    for (x, y) in tail.iter().zip(map(level, false, &tail)) {
        let reference = x.to_f64().exp();
        assert!(
            (y.to_f64() - reference).abs() <= tiny,
            "{} exp({x:e}) = {y:e}, std {reference:e}",
            T::NAME
        );
    }
    // Monotone on the grid (no glitches at the reduction boundaries).
    let grid: Vec<T> = (0..=200_000)
        .map(|i| T::from_f64(lo + (hi - lo) * i as f64 / 200_000.0))
        .collect();
    let g = map(level, false, &grid);
    assert!(g.windows(2).all(|w| w[0] <= w[1]), "exp is monotone");
}

#[test]
fn exp_within_one_ulp_on_every_level() {
    for level in levels() {
        check_exp::<f64>(level);
        check_exp::<f32>(level);
    }
}

fn check_sqrt<T: Scalar>(level: SimdLevel) {
    let mut xs: Vec<T> = sample(0.0, 1e3, 100_000)
        .into_iter()
        .map(|v| T::from_f64(v.abs()))
        .collect();
    xs.extend(
        [0.0, 1e-300, 1e-40, 3.0, 1e30, 1e300]
            .into_iter()
            .map(T::from_f64),
    );
    for (x, y) in xs.iter().zip(map(level, true, &xs)) {
        assert_eq!(
            y.to_f64().to_bits(),
            x.sqrt().to_f64().to_bits(),
            "{} {level:?}: sqrt({x:e}) is correctly rounded",
            T::NAME
        );
    }
}

#[test]
fn sqrt_is_correctly_rounded_on_every_level() {
    for level in levels() {
        check_sqrt::<f64>(level);
        check_sqrt::<f32>(level);
    }
}

#[test]
fn derivatives_at_zero_distance_are_the_closed_form() {
    fn check<T: Scalar>() {
        let s = T::from_f64(1.7);
        for (kind, g0) in [
            (KernelKind::SquaredExponential, -0.5),
            (KernelKind::Matern12, 0.0),
            (KernelKind::Matern32, -1.5),
            (KernelKind::Matern52, -5.0 / 6.0),
        ] {
            let (k, g) = kind.value_and_derivative(T::ZERO, s);
            assert_eq!(
                k.to_f64().to_bits(),
                s.to_f64().to_bits(),
                "{kind:?}: k(0) = s"
            );
            assert!(
                (g - T::from_f64(g0) * s).abs() <= T::EPS * s,
                "{kind:?}: g(0) = {g:e}"
            );
            // Near zero the derivative tends to the same limit (Matérn-1/2: −s/(2r) → −∞, but
            // it only ever multiplies squared differences, and g·r² → 0).
            let r2 = T::from_f64(1e-12);
            let (_, g) = kind.value_and_derivative(r2, s);
            assert!(g.is_finite());
            if kind != KernelKind::Matern12 {
                assert!((g - T::from_f64(g0) * s).abs() <= T::from_f64(1e-5) * s);
            } else {
                assert!((g * r2).abs() <= T::from_f64(1e-5) * s);
            }
        }
    }
    check::<f64>();
    check::<f32>();
}

#[test]
fn schedule_covers_every_pair_once_with_disjoint_rounds() {
    for nt in 0..40 {
        let mut seen = vec![0u32; nt * nt];
        for r in 0..num_rounds(nt) {
            let mut busy = vec![false; nt];
            for (i, j) in round(nt, r) {
                assert!(i <= j && j < nt);
                seen[i * nt + j] += 1;
                assert!(!busy[i], "tile {i} twice in round {r}");
                busy[i] = true;
                if i != j {
                    assert!(!busy[j], "tile {j} twice in round {r}");
                    busy[j] = true;
                }
            }
        }
        for i in 0..nt {
            for j in 0..nt {
                assert_eq!(
                    seen[i * nt + j],
                    u32::from(i <= j),
                    "nt={nt} pair ({i},{j})"
                );
            }
        }
    }
}
