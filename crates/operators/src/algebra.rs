//! Operator algebra: sums, scaling, shifts, products, transposes, diagonals and the identity.
//!
//! Capabilities forward through the combinators (a sum of self-adjoint operators is
//! self-adjoint, a shift of an operator with column access has column access, …).
//!
//! **Parameter order:** a combinator's parameters are its children's parameters concatenated
//! left to right, followed by the combinator's own scalar parameter (if any):
//!
//! | combinator | parameters |
//! |---|---|
//! | [`Sum`]`(A, B)` | `(θ_A, θ_B)` |
//! | [`Scaled`]`(A, α)` = `α·A` | `(θ_A, α)` |
//! | [`Shifted`]`(A, σ)` = `A + σI` | `(θ_A, σ)` |
//! | [`Product`]`(A, B)` = `A·B` | `(θ_A, θ_B)` |
//! | [`Transposed`]`(A)` = `Aᵀ` | `θ_A` |
//! | [`Diagonal`]`(d)` | `d` |
//! | [`Identity`] | none |
//!
//! ```
//! use gradmat_operators::algebra::Shifted;
//! use gradmat_operators::dense::SymmetricDense;
//! use gradmat_operators::{Operator, ParamVjp};
//!
//! let a = SymmetricDense::from_col_major(2, vec![2.0, 1.0, 1.0, 2.0]).unwrap();
//! let s = Shifted::new(a, 0.5).unwrap(); // A + 0.5 I, parameters (A[0,0], A[1,0], A[1,1], σ)
//! let mut y = [0.0; 2];
//! s.apply(&[1.0, 0.0], &mut y);
//! assert_eq!(y, [2.5, 1.0]);
//! let mut g = vec![0.0; s.num_params()];
//! s.vjp_params(&[1.0, 1.0], &[1.0, 2.0], &mut g);
//! assert_eq!(g[3], 3.0); // ∂⟨u, (A + σI)x⟩/∂σ = ⟨u, x⟩
//! ```

use crate::error::{require_finite, require_len};
use crate::traits::check_len;
use crate::vector::dot;
use crate::{
    AdjointOperator, ColumnAccess, Operator, OperatorError, ParamVjp, Scalar, SelfAdjoint,
    SetParams,
};

fn finite_scalar<T: Scalar>(index: usize, name: &str, v: T) -> Result<(), OperatorError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(OperatorError::InvalidParameter {
            index,
            name: name.to_string(),
            reason: format!("must be finite, got {v}"),
        })
    }
}

fn require_square<T: Scalar, A: Operator<T> + ?Sized>(a: &A) -> Result<(), OperatorError> {
    if a.nrows() == a.ncols() {
        Ok(())
    } else {
        Err(OperatorError::NotSquare {
            nrows: a.nrows(),
            ncols: a.ncols(),
        })
    }
}

// ---------------------------------------------------------------- Sum

/// `A + B`. Parameters `(θ_A, θ_B)`.
#[derive(Debug, Clone)]
pub struct Sum<A, B> {
    /// Left summand.
    pub a: A,
    /// Right summand.
    pub b: B,
}

impl<A, B> Sum<A, B> {
    /// `A + B`; errors if the shapes differ.
    pub fn new<T: Scalar>(a: A, b: B) -> Result<Self, OperatorError>
    where
        A: Operator<T>,
        B: Operator<T>,
    {
        require_len("Sum rows", b.nrows(), a.nrows())?;
        require_len("Sum columns", b.ncols(), a.ncols())?;
        Ok(Self { a, b })
    }
}

impl<T: Scalar, A: Operator<T>, B: Operator<T>> Operator<T> for Sum<A, B> {
    fn nrows(&self) -> usize {
        self.a.nrows()
    }
    fn ncols(&self) -> usize {
        self.a.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.a.apply(x, y);
        let mut t = vec![T::ZERO; y.len()];
        self.b.apply(x, &mut t);
        y.iter_mut().zip(&t).for_each(|(a, b)| *a += *b);
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.a.apply_block(x, y, k);
        let mut t = vec![T::ZERO; y.len()];
        self.b.apply_block(x, &mut t, k);
        y.iter_mut().zip(&t).for_each(|(a, b)| *a += *b);
    }
}

