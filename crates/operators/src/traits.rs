//! The operator traits: narrow capabilities an algorithm asks for one at a time.
//!
//! | trait | what it promises | who needs it |
//! |---|---|---|
//! | [`Operator`] | `y = A x` (and a block form) | every Krylov method |
//! | [`AdjointOperator`] | `y = Aᵀ x` (and a block form) | Arnoldi adjoint, Golub–Kahan |
//! | [`SelfAdjoint`] | `A = Aᵀ` for every parameter value | Lanczos and its adjoint |
//! | [`ParamVjp`] | `∇θ ⟨u, A(θ) x⟩`, accumulated | every parameter gradient |
//! | [`SetParams`] | replace θ | optimisers |
//!
//! Blocks of vectors are column-major contiguous slices: a block of `k` vectors of length `n` is a
//! slice of length `n·k` whose column `c` is `x[c*n..(c+1)*n]`.
//!
//! All traits are object safe (`&dyn Operator<f64>` works) and have forwarding implementations
//! for `&A`, `&mut A`, `Box<A>` and `Arc<A>`.

use crate::{OperatorError, Scalar};
use std::sync::Arc;

/// A linear map `A: Tⁿ → Tᵐ` touched only through products with vectors.
///
/// # Panics
/// Implementations may panic (with both lengths in the message) when slice lengths do not match
/// [`nrows`](Operator::nrows)/[`ncols`](Operator::ncols): the hot path does not return `Result`.
/// Algorithms in gradmat validate dimensions once at their entry point and return typed errors.
pub trait Operator<T: Scalar>: Send + Sync {
    /// Number of rows `m` (length of `A x`).
    fn nrows(&self) -> usize;
    /// Number of columns `n` (length of `x`).
    fn ncols(&self) -> usize;
    /// Writes `y = A x`, overwriting `y`. `x.len() == ncols()`, `y.len() == nrows()`.
    fn apply(&self, x: &[T], y: &mut [T]);
    /// Writes `Y = A X` for a column-major block of `k` vectors (`x.len() == ncols()·k`,
    /// `y.len() == nrows()·k`). The default applies column by column; implementations override
    /// it when one pass over the operator can serve all columns (SpMM, kernel tiles).
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        let (m, n) = (self.nrows(), self.ncols());
        check_block_len("apply_block", x.len(), n, k);
        check_block_len("apply_block", y.len(), m, k);
        for c in 0..k {
            self.apply(&x[c * n..(c + 1) * n], &mut y[c * m..(c + 1) * m]);
        }
    }
}

/// An operator whose transpose can also be applied.
pub trait AdjointOperator<T: Scalar>: Operator<T> {
    /// Writes `y = Aᵀ x`, overwriting `y`. `x.len() == nrows()`, `y.len() == ncols()`.
    fn apply_transpose(&self, x: &[T], y: &mut [T]);
    /// Block form of [`apply_transpose`](AdjointOperator::apply_transpose); the default loops over
    /// columns.
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        let (m, n) = (self.nrows(), self.ncols());
        check_block_len("apply_transpose_block", x.len(), m, k);
        check_block_len("apply_transpose_block", y.len(), n, k);
        for c in 0..k {
            self.apply_transpose(&x[c * m..(c + 1) * m], &mut y[c * n..(c + 1) * n]);
        }
    }
}

/// A promise that the operator is square and symmetric (`A = Aᵀ`) **for every value of its
/// parameters**, which is what Lanczos and its adjoint rely on. Implementing it for an operator
/// that is not symmetric gives silently wrong results; `testing::check_self_adjoint` tests it.
pub trait SelfAdjoint<T: Scalar>: Operator<T> {}

/// Vector–Jacobian products with respect to the operator's own parameters `θ`.
///
/// Each implementation documents its parameter layout: which entry of the flat vector `θ` means
/// what. This trait is the only thing `gradmat-adjoint` needs from an operator to produce
/// parameter gradients.
pub trait ParamVjp<T: Scalar>: Operator<T> {
    /// Number of parameters `p`.
    fn num_params(&self) -> usize;
    /// **Accumulates** `grad += ∇θ ⟨u, A(θ) x⟩` (`u.len() == nrows()`, `x.len() == ncols()`,
    /// `grad.len() == num_params()`).
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]);
    /// **Accumulates** `grad += Σ_c ∇θ ⟨u_c, A(θ) x_c⟩` over the `k` column pairs of two
    /// column-major blocks. The default loops over columns; implementations override it to fuse
    /// work (one pass over a sparsity pattern or kernel tiles for all pairs).
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        let (m, n) = (self.nrows(), self.ncols());
        check_block_len("vjp_params_block", u.len(), m, k);
        check_block_len("vjp_params_block", x.len(), n, k);
        for c in 0..k {
            self.vjp_params(&u[c * m..(c + 1) * m], &x[c * n..(c + 1) * n], grad);
        }
    }
    /// Writes `y = A x` and **accumulates** `grad += ∇θ ⟨u, A(θ) x⟩` in one call. The default
    /// applies and then calls [`vjp_params`](ParamVjp::vjp_params); operators override it to do
    /// both in one pass over their data (the Lanczos adjoint needs exactly this pair at every
    /// backward step).
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        self.apply(x, y);
        self.vjp_params(u, x, grad);
    }
    /// The one performance hint of a parameter VJP: how many column pairs one
    /// [`vjp_params_block`](ParamVjp::vjp_params_block) call should take.
    ///
    /// * `1` (the default): a block call is no cheaper per pair than single calls. Adjoints in
    ///   `Auto` mode then accumulate per step, fused into the step's matvec with
    ///   [`apply_and_vjp_params`](ParamVjp::apply_and_vjp_params), and store no adjoint
    ///   vectors for the parameter gradient.
    /// * `b > 1`: one call over `b` pairs costs far less than `b` single calls (sparse matrices
    ///   stream their pattern once per group of 8 columns and return 8; dense matrices make one
    ///   GEMM). Adjoints in `Auto` mode keep the adjoint vectors and flush them in calls of at
    ///   most `b` pairs, so their extra memory is `N·min(K, b)`.
    /// * `usize::MAX`: one call for all pairs (kernel matrices evaluate their tiles once per
    ///   call).
    ///
    /// Wrappers forward it (a sum or product takes the larger of its parts').
    fn vjp_block_size(&self) -> usize {
        1
    }
}

