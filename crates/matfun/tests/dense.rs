//! Tests of the dense matrix functions and their reverse rules (`gradmat_matfun::dense`).
//!
//! Oracles: independent identities and references for the values (a Taylor-series `expm` with
//! scaling and squaring written here, `exp(log A) = A`, `sqrt(A)² = A`, …), central finite
//! differences with Richardson extrapolation for every reverse rule, Taylor expansions at the
//! midpoint for divided differences, and closed forms for `expm`.
//!
//! Run with `--nocapture` to see the worst error measured per check (`worst <name>: …`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use gradmat_matfun::dense::{
    expm, expm_frechet, expm_pullback, expm_scaled, expm_scaled_e0, expm_scaled_e0_pullback,
    expm_scaled_pullback, tridiagonal_cotangent, MatrixFunction, SymmetricEigen,
    SymmetricMatrixFunction,
};
use gradmat_matfun::MatfunError;
use gradmat_operators::testing::{matrix_with_spectrum, random_vector};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

const EPS: f64 = f64::EPSILON;

// ---------------------------------------------------------------------------------------------
// helpers

fn config(cases: u32, seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

static WORST: Mutex<BTreeMap<&'static str, f64>> = Mutex::new(BTreeMap::new());

/// Records `err/tol`-independent worst errors (printed with `--nocapture`) and checks `err ≤ tol`.
fn check(name: &'static str, err: f64, tol: f64) -> Result<(), TestCaseError> {
    {
        let mut w = WORST.lock().unwrap_or_else(|e| e.into_inner());
        let e = w.entry(name).or_insert(0.0);
        if err > *e {
            *e = err;
            eprintln!("worst {name}: {err:.3e} (tol {tol:.1e})");
        }
    }
    prop_assert!(err <= tol, "{name}: error {err:e} > tolerance {tol:e}");
    Ok(())
}

fn matmul(n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for j in 0..n {
        for l in 0..n {
            let blj = b[l + j * n];
            for i in 0..n {
                c[i + j * n] += a[i + l * n] * blj;
            }
        }
    }
    c
}

fn transpose(n: usize, a: &[f64]) -> Vec<f64> {
    let mut t = vec![0.0; n * n];
    for j in 0..n {
        for i in 0..n {
            t[j + i * n] = a[i + j * n];
        }
    }
    t
}

fn identity(n: usize) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i + i * n] = 1.0;
    }
    a
}

fn fro(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm1(n: usize, a: &[f64]) -> f64 {
    (0..n)
        .map(|j| (0..n).map(|i| a[i + j * n].abs()).sum::<f64>())
        .fold(0.0, f64::max)
}

/// `‖a − b‖_F / ‖b‖_F` (absolute when `b = 0`).
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    fro(&d) / fro(b).max(f64::MIN_POSITIVE)
}

fn axpby(alpha: f64, a: &[f64], beta: f64, b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| alpha * x + beta * y).collect()
}

/// Random symmetric direction with `‖E‖_F = 1`.
fn sym_direction(n: usize, seed: u64) -> Vec<f64> {
    let g = random_vector::<f64>(n * n, seed);
    let s = axpby(0.5, &g, 0.5, &transpose(n, &g));
    let nr = fro(&s);
    s.iter().map(|x| x / nr).collect()
}

/// Random general direction with `‖E‖_F = 1`.
fn direction(n: usize, seed: u64) -> Vec<f64> {
    let g = random_vector::<f64>(n * n, seed);
    let nr = fro(&g);
    g.iter().map(|x| x / nr).collect()
}

/// Richardson-extrapolated central difference of `g` at 0 (the conformance kit's
/// [`testing::richardson`]): `D(h) = (g(h) − g(−h))/2h`, result `(4D(h/2) − D(h))/3`,
/// truncation error `O(h⁴)`.
fn richardson(h: f64, g: impl FnMut(f64) -> f64) -> f64 {
    gradmat_operators::testing::richardson(h, g).0
}

/// Reference `exp(A)`: Taylor series of degree 30 on `A/2ˢ` with `‖A/2ˢ‖₁ ≤ 1/4` (remainder
/// `≤ 4⁻³¹/31! ≈ 1e-53`), then `s` squarings.
fn expm_taylor(n: usize, a: &[f64]) -> Vec<f64> {
    let nrm = norm1(n, a);
    let s = if nrm > 0.25 {
        (nrm / 0.25).log2().ceil() as i32
    } else {
        0
    };
    let b: Vec<f64> = a.iter().map(|x| x * 0.5_f64.powi(s)).collect();
    let mut sum = identity(n);
    let mut term = identity(n);
    for k in 1..=30 {
        term = matmul(n, &term, &b);
        term.iter_mut().for_each(|x| *x /= k as f64);
        sum = axpby(1.0, &sum, 1.0, &term);
    }
    for _ in 0..s {
        sum = matmul(n, &sum, &sum);
    }
    sum
}

/// Kinds of spectra: distinct, clustered (relative gaps 1e-10) or exactly repeated.
fn spectrum(n: usize, lo: f64, hi: f64, kind: u8, seed: u64) -> Vec<f64> {
    let u = random_vector::<f64>(n, seed);
    let base: Vec<f64> = u
        .iter()
        .map(|x| {
            // map a normal sample into (0,1) and then log-uniformly into [lo, hi]
            let p = 0.5 * (1.0 + (x / 2.0_f64.sqrt()).tanh());
            (lo.ln() + p * (hi.ln() - lo.ln())).exp()
        })
        .collect();
    match kind {
        0 => base,
        1 => (0..n)
            .map(|i| base[i % 2] * (1.0 + 1e-10 * i as f64))
            .collect(),
        _ => (0..n).map(|i| base[i % 2]).collect(),
    }
}

/// A symmetric test matrix `Q diag(λ) Qᵀ`; with `indefinite` half the eigenvalues are negated.
fn sym_matrix(n: usize, lo: f64, hi: f64, kind: u8, indefinite: bool, seed: u64) -> Vec<f64> {
    let mut lam = spectrum(n, lo, hi, kind, seed);
    if indefinite {
        for (i, l) in lam.iter_mut().enumerate() {
            if i % 2 == 1 {
                *l = -*l;
            }
        }
    }
    matrix_with_spectrum(&lam, seed ^ 0x5eed)
}

fn value(f: &MatrixFunction, n: usize, a: &[f64]) -> Vec<f64> {
    SymmetricMatrixFunction::new(f.clone(), n, a)
        .expect("valid input")
        .value()
}