impl<T: Scalar, A: AdjointOperator<T>, B: AdjointOperator<T>> AdjointOperator<T> for Sum<A, B> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.a.apply_transpose(x, y);
        let mut t = vec![T::ZERO; y.len()];
        self.b.apply_transpose(x, &mut t);
        y.iter_mut().zip(&t).for_each(|(a, b)| *a += *b);
    }
}

impl<T: Scalar, A: SelfAdjoint<T>, B: SelfAdjoint<T>> SelfAdjoint<T> for Sum<A, B> {}

impl<T: Scalar, A: ParamVjp<T>, B: ParamVjp<T>> ParamVjp<T> for Sum<A, B> {
    fn num_params(&self) -> usize {
        self.a.num_params() + self.b.num_params()
    }
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        check_len("Sum::vjp_params grad", grad.len(), self.num_params());
        let (ga, gb) = grad.split_at_mut(self.a.num_params());
        self.a.vjp_params(u, x, ga);
        self.b.vjp_params(u, x, gb);
    }
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        check_len("Sum::vjp_params_block grad", grad.len(), self.num_params());
        let (ga, gb) = grad.split_at_mut(self.a.num_params());
        self.a.vjp_params_block(u, x, k, ga);
        self.b.vjp_params_block(u, x, k, gb);
    }
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        check_len(
            "Sum::apply_and_vjp_params grad",
            grad.len(),
            self.num_params(),
        );
        let (ga, gb) = grad.split_at_mut(self.a.num_params());
        self.a.apply_and_vjp_params(x, y, u, ga);
        let mut t = vec![T::ZERO; y.len()];
        self.b.apply_and_vjp_params(x, &mut t, u, gb);
        y.iter_mut().zip(&t).for_each(|(a, b)| *a += *b);
    }
    /// The larger of the two (the costlier block VJP, typically a kernel's, sets the size).
    fn vjp_block_size(&self) -> usize {
        self.a.vjp_block_size().max(self.b.vjp_block_size())
    }
}

impl<T: Scalar, A: SetParams<T>, B: SetParams<T>> SetParams<T> for Sum<A, B> {
    fn params(&self, out: &mut [T]) {
        check_len("Sum::params", out.len(), self.num_params());
        let (oa, ob) = out.split_at_mut(self.a.num_params());
        self.a.params(oa);
        self.b.params(ob);
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("Sum parameters", theta.len(), self.num_params())?;
        let (ta, tb) = theta.split_at(self.a.num_params());
        let old_a = self.a.params_vec();
        self.a.set_params(ta)?;
        if let Err(e) = self.b.set_params(tb) {
            // Leave the operator unchanged on error.
            let _ = self.a.set_params(&old_a);
            return Err(e);
        }
        Ok(())
    }
}

impl<T: Scalar, A: ColumnAccess<T>, B: ColumnAccess<T>> ColumnAccess<T> for Sum<A, B> {
    fn diagonal(&self, out: &mut [T]) {
        self.a.diagonal(out);
        let mut t = vec![T::ZERO; out.len()];
        self.b.diagonal(&mut t);
        out.iter_mut().zip(&t).for_each(|(a, b)| *a += *b);
    }
    fn column(&self, j: usize, out: &mut [T]) {
        self.a.column(j, out);
        let mut t = vec![T::ZERO; out.len()];
        self.b.column(j, &mut t);
        out.iter_mut().zip(&t).for_each(|(a, b)| *a += *b);
    }
}

// ---------------------------------------------------------------- Scaled

/// `α·A`. Parameters `(θ_A, α)`.
#[derive(Debug, Clone)]
pub struct Scaled<A, T> {
    /// The operator.
    pub a: A,
    alpha: T,
}

