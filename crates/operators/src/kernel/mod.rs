//! Matrix-free kernel matrices `K_ij = k(x_i, x_j)` for squared-exponential and Matérn kernels
//! with ARD lengthscales.
//!
//! The `n×n` matrix is never stored: products evaluate it tile by tile in an explicit-SIMD
//! engine, with `O(n·d + n·k)` memory (packed copies of the scaled inputs and of the vectors)
//! plus `O(tile·(d + k))` per task.
//!
//! # The engine
//! * **Instruction sets.** Tile kernels are written once over `pulp`'s safe SIMD API (no
//!   `unsafe`) and compiled for three [`SimdLevel`]s chosen at run time: AVX-512 (8 `f64` / 16
//!   `f32` lanes), AVX2 + FMA (4 / 8) and a one-lane scalar fallback (the only level off
//!   x86-64). The best supported level is the default;
//!   [`KernelMatrix::with_simd_level`] pins another.
//! * **Symmetric tiles.** Points are split into tiles of [`DEFAULT_TILE`] points; every tile pair
//!   `I < J` is evaluated **once** and applied to both triangles (`y_I += K_IJ x_J`,
//!   `y_J += K_IJᵀ x_I`), diagonal tiles in full, so a product evaluates `n(n + tile)/2` kernel
//!   values instead of `n²`. Block products ([`apply_block`](crate::Operator::apply_block))
//!   evaluate each tile once for all `k` columns; the block parameter VJP
//!   ([`vjp_params_block`](crate::ParamVjp::vjp_params_block)) and the fused
//!   [`apply_and_vjp_params`](crate::ParamVjp::apply_and_vjp_params) evaluate each value and
//!   derivative once for all column pairs (weights `W_ij = Σ_c u_ic x_jc + x_ic u_jc`).
//! * **Distances.** Squared scaled distances are formed by direct differences
//!   `Σ_a (x_ia/ℓ_a − x_ja/ℓ_a)²` (not the `|a|² + |b|² − 2a·b` expansion, which loses all
//!   accuracy for nearby points), so coincident points give exactly `r = 0`, where the kernels'
//!   derivatives `dk/d(r²)` are taken in closed form (finite for every kernel; for Matérn-1/2,
//!   whose derivative is singular, the product with the zero differences is returned as `0`).
//! * **Elementary functions.** `exp` is a branch-free vector implementation (Cody–Waite
//!   reduction, Chebyshev polynomial, exponent bits) with **maximum error 1 ulp** in `f64` and in
//!   `f32` over the whole normal range (measured against `std` in the tests), exactly `1` at 0, and
//!   `0` where `e^x` would be subnormal (`x < −708.39` in `f64`, `x < −87.33` in `f32`: absolute
//!   error below the smallest normal number). `sqrt` is the IEEE instruction (correctly
//!   rounded, 0.5 ulp) on every level. No fast-math: no reassociation beyond the fixed orders
//!   below, no flush-to-zero, no approximate reciprocals.
//! * **Determinism.** Tile pairs are processed in the rounds of a round-robin (circle method)
//!   schedule: the pairs of one round touch disjoint output tiles and run in parallel, rounds
//!   run in order, and gradient partials are added in round and task order. For a given
//!   [`SimdLevel`] and tile size, results are **bit-identical for every number of threads**.
//! * **Rounding.** From the same scaled inputs, each kernel value and derivative carries a
//!   relative error of at most `γ·ε` with `γ = (d + 4)·ρ + 8`, where `ρ` is the magnitude of the
//!   `exp` argument (`r²/2` for SE, `r`, `√3 r`, `√5 r` for the Matérn kernels): the squared
//!   distance has `(d + 2)ε` relative error, which the argument inherits, plus `exp`'s ulp and a
//!   few roundings. A product entry sums `n` terms in a chain of at most `n + 8` roundings, so
//!   `|ŷ_i − y_i| ≤ ε·Σ_j (γ_ij + n + 8)·|K_ij x_j|`; a gradient sum adds `2k` roundings for the
//!   weights and `tile + nt(nt + 1)/2 + 8` for its accumulation chain (`nt` tiles). The tests
//!   check exactly these bounds (times 2 for the reference's own rounding) on every level.
//!   Results of different levels, tile sizes, or of the previous scalar implementation (which
//!   used the same direct differences and a Taylor `exp` within a few ulp) differ by no more
//!   than the sum of two such bounds.
//!
//! ```
//! use gradmat_operators::kernel::{KernelKind, KernelMatrix};
//! use gradmat_operators::{Operator, SetParams};
//!
//! // Three points in 2-D, Matérn-3/2 with lengthscales (1, 2) and scale 1.5.
//! let x = vec![0.0, 0.0, 1.0, 0.0, 0.0, 2.0];
//! let k = KernelMatrix::new(KernelKind::Matern32, 3, 2, x, vec![1.0, 2.0], 1.5).unwrap();
//! let mut y = [0.0f64; 3];
//! k.apply(&[1.0, 0.0, 0.0], &mut y); // first column
//! assert!((y[0] - 1.5).abs() < 1e-15);
//! // θ = (ℓ_0, ℓ_1, s)
//! assert_eq!(k.params_vec(), vec![1.0, 2.0, 1.5]);
//! ```

