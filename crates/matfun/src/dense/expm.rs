//! The exponential of a general square matrix by scaling and squaring with Padé approximants,
//! its Fréchet derivative and the reverse rules.
//!
//! Higham, N. J. (2005). *The scaling and squaring method for the matrix exponential
//! revisited.* SIAM J. Matrix Anal. Appl. 26(4), 1179–1193 (Algorithm 2.3): with
//! `θ₃, θ₅, θ₇, θ₉, θ₁₃` the largest 1-norms for which the `[m/m]` Padé approximant
//! `r_m = q_m⁻¹ p_m` has backward error below `2⁻⁵³`, use the smallest `m ∈ {3,5,7,9}` with
//! `‖A‖₁ ≤ θ_m`; otherwise scale `A ← A/2ˢ` with `s = ⌈log₂(‖A‖₁/θ₁₃)⌉`, use `r₁₃` and square
//! `s` times. `p_m(A) = U + V`, `q_m(A) = −U + V` with `U` the odd and `V` the even part; the
//! quotient is one LU solve with partial pivoting.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::lu::partial_pivoting::factor::{lu_in_place, lu_in_place_scratch};
use faer::linalg::lu::partial_pivoting::solve::{solve_in_place, solve_in_place_scratch};
use faer::{Mat, MatRef, Par};
use gradmat_operators::Scalar;

use super::{check_finite, check_len, check_scalar, check_square, from_mat, matmul_seq, to_mat};
use crate::MatfunError;

/// Padé `[m/m]` coefficients `b_0 … b_m` of `exp` (Higham 2005, eq. (2.11) scaled to integers).
const PADE3: [f64; 4] = [120.0, 60.0, 12.0, 1.0];
const PADE5: [f64; 6] = [30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0];
const PADE7: [f64; 8] = [
    17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0,
];
const PADE9: [f64; 10] = [
    17643225600.0,
    8821612800.0,
    2075673600.0,
    302702400.0,
    30270240.0,
    2162160.0,
    110880.0,
    3960.0,
    90.0,
    1.0,
];
const PADE13: [f64; 14] = [
    64764752532480000.0,
    32382376266240000.0,
    7771770303897600.0,
    1187353796428800.0,
    129060195264000.0,
    10559470521600.0,
    670442572800.0,
    33522128640.0,
    1323241920.0,
    40840800.0,
    960960.0,
    16380.0,
    182.0,
    1.0,
];

#[allow(clippy::excessive_precision)]
mod theta {
    /// `θ_m` of Higham (2005), Table 2.3, for `m = 3, 5, 7, 9, 13` (double precision).
    pub(super) const THETA3: f64 = 1.495585217958292e-2;
    pub(super) const THETA5: f64 = 2.539398330063230e-1;
    pub(super) const THETA7: f64 = 9.504178996162932e-1;
    pub(super) const THETA9: f64 = 2.097847961257068e0;
    pub(super) const THETA13: f64 = 5.371920351148152e0;
}
use theta::{THETA13, THETA3, THETA5, THETA7, THETA9};

