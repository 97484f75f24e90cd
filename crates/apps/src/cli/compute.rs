//! The numerical kernels behind the subcommands, written directly on
//! `gradmat_krylov::{lanczos, arnoldi}`, `gradmat_adjoint::{lanczos_vjp, arnoldi_vjp}` and the
//! dense matrix functions of `gradmat_matfun::dense`.
//!
//! * Lanczos: `vᵀf(A)v ≈ ‖v‖² e₀ᵀ f(T) e₀` with the symmetric tridiagonal `T`; reverse rule
//!   `T̄ = ‖v‖² ·` Daleckii–Krein pullback of `e₀e₀ᵀ`, mapped to `(ā, b̄)`, plus
//!   `c̄ = −2 ρ/c` for `c = 1/‖v‖`, then the Lanczos adjoint.
//! * Arnoldi: `‖v‖² e₀ᵀ f(H) e₀` with the Hessenberg `H`: `exp` by the Padé `expm` and its
//!   Fréchet adjoint (any square matrix); the other functions through the symmetric path on
//!   `(H + Hᵀ)/2`, which needs `H` symmetric to rounding (a symmetric `A`), then the Arnoldi
//!   adjoint.

use anyhow::anyhow;
use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointError, AdjointParams, ArnoldiCotangent, LanczosCotangent,
};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_krylov::KrylovError;
use gradmat_matfun::dense::{
    expm, expm_pullback, tridiagonal_cotangent, MatrixFunction, SymmetricMatrixFunction,
};
use gradmat_matfun::MatfunError;
use gradmat_operators::{AdjointOperator, ParamVjp, SelfAdjoint};
use std::time::Instant;

/// Result of one differentiated quadratic form `ρ = vᵀf(A)v`.
#[derive(Debug, Clone)]
pub struct QuadForm {
    /// `ρ`.
    pub value: f64,
    /// Krylov depth reached (smaller than requested after a breakdown).
    pub depth: usize,
    /// Matrix–vector products of the forward pass.
    pub matvecs: usize,
    /// Seconds for the decomposition and the small matrix function.
    pub seconds_forward: f64,
    /// Seconds of the backward pass (`None` without gradients).
    pub seconds_gradient: Option<f64>,
    /// `∂ρ/∂θ` over the operator's parameters (with gradients).
    pub grad_params: Option<Vec<f64>>,
    /// `∂ρ/∂v` (with gradients).
    pub grad_vector: Option<Vec<f64>>,
}

/// What went wrong in a computation, for the caller to phrase.
#[derive(Debug)]
pub enum ComputeError {
    /// The Krylov iteration failed.
    Krylov(KrylovError),
    /// The small matrix function failed (domain, symmetry, overflow).
    Matfun(MatfunError),
    /// The adjoint pass failed.
    Adjoint(AdjointError),
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeError::Krylov(e) => write!(f, "{e}"),
            ComputeError::Matfun(e) => write!(f, "{e}"),
            ComputeError::Adjoint(e) => write!(f, "backward pass: {e}"),
        }
    }
}

impl std::error::Error for ComputeError {}