/// Reading and replacing an operator's parameters `θ` (in the layout its [`ParamVjp`]
/// documents).
///
/// Kept apart from [`ParamVjp`] because replacing needs `&mut self`: gradients can be taken
/// through shared references (`&A`, `Arc<A>`), while replacing θ needs ownership or a unique
/// borrow (reading through a shared reference works by auto-deref: `(*op).params_vec()`).
pub trait SetParams<T: Scalar>: ParamVjp<T> {
    /// Writes the current parameter vector into `out` (`out.len() == num_params()`).
    fn params(&self, out: &mut [T]);
    /// The current parameters as a new vector.
    fn params_vec(&self) -> Vec<T> {
        let mut out = vec![T::ZERO; self.num_params()];
        self.params(&mut out);
        out
    }
    /// Replaces θ. Errors on a length mismatch or on values the operator cannot accept
    /// (non-finite, or outside a documented domain); the operator is unchanged on error.
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError>;
}

/// Access to single entries of the matrix behind an operator: its diagonal and single columns.
/// Kernel matrices implement it cheaply (O(n·d) per column); the pivoted partial Cholesky
/// preconditioner of `gradmat-krylov` needs nothing else.
pub trait ColumnAccess<T: Scalar>: Operator<T> {
    /// Writes the diagonal `A[i, i]` into `out` (`out.len() == min(nrows, ncols)`).
    fn diagonal(&self, out: &mut [T]);
    /// Writes column `j` into `out` (`out.len() == nrows()`).
    fn column(&self, j: usize, out: &mut [T]);
}

#[track_caller]
#[inline]
pub(crate) fn check_block_len(what: &str, len: usize, n: usize, k: usize) {
    assert!(
        len == n * k,
        "{what}: block slice has length {len}, expected {n}·{k} = {}",
        n * k
    );
}

/// Panics with both lengths when `got != expected` (the documented `# Panics` of `apply`).
#[track_caller]
#[inline]
pub fn check_len(what: &str, got: usize, expected: usize) {
    assert!(
        got == expected,
        "{what}: slice has length {got}, expected {expected}"
    );
}

macro_rules! forward_impls {
    ($($ptr:ty),*) => {$(
        impl<T: Scalar, A: Operator<T> + ?Sized> Operator<T> for $ptr {
            #[inline]
            fn nrows(&self) -> usize { (**self).nrows() }
            #[inline]
            fn ncols(&self) -> usize { (**self).ncols() }
            #[inline]
            fn apply(&self, x: &[T], y: &mut [T]) { (**self).apply(x, y) }
            #[inline]
            fn apply_block(&self, x: &[T], y: &mut [T], k: usize) { (**self).apply_block(x, y, k) }
        }
        impl<T: Scalar, A: AdjointOperator<T> + ?Sized> AdjointOperator<T> for $ptr {
            #[inline]
            fn apply_transpose(&self, x: &[T], y: &mut [T]) { (**self).apply_transpose(x, y) }
            #[inline]
            fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
                (**self).apply_transpose_block(x, y, k)
            }
        }
        impl<T: Scalar, A: SelfAdjoint<T> + ?Sized> SelfAdjoint<T> for $ptr {}
        impl<T: Scalar, A: ParamVjp<T> + ?Sized> ParamVjp<T> for $ptr {
            #[inline]
            fn num_params(&self) -> usize { (**self).num_params() }
            #[inline]
            fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) { (**self).vjp_params(u, x, grad) }
            #[inline]
            fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
                (**self).vjp_params_block(u, x, k, grad)
            }
            #[inline]
            fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
                (**self).apply_and_vjp_params(x, y, u, grad)
            }
            #[inline]
            fn vjp_block_size(&self) -> usize {
                (**self).vjp_block_size()
            }
        }
    )*};
}

forward_impls!(&A, &mut A, Box<A>, Arc<A>);

macro_rules! forward_column_access {
    ($($ptr:ty),*) => {$(
        impl<T: Scalar, A: ColumnAccess<T> + ?Sized> ColumnAccess<T> for $ptr {
            fn diagonal(&self, out: &mut [T]) { (**self).diagonal(out) }
            fn column(&self, j: usize, out: &mut [T]) { (**self).column(j, out) }
        }
    )*};
}

forward_column_access!(&A, &mut A, Box<A>, Arc<A>);

impl<T: Scalar, A: SetParams<T> + ?Sized> SetParams<T> for &mut A {
    fn params(&self, out: &mut [T]) {
        (**self).params(out)
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        (**self).set_params(theta)
    }
}

impl<T: Scalar, A: SetParams<T> + ?Sized> SetParams<T> for Box<A> {
    fn params(&self, out: &mut [T]) {
        (**self).params(out)
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        (**self).set_params(theta)
    }
}