/// `‖A‖₁`, the largest column sum of absolute values.
fn norm1(a: MatRef<'_, f64>) -> f64 {
    (0..a.ncols())
        .map(|j| (0..a.nrows()).map(|i| a[(i, j)].abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// `Σ_k c_k P_k` for matrices `P_k`.
fn lincomb(n: usize, terms: &[(f64, MatRef<'_, f64>)]) -> Mat<f64> {
    Mat::from_fn(n, n, |i, j| terms.iter().map(|(c, p)| c * p[(i, j)]).sum())
}

/// `r_m(A)` for `m ∈ {3,5,7,9}` from the even powers `I, A², A⁴, …`.
fn pade_low(a: MatRef<'_, f64>, b: &[f64], even: &[Mat<f64>]) -> Result<Mat<f64>, MatfunError> {
    let n = a.nrows();
    let half = (b.len() - 1) / 2; // m = 2·half + 1
    let odd: Vec<(f64, MatRef<'_, f64>)> = (0..=half)
        .map(|k| (b[2 * k + 1], even[k].as_ref()))
        .collect();
    let evn: Vec<(f64, MatRef<'_, f64>)> =
        (0..=half).map(|k| (b[2 * k], even[k].as_ref())).collect();
    let u = matmul_seq(a, lincomb(n, &odd).as_ref());
    let v = lincomb(n, &evn);
    pade_solve(u, v)
}

/// `(V − U)⁻¹ (V + U)` by LU with partial pivoting.
fn pade_solve(u: Mat<f64>, v: Mat<f64>) -> Result<Mat<f64>, MatfunError> {
    let n = u.nrows();
    let par = Par::Seq;
    let mut q = Mat::from_fn(n, n, |i, j| v[(i, j)] - u[(i, j)]);
    let mut p = Mat::from_fn(n, n, |i, j| v[(i, j)] + u[(i, j)]);
    let mut fwd = vec![0usize; n];
    let mut bwd = vec![0usize; n];
    let mut buf = MemBuffer::new(lu_in_place_scratch::<usize, f64>(
        n,
        n,
        par,
        Default::default(),
    ));
    let (_, perm) = lu_in_place(
        q.as_mut(),
        &mut fwd,
        &mut bwd,
        par,
        MemStack::new(&mut buf),
        Default::default(),
    );
    if (0..n).any(|i| q[(i, i)] == 0.0 || !q[(i, i)].is_finite()) {
        return Err(MatfunError::SingularPadeDenominator);
    }
    let mut buf2 = MemBuffer::new(solve_in_place_scratch::<usize, f64>(n, n, par));
    solve_in_place(
        q.as_ref(),
        q.as_ref(),
        perm,
        p.as_mut(),
        par,
        MemStack::new(&mut buf2),
    );
    Ok(p)
}

/// `exp(A)` in `f64` (Higham 2005, Algorithm 2.3). `A` must be finite.
pub(crate) fn expm_f64(a: MatRef<'_, f64>) -> Result<Mat<f64>, MatfunError> {
    let n = a.nrows();
    let nrm = norm1(a);
    if !nrm.is_finite() {
        // Finite entries whose column sums overflow: no scaling brings A into range.
        return Err(MatfunError::NonFiniteResult {
            what: "exp: the 1-norm of the argument overflows",
        });
    }
    let ident = Mat::<f64>::identity(n, n);
    let a2 = matmul_seq(a, a);
    if nrm <= THETA9 {
        let mut even = vec![ident, a2];
        let b: &[f64] = if nrm <= THETA3 {
            &PADE3
        } else if nrm <= THETA5 {
            &PADE5
        } else if nrm <= THETA7 {
            &PADE7
        } else {
            &PADE9
        };
        while even.len() < b.len() / 2 {
            let next = matmul_seq(even[even.len() - 1].as_ref(), even[1].as_ref());
            even.push(next);
        }
        return pade_low(a, b, &even);
    }
    // Degree 13 with scaling: s = max(0, ⌈log₂(‖A‖₁/θ₁₃)⌉).
    let s = if nrm > THETA13 {
        (nrm / THETA13).log2().ceil().max(0.0) as i32
    } else {
        0
    };
    let sc = 0.5_f64.powi(s);
    let sa = Mat::from_fn(n, n, |i, j| sc * a[(i, j)]);
    let a2 = Mat::from_fn(n, n, |i, j| sc * sc * a2[(i, j)]);
    let a4 = matmul_seq(a2.as_ref(), a2.as_ref());
    let a6 = matmul_seq(a4.as_ref(), a2.as_ref());
    let b = &PADE13;
    let inner_u = lincomb(
        n,
        &[
            (b[13], a6.as_ref()),
            (b[11], a4.as_ref()),
            (b[9], a2.as_ref()),
        ],
    );
    let mut w = matmul_seq(a6.as_ref(), inner_u.as_ref());
    let tail_u = lincomb(
        n,
        &[
            (b[7], a6.as_ref()),
            (b[5], a4.as_ref()),
            (b[3], a2.as_ref()),
            (b[1], ident.as_ref()),
        ],
    );
    w += &tail_u;
    let u = matmul_seq(sa.as_ref(), w.as_ref());
    let inner_v = lincomb(
        n,
        &[
            (b[12], a6.as_ref()),
            (b[10], a4.as_ref()),
            (b[8], a2.as_ref()),
        ],
    );
    let mut v = matmul_seq(a6.as_ref(), inner_v.as_ref());
    let tail_v = lincomb(
        n,
        &[
            (b[6], a6.as_ref()),
            (b[4], a4.as_ref()),
            (b[2], a2.as_ref()),
            (b[0], ident.as_ref()),
        ],
    );
    v += &tail_v;
    let mut x = pade_solve(u, v)?;
    for _ in 0..s {
        x = matmul_seq(x.as_ref(), x.as_ref());
    }
    Ok(x)
}

/// `(exp(X), L_exp(X, E))` in `f64` from `exp([[X, E], [0, X]]) = [[exp X, L(X,E)], [0, exp X]]`.
///
/// `L` is linear in `E`, so `E` is first scaled to `‖E‖₁ = ‖X‖₁` (or 1 when `X = 0`): a huge or
/// tiny cotangent then changes neither the Padé degree nor the number of squarings.
pub(crate) fn expm_frechet_f64(
    x: MatRef<'_, f64>,
    e: MatRef<'_, f64>,
) -> Result<(Mat<f64>, Mat<f64>), MatfunError> {
    let n = x.nrows();
    let en = norm1(e);
    if en == 0.0 {
        return Ok((expm_f64(x)?, Mat::zeros(n, n)));
    }
    let xn = norm1(x);
    let target = if xn > 0.0 { xn } else { 1.0 };
    let c = en / target;
    let big = Mat::from_fn(2 * n, 2 * n, |i, j| match (i < n, j < n) {
        (true, true) => x[(i, j)],
        (true, false) => e[(i, j - n)] / c,
        (false, true) => 0.0,
        (false, false) => x[(i - n, j - n)],
    });
    let eb = expm_f64(big.as_ref())?;
    let ex = Mat::from_fn(n, n, |i, j| eb[(i, j)]);
    let l = Mat::from_fn(n, n, |i, j| c * eb[(i, j + n)]);
    Ok((ex, l))
}

/// Validates an `n×n` matrix argument and widens it.
fn matrix_arg<T: Scalar>(what: &'static str, n: usize, a: &[T]) -> Result<Mat<f64>, MatfunError> {
    check_square(what, n, a)?;
    check_finite(what, n, a)?;
    Ok(to_mat(n, n, a))
}

/// `exp(A)` of a general square `n×n` column-major matrix by scaling and squaring with Padé
/// approximants, computed in `f64`.
///
/// Higham (2005), *The scaling and squaring method for the matrix exponential revisited*,
/// Algorithm 2.3: the smallest degree `m ∈ {3,5,7,9}` with `‖A‖₁ ≤ θ_m`, otherwise
/// `A ← A/2ˢ`, `s = ⌈log₂(‖A‖₁/θ₁₃)⌉`, degree 13 and `s` squarings. The Padé quotient
/// `(V − U)⁻¹(V + U)` (`U`, `V` the odd and even parts) is one LU solve with partial pivoting;
/// faer runs the products and the LU with `Par::Seq`.
///
/// # Errors
/// [`MatfunError::EmptyMatrix`], [`MatfunError::DimensionMismatch`],
/// [`MatfunError::NonFiniteInput`], [`MatfunError::SingularPadeDenominator`],
/// [`MatfunError::NonFiniteResult`] on overflow.
///
/// # Example
///
/// ```
/// use gradmat_matfun::dense::expm;
///
/// // exp([[0, -w], [w, 0]]) is the rotation by w.
/// let w = 0.3_f64;
/// let r = expm(2, &[0.0, w, -w, 0.0])?;
/// let c = [w.cos(), w.sin(), -w.sin(), w.cos()];
/// assert!(r.iter().zip(&c).all(|(x, y)| (x - y).abs() < 1e-15));
/// # Ok::<(), gradmat_matfun::MatfunError>(())
/// ```
pub fn expm<T: Scalar>(n: usize, a: &[T]) -> Result<Vec<T>, MatfunError> {
    let am = matrix_arg("matrix A", n, a)?;
    from_mat("exp(A)", &expm_f64(am.as_ref())?)
}

/// The Fréchet derivative `L_exp(A, E) = d/dh exp(A + hE)|₀` of the matrix exponential,
/// read from the top-right block of `exp([[A, E], [0, A]])`.
///
/// # Errors
/// As [`expm`], and [`MatfunError::DimensionMismatch`] / [`MatfunError::NonFiniteInput`] for
/// `E`.
pub fn expm_frechet<T: Scalar>(n: usize, a: &[T], e: &[T]) -> Result<Vec<T>, MatfunError> {
    let am = matrix_arg("matrix A", n, a)?;
    check_len("direction E", n * n, e.len())?;
    let em = matrix_arg("direction E", n, e)?;
    let (_, l) = expm_frechet_f64(am.as_ref(), em.as_ref())?;
    from_mat("Fréchet derivative of exp", &l)
}

/// Reverse rule of `exp(H)`: for the cotangent `M̄` of `exp(H)`, returns
/// `H̄ = L_exp(Hᵀ, M̄)` (the adjoint of `E ↦ L_exp(H, E)` in the Frobenius inner product), so
/// that `⟨M̄, L_exp(H, E)⟩ = ⟨H̄, E⟩` for every direction `E`.
///
/// # Errors
/// As [`expm_frechet`].
///
/// # Example
///
/// ```
/// use gradmat_matfun::dense::expm_pullback;
///
/// // For diagonal H, H̄ = M̄ ∘ exp[h_i, h_j] (divided differences of exp).
/// let hbar = expm_pullback(2, &[0.0_f64, 0.0, 0.0, 0.0], &[1.0, 2.0, 3.0, 4.0])?;
/// assert!(hbar.iter().zip([1.0, 2.0, 3.0, 4.0]).all(|(x, y)| (x - y).abs() < 1e-14));
/// # Ok::<(), gradmat_matfun::MatfunError>(())
/// ```
pub fn expm_pullback<T: Scalar>(n: usize, h: &[T], mbar: &[T]) -> Result<Vec<T>, MatfunError> {
    let hm = matrix_arg("matrix H", n, h)?;
    check_len("cotangent M̄", n * n, mbar.len())?;
    let mm = matrix_arg("cotangent M̄", n, mbar)?;
    let (_, l) = expm_frechet_f64(hm.transpose(), mm.as_ref())?;
    from_mat("exp pullback", &l)
}

/// `exp(tH)` for a scalar `t`.
///
/// # Errors
/// As [`expm`], and [`MatfunError::NonFiniteParameter`] for a non-finite `t`.
pub fn expm_scaled<T: Scalar>(n: usize, h: &[T], t: T) -> Result<Vec<T>, MatfunError> {
    let hm = matrix_arg("matrix H", n, h)?;
    let t = check_scalar("time t", t)?;
    let th = Mat::from_fn(n, n, |i, j| t * hm[(i, j)]);
    from_mat("exp(tH)", &expm_f64(th.as_ref())?)
}

/// `exp(tH) e₀`, the first column of [`expm_scaled`].
///
/// # Errors
/// As [`expm_scaled`].
pub fn expm_scaled_e0<T: Scalar>(n: usize, h: &[T], t: T) -> Result<Vec<T>, MatfunError> {
    let full = expm_scaled(n, h, t)?;
    Ok(full[..n].to_vec())
}

/// Cotangents of the inputs `(H, t)` of `exp(tH)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScaledExpmCotangent<T> {
    /// `H̄` (`K×K`, column-major).
    pub h: Vec<T>,
    /// `t̄`.
    pub t: T,
}

/// `(H̄, t̄)` in `f64` for `exp(tH)` with cotangent `M̄`:
/// `H̄ = t·L_exp(tHᵀ, M̄)`, `t̄ = ⟨M̄, H exp(tH)⟩`; `exp(tH) = exp(tHᵀ)ᵀ` comes out of the same
/// block exponential.
fn scaled_pullback_f64(
    hm: &Mat<f64>,
    t: f64,
    mm: &Mat<f64>,
) -> Result<(Mat<f64>, f64), MatfunError> {
    let n = hm.nrows();
    let tht = Mat::from_fn(n, n, |i, j| t * hm[(j, i)]);
    let (ext, l) = expm_frechet_f64(tht.as_ref(), mm.as_ref())?;
    let hbar = Mat::from_fn(n, n, |i, j| t * l[(i, j)]);
    // H·exp(tH) = H·(exp(tHᵀ))ᵀ
    let hex = matmul_seq(hm.as_ref(), ext.transpose());
    let mut tbar = 0.0;
    for j in 0..n {
        for i in 0..n {
            tbar += mm[(i, j)] * hex[(i, j)];
        }
    }
    Ok((hbar, tbar))
}

/// Reverse rule of `exp(tH)` in both inputs: for the cotangent `M̄` of `exp(tH)`,
/// `H̄ = t·L_exp(tHᵀ, M̄)` and `t̄ = ⟨M̄, H exp(tH)⟩` (Frobenius inner product).
///
/// # Errors
/// As [`expm_pullback`], and [`MatfunError::NonFiniteParameter`] for a non-finite `t`.
pub fn expm_scaled_pullback<T: Scalar>(
    n: usize,
    h: &[T],
    t: T,
    mbar: &[T],
) -> Result<ScaledExpmCotangent<T>, MatfunError> {
    let hm = matrix_arg("matrix H", n, h)?;
    let t = check_scalar("time t", t)?;
    check_len("cotangent M̄", n * n, mbar.len())?;
    let mm = matrix_arg("cotangent M̄", n, mbar)?;
    let (hbar, tbar) = scaled_pullback_f64(&hm, t, &mm)?;
    Ok(ScaledExpmCotangent {
        h: from_mat("exp(tH) pullback", &hbar)?,
        t: super::scalar_out("exp(tH) pullback: t̄", tbar)?,
    })
}

/// Reverse rule of `y = exp(tH) e₀` ([`expm_scaled_e0`]): the rule of
/// [`expm_scaled_pullback`] with `M̄ = w̄ e₀ᵀ`, i.e. `t̄ = w̄ᵀ H exp(tH) e₀`.
///
/// # Errors
/// As [`expm_scaled_pullback`], with the length of `w̄` checked against `K`.
pub fn expm_scaled_e0_pullback<T: Scalar>(
    n: usize,
    h: &[T],
    t: T,
    wbar: &[T],
) -> Result<ScaledExpmCotangent<T>, MatfunError> {
    let hm = matrix_arg("matrix H", n, h)?;
    let t = check_scalar("time t", t)?;
    check_len("cotangent w̄", n, wbar.len())?;
    check_finite("cotangent w̄", n, wbar)?;
    let mm = Mat::from_fn(n, n, |i, j| if j == 0 { wbar[i].to_f64() } else { 0.0 });
    let (hbar, tbar) = scaled_pullback_f64(&hm, t, &mm)?;
    Ok(ScaledExpmCotangent {
        h: from_mat("exp(tH) e0 pullback", &hbar)?,
        t: super::scalar_out("exp(tH) e0 pullback: t̄", tbar)?,
    })
}