impl<A, T: Scalar> Scaled<A, T> {
    /// `α·A`; errors if `α` is not finite.
    pub fn new(a: A, alpha: T) -> Result<Self, OperatorError> {
        finite_scalar(0, "scale", alpha)?;
        Ok(Self { a, alpha })
    }
    /// The scale `α`.
    pub fn scale(&self) -> T {
        self.alpha
    }
}

impl<T: Scalar, A: Operator<T>> Operator<T> for Scaled<A, T> {
    fn nrows(&self) -> usize {
        self.a.nrows()
    }
    fn ncols(&self) -> usize {
        self.a.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.a.apply(x, y);
        y.iter_mut().for_each(|v| *v *= self.alpha);
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.a.apply_block(x, y, k);
        y.iter_mut().for_each(|v| *v *= self.alpha);
    }
}

impl<T: Scalar, A: AdjointOperator<T>> AdjointOperator<T> for Scaled<A, T> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.a.apply_transpose(x, y);
        y.iter_mut().for_each(|v| *v *= self.alpha);
    }
}

impl<T: Scalar, A: SelfAdjoint<T>> SelfAdjoint<T> for Scaled<A, T> {}

impl<T: Scalar, A: ParamVjp<T>> ParamVjp<T> for Scaled<A, T> {
    fn num_params(&self) -> usize {
        self.a.num_params() + 1
    }
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        check_len(
            "Scaled::vjp_params_block grad",
            grad.len(),
            self.num_params(),
        );
        let p = self.a.num_params();
        // ∇θ_A ⟨u, αAx⟩ = ∇θ_A ⟨αu, Ax⟩ ;  ∂/∂α = Σ_c ⟨u_c, A x_c⟩.
        let su: Vec<T> = u.iter().map(|v| *v * self.alpha).collect();
        self.a.vjp_params_block(&su, x, k, &mut grad[..p]);
        let mut ax = vec![T::ZERO; u.len()];
        self.a.apply_block(x, &mut ax, k);
        grad[p] += dot(u, &ax);
    }
    /// `y = αAx`, `θ̄_A += ∇⟨αu, Ax⟩` and `ᾱ += ⟨u, Ax⟩` with the wrapped operator's fused
    /// pass.
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        check_len(
            "Scaled::apply_and_vjp_params grad",
            grad.len(),
            self.num_params(),
        );
        let p = self.a.num_params();
        let su: Vec<T> = u.iter().map(|v| *v * self.alpha).collect();
        self.a.apply_and_vjp_params(x, y, &su, &mut grad[..p]);
        grad[p] += dot(u, y);
        y.iter_mut().for_each(|v| *v *= self.alpha);
    }
    fn vjp_block_size(&self) -> usize {
        self.a.vjp_block_size()
    }
}

impl<T: Scalar, A: SetParams<T>> SetParams<T> for Scaled<A, T> {
    fn params(&self, out: &mut [T]) {
        check_len("Scaled::params", out.len(), self.num_params());
        let p = self.a.num_params();
        self.a.params(&mut out[..p]);
        out[p] = self.alpha;
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("Scaled parameters", theta.len(), self.num_params())?;
        let p = self.a.num_params();
        finite_scalar(p, "scale", theta[p])?;
        self.a.set_params(&theta[..p])?;
        self.alpha = theta[p];
        Ok(())
    }
}

impl<T: Scalar, A: ColumnAccess<T>> ColumnAccess<T> for Scaled<A, T> {
    fn diagonal(&self, out: &mut [T]) {
        self.a.diagonal(out);
        out.iter_mut().for_each(|v| *v *= self.alpha);
    }
    fn column(&self, j: usize, out: &mut [T]) {
        self.a.column(j, out);
        out.iter_mut().for_each(|v| *v *= self.alpha);
    }
}

// ---------------------------------------------------------------- Shifted

/// `A + σI` for a square `A`. Parameters `(θ_A, σ)`.
#[derive(Debug, Clone)]
pub struct Shifted<A, T> {
    /// The operator.
    pub a: A,
    sigma: T,
}

