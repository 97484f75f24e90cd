//! The building blocks of the batched network arithmetic: a sequential faer GEMM, the fixed
//! block sizes of the parallel splits, and a pool of scratch buffers.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use gradmat_operators::Scalar;
use std::sync::Mutex;

/// `dst (+)= lhs · rhs` with faer on the calling thread (parallelism comes from the callers'
/// rayon splits: faer's own is slow for these shapes on two cores).
#[inline]
pub(crate) fn gemm<T: Scalar>(
    dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
) {
    matmul(dst, accum, lhs, rhs, T::ONE, Par::Seq);
}

/// Columns (data points) per parallel task: `N/8` clamped to `32..=1024` (large blocks keep
/// faer's packing of the weights rare; measured on the PDE's 500×500 layer over 16,384 points:
/// 1024 columns per block cut the forward pass from 0.12 s to 0.08 s against 256). A function of `N`
/// only, so the split — and every rounding — is the same for any thread count.
pub(crate) fn data_block(n: usize) -> usize {
    (n / 8).clamp(32, 1024)
}

/// Data points per partial sum of the weight gradients when there are many points (fixed).
pub(crate) fn data_chunk() -> usize {
    2048
}

/// Output units per task of the weight-gradient products: about eight tasks per layer, at
/// least 16 units each (a function of the width only).
pub(crate) fn unit_block(width: usize) -> usize {
    width.div_ceil(8).max(16)
}

/// A pool of scratch vectors: [`take`](Scratch::take) reuses a returned buffer when one is
/// large enough, so steady-state products do not allocate. Contents of a taken buffer are
/// unspecified (every user overwrites before reading).
pub(crate) struct Scratch<T> {
    pool: Mutex<Vec<Vec<T>>>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            pool: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Scalar> Scratch<T> {
    /// A buffer of length `len`.
    pub(crate) fn take(&self, len: usize) -> Vec<T> {
        let found = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            // The smallest buffer that is large enough, else the largest one (it grows).
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)
                .or_else(|| {
                    pool.iter()
                        .enumerate()
                        .max_by_key(|(_, v)| v.capacity())
                        .map(|(i, _)| i)
                });
            best.map(|i| pool.swap_remove(i))
        };
        let mut v = found.unwrap_or_default();
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, T::ZERO);
        }
        v
    }

    /// Returns a buffer to the pool.
    pub(crate) fn put(&self, v: Vec<T>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(v);
    }
}