// The engine is safe code on pulp's token API; keep it that way.
#![forbid(unsafe_code)]

mod engine;
pub(crate) mod simd;
#[cfg(test)]
mod tests;

pub use simd::SimdLevel;

use crate::dense::DenseMatrix;
use crate::error::{require_finite, require_len};
use crate::traits::{check_block_len, check_len};
use crate::{
    AdjointOperator, ColumnAccess, Operator, OperatorError, ParamVjp, Scalar, SelfAdjoint,
    SetParams,
};
use engine::Engine;
use rayon::prelude::*;

/// Default number of points per tile (rows and columns).
pub const DEFAULT_TILE: usize = 128;

/// The stationary kernel `k(r)` as a function of the scaled distance
/// `r² = Σ_d (x_d − x'_d)²/ℓ_d²`, with output scale `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// Squared exponential `s·exp(−r²/2)`.
    SquaredExponential,
    /// Matérn ν = 1/2 (exponential) `s·exp(−r)`.
    Matern12,
    /// Matérn ν = 3/2 `s·(1 + √3 r)·exp(−√3 r)`.
    Matern32,
    /// Matérn ν = 5/2 `s·(1 + √5 r + 5r²/3)·exp(−√5 r)`.
    Matern52,
}

impl KernelKind {
    /// All kernels, in declaration order.
    pub const ALL: [KernelKind; 4] = [
        KernelKind::SquaredExponential,
        KernelKind::Matern12,
        KernelKind::Matern32,
        KernelKind::Matern52,
    ];

    /// Short name (`"se"`, `"matern12"`, `"matern32"`, `"matern52"`).
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::SquaredExponential => "se",
            KernelKind::Matern12 => "matern12",
            KernelKind::Matern32 => "matern32",
            KernelKind::Matern52 => "matern52",
        }
    }

    /// The kernel value `k` at squared scaled distance `r2 ≥ 0` with scale `s`.
    #[inline]
    pub fn value<T: Scalar>(self, r2: T, s: T) -> T {
        self.value_and_derivative(r2, s).0
    }

    /// The value `k` and the derivative `g = dk/d(r²)` at squared scaled distance `r2 ≥ 0`
    /// (the engine's formulas and `exp`, one lane).
    ///
    /// For Matérn-1/2 the derivative `−s·e^{−r}/(2r)` is singular at `r = 0`; there it is
    /// returned as `0`, which is the correct value of every product `g·Δ_d²` it enters (all
    /// `Δ_d` vanish when `r = 0`). The other kernels' derivatives are finite at `r = 0` and
    /// returned in closed form (`−s/2`, `−3s/2`, `−5s/6`).
    #[inline]
    pub fn value_and_derivative<T: Scalar>(self, r2: T, s: T) -> (T, T) {
        engine::eval_scalar(self, r2, s)
    }
}