impl<A, T: Scalar> Shifted<A, T> {
    /// `A + σI`; errors if `A` is not square or `σ` is not finite.
    pub fn new(a: A, sigma: T) -> Result<Self, OperatorError>
    where
        A: Operator<T>,
    {
        require_square(&a)?;
        finite_scalar(0, "shift", sigma)?;
        Ok(Self { a, sigma })
    }
    /// The shift `σ`.
    pub fn shift(&self) -> T {
        self.sigma
    }
    /// Replaces the shift only.
    pub fn set_shift(&mut self, sigma: T) -> Result<(), OperatorError> {
        finite_scalar(0, "shift", sigma)?;
        self.sigma = sigma;
        Ok(())
    }
}

impl<T: Scalar, A: Operator<T>> Operator<T> for Shifted<A, T> {
    fn nrows(&self) -> usize {
        self.a.nrows()
    }
    fn ncols(&self) -> usize {
        self.a.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.a.apply(x, y);
        y.iter_mut().zip(x).for_each(|(a, b)| *a += self.sigma * *b);
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.a.apply_block(x, y, k);
        y.iter_mut().zip(x).for_each(|(a, b)| *a += self.sigma * *b);
    }
}

impl<T: Scalar, A: AdjointOperator<T>> AdjointOperator<T> for Shifted<A, T> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.a.apply_transpose(x, y);
        y.iter_mut().zip(x).for_each(|(a, b)| *a += self.sigma * *b);
    }
}

impl<T: Scalar, A: SelfAdjoint<T>> SelfAdjoint<T> for Shifted<A, T> {}

impl<T: Scalar, A: ParamVjp<T>> ParamVjp<T> for Shifted<A, T> {
    fn num_params(&self) -> usize {
        self.a.num_params() + 1
    }
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        check_len("Shifted::vjp_params grad", grad.len(), self.num_params());
        let p = self.a.num_params();
        self.a.vjp_params(u, x, &mut grad[..p]);
        grad[p] += dot(u, x);
    }
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        check_len(
            "Shifted::vjp_params_block grad",
            grad.len(),
            self.num_params(),
        );
        let p = self.a.num_params();
        self.a.vjp_params_block(u, x, k, &mut grad[..p]);
        grad[p] += dot(u, x);
    }
    /// `y = Ax + σx` and the parameter VJP with the wrapped operator's fused pass.
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        check_len(
            "Shifted::apply_and_vjp_params grad",
            grad.len(),
            self.num_params(),
        );
        let p = self.a.num_params();
        self.a.apply_and_vjp_params(x, y, u, &mut grad[..p]);
        y.iter_mut().zip(x).for_each(|(a, b)| *a += self.sigma * *b);
        grad[p] += dot(u, x);
    }
    fn vjp_block_size(&self) -> usize {
        self.a.vjp_block_size()
    }
}

impl<T: Scalar, A: SetParams<T>> SetParams<T> for Shifted<A, T> {
    fn params(&self, out: &mut [T]) {
        check_len("Shifted::params", out.len(), self.num_params());
        let p = self.a.num_params();
        self.a.params(&mut out[..p]);
        out[p] = self.sigma;
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("Shifted parameters", theta.len(), self.num_params())?;
        let p = self.a.num_params();
        finite_scalar(p, "shift", theta[p])?;
        self.a.set_params(&theta[..p])?;
        self.sigma = theta[p];
        Ok(())
    }
}

impl<T: Scalar, A: ColumnAccess<T>> ColumnAccess<T> for Shifted<A, T> {
    fn diagonal(&self, out: &mut [T]) {
        self.a.diagonal(out);
        out.iter_mut().for_each(|v| *v += self.sigma);
    }
    fn column(&self, j: usize, out: &mut [T]) {
        self.a.column(j, out);
        out[j] += self.sigma;
    }
}

// ---------------------------------------------------------------- Product

