//! Deterministic, optionally parallel vector kernels (dot products, norms, axpy).
//!
//! Reductions split the vector into fixed chunks of [`CHUNK`] entries, independent of the number
//! of threads; each chunk is summed sequentially and the chunk sums are added in order. The result
//! for a given input is therefore bit-identical for any `RAYON_NUM_THREADS`, and parallelism
//! (above [`PAR_THRESHOLD`] entries) changes only the speed.

use crate::Scalar;
use rayon::prelude::*;

/// Chunk length of the deterministic reductions.
pub const CHUNK: usize = 8192;
/// Vectors at least this long are processed with rayon.
pub const PAR_THRESHOLD: usize = 65_536;

/// Runs `f` with the target features of the best instruction set of this CPU enabled (pulp's
/// run-time dispatch: AVX-512, AVX2 + FMA, or the baseline), so that the loops of
/// `#[inline(always)]` code called from `f` (mark the closure `#[inline(always)]` too) are
/// vectorised for that set. Results do not depend on the set as long as that code fixes its
/// order of operations (independent accumulators, sums in a fixed tree) and uses no `mul_add`:
/// Rust never contracts `a * b + c` into a fused multiply-add on its own.
#[inline(always)]
pub fn with_best_isa<R>(f: impl FnOnce() -> R) -> R {
    struct Inlined<F>(F);
    impl<R, F: FnOnce() -> R> pulp::NullaryFnOnce for Inlined<F> {
        type Output = R;
        #[inline(always)]
        fn call(self) -> R {
            (self.0)()
        }
    }
    pulp::Arch::new().dispatch(Inlined(f))
}

/// `xᵀy` of one chunk, sequentially: eight running sums added in a fixed tree, then the tail —
/// the operations [`dot`] applies to each of its chunks (so below its parallel threshold the
/// two give the same bits). Always inlined, so that a caller compiled for the best instruction
/// set ([`with_best_isa`]) gets it in that context. Lengths are not checked: the shorter slice
/// bounds the sum.
#[inline(always)]
pub fn dot_seq<T: Scalar>(x: &[T], y: &[T]) -> T {
    // Eight independent accumulators let the compiler vectorise and pipeline.
    let mut acc = [T::ZERO; 8];
    let xc = x.chunks_exact(8);
    let yc = y.chunks_exact(8);
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut tail = T::ZERO;
    for (a, b) in xr.iter().zip(yr) {
        tail += *a * *b;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `xᵀy`, deterministic for any thread count.
///
/// # Panics
/// If the lengths differ.
#[track_caller]
pub fn dot<T: Scalar>(x: &[T], y: &[T]) -> T {
    crate::traits::check_len("dot", y.len(), x.len());
    // Each chunk compiled for the best instruction set (a fixed order of operations: the same
    // bits on every set).
    let chunk = |a: &[T], b: &[T]| {
        with_best_isa(
            #[inline(always)]
            || dot_seq(a, b),
        )
    };
    if x.len() >= PAR_THRESHOLD {
        let partial: Vec<T> = x
            .par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .map(|(a, b)| chunk(a, b))
            .collect();
        partial.into_iter().fold(T::ZERO, |s, v| s + v)
    } else {
        x.chunks(CHUNK)
            .zip(y.chunks(CHUNK))
            .fold(T::ZERO, |s, (a, b)| s + chunk(a, b))
    }
}

/// Euclidean norm `‖x‖₂`, computed with scaling so that it neither overflows nor underflows for
/// finite input.
pub fn norm2<T: Scalar>(x: &[T]) -> T {
    let ss = dot(x, x);
    if ss.to_f64().is_nan() {
        // NaN anywhere: report it (the scaled fallback below would skip NaNs in its max).
        return ss;
    }
    if ss.is_finite() && ss > T::from_f64(1e-280_f64.max(T::EPS.to_f64().powi(8))) {
        return ss.sqrt();
    }
    // Scaled fallback for tiny or overflowing sums of squares.
    let scale = x.iter().fold(T::ZERO, |m, v| m.max(v.abs()));
    if scale == T::ZERO || !scale.is_finite() {
        return if scale.is_finite() { T::ZERO } else { scale };
    }
    // A subnormal largest entry has no finite reciprocal: scale the entries up by 1/ε (a power
    // of two, exact for entries this small) first, and the norm back down at the end.
    let up = if (T::ONE / scale).is_finite() {
        T::ONE
    } else {
        T::ONE / T::EPS
    };
    let inv = T::ONE / (scale * up);
    let s: T = x
        .chunks(CHUNK)
        .map(|c| {
            c.iter().fold(T::ZERO, |s, v| {
                let t = (*v * up) * inv;
                s + t * t
            })
        })
        .fold(T::ZERO, |s, v| s + v);
    (scale * up) * s.sqrt() / up
}

/// `y += alpha · x`.
///
/// # Panics
/// If the lengths differ.
#[track_caller]
pub fn axpy<T: Scalar>(alpha: T, x: &[T], y: &mut [T]) {
    crate::traits::check_len("axpy", x.len(), y.len());
    if y.len() >= PAR_THRESHOLD {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(yc, xc)| axpy_seq(alpha, xc, yc));
    } else {
        axpy_seq(alpha, x, y);
    }
}

#[inline]
fn axpy_seq<T: Scalar>(alpha: T, x: &[T], y: &mut [T]) {
    // Compiled for the best instruction set (no reduction, no fused multiply-add: same bits).
    with_best_isa(
        #[inline(always)]
        || {
            for (yi, xi) in y.iter_mut().zip(x) {
                *yi += alpha * *xi;
            }
        },
    )
}

/// `x *= alpha`.
pub fn scale<T: Scalar>(alpha: T, x: &mut [T]) {
    if x.len() >= PAR_THRESHOLD {
        x.par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v *= alpha));
    } else {
        x.iter_mut().for_each(|v| *v *= alpha);
    }
}