/// A matrix-free kernel matrix `K_ij = k(x_i, x_j)` over `n` points in `d` dimensions.
///
/// **Parameters:** `θ = (ℓ_0, …, ℓ_{d−1}, s)`, `d + 1` values: the ARD lengthscales (one per
/// input dimension) followed by the output scale, as the actual positive values (no log or
/// softplus reparametrisation; apply your own chain rule). [`SetParams::set_params`] rejects
/// non-positive and non-finite values. The derivatives are
/// `∂K_ij/∂ℓ_d = g(r²_ij)·(−2 Δ_d²/ℓ_d³)` with `Δ_d = x_{i,d} − x_{j,d}` and `g = dk/d(r²)`, and
/// `∂K_ij/∂s = K_ij/s`.
///
/// Inputs are stored row-major (`x[i·d + a]` is coordinate `a` of point `i`). The scaled inputs
/// `x/ℓ` are precomputed whenever the parameters change, and the engine (see the
/// [module docs](self)) forms squared distances from their direct differences.
///
/// The matrix is symmetric for every parameter value and its diagonal is `s`.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelMatrix<T: Scalar> {
    kind: KernelKind,
    n: usize,
    d: usize,
    x: Vec<T>,
    lengthscales: Vec<T>,
    scale: T,
    /// Scaled inputs, row-major: `z[i·d + a] = x[i·d + a] / ℓ_a`.
    z: Vec<T>,
    tile: usize,
    level: SimdLevel,
}

impl<T: Scalar> KernelMatrix<T> {
    /// A kernel matrix over `n` points in `d ≥ 1` dimensions (`inputs` row-major `n×d`), with one
    /// lengthscale per dimension and output scale `scale`.
    ///
    /// Errors: [`OperatorError::DimensionMismatch`] for wrong lengths,
    /// [`OperatorError::NonFinite`] for non-finite inputs, [`OperatorError::InvalidParameter`] for
    /// non-positive or non-finite lengthscales or scale, [`OperatorError::InvalidArgument`] for
    /// `d = 0`.
    pub fn new(
        kind: KernelKind,
        n: usize,
        d: usize,
        inputs: Vec<T>,
        lengthscales: Vec<T>,
        scale: T,
    ) -> Result<Self, OperatorError> {
        if d == 0 {
            return Err(OperatorError::InvalidArgument(
                "kernel inputs need at least one dimension".into(),
            ));
        }
        let nd = n.checked_mul(d).ok_or_else(|| {
            OperatorError::InvalidArgument(format!("{n}×{d} inputs overflow usize"))
        })?;
        require_len("kernel inputs", inputs.len(), nd)?;
        require_finite("kernel inputs", &inputs)?;
        require_len("kernel lengthscales", lengthscales.len(), d)?;
        let mut k = Self {
            kind,
            n,
            d,
            x: inputs,
            lengthscales: vec![T::ONE; d],
            scale: T::ONE,
            z: Vec::new(),
            tile: DEFAULT_TILE,
            level: SimdLevel::best(),
        };
        let mut theta = lengthscales;
        theta.push(scale);
        k.set_params(&theta)?;
        Ok(k)
    }

    /// Like [`new`](Self::new) with one lengthscale shared by all dimensions (it is repeated
    /// `d` times, so the parameter vector still has `d + 1` entries).
    pub fn isotropic(
        kind: KernelKind,
        n: usize,
        d: usize,
        inputs: Vec<T>,
        lengthscale: T,
        scale: T,
    ) -> Result<Self, OperatorError> {
        Self::new(kind, n, d, inputs, vec![lengthscale; d], scale)
    }

    /// Sets the tile size (points per row and column tile; default [`DEFAULT_TILE`]). Results
    /// depend on the tile size only through rounding. Errors if `tile == 0`.
    pub fn with_tile_size(mut self, tile: usize) -> Result<Self, OperatorError> {
        if tile == 0 {
            return Err(OperatorError::InvalidArgument(
                "kernel tile size must be positive".into(),
            ));
        }
        self.tile = tile;
        Ok(self)
    }

    /// The tile size.
    pub fn tile_size(&self) -> usize {
        self.tile
    }