/// `A·B` (applies `B` first). Parameters `(θ_A, θ_B)`. Parameter gradients need `Aᵀ`.
#[derive(Debug, Clone)]
pub struct Product<A, B> {
    /// Left factor.
    pub a: A,
    /// Right factor (applied first).
    pub b: B,
}

impl<A, B> Product<A, B> {
    /// `A·B`; errors unless `A.ncols() == B.nrows()`.
    pub fn new<T: Scalar>(a: A, b: B) -> Result<Self, OperatorError>
    where
        A: Operator<T>,
        B: Operator<T>,
    {
        require_len("Product inner dimension", b.nrows(), a.ncols())?;
        Ok(Self { a, b })
    }
}

impl<T: Scalar, A: Operator<T>, B: Operator<T>> Operator<T> for Product<A, B> {
    fn nrows(&self) -> usize {
        self.a.nrows()
    }
    fn ncols(&self) -> usize {
        self.b.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        let mut t = vec![T::ZERO; self.b.nrows()];
        self.b.apply(x, &mut t);
        self.a.apply(&t, y);
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        let mut t = vec![T::ZERO; self.b.nrows() * k];
        self.b.apply_block(x, &mut t, k);
        self.a.apply_block(&t, y, k);
    }
}

impl<T: Scalar, A: AdjointOperator<T>, B: AdjointOperator<T>> AdjointOperator<T> for Product<A, B> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        let mut t = vec![T::ZERO; self.a.ncols()];
        self.a.apply_transpose(x, &mut t);
        self.b.apply_transpose(&t, y);
    }
}

impl<T: Scalar, A: AdjointOperator<T> + ParamVjp<T>, B: ParamVjp<T>> ParamVjp<T> for Product<A, B> {
    fn num_params(&self) -> usize {
        self.a.num_params() + self.b.num_params()
    }
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.vjp_params_block(u, x, 1, grad)
    }
    /// The larger of the two (the costlier block VJP, typically a kernel's, sets the size).
    fn vjp_block_size(&self) -> usize {
        self.a.vjp_block_size().max(self.b.vjp_block_size())
    }
    /// `⟨u, A B x⟩`: `θ_A` gets `∇⟨u, A (Bx)⟩`, `θ_B` gets `∇⟨Aᵀu, B x⟩`.
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        check_len(
            "Product::vjp_params_block grad",
            grad.len(),
            self.num_params(),
        );
        let (ga, gb) = grad.split_at_mut(self.a.num_params());
        let mid = self.b.nrows();
        if !ga.is_empty() {
            let mut bx = vec![T::ZERO; mid * k];
            self.b.apply_block(x, &mut bx, k);
            self.a.vjp_params_block(u, &bx, k, ga);
        }
        if !gb.is_empty() {
            let mut atu = vec![T::ZERO; mid * k];
            self.a.apply_transpose_block(u, &mut atu, k);
            self.b.vjp_params_block(&atu, x, k, gb);
        }
    }
}

impl<T, A, B> SetParams<T> for Product<A, B>
where
    T: Scalar,
    A: AdjointOperator<T> + SetParams<T>,
    B: SetParams<T>,
{
    fn params(&self, out: &mut [T]) {
        check_len("Product::params", out.len(), self.num_params());
        let (oa, ob) = out.split_at_mut(self.a.num_params());
        self.a.params(oa);
        self.b.params(ob);
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("Product parameters", theta.len(), self.num_params())?;
        let (ta, tb) = theta.split_at(self.a.num_params());
        let old_a = self.a.params_vec();
        self.a.set_params(ta)?;
        if let Err(e) = self.b.set_params(tb) {
            let _ = self.a.set_params(&old_a);
            return Err(e);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- Transposed

/// `Aᵀ`. Parameters `θ_A`.
#[derive(Debug, Clone)]
pub struct Transposed<A>(pub A);

impl<T: Scalar, A: AdjointOperator<T>> Operator<T> for Transposed<A> {
    fn nrows(&self) -> usize {
        self.0.ncols()
    }
    fn ncols(&self) -> usize {
        self.0.nrows()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.0.apply_transpose(x, y)
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_transpose_block(x, y, k)
    }
}

impl<T: Scalar, A: AdjointOperator<T>> AdjointOperator<T> for Transposed<A> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_block(x, y, k)
    }
}

impl<T: Scalar, A: AdjointOperator<T> + SelfAdjoint<T>> SelfAdjoint<T> for Transposed<A> {}

impl<T: Scalar, A: AdjointOperator<T> + ParamVjp<T>> ParamVjp<T> for Transposed<A> {
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    fn vjp_block_size(&self) -> usize {
        self.0.vjp_block_size()
    }
    /// `⟨u, Aᵀx⟩ = ⟨x, A u⟩`.
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.0.vjp_params(x, u, grad)
    }
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        self.0.vjp_params_block(x, u, k, grad)
    }
}