impl From<KrylovError> for ComputeError {
    fn from(e: KrylovError) -> Self {
        ComputeError::Krylov(e)
    }
}
impl From<MatfunError> for ComputeError {
    fn from(e: MatfunError) -> Self {
        ComputeError::Matfun(e)
    }
}
impl From<AdjointError> for ComputeError {
    fn from(e: AdjointError) -> Self {
        ComputeError::Adjoint(e)
    }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// `vᵀf(A)v` by Lanczos (depth `k`), with its gradients when `grad` is set.
pub fn quadform_lanczos<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    k: usize,
    reorth: Reorthogonalize,
    adjoint: &AdjointParams,
    grad: bool,
) -> std::result::Result<QuadForm, ComputeError>
where
    A: SelfAdjoint<f64> + ParamVjp<f64> + ?Sized,
{
    let t0 = Instant::now();
    let dec = lanczos(op, v, &LanczosParams::new(k).reorthogonalize(reorth))?;
    let fun = SymmetricMatrixFunction::<f64>::from_tridiagonal(
        f.clone(),
        dec.diagonal(),
        dec.off_diagonal(),
    )?;
    let c = dec.inv_norm();
    let scale = 1.0 / (c * c);
    let q = fun.quadratic_form();
    let value = scale * q;
    let seconds_forward = secs(t0);
    let mut out = QuadForm {
        value,
        depth: dec.depth(),
        matvecs: dec.info().num_matvecs,
        seconds_forward,
        seconds_gradient: None,
        grad_params: None,
        grad_vector: None,
    };
    if grad {
        let t1 = Instant::now();
        let kk = dec.depth();
        let tbar = fun.pullback_quadratic_form(scale)?;
        let (abar, bbar) = tridiagonal_cotangent(kk, &tbar)?;
        let cot = LanczosCotangent {
            diagonal: Some(&abar),
            off_diagonal: Some(&bbar),
            inv_norm: -2.0 * value / c,
            ..Default::default()
        };
        let mut g = vec![0.0; op.num_params()];
        let vbar = lanczos_vjp(op, &dec, &cot, adjoint, &mut g)?;
        out.seconds_gradient = Some(secs(t1));
        out.grad_params = Some(g);
        out.grad_vector = Some(vbar);
    }
    Ok(out)
}

/// `vᵀf(A)v` by Arnoldi (depth `k`), with its gradients when `grad` is set.
pub fn quadform_arnoldi<A>(
    op: &A,
    v: &[f64],
    f: &MatrixFunction,
    k: usize,
    reorth: Reorthogonalize,
    adjoint: &AdjointParams,
    grad: bool,
) -> std::result::Result<QuadForm, ComputeError>
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
{
    let t0 = Instant::now();
    let dec = arnoldi(op, v, &ArnoldiParams::new(k).reorthogonalize(reorth))?;
    let kk = dec.depth();
    let h = dec.hessenberg();
    let c = dec.inv_norm();
    let scale = 1.0 / (c * c);
    enum Small {
        Exp,
        Sym(SymmetricMatrixFunction<f64>),
    }
    let (small, q) = if matches!(f, MatrixFunction::Exp) {
        let e = expm(kk, h)?;
        (Small::Exp, e[0])
    } else {
        let fun = SymmetricMatrixFunction::<f64>::new(f.clone(), kk, h)?;
        let q = fun.quadratic_form();
        (Small::Sym(fun), q)
    };
    let value = scale * q;
    let mut out = QuadForm {
        value,
        depth: kk,
        matvecs: dec.info().num_matvecs,
        seconds_forward: secs(t0),
        seconds_gradient: None,
        grad_params: None,
        grad_vector: None,
    };
    if grad {
        let t1 = Instant::now();
        let hbar = match &small {
            Small::Exp => {
                let mut mbar = vec![0.0; kk * kk];
                mbar[0] = scale;
                expm_pullback(kk, h, &mbar)?
            }
            // ρ depends on H through (H + Hᵀ)/2 and T̄ is symmetric, so H̄ = T̄ on the
            // Hessenberg pattern (the adjoint ignores the rest).
            Small::Sym(fun) => fun.pullback_quadratic_form(scale)?,
        };
        let cot = ArnoldiCotangent {
            hessenberg: Some(&hbar),
            inv_norm: -2.0 * value / c,
            ..Default::default()
        };
        let mut g = vec![0.0; op.num_params()];
        let vbar = arnoldi_vjp(op, &dec, &cot, adjoint, &mut g)?;
        out.seconds_gradient = Some(secs(t1));
        out.grad_params = Some(g);
        out.grad_vector = Some(vbar);
    }
    Ok(out)
}

/// Kind of probe vector of the stochastic estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Independent ±1 entries.
    Rademacher,
    /// Independent standard normal entries.
    Gaussian,
}