    /// Sets the instruction set of the products (default [`SimdLevel::best`]). Results depend on
    /// the level only through rounding; pinning it makes them bit-reproducible on every machine
    /// that supports it. Errors with [`OperatorError::InvalidArgument`] if this CPU does not
    /// support `level`.
    pub fn with_simd_level(mut self, level: SimdLevel) -> Result<Self, OperatorError> {
        if !level.is_supported() {
            return Err(OperatorError::InvalidArgument(format!(
                "SIMD level {} is not supported by this CPU (best: {})",
                level.name(),
                SimdLevel::best().name()
            )));
        }
        self.level = level;
        Ok(self)
    }

    /// The instruction set of the products.
    pub fn simd_level(&self) -> SimdLevel {
        self.level
    }

    /// The kernel.
    pub fn kind(&self) -> KernelKind {
        self.kind
    }

    /// Number of points `n`.
    pub fn num_points(&self) -> usize {
        self.n
    }

    /// Input dimension `d`.
    pub fn input_dim(&self) -> usize {
        self.d
    }

    /// The inputs, row-major `n×d`.
    pub fn inputs(&self) -> &[T] {
        &self.x
    }

    /// The lengthscales `ℓ`.
    pub fn lengthscales(&self) -> &[T] {
        &self.lengthscales
    }

    /// The output scale `s`.
    pub fn scale(&self) -> T {
        self.scale
    }

    /// The kernel value `k(a, b)` between two points of dimension `d` (not necessarily among
    /// the inputs), with the current parameters: the engine's formula (scaled coordinates,
    /// direct differences) on one lane. `O(d)`.
    ///
    /// # Panics
    /// If `a.len() != d` or `b.len() != d`.
    #[track_caller]
    pub fn kernel(&self, a: &[T], b: &[T]) -> T {
        check_len("KernelMatrix::kernel a", a.len(), self.d);
        check_len("KernelMatrix::kernel b", b.len(), self.d);
        let mut r2 = T::ZERO;
        for ((p, q), l) in a.iter().zip(b).zip(&self.lengthscales) {
            let t = *p / *l - *q / *l;
            r2 += t * t;
        }
        self.kind.value(r2, self.scale)
    }

    /// Cross-kernel product `out = K(Z, X) v` for `m` new points `Z` (row-major `m×d`) against
    /// the inputs `X`, e.g. a Gaussian-process predictive mean. `O(m·n·d)` time, no `m×n`
    /// storage; parallel over tiles of new points and deterministic.
    ///
    /// Errors on length mismatches or non-finite points.
    pub fn cross_apply(
        &self,
        points: &[T],
        m: usize,
        v: &[T],
        out: &mut [T],
    ) -> Result<(), OperatorError> {
        require_len("cross_apply points", points.len(), m * self.d)?;
        require_finite("cross_apply points", points)?;
        require_len("cross_apply vector", v.len(), self.n)?;
        require_len("cross_apply output", out.len(), m)?;
        if m == 0 {
            return Ok(());
        }
        if self.n == 0 {
            out.fill(T::ZERO);
            return Ok(());
        }
        let d = self.d;
        let q: Vec<T> = points
            .iter()
            .enumerate()
            .map(|(i, p)| *p / self.lengthscales[i % d])
            .collect();
        self.engine().cross(&q, m, v, out);
        Ok(())
    }

    /// The cross-kernel matrix `K(X, Z)` (`n × m`, column-major: column `j` holds
    /// `k(x_i, z_j)`) for `m` new points `Z` (row-major `m×d`): the columns of a Gaussian-process
    /// prediction block. **`O(n·m)` memory**; parallel over columns, each entry by the formula of
    /// [`kernel`](Self::kernel) (deterministic).
    ///
    /// Errors on length mismatches or non-finite points.
    pub fn cross_matrix(&self, points: &[T], m: usize) -> Result<Vec<T>, OperatorError> {
        require_len("cross_matrix points", points.len(), m * self.d)?;
        require_finite("cross_matrix points", points)?;
        let (n, d) = (self.n, self.d);
        let mut out = vec![T::ZERO; n * m];
        if n == 0 {
            return Ok(out);
        }
        out.par_chunks_mut(n).enumerate().for_each(|(j, col)| {
            let z = &points[j * d..(j + 1) * d];
            for (i, o) in col.iter_mut().enumerate() {
                *o = self.kernel(&self.x[i * d..(i + 1) * d], z);
            }
        });
        Ok(out)
    }