impl<T: Scalar, A: AdjointOperator<T> + SetParams<T>> SetParams<T> for Transposed<A> {
    fn params(&self, out: &mut [T]) {
        self.0.params(out)
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        self.0.set_params(theta)
    }
}

// ---------------------------------------------------------------- Diagonal

/// A diagonal matrix. Parameters: the diagonal entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagonal<T: Scalar> {
    d: Vec<T>,
}

impl<T: Scalar> Diagonal<T> {
    /// From the diagonal; errors on non-finite entries.
    pub fn new(d: Vec<T>) -> Result<Self, OperatorError> {
        require_finite("diagonal", &d)?;
        Ok(Self { d })
    }
    /// The diagonal.
    pub fn as_slice(&self) -> &[T] {
        &self.d
    }
}

impl<T: Scalar> Operator<T> for Diagonal<T> {
    fn nrows(&self) -> usize {
        self.d.len()
    }
    fn ncols(&self) -> usize {
        self.d.len()
    }
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        check_len("Diagonal::apply x", x.len(), self.d.len());
        check_len("Diagonal::apply y", y.len(), self.d.len());
        for ((yi, xi), di) in y.iter_mut().zip(x).zip(&self.d) {
            *yi = *di * *xi;
        }
    }
}

impl<T: Scalar> AdjointOperator<T> for Diagonal<T> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.apply(x, y)
    }
}

impl<T: Scalar> SelfAdjoint<T> for Diagonal<T> {}

impl<T: Scalar> ParamVjp<T> for Diagonal<T> {
    fn num_params(&self) -> usize {
        self.d.len()
    }
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        check_len("Diagonal::vjp_params grad", grad.len(), self.d.len());
        for ((g, ui), xi) in grad.iter_mut().zip(u).zip(x) {
            *g += *ui * *xi;
        }
    }
}

impl<T: Scalar> SetParams<T> for Diagonal<T> {
    fn params(&self, out: &mut [T]) {
        out.copy_from_slice(&self.d)
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("Diagonal parameters", theta.len(), self.d.len())?;
        require_finite("Diagonal parameters", theta)?;
        self.d.copy_from_slice(theta);
        Ok(())
    }
}

impl<T: Scalar> ColumnAccess<T> for Diagonal<T> {
    fn diagonal(&self, out: &mut [T]) {
        out.copy_from_slice(&self.d)
    }
    fn column(&self, j: usize, out: &mut [T]) {
        out.iter_mut().for_each(|v| *v = T::ZERO);
        out[j] = self.d[j];
    }
}

// ---------------------------------------------------------------- Identity

/// The `n×n` identity. No parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Dimension.
    pub n: usize,
}

impl<T: Scalar> Operator<T> for Identity {
    fn nrows(&self) -> usize {
        self.n
    }
    fn ncols(&self) -> usize {
        self.n
    }
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        check_len("Identity::apply", x.len(), self.n);
        y.copy_from_slice(x)
    }
}

impl<T: Scalar> AdjointOperator<T> for Identity {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        y.copy_from_slice(x)
    }
}

impl<T: Scalar> SelfAdjoint<T> for Identity {}

