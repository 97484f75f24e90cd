//! The forward half of the `lanczos` and `arnoldi` fuzz properties (feature `fuzzing`; not part
//! of the public API). See `docs/reliability.md`.
//!
//! The fuzz targets `lanczos` and `arnoldi` drive a decomposition **and** its adjoint, so their
//! combined checks live in `gradmat-adjoint` (`gradmat_adjoint::fuzz`), which depends on this
//! crate. The decoding of a case and every property of the decomposition itself are here, with
//! the code they fuzz: [`lanczos_case`] and [`arnoldi_case`] decode the bytes, run the
//! decomposition and check it, and leave the rest of the input (the cotangents) to the adjoint's
//! check. [`check_lanczos_decomposition`] and [`check_arnoldi_decomposition`] stop after the
//! forward checks; this crate's `tests/fuzz_corpus.rs` replays the two corpora through them, so
//! `cargo test -p gradmat-krylov` checks the decompositions' properties alone.

use crate::arnoldi::{arnoldi, Arnoldi, ArnoldiParams, Reorthogonalize};
use crate::lanczos::{default_self_adjoint_tol, lanczos, Lanczos, LanczosParams};
use crate::Info as KrylovInfo;
use gradmat_operators::fuzz::bytes::Bytes;
use gradmat_operators::fuzz::raw::RawMatrix;
use gradmat_operators::fuzz::{all_finite, err, Check, Outcome};
use gradmat_operators::Operator;

/// The forward-only checks, by fuzz target (replayed by this crate's `tests/fuzz_corpus.rs` on
/// the corpora of `gradmat_adjoint::fuzz`'s targets).
pub const FORWARD_TARGETS: &[(&str, Check)] = &[
    ("lanczos", check_lanczos_decomposition),
    ("arnoldi", check_arnoldi_decomposition),
];

/// Inputs on which the decompositions must succeed: finite, moderate, nonzero start vector,
/// depth in range.
pub fn well_posed(a: &RawMatrix, v: &[f64], k: usize) -> bool {
    let moderate = |x: f64| x == 0.0 || (1e-100..=1e100).contains(&x.abs());
    a.is_finite()
        && a.entries().iter().all(|x| moderate(*x))
        && v.iter().all(|x| x.is_finite() && moderate(*x))
        && v.iter().any(|x| *x != 0.0)
        && (1..=v.len()).contains(&k)
}

/// `max |A Q − Q M − r e_{K-1}ᵀ| / max|A|` with `M` the `K×K` small matrix (column-major),
/// computed on `A/max|A|` so that nothing overflows.
pub fn decomposition_residual(a: &RawMatrix, q: &[f64], m: &[f64], r: &[f64], k: usize) -> f64 {
    let n = a.nrows();
    let s = a.max_abs();
    if s == 0.0 {
        return r.iter().fold(0.0, |x, y| x.max(y.abs()));
    }
    let mut worst: f64 = 0.0;
    for j in 0..k {
        for i in 0..n {
            let aq: f64 = (0..n).map(|l| (a.get(i, l) / s) * q[l + j * n]).sum();
            let qm: f64 = (0..k).map(|l| q[i + l * n] * (m[l + j * k] / s)).sum();
            let rr = if j + 1 == k { r[i] / s } else { 0.0 };
            worst = worst.max((aq - qm - rr).abs());
        }
    }
    worst
}

/// The absolute rounding floor of the relative decomposition residual: in the subnormal range
/// every product and sum is exact only to the smallest subnormal (`2⁻¹⁰⁷⁴`), so a matrix whose
/// entries are (nearly) subnormal has a relative residual of up to about
/// `(N + K)·2⁻¹⁰⁷⁴ / max|A|`, whatever the algorithm.
pub fn subnormal_floor(a: &RawMatrix, n: usize, k: usize) -> f64 {
    let s = a.max_abs();
    if s == 0.0 {
        return 0.0;
    }
    8.0 * (n + k) as f64 * f64::from_bits(1) / s
}

