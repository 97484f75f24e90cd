//! Dense operators: a general column-major matrix and a symmetric matrix parametrised by its
//! lower triangle. Products use faer's kernels with `Par::Seq` (faer's own parallelism is slow
//! for these shapes on small machines, see the README).

use crate::error::{require_finite, require_len};
use crate::traits::{check_block_len, check_len};
use crate::{AdjointOperator, Operator, OperatorError, ParamVjp, Scalar, SelfAdjoint, SetParams};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

fn mat<T: Scalar>(s: &[T], m: usize, n: usize) -> MatRef<'_, T> {
    MatRef::from_column_major_slice(s, m, n)
}
fn mat_mut<T: Scalar>(s: &mut [T], m: usize, n: usize) -> MatMut<'_, T> {
    MatMut::from_column_major_slice_mut(s, m, n)
}

/// A dense `m×n` matrix stored column-major.
///
/// **Parameters:** the `m·n` entries in column-major order, `θ[i + j·m] = A[i, j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix<T: Scalar> {
    nrows: usize,
    ncols: usize,
    data: Vec<T>,
}

impl<T: Scalar> DenseMatrix<T> {
    /// From column-major entries. Errors on a length mismatch or non-finite entries.
    pub fn from_col_major(nrows: usize, ncols: usize, data: Vec<T>) -> Result<Self, OperatorError> {
        require_len("dense entries", data.len(), nrows * ncols)?;
        require_finite("dense entries", &data)?;
        Ok(Self { nrows, ncols, data })
    }

    /// From a function of `(i, j)`. Errors if a value is not finite.
    pub fn from_fn(
        nrows: usize,
        ncols: usize,
        mut f: impl FnMut(usize, usize) -> T,
    ) -> Result<Self, OperatorError> {
        let mut data = Vec::with_capacity(nrows * ncols);
        for j in 0..ncols {
            for i in 0..nrows {
                data.push(f(i, j));
            }
        }
        Self::from_col_major(nrows, ncols, data)
    }

    /// The `n×n` identity.
    pub fn identity(n: usize) -> Self {
        let mut data = vec![T::ZERO; n * n];
        for i in 0..n {
            data[i + i * n] = T::ONE;
        }
        Self {
            nrows: n,
            ncols: n,
            data,
        }
    }

    /// Entry `(i, j)`.
    ///
    /// # Panics
    /// If out of range.
    pub fn get(&self, i: usize, j: usize) -> T {
        assert!(
            i < self.nrows && j < self.ncols,
            "index ({i}, {j}) out of range"
        );
        self.data[i + j * self.nrows]
    }

    /// Column-major entries.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// Consumes the matrix and returns its column-major entries.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// A faer view of the matrix.
    pub fn as_faer(&self) -> MatRef<'_, T> {
        mat(&self.data, self.nrows, self.ncols)
    }
}

impl<T: Scalar> Operator<T> for DenseMatrix<T> {
    fn nrows(&self) -> usize {
        self.nrows
    }
    fn ncols(&self) -> usize {
        self.ncols
    }
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.apply_block(x, y, 1)
    }
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        check_block_len("DenseMatrix::apply_block", x.len(), self.ncols, k);
        check_block_len("DenseMatrix::apply_block", y.len(), self.nrows, k);
        matmul(
            mat_mut(y, self.nrows, k),
            Accum::Replace,
            self.as_faer(),
            mat(x, self.ncols, k),
            T::ONE,
            Par::Seq,
        );
    }
}

impl<T: Scalar> AdjointOperator<T> for DenseMatrix<T> {
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.apply_transpose_block(x, y, 1)
    }
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        check_block_len("DenseMatrix::apply_transpose_block", x.len(), self.nrows, k);
        check_block_len("DenseMatrix::apply_transpose_block", y.len(), self.ncols, k);
        matmul(
            mat_mut(y, self.ncols, k),
            Accum::Replace,
            self.as_faer().transpose(),
            mat(x, self.nrows, k),
            T::ONE,
            Par::Seq,
        );
    }
}

impl<T: Scalar> ParamVjp<T> for DenseMatrix<T> {
    /// `usize::MAX`: the block VJP is one GEMM over all pairs instead of `K` rank-one updates.
    fn vjp_block_size(&self) -> usize {
        usize::MAX
    }
    fn num_params(&self) -> usize {
        self.data.len()
    }
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    /// `grad += U Xᵀ` (one GEMM).
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        check_block_len("DenseMatrix::vjp_params_block", u.len(), self.nrows, k);
        check_block_len("DenseMatrix::vjp_params_block", x.len(), self.ncols, k);
        check_len(
            "DenseMatrix::vjp_params_block grad",
            grad.len(),
            self.data.len(),
        );
        matmul(
            mat_mut(grad, self.nrows, self.ncols),
            Accum::Add,
            mat(u, self.nrows, k),
            mat(x, self.ncols, k).transpose(),
            T::ONE,
            Par::Seq,
        );
    }
}