impl<T: Scalar> ParamVjp<T> for Identity {
    fn num_params(&self) -> usize {
        0
    }
    fn vjp_params(&self, _u: &[T], _x: &[T], _grad: &mut [T]) {}
}

impl<T: Scalar> SetParams<T> for Identity {
    fn params(&self, _out: &mut [T]) {}
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        require_len("Identity parameters", theta.len(), 0)
    }
}

impl<T: Scalar> ColumnAccess<T> for Identity {
    fn diagonal(&self, out: &mut [T]) {
        out.iter_mut().for_each(|v| *v = T::ONE)
    }
    fn column(&self, j: usize, out: &mut [T]) {
        out.iter_mut().for_each(|v| *v = T::ZERO);
        out[j] = T::ONE;
    }
}

/// An operator whose products go through a stored dense copy of it (one GEMM per block, row
/// blocks in parallel), everything else — parameter VJPs, column access, transposed products —
/// through the wrapped operator. For matrix-free operators that are cheap enough to store for a
/// while (a kernel matrix within a memory budget, reused for every product of an optimisation
/// step): the copy costs `O(n²)` memory once, and each product is then a dense GEMM instead of
/// re-evaluating the operator.
///
/// The copy must equal the wrapped operator ([`Cached::new`] checks the dimensions only); its
/// products then agree with the wrapped operator's to rounding. Results are deterministic for
/// any thread count (each output row block is computed by one GEMM).
#[derive(Debug, Clone)]
pub struct Cached<A, T: Scalar> {
    inner: A,
    dense: crate::dense::DenseMatrix<T>,
}

impl<A: Operator<T>, T: Scalar> Cached<A, T> {
    /// Products of `inner` through `dense` (its explicit matrix, e.g. from
    /// `KernelMatrix::to_dense`).
    ///
    /// # Errors
    /// [`OperatorError::DimensionMismatch`] if the sizes differ.
    pub fn new(inner: A, dense: crate::dense::DenseMatrix<T>) -> Result<Self, OperatorError> {
        if dense.nrows() != inner.nrows() || dense.ncols() != inner.ncols() {
            return Err(OperatorError::DimensionMismatch {
                what: "dense copy",
                expected: inner.nrows() * inner.ncols(),
                got: dense.nrows() * dense.ncols(),
            });
        }
        Ok(Self { inner, dense })
    }

    /// The wrapped operator.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

/// Rows per block of [`Cached`]'s parallel GEMM.
const CACHED_ROWS: usize = 512;

impl<A: Operator<T>, T: Scalar> Operator<T> for Cached<A, T> {
    fn nrows(&self) -> usize {
        self.inner.nrows()
    }
    fn ncols(&self) -> usize {
        self.inner.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.apply_block(x, y, 1);
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
        use rayon::prelude::*;
        let (m, n) = (self.nrows(), self.ncols());
        crate::traits::check_block_len("Cached::apply_block x", x.len(), n, k);
        crate::traits::check_block_len("Cached::apply_block y", y.len(), m, k);
        let a = self.dense.as_faer();
        let xm = MatRef::from_column_major_slice(x, n, k);
        let nblocks = m.div_ceil(CACHED_ROWS);
        // Row blocks are strided in the column-major output: compute each into its own buffer.
        let parts: Vec<Vec<T>> = (0..nblocks)
            .into_par_iter()
            .map(|b| {
                let (r0, r1) = (b * CACHED_ROWS, ((b + 1) * CACHED_ROWS).min(m));
                let mut buf = vec![T::ZERO; (r1 - r0) * k];
                matmul(
                    MatMut::from_column_major_slice_mut(&mut buf, r1 - r0, k),
                    Accum::Replace,
                    a.subrows(r0, r1 - r0),
                    xm,
                    T::ONE,
                    Par::Seq,
                );
                buf
            })
            .collect();
        for (b, buf) in parts.into_iter().enumerate() {
            let r0 = b * CACHED_ROWS;
            let rows = buf.len() / k.max(1);
            for c in 0..k {
                y[c * m + r0..c * m + r0 + rows].copy_from_slice(&buf[c * rows..(c + 1) * rows]);
            }
        }
    }
}

impl<A: AdjointOperator<T>, T: Scalar> AdjointOperator<T> for Cached<A, T> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.inner.apply_transpose(x, y)
    }
}