/// Result of the stochastic Lanczos quadrature estimate of `log det A`.
#[derive(Debug, Clone)]
pub struct LogDet {
    /// The estimate (mean over probes of `zᵀ log(A) z`).
    pub value: f64,
    /// Standard error of the mean (`None` with one probe).
    pub std_error: Option<f64>,
    /// Largest Krylov depth reached over the probes.
    pub depth: usize,
    /// Matrix–vector products of the forward passes, summed over probes.
    pub matvecs: usize,
    /// Seconds of the forward passes (decompositions and `log T`).
    pub seconds_forward: f64,
    /// Seconds of the backward passes (`None` without gradients).
    pub seconds_gradient: Option<f64>,
    /// Gradient of `value` over the operator's parameters (with gradients).
    pub grad_params: Option<Vec<f64>>,
}

/// Probe vectors from a seeded generator (`rand::rngs::StdRng`), one after the other.
pub fn probes(n: usize, count: usize, kind: Probe, seed: u64) -> Vec<Vec<f64>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| match kind {
            Probe::Rademacher => (0..n)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect(),
            Probe::Gaussian => (0..n)
                .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
                .collect(),
        })
        .collect()
}

/// Stochastic Lanczos quadrature: `log det A ≈ (1/L) Σ_l z_lᵀ log(T_l) z_l` (fully
/// reorthogonalised Lanczos of depth `k` per probe), with the gradient of the estimate over
/// the operator's parameters (probes held fixed) when `grad` is set.
pub fn logdet_slq<A>(
    op: &A,
    probes: &[Vec<f64>],
    k: usize,
    grad: bool,
) -> std::result::Result<LogDet, ComputeError>
where
    A: SelfAdjoint<f64> + ParamVjp<f64> + ?Sized,
{
    let l = probes.len();
    let mut vals = Vec::with_capacity(l);
    let (mut depth, mut matvecs) = (0, 0);
    let (mut tf, mut tg) = (0.0, 0.0);
    let mut g = if grad {
        Some(vec![0.0; op.num_params()])
    } else {
        None
    };
    for z in probes {
        let r = quadform_lanczos(
            op,
            z,
            &MatrixFunction::Log,
            k,
            Reorthogonalize::Full,
            &AdjointParams::default(),
            grad,
        )?;
        vals.push(r.value);
        depth = depth.max(r.depth);
        matvecs += r.matvecs;
        tf += r.seconds_forward;
        if let (Some(acc), Some(gp)) = (g.as_mut(), r.grad_params.as_ref()) {
            let t = Instant::now();
            acc.iter_mut().zip(gp).for_each(|(a, b)| *a += b);
            tg += r.seconds_gradient.unwrap_or(0.0) + secs(t);
        }
    }
    let lf = l as f64;
    let mean = vals.iter().sum::<f64>() / lf;
    let std_error = (l > 1).then(|| {
        let var = vals.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (lf - 1.0);
        (var / lf).sqrt()
    });
    if let Some(acc) = g.as_mut() {
        acc.iter_mut().for_each(|a| *a /= lf);
    }
    Ok(LogDet {
        value: mean,
        std_error,
        depth,
        matvecs,
        seconds_forward: tf,
        seconds_gradient: grad.then_some(tg),
        grad_params: g,
    })
}

/// A one-line `anyhow` error from a computation, with a hint for the common cases.
pub fn describe(
    matrix: &std::path::Path,
    vector: Option<&std::path::Path>,
    e: ComputeError,
) -> anyhow::Error {
    let m = matrix.display();
    match &e {
        ComputeError::Krylov(KrylovError::ZeroStartVector) => match vector {
            Some(p) => anyhow!("{}: the vector is zero", p.display()),
            None => anyhow!("{m}: a probe vector is zero"),
        },
        ComputeError::Matfun(MatfunError::EigenvalueOutsideDomain { function, .. }) => anyhow!(
            "{m}: {e} (an eigenvalue of the Krylov matrix is outside the domain of {function}: \
             the matrix's spectrum is not where {function} is defined, e.g. not positive definite)"
        ),
        ComputeError::Matfun(MatfunError::NotSymmetric { .. }) => anyhow!(
            "{m}: this function needs a symmetric matrix with --method arnoldi (only exp works \
             for non-symmetric matrices): the Arnoldi {e}"
        ),
        _ => anyhow!("{m}: {e}"),
    }
}
