//! The real scalar types gradmat computes with.

use std::fmt::{Debug, Display, LowerExp};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    /// Also carries the kernel engine's lane operations, so that every `T: Scalar` has them
    /// (crate-internal: the trait cannot be named outside).
    pub trait Sealed: crate::kernel::simd::SimdReal {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A real floating-point scalar: implemented for `f32` and `f64` only (sealed, so that more
/// types can be added later without breaking downstream code).
///
/// The methods are the handful of elementary functions the library needs; they forward to the
/// inherent methods of the primitive type. `Scalar` also implies faer's `RealField`, so faer's
/// dense kernels can be used on gradmat data.
pub trait Scalar:
    sealed::Sealed
    + faer::traits::RealField
    + Copy
    + Send
    + Sync
    + 'static
    + Debug
    + Display
    + LowerExp
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Machine epsilon (`2^-52` for `f64`, `2^-23` for `f32`).
    const EPS: Self;
    /// Short name of the type, for messages.
    const NAME: &'static str;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts from `usize` (rounding when not exactly representable).
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Natural exponential.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `true` unless NaN or infinite.
    fn is_finite(self) -> bool;
    /// The larger of two values (NaN-ignoring like `f64::max`).
    fn max(self, other: Self) -> Self;
    /// The smaller of two values (NaN-ignoring like `f64::min`).
    fn min(self, other: Self) -> Self;
    /// Multiply-add `self * a + b`.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

macro_rules! impl_scalar {
    ($t:ty, $name:literal) => {
        impl Scalar for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const EPS: Self = <$t>::EPSILON;
            const NAME: &'static str = $name;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                // A fused multiply-add is only fast with hardware FMA; the plain form is what the
                // compiler vectorises on baseline x86_64.
                self * a + b
            }
        }
    };
}

impl_scalar!(f32, "f32");
impl_scalar!(f64, "f64");