    /// The explicit dense `n×n` matrix. **`O(n²)` memory and time**: for tests, small problems
    /// and the exact (Cholesky) Gaussian-process mode only. Column `j` is bit-identical to
    /// [`column`](ColumnAccess::column)`(j)`, and the matrix is bitwise symmetric. Errors only if
    /// an entry is not finite (overflow for extreme parameters).
    pub fn to_dense(&self) -> Result<DenseMatrix<T>, OperatorError> {
        let n = self.n;
        let mut data = vec![T::ZERO; n * n];
        if n > 0 {
            self.engine().columns(0, &mut data);
        }
        DenseMatrix::from_col_major(n, n, data)
    }

    pub(crate) fn engine(&self) -> Engine<'_, T> {
        Engine {
            kind: self.kind,
            n: self.n,
            d: self.d,
            tile: self.tile,
            scale: self.scale,
            level: self.level,
            z: &self.z,
        }
    }

    /// `grad += (−2/ℓ_a·Σ W g Δ_a², Σ W k / s)` from the engine's sums.
    pub(crate) fn add_gradient(&self, sums: &[T], grad: &mut [T]) {
        let d = self.d;
        let two = T::from_f64(2.0);
        for a in 0..d {
            grad[a] += -two / self.lengthscales[a] * sums[a];
        }
        grad[d] += sums[d] / self.scale;
    }
}

impl<T: Scalar> Operator<T> for KernelMatrix<T> {
    fn nrows(&self) -> usize {
        self.n
    }
    fn ncols(&self) -> usize {
        self.n
    }
    /// `y = K x`.
    ///
    /// # Panics
    /// If `x.len() != n` or `y.len() != n`.
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        check_len("KernelMatrix::apply x", x.len(), self.n);
        check_len("KernelMatrix::apply y", y.len(), self.n);
        self.apply_block(x, y, 1)
    }
    /// `Y = K X` evaluating each symmetric tile pair once for all `k` columns and both
    /// triangles.
    ///
    /// # Panics
    /// If `x.len() != n·k` or `y.len() != n·k`.
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        let n = self.n;
        check_block_len("KernelMatrix::apply_block x", x.len(), n, k);
        check_block_len("KernelMatrix::apply_block y", y.len(), n, k);
        if n == 0 || k == 0 {
            return;
        }
        self.engine().apply(x, y, k);
    }
}

impl<T: Scalar> AdjointOperator<T> for KernelMatrix<T> {
    /// Same as [`apply`](Operator::apply) (`K` is symmetric).
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.apply(x, y)
    }
    /// Same as [`apply_block`](Operator::apply_block).
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.apply_block(x, y, k)
    }
}

impl<T: Scalar> SelfAdjoint<T> for KernelMatrix<T> {}