impl<A: SelfAdjoint<T>, T: Scalar> SelfAdjoint<T> for Cached<A, T> {}

impl<A: ParamVjp<T>, T: Scalar> ParamVjp<T> for Cached<A, T> {
    fn num_params(&self) -> usize {
        self.inner.num_params()
    }
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.inner.vjp_params(u, x, grad)
    }
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        self.inner.vjp_params_block(u, x, k, grad)
    }
    fn vjp_block_size(&self) -> usize {
        self.inner.vjp_block_size()
    }
}

impl<A: ColumnAccess<T>, T: Scalar> ColumnAccess<T> for Cached<A, T> {
    fn diagonal(&self, out: &mut [T]) {
        self.inner.diagonal(out)
    }
    fn column(&self, j: usize, out: &mut [T]) {
        self.inner.column(j, out)
    }
}

/// A self-adjoint operator seen as an [`AdjointOperator`]: `Aᵀx = Ax`. Implementing
/// [`Operator`], [`SelfAdjoint`] and [`ParamVjp`] is enough for Lanczos and its adjoint; the
/// Arnoldi adjoint applies `Aᵀ`, and `AsAdjoint(op)` supplies it from `apply` — the blanket
/// "adjoint of a self-adjoint operator", as a wrapper because a blanket trait impl would
/// overlap with the combinators' own `AdjointOperator` impls. Everything else (parameters,
/// fused VJPs, columns) is forwarded.
///
/// ```
/// use gradmat_operators::algebra::AsAdjoint;
/// use gradmat_operators::{dense::SymmetricDense, AdjointOperator};
/// let a = SymmetricDense::from_col_major(2, vec![2.0, 1.0, 1.0, 3.0]).unwrap();
/// let mut y = [0.0; 2];
/// AsAdjoint(&a).apply_transpose(&[1.0, 0.0], &mut y);
/// assert_eq!(y, [2.0, 1.0]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AsAdjoint<A>(pub A);

impl<T: Scalar, A: SelfAdjoint<T>> Operator<T> for AsAdjoint<A> {
    fn nrows(&self) -> usize {
        self.0.nrows()
    }
    fn ncols(&self) -> usize {
        self.0.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_block(x, y, k)
    }
}

impl<T: Scalar, A: SelfAdjoint<T>> AdjointOperator<T> for AsAdjoint<A> {
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_block(x, y, k)
    }
}

impl<T: Scalar, A: SelfAdjoint<T>> SelfAdjoint<T> for AsAdjoint<A> {}

impl<T: Scalar, A: SelfAdjoint<T> + ParamVjp<T>> ParamVjp<T> for AsAdjoint<A> {
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.0.vjp_params(u, x, grad)
    }
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        self.0.vjp_params_block(u, x, k, grad)
    }
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        self.0.apply_and_vjp_params(x, y, u, grad)
    }
    fn vjp_block_size(&self) -> usize {
        self.0.vjp_block_size()
    }
}

impl<T: Scalar, A: SelfAdjoint<T> + SetParams<T>> SetParams<T> for AsAdjoint<A> {
    fn params(&self, out: &mut [T]) {
        self.0.params(out)
    }
    fn set_params(&mut self, theta: &[T]) -> Result<(), OperatorError> {
        self.0.set_params(theta)
    }
}

impl<T: Scalar, A: SelfAdjoint<T> + ColumnAccess<T>> ColumnAccess<T> for AsAdjoint<A> {
    fn diagonal(&self, out: &mut [T]) {
        self.0.diagonal(out)
    }
    fn column(&self, j: usize, out: &mut [T]) {
        self.0.column(j, out)
    }
}