/// A reported breakdown is a genuine one: at the last step, with a finite scale and a residual
/// within the default threshold `1000·√N·ε` of it; no breakdown ⇒ the full depth.
pub fn check_breakdown(info: &KrylovInfo, depth: usize, n: usize) {
    match info.breakdown {
        Some(b) => {
            assert_eq!(b.depth, depth, "breakdown depth");
            assert!(
                b.scale.is_finite(),
                "breakdown against an infinite scale: {b:?}"
            );
            let tol = 1000.0 * (n as f64).sqrt() * f64::EPSILON;
            assert!(
                b.norm <= tol * b.scale,
                "breakdown without a small residual: {b:?}"
            );
        }
        None => assert_eq!(depth, info.requested_depth, "depth without breakdown"),
    }
}

/// `max |QᵀQ − I|`.
pub fn orthogonality_loss(q: &[f64], n: usize, k: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for i in 0..k {
        for j in 0..k {
            let d: f64 = (0..n).map(|l| q[l + i * n] * q[l + j * n]).sum();
            let e = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((d - e).abs());
        }
    }
    worst
}

/// A decoded Lanczos case whose decomposition passed the forward checks.
#[derive(Debug)]
pub struct LanczosCase {
    /// The matrix (any entries; claims to be self-adjoint).
    pub a: RawMatrix,
    /// The decomposition.
    pub dec: Lanczos<f64>,
}

/// Decodes a Lanczos case from `b` (dimension ≤ 8, optionally symmetrised, any entries including
/// NaN and ±∞; start vector; depth `0..=N+1`; three-term or fully reorthogonalised; with or
/// without the self-adjointness check), runs [`lanczos`] and checks the result.
///
/// Properties: no panic; on well-posed input (finite moderate data, nonzero start vector,
/// `1 ≤ K ≤ N`, symmetric matrix) the run succeeds; a result has the reported shapes, finite
/// entries, unit basis vectors, `x₀ = c·v`, and satisfies `A Q = Q T + r e_{K-1}ᵀ` to rounding
/// (three-term: for any matrix; reorthogonalised: for a symmetric one, where also `QᵀQ = I`);
/// with the check requested, a non-symmetric matrix is rejected or its asymmetry is within the
/// tolerance. A typed error is `Err(Outcome::Error)`.
pub fn lanczos_case(b: &mut Bytes<'_>) -> Result<LanczosCase, Outcome> {
    let n = b.range(1, 8);
    let mode = b.u8();
    let mut ent = b.f64s(n * n);
    if mode & 1 == 0 {
        for j in 0..n {
            for i in 0..j {
                ent[i + j * n] = ent[j + i * n];
            }
        }
    }
    let a = RawMatrix::new(n, ent);
    let v = b.f64s(n);
    let k = b.range(0, n + 1);
    let full = mode & 2 != 0;
    let mut params = LanczosParams::new(k);
    if full {
        params.reorthogonalize = Reorthogonalize::Full;
    }
    let check = mode & 4 != 0;
    if check {
        params.self_adjoint_check = Some(default_self_adjoint_tol::<f64>(n));
    }
    let symmetric = a.is_symmetric();
    let dec = match lanczos(&a, &v, &params) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                !(symmetric && well_posed(&a, &v, k)),
                "lanczos failed on well-posed input: {e}"
            );
            return Err(err(e));
        }
    };
    let kk = dec.depth();
    assert!((1..=k).contains(&kk), "depth {kk} for K = {k}");
    assert_eq!(dec.dim(), n);
    assert_eq!(dec.diagonal().len(), kk);
    assert_eq!(dec.off_diagonal().len(), kk - 1);
    assert_eq!(dec.basis().len(), n * kk);
    assert_eq!(dec.residual().len(), n);
    assert!(all_finite(dec.diagonal()), "non-finite diagonal");
    assert!(all_finite(dec.off_diagonal()), "non-finite off-diagonal");
    assert!(all_finite(dec.basis()), "non-finite basis");
    assert!(all_finite(dec.residual()), "non-finite residual");
    let c = dec.inv_norm();
    assert!(c.is_finite() && c > 0.0, "1/‖v‖ = {c}");
    check_breakdown(dec.info(), kk, n);
    for j in 0..kk {
        let nrm: f64 = dec
            .basis_vector(j)
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt();
        assert!((nrm - 1.0).abs() < 1e-10, "basis vector {j} has norm {nrm}");
    }
    for i in 0..n {
        let want = v[i] * c;
        assert!(
            (dec.basis()[i] - want).abs() <= 1e-14 * (1.0 + want.abs()),
            "x0 != c·v"
        );
    }
    // With the check on, a non-symmetric matrix that passed has an asymmetry within the check's
    // tolerance; nothing more can be asserted, and the three-term identity is verified below.
    if !full || symmetric {
        let t = dec.small_matrix();
        let res = decomposition_residual(&a, dec.basis(), &t, dec.residual(), kk);
        assert!(
            res <= 1e-10 * (n as f64) + subnormal_floor(&a, n, kk),
            "A Q − Q T − r eᵀ = {res:e} (relative)"
        );
    }
    if full && symmetric {
        let loss = orthogonality_loss(dec.basis(), n, kk);
        assert!(
            loss <= 1e-8,
            "full reorthogonalisation left ‖QᵀQ − I‖ = {loss:e}"
        );
    }
    Ok(LanczosCase { a, dec })
}