/// `true` if every entry is finite.
pub fn all_finite<T: Scalar>(x: &[T]) -> bool {
    x.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    #[test]
    fn norm2_of_subnormal_vectors() {
        // The fuzz finding: 1/‖v‖ was 0 for a subnormal start vector (1/max overflowed).
        let tiny = f64::from_bits(1); // 4.9e-324
        assert_eq!(super::norm2(&[tiny]).to_bits(), tiny.to_bits());
        assert_eq!(super::norm2(&[-tiny, 0.0]).to_bits(), tiny.to_bits());
        let v = [3.0 * tiny, 4.0 * tiny];
        assert_eq!(super::norm2(&v).to_bits(), (5.0 * tiny).to_bits());
        let t32 = f32::from_bits(1);
        assert_eq!(super::norm2(&[t32]).to_bits(), t32.to_bits());
        let big = f64::MAX / 2.0;
        assert!((super::norm2(&[big, 0.0]) / big - 1.0).abs() <= 2.0 * f64::EPSILON);
    }

    use super::*;

    #[test]
    fn dot_matches_naive_and_is_chunk_deterministic() {
        let n = 200_003;
        let x: Vec<f64> = (0..n)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
            .collect();
        let y: Vec<f64> = (0..n)
            .map(|i| ((i * 11 % 97) as f64 - 40.0) / 3.0)
            .collect();
        let naive: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        let d = dot(&x, &y);
        assert!((d - naive).abs() <= 1e-12 * naive.abs().max(1.0) * n as f64);
        // Same result on a one-thread pool (determinism across thread counts).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let d1 = pool.install(|| dot(&x, &y));
        assert_eq!(d.to_bits(), d1.to_bits());
    }

    #[test]
    fn norm_is_scaled() {
        let x = [3e200_f64, 4e200];
        assert!((norm2(&x) / 5e200 - 1.0).abs() < 1e-15);
        let y = [3e-200_f64, 4e-200];
        assert!((norm2(&y) / 5e-200 - 1.0).abs() < 1e-15);
        assert_eq!(norm2::<f64>(&[0.0, 0.0]).to_bits(), 0f64.to_bits());
        assert!(norm2(&[f64::NAN, 1.0]).is_nan());
        assert!(norm2(&[f64::NAN, f64::NAN]).is_nan());
    }
}