impl<T: Scalar> SetParams<T> for DenseMatrix<T> {
    fn params(&self, out: &mut [T]) {
        check_len("DenseMatrix::params", out.len(), self.data.len());
        out.copy_from_slice(&self.data);
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("DenseMatrix parameters", theta.len(), self.data.len())?;
        require_finite("DenseMatrix parameters", theta)?;
        self.data.copy_from_slice(theta);
        Ok(())
    }
}

/// A dense symmetric `n×n` matrix, stored in full (for fast products) and parametrised by its
/// lower triangle.
///
/// **Parameters:** the lower triangle `A[i, j]`, `i ≥ j`, column by column:
/// `θ = (A[0,0], A[1,0], …, A[n-1,0], A[1,1], A[2,1], …, A[n-1,n-1])`, `n(n+1)/2` values. An
/// off-diagonal parameter stands for both `A[i, j]` and `A[j, i]`, so its gradient is
/// `u_i x_j + u_j x_i`.
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetricDense<T: Scalar> {
    full: DenseMatrix<T>,
}

impl<T: Scalar> SymmetricDense<T> {
    /// From a full column-major matrix that must be exactly symmetric.
    pub fn from_col_major(n: usize, data: Vec<T>) -> Result<Self, OperatorError> {
        let full = DenseMatrix::from_col_major(n, n, data)?;
        for j in 0..n {
            for i in j + 1..n {
                let (a, b) = (full.data[i + j * n], full.data[j + i * n]);
                if a != b {
                    return Err(OperatorError::InvalidArgument(format!(
                        "matrix is not symmetric: A[{i},{j}] = {a:e} but A[{j},{i}] = {b:e}"
                    )));
                }
            }
        }
        Ok(Self { full })
    }

    /// From the lower triangle in the parameter layout above.
    pub fn from_lower(n: usize, lower: &[T]) -> Result<Self, OperatorError> {
        let mut s = Self {
            full: DenseMatrix {
                nrows: n,
                ncols: n,
                data: vec![T::ZERO; n * n],
            },
        };
        s.set_params(lower)?;
        Ok(s)
    }

    /// Dimension `n`.
    pub fn dim(&self) -> usize {
        self.full.nrows
    }

    /// The full matrix.
    pub fn as_dense(&self) -> &DenseMatrix<T> {
        &self.full
    }
}

impl<T: Scalar> Operator<T> for SymmetricDense<T> {
    fn nrows(&self) -> usize {
        self.full.nrows
    }
    fn ncols(&self) -> usize {
        self.full.ncols
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.full.apply(x, y)
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.full.apply_block(x, y, k)
    }
}

impl<T: Scalar> AdjointOperator<T> for SymmetricDense<T> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.full.apply(x, y)
    }
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.full.apply_block(x, y, k)
    }
}

impl<T: Scalar> SelfAdjoint<T> for SymmetricDense<T> {}

impl<T: Scalar> ParamVjp<T> for SymmetricDense<T> {
    /// `usize::MAX`: the block VJP is one GEMM over all pairs instead of `K` rank-one updates.
    fn vjp_block_size(&self) -> usize {
        usize::MAX
    }
    fn num_params(&self) -> usize {
        let n = self.dim();
        n * (n + 1) / 2
    }
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        let n = self.dim();
        check_block_len("SymmetricDense::vjp_params_block", u.len(), n, k);
        check_block_len("SymmetricDense::vjp_params_block", x.len(), n, k);
        check_len(
            "SymmetricDense::vjp_params_block grad",
            grad.len(),
            self.num_params(),
        );
        // G = U Xᵀ, then fold G + Gᵀ onto the lower triangle (diagonal once).
        let mut g = vec![T::ZERO; n * n];
        matmul(
            mat_mut(&mut g, n, n),
            Accum::Replace,
            mat(u, n, k),
            mat(x, n, k).transpose(),
            T::ONE,
            Par::Seq,
        );
        let mut p = 0;
        for j in 0..n {
            grad[p] += g[j + j * n];
            p += 1;
            for i in j + 1..n {
                grad[p] += g[i + j * n] + g[j + i * n];
                p += 1;
            }
        }
    }
}

impl<T: Scalar> SetParams<T> for SymmetricDense<T> {
    fn params(&self, out: &mut [T]) {
        let n = self.dim();
        check_len("SymmetricDense::params", out.len(), self.num_params());
        let mut p = 0;
        for j in 0..n {
            for i in j..n {
                out[p] = self.full.data[i + j * n];
                p += 1;
            }
        }
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        let n = self.dim();
        require_len("SymmetricDense parameters", theta.len(), n * (n + 1) / 2)?;
        require_finite("SymmetricDense parameters", theta)?;
        let mut p = 0;
        for j in 0..n {
            for i in j..n {
                self.full.data[i + j * n] = theta[p];
                self.full.data[j + i * n] = theta[p];
                p += 1;
            }
        }
        Ok(())
    }
}