/// [`lanczos_case`] alone (no adjoint): the forward half of `gradmat_adjoint::fuzz::check_lanczos`.
pub fn check_lanczos_decomposition(data: &[u8]) -> Outcome {
    match lanczos_case(&mut Bytes::new(data)) {
        Ok(_) => Outcome::Value,
        Err(o) => o,
    }
}

/// A decoded Arnoldi case whose decomposition passed the forward checks.
#[derive(Debug)]
pub struct ArnoldiCase {
    /// The matrix (any entries).
    pub a: RawMatrix,
    /// The decomposition.
    pub dec: Arnoldi<f64>,
}

/// Decodes an Arnoldi case from `b` (general matrix of dimension ≤ 8, start vector, depth
/// `0..=N+1`, with or without reorthogonalisation), runs [`arnoldi`] and checks the result.
///
/// Properties: no panic; on well-posed input the run succeeds; a result has the reported
/// shapes, finite entries, unit basis vectors, an upper Hessenberg `H`, and satisfies
/// `A Q = Q H + r e_{K-1}ᵀ` to rounding (and `QᵀQ = I` when reorthogonalised). A typed error is
/// `Err(Outcome::Error)`.
pub fn arnoldi_case(b: &mut Bytes<'_>) -> Result<ArnoldiCase, Outcome> {
    let n = b.range(1, 8);
    let mode = b.u8();
    let a = RawMatrix::new(n, b.f64s(n * n));
    let v = b.f64s(n);
    let k = b.range(0, n + 1);
    let full = mode & 2 != 0;
    let mut params = ArnoldiParams::new(k);
    if full {
        params.reorthogonalize = Reorthogonalize::Full;
    }
    let dec = match arnoldi(&a, &v, &params) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                !well_posed(&a, &v, k),
                "arnoldi failed on well-posed input: {e}"
            );
            return Err(err(e));
        }
    };
    let kk = dec.depth();
    assert!((1..=k).contains(&kk), "depth {kk} for K = {k}");
    check_breakdown(dec.info(), kk, n);
    assert_eq!(dec.basis().len(), n * kk);
    assert_eq!(dec.hessenberg().len(), kk * kk);
    assert!(all_finite(dec.basis()), "non-finite basis");
    assert!(all_finite(dec.hessenberg()), "non-finite H");
    assert!(all_finite(dec.residual()), "non-finite residual");
    for j in 0..kk {
        for i in j + 2..kk {
            assert!(dec.h(i, j) == 0.0, "H not Hessenberg at ({i}, {j})");
        }
        let nrm: f64 = dec
            .basis_vector(j)
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt();
        assert!((nrm - 1.0).abs() < 1e-10, "basis vector {j} has norm {nrm}");
    }
    let res = decomposition_residual(&a, dec.basis(), dec.hessenberg(), dec.residual(), kk);
    assert!(
        res <= 1e-10 * (n as f64) + subnormal_floor(&a, n, kk),
        "A Q − Q H − r eᵀ = {res:e} (relative)"
    );
    if full {
        let loss = orthogonality_loss(dec.basis(), n, kk);
        assert!(
            loss <= 1e-8,
            "full reorthogonalisation left ‖QᵀQ − I‖ = {loss:e}"
        );
    }
    Ok(ArnoldiCase { a, dec })
}

/// [`arnoldi_case`] alone (no adjoint): the forward half of `gradmat_adjoint::fuzz::check_arnoldi`.
pub fn check_arnoldi_decomposition(data: &[u8]) -> Outcome {
    match arnoldi_case(&mut Bytes::new(data)) {
        Ok(_) => Outcome::Value,
        Err(o) => o,
    }
}