impl<T: Scalar> ParamVjp<T> for KernelMatrix<T> {
    /// `usize::MAX`: the fused block VJP evaluates each value and derivative once for all
    /// column pairs, so one call over `K` pairs costs far less than `K` single calls.
    fn vjp_block_size(&self) -> usize {
        usize::MAX
    }
    /// `d + 1`.
    fn num_params(&self) -> usize {
        self.d + 1
    }
    /// Accumulates `grad += Σ_ij u_i x_j ∂K_ij/∂θ`.
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    /// Accumulates `grad += Σ_c Σ_ij u_ic x_jc ∂K_ij/∂θ`: each symmetric tile pair `(I, J)`,
    /// `I ≤ J`, is evaluated once, with the weights `W_ij = Σ_c u_ic x_jc + x_ic u_jc` (only
    /// `u_ic x_jc` on diagonal tiles) formed on the fly for all `k` pairs. Partial sums are added
    /// in schedule order (deterministic).
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        let (n, d) = (self.n, self.d);
        check_block_len("KernelMatrix::vjp_params_block u", u.len(), n, k);
        check_block_len("KernelMatrix::vjp_params_block x", x.len(), n, k);
        check_len("KernelMatrix::vjp_params_block grad", grad.len(), d + 1);
        if n == 0 || k == 0 {
            return;
        }
        let sums = self.engine().vjp(u, x, k);
        self.add_gradient(&sums, grad);
    }
    /// `y = K x` and `grad += ∇θ ⟨u, K x⟩` in one pass over the tile pairs (each value and
    /// derivative evaluated once for both).
    ///
    /// # Panics
    /// On length mismatches.
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        let (n, d) = (self.n, self.d);
        check_len("KernelMatrix::apply_and_vjp_params x", x.len(), n);
        check_len("KernelMatrix::apply_and_vjp_params y", y.len(), n);
        check_len("KernelMatrix::apply_and_vjp_params u", u.len(), n);
        check_len("KernelMatrix::apply_and_vjp_params grad", grad.len(), d + 1);
        if n == 0 {
            return;
        }
        let sums = self.engine().apply_vjp(x, y, u, 1);
        self.add_gradient(&sums, grad);
    }
}

impl<T: Scalar> SetParams<T> for KernelMatrix<T> {
    /// `(ℓ_0, …, ℓ_{d−1}, s)`.
    ///
    /// # Panics
    /// If `out.len() != d + 1`.
    #[track_caller]
    fn params(&self, out: &mut [T]) {
        check_len("KernelMatrix::params", out.len(), self.d + 1);
        out[..self.d].copy_from_slice(&self.lengthscales);
        out[self.d] = self.scale;
    }
    /// Replaces `θ = (ℓ_0, …, ℓ_{d−1}, s)` and recomputes the scaled inputs. Errors with
    /// [`OperatorError::InvalidParameter`] for a non-finite or non-positive value, or when the
    /// scaled inputs `x/ℓ` overflow; the operator is unchanged on error.
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        let d = self.d;
        require_len("KernelMatrix parameters", theta.len(), d + 1)?;
        for (index, v) in theta.iter().enumerate() {
            if !v.is_finite() || *v <= T::ZERO {
                let name = if index < d {
                    format!("lengthscale[{index}]")
                } else {
                    "scale".to_string()
                };
                return Err(OperatorError::InvalidParameter {
                    index,
                    name,
                    reason: format!("must be positive and finite, got {v:e}"),
                });
            }
        }
        let z: Vec<T> = self
            .x
            .par_iter()
            .enumerate()
            .map(|(i, v)| *v / theta[i % d])
            .collect();
        if let Some(i) = z.iter().position(|v| !v.is_finite()) {
            let a = i % d;
            return Err(OperatorError::InvalidParameter {
                index: a,
                name: format!("lengthscale[{a}]"),
                reason: format!("inputs divided by {:e} overflow", theta[a]),
            });
        }
        self.z = z;
        self.lengthscales.copy_from_slice(&theta[..d]);
        self.scale = theta[d];
        Ok(())
    }
}

impl<T: Scalar> ColumnAccess<T> for KernelMatrix<T> {
    /// Writes `s` everywhere (`k(x, x) = s` for all these kernels).
    ///
    /// # Panics
    /// If `out.len() != n`.
    #[track_caller]
    fn diagonal(&self, out: &mut [T]) {
        check_len("KernelMatrix::diagonal", out.len(), self.n);
        out.fill(self.scale);
    }
    /// Writes column `j`, `k(x_i, x_j)` for all `i`, in `O(n·d)`.
    ///
    /// # Panics
    /// If `out.len() != n` or `j ≥ n`.
    #[track_caller]
    fn column(&self, j: usize, out: &mut [T]) {
        check_len("KernelMatrix::column", out.len(), self.n);
        assert!(
            j < self.n,
            "KernelMatrix::column: index {j} out of range for n = {}",
            self.n
        );
        self.engine().columns(j, out);
    }
}