/// The functions of the reverse-rule tests, with whether they accept indefinite spectra.
fn all_functions() -> Vec<(MatrixFunction, bool)> {
    vec![
        (MatrixFunction::Exp, true),
        (MatrixFunction::ScaledExp(-0.7), true),
        (MatrixFunction::Log, false),
        (MatrixFunction::Sqrt, false),
        (MatrixFunction::InvSqrt, false),
        (MatrixFunction::Inv, false),
        (MatrixFunction::PowI(3), true),
        (MatrixFunction::PowI(-2), true),
        (MatrixFunction::PowI(20), false),
        (MatrixFunction::Pow(0.3), false),
        (MatrixFunction::Pow(-1.5), false),
        (MatrixFunction::custom(f64::sin, f64::cos), true),
    ]
}

// ---------------------------------------------------------------------------------------------
// forward values of the symmetric path

proptest! {
    #![proptest_config(config(48, 0x00de_75e0))]

    /// f(A) against identities. The eigendecomposition is backward stable,
    /// `Â = A + E`, `‖E‖ ≲ c·n·ε‖A‖`, and `‖f(Â) − f(A)‖ ≤ max|f'|·‖E‖`; the products in the
    /// identities add `n·ε·‖X‖‖Y‖`. With spectra in `[0.5, 4]` (κ ≤ 8) every identity residual is
    /// below `c·n·ε·κ²` with `κ² = 64`; we take `c = 16`: `tol = 1024·n·ε`.
    #[test]
    fn symmetric_values_satisfy_identities(n in 1usize..=8, kind in 0u8..3, seed in any::<u64>()) {
        let a = sym_matrix(n, 0.5, 4.0, kind, false, seed);
        let tol = 1024.0 * n as f64 * EPS;
        let id = identity(n);

        let logm = value(&MatrixFunction::Log, n, &a);
        check("exp(log A) = A (via Padé expm)", rel_diff(&expm(n, &logm).unwrap(), &a), tol)?;
        let s = value(&MatrixFunction::Sqrt, n, &a);
        check("sqrt(A)^2 = A", rel_diff(&matmul(n, &s, &s), &a), tol)?;
        let inv = value(&MatrixFunction::Inv, n, &a);
        check("inv(A) A = I", rel_diff(&matmul(n, &inv, &a), &id), tol)?;
        let is = value(&MatrixFunction::InvSqrt, n, &a);
        check("invsqrt(A)^2 A = I", rel_diff(&matmul(n, &matmul(n, &is, &is), &a), &id), tol)?;
        for k in [-3, -1, 0, 1, 2, 5, 17] {
            let p = value(&MatrixFunction::PowI(k), n, &a);
            let base = if k < 0 { inv.clone() } else { a.clone() };
            let mut r = id.clone();
            for _ in 0..k.unsigned_abs() {
                r = matmul(n, &r, &base);
            }
            check("A^k = repeated product", rel_diff(&p, &r), tol * (1.0 + k.unsigned_abs() as f64))?;
        }
        let p1 = value(&MatrixFunction::Pow(0.3), n, &a);
        let p2 = value(&MatrixFunction::Pow(0.7), n, &a);
        check("A^0.3 A^0.7 = A", rel_diff(&matmul(n, &p1, &p2), &a), tol)?;
        let ph = value(&MatrixFunction::Pow(0.5), n, &a);
        check("A^0.5 = sqrt(A)", rel_diff(&ph, &s), tol)?;
    }

    /// exp of a symmetric matrix (any sign): vs the Taylor reference, vs `Q diag(e^λ) Qᵀ` built
    /// from the prescribed spectrum, vs the Padé `expm`, and `exp(tA)` vs `expm(tA)`.
    /// Spectra in `±[0.5, 4]`: `‖e^A‖/min e^λ ≤ e⁸`, but the relative Frobenius error of
    /// `S diag(e^θ) Sᵀ` is `c·n·ε·max|f'|‖A‖/‖f(A)‖ ≤ c·n·ε·4` — `tol = 256·n·ε`.
    #[test]
    fn symmetric_exp_matches_references(n in 1usize..=8, kind in 0u8..3, seed in any::<u64>()) {
        let lam: Vec<f64> = spectrum(n, 0.5, 4.0, kind, seed)
            .iter()
            .enumerate()
            .map(|(i, l)| if i % 2 == 1 { -l } else { *l })
            .collect();
        let a = matrix_with_spectrum(&lam, seed ^ 0x5eed);
        let tol = 256.0 * n as f64 * EPS;
        let e = value(&MatrixFunction::Exp, n, &a);
        check("sym exp vs Taylor", rel_diff(&e, &expm_taylor(n, &a)), tol)?;
        let elam: Vec<f64> = lam.iter().map(|l| l.exp()).collect();
        check("sym exp vs Q diag(e^λ) Qᵀ", rel_diff(&e, &matrix_with_spectrum(&elam, seed ^ 0x5eed)), tol)?;
        check("sym exp vs Padé expm", rel_diff(&e, &expm(n, &a).unwrap()), tol)?;
        let t = -0.37;
        let et = value(&MatrixFunction::ScaledExp(t), n, &a);
        let ta: Vec<f64> = a.iter().map(|x| t * x).collect();
        check("sym exp(tA) vs expm(tA)", rel_diff(&et, &expm(n, &ta).unwrap()), tol)?;
        let c = value(&MatrixFunction::custom(f64::exp, f64::exp), n, &a);
        check("custom exp = exp", rel_diff(&c, &e), tol)?;
        // f(T)e₀, e₀ᵀf(T)e₀ and f(T)v are consistent with the dense value.
        let f = SymmetricMatrixFunction::new(MatrixFunction::Exp, n, &a).unwrap();
        check("f(T)e0 = first column", rel_diff(&f.apply_e0(), &e[..n]), tol)?;
        check("e0ᵀf(T)e0 = f(T)[0,0]", (f.quadratic_form() - e[0]).abs() / e[0].abs(), tol)?;
        let v = random_vector::<f64>(n, seed ^ 7);
        let fv: Vec<f64> = (0..n).map(|i| (0..n).map(|j| e[i + j * n] * v[j]).sum()).collect();
        check("f(T)v = dense product", rel_diff(&f.apply(&v).unwrap(), &fv), tol)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Daleckii–Krein reverse rule vs finite differences

/// `|fd − an| / (‖T̄‖_F‖E‖_F)`: FD and the analytic directional derivative agree to
/// `O(h⁴)` truncation (Richardson, `h = 1e-3`, `‖E‖_F = 1`, derivatives of `f` bounded on
/// spectra in `[0.5, 4]`: `≲ 1e-10`) plus rounding `c·n·ε·‖M̄‖‖f(T)‖/h ≲ 1e-11`. `tol = 1e-8`.
const DK_TOL: f64 = 1e-8;

proptest! {
    #![proptest_config(config(24, 0x00da_1ec1))]

    #[test]
    fn daleckii_krein_matches_fd(n in 1usize..=7, kind in 0u8..3, seed in any::<u64>()) {
        for (idx, (f, indefinite_ok)) in all_functions().into_iter().enumerate() {
            let indefinite = indefinite_ok && seed % 2 == 0;
            let s = seed.wrapping_add(idx as u64);
            let a = sym_matrix(n, 0.5, 4.0, kind, indefinite, s);
            let mbar = random_vector::<f64>(n * n, s ^ 1); // not symmetric on purpose
            let e = sym_direction(n, s ^ 2);
            let fun = SymmetricMatrixFunction::new(f.clone(), n, &a).unwrap();
            let tbar = fun.pullback(&mbar).unwrap();
            // T̄ is exactly symmetric.
            prop_assert!((0..n).all(|i| (0..n).all(|j| tbar[i + j * n].to_bits() == tbar[j + i * n].to_bits())));
            let an = dot(&tbar, &e);
            let fd = richardson(1e-3, |h| dot(&mbar, &value(&f, n, &axpby(1.0, &a, h, &e))));
            check("Daleckii-Krein vs FD", (fd - an).abs() / fro(&tbar).max(1e-300), DK_TOL)?;

            // Quadratic form ρ = e₀ᵀ f(T) e₀ with ρ̄ = 1.3.
            let rb = 1.3;
            let tq = fun.pullback_quadratic_form(rb).unwrap();
            let fdq = richardson(1e-3, |h| {
                rb * SymmetricMatrixFunction::new(f.clone(), n, &axpby(1.0, &a, h, &e)).unwrap().quadratic_form()
            });
            check("quadratic-form pullback vs FD", (fdq - dot(&tq, &e)).abs() / fro(&tq).max(1e-300), DK_TOL)?;
            let mut m0 = vec![0.0; n * n];
            m0[0] = rb;
            check("quadratic-form pullback = general pullback", rel_diff(&tq, &fun.pullback(&m0).unwrap()), 64.0 * n as f64 * EPS)?;

            // f(T)e₀ with cotangent w̄.
            let wbar = random_vector::<f64>(n, s ^ 3);
            let tw = fun.pullback_apply_e0(&wbar).unwrap();
            let fdw = richardson(1e-3, |h| {
                dot(&wbar, &SymmetricMatrixFunction::new(f.clone(), n, &axpby(1.0, &a, h, &e)).unwrap().apply_e0())
            });
            check("f(T)e0 pullback vs FD", (fdw - dot(&tw, &e)).abs() / fro(&tw).max(1e-300), DK_TOL)?;
            let mut mw = vec![0.0; n * n];
            mw[..n].copy_from_slice(&wbar);
            check("f(T)e0 pullback = general pullback", rel_diff(&tw, &fun.pullback(&mw).unwrap()), 64.0 * n as f64 * EPS)?;
        }
    }

    /// The tridiagonal mapping: `ā_k = T̄[k,k]`, `b̄_k = T̄[k+1,k] + T̄[k,k+1]` against FD on the
    /// diagonal and off-diagonal entries themselves (same tolerance derivation as above).
    #[test]
    fn tridiagonal_cotangents_match_fd(n in 1usize..=8, seed in any::<u64>()) {
        let diag: Vec<f64> = random_vector::<f64>(n, seed).iter().map(|x| 3.0 + 0.5 * x).collect();
        let off: Vec<f64> = random_vector::<f64>(n.saturating_sub(1), seed ^ 9).iter().map(|x| 0.4 * x).collect();
        let f = MatrixFunction::Log;
        let fun = SymmetricMatrixFunction::from_tridiagonal(f.clone(), &diag, &off).unwrap();
        let tbar = fun.pullback_quadratic_form(1.0).unwrap();
        let (abar, bbar) = tridiagonal_cotangent(n, &tbar).unwrap();
        let rho = |d: &[f64], o: &[f64]| SymmetricMatrixFunction::from_tridiagonal(f.clone(), d, o).unwrap().quadratic_form();
        let da = random_vector::<f64>(n, seed ^ 10);
        let db = random_vector::<f64>(n.saturating_sub(1), seed ^ 11);
        let fd = richardson(1e-3, |h| rho(&axpby(1.0, &diag, h, &da), &axpby(1.0, &off, h, &db)));
        let an = dot(&abar, &da) + dot(&bbar, &db);
        let scale = (fro(&abar) + fro(&bbar)) * (fro(&da) + fro(&db));
        check("tridiagonal cotangent vs FD", (fd - an).abs() / scale.max(1e-300), DK_TOL)?;
    }
}

// ---------------------------------------------------------------------------------------------
// divided differences

/// `f'` and the odd derivatives `f'''`, `f⁽⁵⁾` of `xᵖ` at `m`.
fn pow_derivs(p: f64, m: f64) -> (f64, f64, f64) {
    let d1 = p * m.powf(p - 1.0);
    let d3 = p * (p - 1.0) * (p - 2.0) * m.powf(p - 3.0);
    let d5 = p * (p - 1.0) * (p - 2.0) * (p - 3.0) * (p - 4.0) * m.powf(p - 5.0);
    (d1, d3, d5)
}

/// Reference `f[a,b] = f'(m) + f'''(m)d²/24 + f⁽⁵⁾(m)d⁴/1920 + O(d⁶)`, `m = (a+b)/2`, `d = a−b`.
fn dd_reference(f: &MatrixFunction, a: f64, b: f64) -> f64 {
    let m = 0.5 * (a + b);
    let d = a - b;
    let (d1, d3, d5) = match f {
        MatrixFunction::Exp => (m.exp(), m.exp(), m.exp()),
        MatrixFunction::ScaledExp(t) => {
            let e = (t * m).exp();
            (t * e, t.powi(3) * e, t.powi(5) * e)
        }
        MatrixFunction::Log => (1.0 / m, 2.0 / m.powi(3), 24.0 / m.powi(5)),
        MatrixFunction::Sqrt => pow_derivs(0.5, m),
        MatrixFunction::InvSqrt => pow_derivs(-0.5, m),
        MatrixFunction::Inv => pow_derivs(-1.0, m),
        MatrixFunction::PowI(k) => pow_derivs(f64::from(*k), m),
        MatrixFunction::Pow(p) => pow_derivs(*p, m),
        _ => unreachable!(),
    };
    d1 + d3 * d * d / 24.0 + d5 * d.powi(4) / 1920.0
}

/// For `b = a(1+δ)`, `δ ∈ {1e-4, 1e-8, 1e-12, 0}`, the closed forms agree with the Taylor
/// reference to `1e-13` relative (the reference's own rounding is a few ε, the truncation
/// `f⁽⁷⁾d⁶/322560` is below `1e-24` relative, and the closed forms lose at most a few ε plus
/// `ε·|t·a|` in the exponent for `exp(t·)`). Naive `(f(a) − f(b))/(a − b)` would lose
/// `ε/δ`, i.e. all digits at `δ = 1e-12`.
#[test]
fn divided_differences_close_arguments() {
    let fs = [
        MatrixFunction::Exp,
        MatrixFunction::ScaledExp(-2.5),
        MatrixFunction::ScaledExp(0.3),
        MatrixFunction::Log,
        MatrixFunction::Sqrt,
        MatrixFunction::InvSqrt,
        MatrixFunction::Inv,
        MatrixFunction::PowI(1),
        MatrixFunction::PowI(2),
        MatrixFunction::PowI(7),
        MatrixFunction::PowI(16),
        MatrixFunction::PowI(17),
        MatrixFunction::PowI(40),
        MatrixFunction::PowI(-1),
        MatrixFunction::PowI(-3),
        MatrixFunction::PowI(-25),
        MatrixFunction::Pow(0.3),
        MatrixFunction::Pow(2.7),
        MatrixFunction::Pow(-1.5),
    ];
    let mut worst = 0.0_f64;
    for f in &fs {
        for a in [1e-3, 0.7, 1.0, 3.5, 9.0] {
            for delta in [1e-4, 1e-8, 1e-12, 0.0] {
                let b = a * (1.0 + delta);
                let got = f.divided_difference(a, b);
                let want = dd_reference(f, a, b);
                let err = ((got - want) / want).abs();
                worst = worst.max(err);
                assert!(
                    err <= 1e-13,
                    "{f:?} a={a} δ={delta}: {got:e} vs {want:e} ({err:e})"
                );
                // equal arguments give f'
                if delta == 0.0 {
                    let d = f.derivative(a);
                    assert!(((got - d) / d).abs() <= 4.0 * EPS, "{f:?} f'({a})");
                }
            }
        }
    }
    // Negative arguments for functions defined there.
    for f in [
        MatrixFunction::Exp,
        MatrixFunction::PowI(3),
        MatrixFunction::PowI(20),
        MatrixFunction::PowI(-4),
        MatrixFunction::Inv,
    ] {
        for a in [-0.7, -3.5] {
            for delta in [1e-4, 1e-8, 1e-12, 0.0] {
                let b = a * (1.0 + delta);
                let got = f.divided_difference(a, b);
                let want = dd_reference(&f, a, b);
                let err = ((got - want) / want).abs();
                worst = worst.max(err);
                assert!(err <= 1e-13, "{f:?} a={a} δ={delta}: {got:e} vs {want:e}");
            }
        }
    }
    eprintln!("worst divided difference (closed forms) rel. error: {worst:.3e}");
}

/// Far-apart arguments (including opposite signs for the integer powers): the plain quotient is
/// accurate there, `tol = 64ε` relative.
#[test]
fn divided_differences_far_arguments() {
    let cases: Vec<(MatrixFunction, f64, f64)> = vec![
        (MatrixFunction::Exp, -3.0, 2.0),
        (MatrixFunction::ScaledExp(-1.5), 800.0, 0.5),
        (MatrixFunction::Log, 1e-3, 50.0),
        (MatrixFunction::Sqrt, 0.0, 4.0),
        (MatrixFunction::InvSqrt, 0.25, 9.0),
        (MatrixFunction::Inv, -2.0, 3.0),
        (MatrixFunction::PowI(20), -1.5, 1.2),
        (MatrixFunction::PowI(21), 2.0, 3.0),
        (MatrixFunction::PowI(-20), -1.5, 1.2),
        (MatrixFunction::Pow(0.5), 0.0, 4.0),
        (MatrixFunction::Pow(1.5), 0.3, 7.0),
    ];
    for (f, a, b) in &cases {
        let naive = (f.eval(*a) - f.eval(*b)) / (a - b);
        let got = f.divided_difference(*a, *b);
        let err = ((got - naive) / naive).abs();
        assert!(err <= 64.0 * EPS, "{f:?} [{a}, {b}]: {got:e} vs {naive:e}");
        assert_eq!(
            got.to_bits(),
            f.divided_difference(*b, *a).to_bits(),
            "symmetry"
        );
    }
}

/// Custom functions: midpoint derivative for `|a−b| ≤ ∛ε·max(1,|a|,|b|)`, plain quotient
/// otherwise. Error bound: quotient `≈ 2ε|f|/(|d||f'|)`, midpoint `|f'''|d²/(24|f'|)`; for
/// `f = exp` (`f = f' = f'''`) that is `4ε/d` resp. `d²/24`, plus a few ε of rounding.
#[test]
fn divided_differences_custom() {
    let f = MatrixFunction::custom(f64::exp, f64::exp);
    let cbrt = EPS.cbrt();
    for a in [0.7_f64, 1.0, 3.5, 9.0] {
        for delta in [1e-2, 1e-4, 1e-8, 1e-12, 0.0] {
            let b = a * (1.0 + delta);
            let d = (b - a).abs();
            let got = f.divided_difference(a, b);
            // reference: the closed form for exp (checked above; the Taylor reference would be
            // truncation-limited at δ = 1e-2)
            let want = MatrixFunction::Exp.divided_difference(a, b);
            let tol = if d <= cbrt * a.max(1.0) {
                d * d / 24.0 + 8.0 * EPS
            } else {
                4.0 * EPS / d + 8.0 * EPS
            };
            let err = ((got - want) / want).abs();
            assert!(err <= tol, "a={a} δ={delta}: err {err:e} > {tol:e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// general exp: values

/// General (non-normal) matrices with prescribed 1-norm from `1e-3` to `20`.
fn general_matrix(n: usize, norm: f64, seed: u64) -> Vec<f64> {
    let g = random_vector::<f64>(n * n, seed);
    let s = norm / norm1(n, &g);
    g.iter().map(|x| x * s).collect()
}

proptest! {
    #![proptest_config(config(48, 0x00e7_e7e7))]

    /// Padé expm vs the Taylor reference and `exp(A)exp(−A) = I`. Both methods are accurate to
    /// about `c·n·ε·‖A‖₁·e^{2‖A‖₁}/‖e^A‖…` in the worst case; for Gaussian matrices the observed
    /// relative errors stay below `1e-14·(1+‖A‖₁)`. We take `tol = 64·n·ε·(1 + ‖A‖₁)`, and for the
    /// inverse identity `64·n·ε·(1+‖A‖₁)·‖e^A‖‖e^{−A}‖` (the conditioning of the product).
    #[test]
    fn expm_matches_taylor(n in 1usize..=8, lognorm in -3.0f64..1.3, seed in any::<u64>()) {
        let norm = 10f64.powf(lognorm);
        let a = general_matrix(n, norm, seed);
        let e = expm(n, &a).unwrap();
        let tol = 64.0 * n as f64 * EPS * (1.0 + norm);
        check("expm vs Taylor", rel_diff(&e, &expm_taylor(n, &a)), tol)?;
        let am: Vec<f64> = a.iter().map(|x| -x).collect();
        let em = expm(n, &am).unwrap();
        let prod = matmul(n, &e, &em);
        let cond = fro(&e) * fro(&em) / (n as f64).sqrt();
        check("exp(A)exp(-A) = I (scaled by cond)", rel_diff(&prod, &identity(n)) / cond, tol)?;
        // scaled and e₀ helpers
        let t = 0.6;
        let ta: Vec<f64> = a.iter().map(|x| t * x).collect();
        let et = expm_scaled(n, &a, t).unwrap();
        check("expm_scaled = expm(tA)", rel_diff(&et, &expm(n, &ta).unwrap()), 4.0 * EPS)?;
        check("expm_scaled_e0 = first column", rel_diff(&expm_scaled_e0(n, &a, t).unwrap(), &et[..n]), 0.0)?;
    }
}

#[test]
fn expm_closed_forms() {
    // Rotation generator: exp([[0, −w], [w, 0]]) = [[cos w, −sin w], [sin w, cos w]], for w
    // across all Padé degrees and the scaled branch (‖A‖₁ = |w|).
    for w in [1e-3_f64, 0.1, 0.5, 1.5, 3.0, 10.0, 30.0] {
        let r = expm(2, &[0.0, w, -w, 0.0]).unwrap();
        let c = [w.cos(), w.sin(), -w.sin(), w.cos()];
        // squaring s times amplifies the O(ε) Padé error by about 2ˢ ≈ |w|/θ₁₃.
        let tol = 16.0 * EPS * (1.0 + w);
        for (x, y) in r.iter().zip(&c) {
            assert!((x - y).abs() <= tol, "w={w}: {r:?} vs {c:?}");
        }
    }
    // Nilpotent Jordan block N (ones on the superdiagonal), scaled by c:
    // exp(cN) = Σ_k cᵏNᵏ/k!, entries (i, i+k) = cᵏ/k!.
    for (n, c) in [(3, 1.0_f64), (5, 2.0), (6, 7.0), (8, 0.01)] {
        let mut a = vec![0.0; n * n];
        for i in 0..n - 1 {
            a[i + (i + 1) * n] = c;
        }
        let e = expm(n, &a).unwrap();
        for j in 0..n {
            for i in 0..n {
                let want = if j >= i {
                    let k = (j - i) as i32;
                    c.powi(k) / (1..=k).map(f64::from).product::<f64>()
                } else {
                    0.0
                };
                let tol = 64.0 * EPS * want.abs().max(1.0);
                assert!(
                    (e[i + j * n] - want).abs() <= tol,
                    "Jordan n={n} c={c} ({i},{j}): {} vs {want}",
                    e[i + j * n]
                );
            }
        }
    }
    // Diagonal: exp(diag(d)) = diag(e^d); the Padé r_m of a diagonal matrix is entrywise and the
    // squarings of a diagonal are exact up to rounding, relative error ≤ 16·s·ε.
    let d = [-20.0_f64, -3.0, 0.0, 1e-3, 2.5, 15.0];
    let n = d.len();
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i + i * n] = d[i];
    }
    let e = expm(n, &a).unwrap();
    for j in 0..n {
        for i in 0..n {
            let want = if i == j { d[i].exp() } else { 0.0 };
            assert!(
                (e[i + j * n] - want).abs() <= 256.0 * EPS * want.abs(),
                "diag ({i},{j}): {} vs {want}",
                e[i + j * n]
            );
        }
    }
    // 1×1 and zero matrix.
    let one = expm(1, &[0.7_f64]).unwrap();
    assert!((one[0] - 0.7_f64.exp()).abs() <= 2.0 * EPS * 0.7_f64.exp());
    let z = expm(3, &[0.0_f64; 9]).unwrap();
    assert!(rel_diff(&z, &identity(3)) <= 0.0);
}

// ---------------------------------------------------------------------------------------------
// general exp: reverse rules vs finite differences

proptest! {
    #![proptest_config(config(40, 0x00f2_ec4e))]

    /// `H̄ = L_exp(Hᵀ, M̄)` vs Richardson FD of `⟨M̄, exp(H + hE)⟩`, `‖E‖_F = 1`. The FD step is
    /// `h = 1e-3·max(1, ‖H‖₁)^{-1/2}`; truncation `h⁴·‖D⁵‖` and rounding
    /// `c·n·ε·(1+‖H‖₁)‖M̄‖‖e^H‖/h` are both `≲ 1e-10` of `‖H̄‖_F`; `tol = 1e-7`.
    #[test]
    fn expm_pullback_matches_fd(n in 1usize..=6, lognorm in -3.0f64..1.3, seed in any::<u64>()) {
        let norm = 10f64.powf(lognorm);
        let hm = general_matrix(n, norm, seed);
        let mbar = random_vector::<f64>(n * n, seed ^ 1);
        let e = direction(n, seed ^ 2);
        let hbar = expm_pullback(n, &hm, &mbar).unwrap();
        let step = 1e-3 / norm.max(1.0).sqrt();
        let fd = richardson(step, |h| dot(&mbar, &expm(n, &axpby(1.0, &hm, h, &e)).unwrap()));
        check("expm pullback vs FD", (fd - dot(&hbar, &e)).abs() / fro(&hbar), 1e-7)?;
        // Adjoint identity ⟨M̄, L(H, E)⟩ = ⟨L(Hᵀ, M̄), E⟩: both sides come from different block
        // exponentials, each accurate to c·n·ε·(1+‖H‖₁) relative.
        let l = expm_frechet(n, &hm, &e).unwrap();
        let lhs = dot(&mbar, &l);
        let rhs = dot(&hbar, &e);
        check("Fréchet adjoint identity", (lhs - rhs).abs() / (fro(&mbar) * fro(&l)).max(fro(&hbar)), 256.0 * n as f64 * EPS * (1.0 + norm))?;
        // Forward Fréchet vs FD of the whole matrix.
        let fdl: Vec<f64> = {
            let p = expm(n, &axpby(1.0, &hm, step, &e)).unwrap();
            let m = expm(n, &axpby(1.0, &hm, -step, &e)).unwrap();
            let p2 = expm(n, &axpby(1.0, &hm, 0.5 * step, &e)).unwrap();
            let m2 = expm(n, &axpby(1.0, &hm, -0.5 * step, &e)).unwrap();
            (0..n * n).map(|k| (4.0 * (p2[k] - m2[k]) / step - (p[k] - m[k]) / (2.0 * step)) / 3.0).collect()
        };
        check("expm_frechet vs FD", rel_diff(&l, &fdl), 1e-7)?;
    }

    /// `exp(tH)`: `H̄ = t·L(tHᵀ, M̄)`, `t̄ = ⟨M̄, H e^{tH}⟩` vs FD in `H` and in `t`
    /// (same tolerance derivation as above), and the `e₀` variants against the general one.
    #[test]
    fn expm_scaled_pullback_matches_fd(n in 1usize..=6, lognorm in -3.0f64..1.0, t in -1.5f64..1.5, seed in any::<u64>()) {
        let norm = 10f64.powf(lognorm);
        let hm = general_matrix(n, norm, seed);
        let mbar = random_vector::<f64>(n * n, seed ^ 1);
        let e = direction(n, seed ^ 2);
        let g = expm_scaled_pullback(n, &hm, t, &mbar).unwrap();
        let scale_h = norm.max(1.0);
        let step = 1e-3 / scale_h.sqrt();
        let fdh = richardson(step, |h| dot(&mbar, &expm_scaled(n, &axpby(1.0, &hm, h, &e), t).unwrap()));
        check("scaled expm H̄ vs FD", (fdh - dot(&g.h, &e)).abs() / fro(&g.h).max(1e-300), 1e-7)?;
        let fdt = richardson(step, |h| dot(&mbar, &expm_scaled(n, &hm, t + h, ).unwrap()));
        let tscale = fro(&mbar) * fro(&matmul(n, &hm, &expm_scaled(n, &hm, t).unwrap()));
        check("scaled expm t̄ vs FD", (fdt - g.t).abs() / tscale.max(1e-300), 1e-7)?;
        // e₀ variant: M̄ = w̄ e₀ᵀ.
        let wbar = random_vector::<f64>(n, seed ^ 3);
        let ge = expm_scaled_e0_pullback(n, &hm, t, &wbar).unwrap();
        let mut mw = vec![0.0; n * n];
        mw[..n].copy_from_slice(&wbar);
        let gm = expm_scaled_pullback(n, &hm, t, &mw).unwrap();
        check("e0 pullback = general (H̄)", rel_diff(&ge.h, &gm.h), 0.0)?;
        check("e0 pullback = general (t̄)", (ge.t - gm.t).abs(), 0.0)?;
        let fdw = richardson(step, |h| dot(&wbar, &expm_scaled_e0(n, &hm, t + h).unwrap()));
        check("e0 t̄ vs FD", (fdw - ge.t).abs() / (fro(&wbar) * fro(&matmul(n, &hm, &expm_scaled(n, &hm, t).unwrap()))).max(1e-300), 1e-7)?;
    }
}

/// A huge or tiny cotangent does not change the relative accuracy of the block-exponential
/// adjoint (the cotangent block is normalised before the exponential).
#[test]
fn expm_pullback_is_scale_invariant() {
    let n = 5;
    let hm = general_matrix(n, 3.0, 17);
    let mbar = random_vector::<f64>(n * n, 18);
    let base = expm_pullback(n, &hm, &mbar).unwrap();
    for s in [1e-200, 1e-8, 1e8, 1e200] {
        let ms: Vec<f64> = mbar.iter().map(|x| x * s).collect();
        let g: Vec<f64> = expm_pullback(n, &hm, &ms)
            .unwrap()
            .iter()
            .map(|x| x / s)
            .collect();
        assert!(rel_diff(&g, &base) <= 64.0 * EPS, "scale {s}");
    }
    assert!(fro(&expm_pullback(n, &hm, &[0.0; 25]).unwrap()) <= 0.0);
}

// ---------------------------------------------------------------------------------------------
// f32

/// The `f32` entry points compute in `f64` and round once: results equal the `f64` results of
/// the `f32`-rounded inputs to within `2ε₃₂` relative (one rounding plus the `f64` error).
#[test]
fn f32_matches_f64() {
    let eps32 = f64::from(f32::EPSILON);
    let n = 6;
    let a64 = sym_matrix(n, 0.5, 4.0, 1, false, 5);
    let a32: Vec<f32> = a64.iter().map(|&x| x as f32).collect();
    let a64r: Vec<f64> = a32.iter().map(|&x| f64::from(x)).collect();
    let up = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let mbar64 = random_vector::<f64>(n * n, 6);
    let mbar32: Vec<f32> = mbar64.iter().map(|&x| x as f32).collect();
    let mbar64r = up(&mbar32);
    for (f, _) in all_functions() {
        let f32f = SymmetricMatrixFunction::<f32>::new(f.clone(), n, &a32).unwrap();
        let f64f = SymmetricMatrixFunction::<f64>::new(f.clone(), n, &a64r).unwrap();
        assert!(
            rel_diff(&up(&f32f.value()), &f64f.value()) <= 2.0 * eps32,
            "{f:?}"
        );
        let q = f64::from(f32f.quadratic_form());
        assert!(
            (q - f64f.quadratic_form()).abs() <= 2.0 * eps32 * q.abs(),
            "{f:?}"
        );
        let t32 = f32f.pullback(&mbar32).unwrap();
        let t64 = f64f.pullback(&mbar64r).unwrap();
        assert!(rel_diff(&up(&t32), &t64) <= 2.0 * eps32, "{f:?} pullback");
    }
    let h64 = general_matrix(n, 4.0, 8);
    let h32: Vec<f32> = h64.iter().map(|&x| x as f32).collect();
    let h64r = up(&h32);
    let e32 = expm(n, &h32).unwrap();
    assert!(rel_diff(&up(&e32), &expm(n, &h64r).unwrap()) <= 2.0 * eps32);
    let g32 = expm_scaled_pullback(n, &h32, 0.5_f32, &mbar32).unwrap();
    let g64 = expm_scaled_pullback(n, &h64r, 0.5, &mbar64r).unwrap();
    assert!(rel_diff(&up(&g32.h), &g64.h) <= 2.0 * eps32);
    assert!((f64::from(g32.t) - g64.t).abs() <= 2.0 * eps32 * g64.t.abs());
    // A value that overflows f32 but not f64 is an error, not an infinity.
    let err = SymmetricMatrixFunction::<f32>::new(MatrixFunction::Exp, 1, &[100.0_f32]);
    assert!(matches!(
        err,
        Err(MatfunError::NonFiniteValue { index: 0, .. })
    ));
    // An f32 matrix that is symmetric only to f64 rounding passes the f32 tolerance.
    let mut s = a32.clone();
    s[1] *= 1.0 + 2.0 * f32::EPSILON;
    assert!(SymmetricEigen::new(n, &s).is_ok());
}

// ---------------------------------------------------------------------------------------------
// errors

fn diag(d: &[f64]) -> Vec<f64> {
    let n = d.len();
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i + i * n] = d[i];
    }
    a
}

#[test]
fn errors_shapes_and_non_finite() {
    type F = SymmetricMatrixFunction<f64>;
    assert!(matches!(
        F::new(MatrixFunction::Exp, 0, &[]),
        Err(MatfunError::EmptyMatrix { .. })
    ));
    assert!(matches!(
        expm::<f64>(0, &[]),
        Err(MatfunError::EmptyMatrix { .. })
    ));
    assert!(matches!(
        F::from_tridiagonal(MatrixFunction::Exp, &[], &[]),
        Err(MatfunError::EmptyMatrix { .. })
    ));
    assert!(matches!(
        F::new(MatrixFunction::Exp, 3, &[0.0; 8]),
        Err(MatfunError::DimensionMismatch {
            expected: 9,
            got: 8,
            ..
        })
    ));
    assert!(matches!(
        expm(2, &[0.0; 3]),
        Err(MatfunError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        F::from_tridiagonal(MatrixFunction::Exp, &[1.0, 2.0], &[0.1, 0.2]),
        Err(MatfunError::DimensionMismatch {
            expected: 1,
            got: 2,
            ..
        })
    ));
    let f = F::new(MatrixFunction::Exp, 2, &diag(&[1.0, 2.0])).unwrap();
    assert!(matches!(
        f.pullback(&[0.0; 3]),
        Err(MatfunError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        f.pullback_apply_e0(&[0.0; 3]),
        Err(MatfunError::DimensionMismatch {
            expected: 2,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        f.apply(&[0.0; 1]),
        Err(MatfunError::DimensionMismatch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        expm_pullback(2, &[0.0; 4], &[0.0; 5]),
        Err(MatfunError::DimensionMismatch {
            expected: 4,
            got: 5,
            ..
        })
    ));
    assert!(matches!(
        expm_scaled_e0_pullback(2, &[0.0; 4], 1.0, &[0.0; 3]),
        Err(MatfunError::DimensionMismatch {
            expected: 2,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        expm_frechet(2, &[0.0; 4], &[0.0; 3]),
        Err(MatfunError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        tridiagonal_cotangent(2, &[0.0; 3]),
        Err(MatfunError::DimensionMismatch { .. })
    ));

    // Non-finite inputs, with their position.
    let mut a = diag(&[1.0, 2.0, 3.0]);
    a[2 + 3] = f64::NAN; // (2, 1)
    assert!(matches!(
        F::new(MatrixFunction::Exp, 3, &a),
        Err(MatfunError::NonFiniteInput { row: 2, col: 1, .. })
    ));
    assert!(matches!(
        expm(3, &a),
        Err(MatfunError::NonFiniteInput { row: 2, col: 1, .. })
    ));
    assert!(matches!(
        F::from_tridiagonal(MatrixFunction::Exp, &[1.0, f64::INFINITY], &[0.0]),
        Err(MatfunError::NonFiniteInput { row: 1, .. })
    ));
    assert!(matches!(
        f.pullback(&[0.0, f64::INFINITY, 0.0, 0.0]),
        Err(MatfunError::NonFiniteInput { row: 1, col: 0, .. })
    ));
    assert!(matches!(
        expm_pullback(2, &[0.0; 4], &[0.0, 0.0, 0.0, f64::NAN]),
        Err(MatfunError::NonFiniteInput { row: 1, col: 1, .. })
    ));

    // Non-finite parameters.
    assert!(matches!(
        F::new(MatrixFunction::ScaledExp(f64::NAN), 1, &[1.0]),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
    assert!(matches!(
        F::new(MatrixFunction::Pow(f64::INFINITY), 1, &[1.0]),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
    assert!(matches!(
        expm_scaled(1, &[1.0], f64::NAN),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
    assert!(matches!(
        expm_scaled_pullback(1, &[1.0], f64::INFINITY, &[1.0]),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
    assert!(matches!(
        f.pullback_quadratic_form(f64::NAN),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
}

#[test]
fn errors_symmetry() {
    // 3×3 with A[2,0] − A[0,2] = 1e-6 (relative to max|A| = 2): far above 100·3·ε·2.
    let mut a = diag(&[1.0, 2.0, 1.5]);
    a[2] = 0.3 + 1e-6; // (2, 0)
    a[6] = 0.3; // (0, 2)
    match SymmetricMatrixFunction::<f64>::new(MatrixFunction::Exp, 3, &a) {
        Err(MatfunError::NotSymmetric {
            max_asymmetry,
            row,
            col,
            tolerance,
        }) => {
            assert_eq!((row, col), (2, 0));
            assert!((max_asymmetry - 1e-6).abs() < 1e-15);
            assert!(tolerance < 1e-12);
        }
        other => panic!("expected NotSymmetric, got {other:?}"),
    }
    // Rounding-level asymmetry is accepted and the symmetric part is used.
    a[2] = 0.3 * (1.0 + 4.0 * EPS);
    assert!(SymmetricMatrixFunction::<f64>::new(MatrixFunction::Exp, 3, &a).is_ok());
    let msg = MatfunError::NotSymmetric {
        max_asymmetry: 1e-6,
        row: 2,
        col: 0,
        tolerance: 1e-13,
    }
    .to_string();
    assert!(msg.contains("not symmetric"), "{msg}");
}

#[test]
fn errors_domains() {
    type F = SymmetricMatrixFunction<f64>;
    let neg = diag(&[-2.0, 1.0, 3.0]); // eigenvalue #0 = −2
    let zero = diag(&[0.0, 1.0, 3.0]); // eigenvalue #0 = 0
    let outside = |f: MatrixFunction, a: &[f64], want: f64| match F::new(f.clone(), 3, a) {
        Err(MatfunError::EigenvalueOutsideDomain {
            index, eigenvalue, ..
        }) => {
            assert_eq!(index, 0, "{f:?}");
            assert!((eigenvalue - want).abs() <= 0.0, "{f:?}");
        }
        other => panic!("{f:?}: expected EigenvalueOutsideDomain, got {other:?}"),
    };
    outside(MatrixFunction::Log, &neg, -2.0);
    outside(MatrixFunction::Log, &zero, 0.0);
    outside(MatrixFunction::InvSqrt, &zero, 0.0);
    outside(MatrixFunction::Sqrt, &neg, -2.0);
    outside(MatrixFunction::Inv, &zero, 0.0);
    outside(MatrixFunction::Inv, &neg, -2.0);
    outside(MatrixFunction::PowI(-1), &zero, 0.0);
    outside(MatrixFunction::Pow(0.5), &neg, -2.0);
    outside(MatrixFunction::Pow(-0.5), &zero, 0.0);
    // Indefinite is fine for exp, integer powers (PowI(-1) is the inverse on any non-zero
    // spectrum) and custom functions.
    for f in [
        MatrixFunction::Exp,
        MatrixFunction::PowI(-1),
        MatrixFunction::PowI(3),
        MatrixFunction::PowI(-2),
        MatrixFunction::custom(f64::sin, f64::cos),
    ] {
        let g = F::new(f.clone(), 3, &neg).unwrap();
        assert!(g.pullback_quadratic_form(1.0).is_ok(), "{f:?}");
    }
    // sqrt and x^p (0 < p < 1) are defined at 0 but not differentiable: forward ok, reverse
    // errors; x^1.5 is differentiable at 0.
    for f in [MatrixFunction::Sqrt, MatrixFunction::Pow(0.5)] {
        let g = F::new(f.clone(), 3, &zero).unwrap();
        assert!((g.value()[0]).abs() <= 0.0);
        assert!(matches!(
            g.pullback_quadratic_form(1.0),
            Err(MatfunError::NotDifferentiable { index: 0, .. })
        ));
        assert!(matches!(
            g.pullback(&[0.0; 9]),
            Err(MatfunError::NotDifferentiable { index: 0, .. })
        ));
    }
    let g = F::new(MatrixFunction::Pow(1.5), 3, &zero).unwrap();
    assert!(g.pullback_quadratic_form(1.0).is_ok());
    // Overflow of f(θ) and a custom function returning NaN.
    assert!(matches!(
        F::new(MatrixFunction::Exp, 3, &diag(&[1.0, 2.0, 1000.0])),
        Err(MatfunError::NonFiniteValue { index: 2, .. })
    ));
    let bad = MatrixFunction::custom(|x| if x > 2.0 { f64::NAN } else { x }, |_| 1.0);
    assert!(matches!(
        F::new(bad, 3, &diag(&[1.0, 2.0, 3.0])),
        Err(MatfunError::NonFiniteValue { index: 2, .. })
    ));
    let bad_deriv = MatrixFunction::custom(|x| x, |x| if x > 2.0 { f64::NAN } else { 1.0 });
    let g = F::new(bad_deriv, 3, &diag(&[1.0, 2.0, 3.0])).unwrap();
    assert!(matches!(
        g.pullback_quadratic_form(1.0),
        Err(MatfunError::NonFiniteValue { index: 2, .. })
    ));
    // The general exp overflows.
    assert!(matches!(
        expm(2, &diag(&[1.0, 1000.0])),
        Err(MatfunError::NonFiniteResult { .. })
    ));
    assert!(matches!(
        expm_pullback(2, &diag(&[1.0, 1000.0]), &[1.0; 4]),
        Err(MatfunError::NonFiniteResult { .. })
    ));
    // Finite entries whose 1-norm overflows.
    assert!(matches!(
        expm(2, &[1e308, 1e308, 0.0, 0.0]),
        Err(MatfunError::NonFiniteResult { .. })
    ));
    // Messages name the function, the index and the eigenvalue.
    let msg = F::new(MatrixFunction::Log, 3, &neg)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("log") && msg.contains("#0") && msg.contains("-2"),
        "{msg}"
    );
}

/// Matrices whose largest entry is subnormal or near `f64::MAX` decompose (fuzz finding
/// `dense_matfun`, `fuzz/regressions/dense_matfun/crash-d0b0…`: `exp` of `diag(3.5e-311, 0, 0)`
/// was `EigensolverFailed` although the Padé `expm` of the same matrix succeeded). Around the
/// underflow threshold faer's solver also returned **wrong** eigenvalues without an error (the
/// off-diagonal of `[[s, s/2], [s/2, s]]` was dropped for `s = 2.3e-308`: eigenvalues `s, s`
/// instead of `s/2, 3s/2`). Both are fixed by an exact power-of-two scaling before the solver;
/// eigenvalues that overflow when scaled back are `NonFiniteResult`, not a solver failure.
#[test]
fn tiny_and_huge_matrices_decompose_exactly_scaled() {
    // The fuzz input itself.
    let a = [3.5e-311, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let m = SymmetricMatrixFunction::<f64>::new(MatrixFunction::Exp, 3, &a).unwrap();
    let e = expm(3, &a).unwrap();
    for (p, q) in m.value().iter().zip(&e) {
        assert!((p - q).abs() <= 4.0 * EPS, "{p} vs {q}");
    }
    for s in [
        1e-300, 2.3e-308, 1e-308, 3e-309, 3.5e-311, 1e-320, 1e300, 1e307, 1.7e308,
    ] {
        // [[s, s/2, 0], [s/2, s, 0], [0, 0, s/4]]: eigenvalues s/4, s/2, 3s/2.
        let a = [s, s / 2.0, 0.0, s / 2.0, s, 0.0, 0.0, 0.0, s / 4.0];
        let want: [f64; 3] = [s / 4.0, s / 2.0, 1.5 * s];
        match SymmetricEigen::new(3, &a) {
            Ok(eig) => {
                for (got, want) in eig.values().iter().zip(want) {
                    // Relative accuracy, except where the eigenvalue itself is subnormal.
                    let tol = 8.0 * EPS * want.abs() + 4.0 * 5e-324;
                    assert!((got - want).abs() <= tol, "s = {s:e}: {got:e} vs {want:e}");
                }
            }
            Err(e) => {
                assert!(!(1.5 * s).is_finite(), "s = {s:e}: {e}");
                assert!(matches!(e, MatfunError::NonFiniteResult { .. }), "{e}");
            }
        }
        // The diagonal matrix diag(s, 0, 0), whose eigenvalues are all representable.
        let d = [s, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let v = SymmetricEigen::new(3, &d).unwrap().values().to_vec();
        assert_eq!(&v[..2], &[0.0, 0.0], "s = {s:e}");
        assert!((v[2] - s).abs() <= 4.0 * EPS * s, "s = {s:e}: {:e}", v[2]);
    }
}
