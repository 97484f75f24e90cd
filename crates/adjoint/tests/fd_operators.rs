//! The VJPs of Lanczos and Arnoldi against central finite differences on the sparse and kernel
//! operators (the dense ones are in `fd_dense.rs`): symmetric CSR (Lanczos with and without full
//! reorthogonalisation, and Arnoldi), general CSR (Arnoldi with and without reorthogonalisation)
//! and Matérn-3/2 / squared-exponential kernel matrices with ARD lengthscales plus a noise shift
//! σ² (Lanczos with and without reorthogonalisation). Every case differentiates a random linear
//! functional of *all* outputs, `ρ = ⟨Q̄,Q⟩ + ⟨T̄ or H̄, T or H⟩ + ⟨r̄,r⟩ + c̄·c`, and checks
//! `θ̄` (along random directions, and for the kernel along every coordinate) and `v̄` (along a
//! random direction), each for `ParamAccumulation::Fused` and `::Online`.
//!
//! # Tolerance
//!
//! **FD reference.** `common::central` is the Richardson-extrapolated central difference
//! `(4D(h/2) − D(h))/3`: truncation error `O(h⁴ρ⁽⁵⁾)`, rounding error `O(e/h)` where `e` is the
//! rounding noise of the computed `ρ`. `fd_est` evaluates it at `h = 1e-2·3^{−j}`, `j = 0..8`,
//! and keeps the middle of the three adjacent steps that agree best (the step is chosen by the FD values alone, never
//! by the adjoint): steep cases (near-degenerate Ritz values, where `ρ⁽⁵⁾` is huge) get a small
//! step, smooth but noisy ones a large step. Measured FD uncertainty (the window's spread):
//! 1e-12..1e-9 relative.
//!
//! **Noise of the forward pass.** `e ≈ κ·eps·|ρ|`, where `κ` is the amplification of rounding
//! errors by the recursion. With reorthogonalisation `κ` is modest and full-depth-minus-one runs
//! are tested. Without it, `κ` grows as Ritz values converge, and the growth is visible as the
//! loss of orthogonality `‖I − QᵀQ‖_max ≈ κ·eps`. Plain runs are therefore tested up to
//! `K ≤ N/2` **and** only as deep as `‖I − QᵀQ‖_max ≤ ORTH_CAP = 2e-13` (`κ ≲ 1e3`: `e/h`
//! stays below ~1e-10·|ρ| for `h ≥ 1e-3`); in practice that is `K ≈ N/4 … N/3`. At `‖I − QᵀQ‖ ≈ 1e-11` the FD reference itself was
//! measured to be uncertain at 1e-6 (plain Lanczos on `N ≈ 30` sparse matrices at `K ≈ N/2`),
//! so nothing can be verified there at the required precision in `f64`.
//!
//! **Comparison.** `|fd − adj| / max(|fd|, |adj|, ‖g‖‖d‖/√len)` `< 1e-6`, the last term
//! being the RMS size of a directional derivative along a Gaussian direction: a
//! direction or coordinate along which the derivative happens to be small is compared at the
//! gradient's own scale (FD and adjoint rounding errors are absolute, `≈ eps·κ·‖g‖`). Measured
//! over four runs of every suite (≈ 6000 comparisons): worst 1.2e-7 (a plain-Arnoldi direction
//! whose FD spread is itself 1e-7), otherwise ≤ 1.5e-8, typically 1e-11..1e-9 (print every
//! comparison with `GRADMAT_FD_VERBOSE=1 cargo test … -- --nocapture`). `Fused` and `Online`
//! differ only in summation order and are also compared with each other at `1e-8·‖g‖`.
//!
//! **Plain Arnoldi and re-projection.** After a non-reorthogonalised Arnoldi run the default
//! adjoint does not re-project (`AdjointParams::project = None`). Measured on general sparse
//! matrices, its error grows much faster with the loss of orthogonality than the FD error does
//! (‖I − QᵀQ‖ ≈ 5e-11 → 6e-6 relative; ≈ 1e-8 → 1e-3..1), while the adjoint with
//! `project(true)` stays within the FD uncertainty. Both are tested (the latter as
//! `Fused+project`) under `ORTH_CAP`, where both pass.
//!
//! **Reorthogonalised kernel runs** stop before an off-diagonal `b_k` drops below
//! `B_CAP = 1e-3·max|a|` (see `full_lanczos_depth`): a 1-D squared-exponential kernel has its
//! Krylov space numerically exhausted long before `N`, where ρ is too steep for any FD step.
//!
//! # Breakdown
//!
//! `breakdown_*` differentiate a decomposition truncated by an invariant subspace (requested
//! depth `N`, reached depth 3); see [`breakdown_case`] for what is checked and why.

mod common;
use common::*;

use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointParams, ArnoldiCotangent, LanczosCotangent, ParamAccumulation,
};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::lanczos::{lanczos, Lanczos, LanczosParams};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::csr::{CsrMatrix, SymCsrMatrix};
use gradmat_operators::kernel::{KernelKind, KernelMatrix};
use gradmat_operators::testing::{matrix_with_spectrum, random_vector};
use gradmat_operators::{AdjointOperator, Operator, ParamVjp, SelfAdjoint, SetParams};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Largest FD step (see `fd_est`).
const H: f64 = 1e-2;
const TOL: f64 = 1e-6;
/// Fused vs online accumulation (same quantities, different summation order), relative to the
/// gradient's 2-norm: measured up to 2e-9 (steep full-depth kernel cases, where large terms
/// cancel).
const TOL_ACC: f64 = 1e-8;
const ACCS: [ParamAccumulation; 2] = [ParamAccumulation::Fused, ParamAccumulation::Online];
/// Non-reorthogonalised runs are tested only up to the depth at which the computed basis is
/// still orthonormal to this (see the header).
const ORTH_CAP: f64 = 2e-13;
/// Reorthogonalised kernel runs stop before an off-diagonal falls below this (relative).
const B_CAP: f64 = 1e-3;

fn verbose() -> bool {
    std::env::var_os("GRADMAT_FD_VERBOSE").is_some()
}

fn inf_norm(x: &[f64]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Central differences with the step chosen by stability (no knowledge of the adjoint): the
/// Richardson-extrapolated difference `common::central` at `h_j = H·3^{−j}`, `j = 0..8`. Of the
/// windows of three consecutive steps the one whose values agree best wins; its middle value is
/// returned with the window's spread as the error estimate. (Windows of two are not enough: the
/// rounding noise of a plain Lanczos run is piecewise constant in θ, and two tiny steps can
/// agree by accident — seen at `h ≈ 5e-6` and `1.5e-6`, 1e-6 away from the smooth value.)
fn fd_est(f: &mut dyn FnMut(&[f64]) -> f64, x: &[f64], d: &[f64]) -> (f64, f64) {
    let vals: Vec<f64> = (0..8).map(|j| central(f, x, d, H / 3f64.powi(j))).collect();
    let (j, err) = (0..6)
        .map(|j| {
            let spread = (vals[j] - vals[j + 1])
                .abs()
                .max((vals[j + 1] - vals[j + 2]).abs());
            (j, spread)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    (vals[j + 1], err)
}

/// Asserts that the FD estimate matches `⟨g, d⟩` to `TOL`, relative to
/// `max(|fd|, |⟨g,d⟩|, ‖g‖‖d‖/√len)`: the last term is the RMS size of `⟨g, d⟩` over Gaussian
/// directions, so that a direction (or coordinate) along which the derivative happens to be
/// small is compared at the gradient's own scale (both the FD error and the rounding error of
/// the adjoint are absolute, of order `eps·κ·‖g‖`).
fn check(label: &str, what: &str, (fd, fd_err): (f64, f64), g: &[f64], d: &[f64]) {
    let an = dotp(g, d);
    let floor = norm(g) * norm(d) / (g.len() as f64).sqrt();
    let e = rel_err(fd, an, floor.max(1e-300));
    if verbose() {
        eprintln!(
            "{label} {what}: fd {fd:+.12e} (±{:.1e}) adjoint {an:+.12e} rel {e:.2e}",
            fd_err / fd.abs().max(floor)
        );
    }
    assert!(
        e < TOL,
        "{label} {what}: fd {fd} (±{fd_err:.1e}) vs adjoint {an} (rel {e:.2e}, tol {TOL:.0e})"
    );
}

fn norm(x: &[f64]) -> f64 {
    dotp(x, x).sqrt()
}

fn check_acc_agree(label: &str, g: &[Vec<f64>], vb: &[Vec<f64>]) {
    for (what, x) in [("θ̄", g), ("v̄", vb)] {
        let scale = norm(&x[0]).max(1e-300);
        let diff = x[0]
            .iter()
            .zip(&x[1])
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= TOL_ACC * scale,
            "{label}: {what} fused vs online differ by {diff:.2e} (‖·‖ {scale:.2e})"
        );
    }
}

/// Random directions in parameter space (`n_random` Gaussian ones, plus every coordinate
/// direction when `coords`).
fn directions(p: usize, n_random: usize, coords: bool, seed: u64) -> Vec<(String, Vec<f64>)> {
    let mut dirs: Vec<(String, Vec<f64>)> = (0..n_random)
        .map(|i| (format!("θ̄·d{i}"), random_vector(p, seed + i as u64)))
        .collect();
    if coords {
        for i in 0..p {
            let mut e = vec![0.0; p];
            e[i] = 1.0;
            dirs.push((format!("θ̄[{i}]"), e));
        }
    }
    dirs
}

// ------------------------------------------------------------------ generic FD cases

/// The backward passes compared with FD: fused and online accumulation (first two, also
/// compared with each other), plus, after a non-reorthogonalised Arnoldi run, the adjoint with
/// the re-projection forced on.
fn variants(plain_arnoldi: bool) -> Vec<(&'static str, AdjointParams)> {
    let mut v = vec![
        (
            "Fused",
            AdjointParams {
                accumulation: ParamAccumulation::Fused,
                ..AdjointParams::default()
            },
        ),
        (
            "Online",
            AdjointParams {
                accumulation: ParamAccumulation::Online,
                ..AdjointParams::default()
            },
        ),
    ];
    if plain_arnoldi {
        v.push((
            "Fused+project",
            AdjointParams {
                project: true,
                ..AdjointParams::default()
            },
        ));
    }
    v
}

/// Largest `K ≤ kmax` whose first `K` computed basis vectors are orthonormal to `ORTH_CAP`.
fn orth_cap(q: &[f64], n: usize, kmax: usize) -> usize {
    for k in 0..kmax {
        let qk = &q[k * n..(k + 1) * n];
        for j in 0..=k {
            let target = if j == k { 1.0 } else { 0.0 };
            if (dotp(&q[j * n..(j + 1) * n], qk) - target).abs() > ORTH_CAP {
                return k.max(1);
            }
        }
    }
    kmax
}

/// `min(k, cap)` for plain Lanczos: the first steps of a run do not depend on the requested
/// depth, so one run of depth `N/2` gives the orthogonality of every shorter one.
fn plain_lanczos_depth<A: SelfAdjoint<f64>>(a: &A, v: &[f64], k: usize) -> usize {
    let n = v.len();
    let dec = lanczos(a, v, &LanczosParams::new((n / 2).max(1))).unwrap();
    k.min(orth_cap(dec.basis(), n, dec.depth()))
}

/// `min(k, cap)` for fully reorthogonalised Lanczos on a kernel: the largest depth whose
/// off-diagonals `b_0..b_{K−2}` all exceed `B_CAP·max|a|`. The derivatives grow like `1/b_k`;
/// a squared-exponential kernel in one dimension has so many eigenvalues within rounding of σ²
/// that its Krylov space is numerically exhausted long before `N` (`b_k → 1e-8`), and at that
/// point no FD step resolves ρ (measured spread 2e-3). Again one run of depth `N − 1` serves
/// every shorter one.
fn full_lanczos_depth<A: SelfAdjoint<f64>>(a: &A, v: &[f64], k: usize) -> usize {
    let n = v.len();
    let params = LanczosParams {
        reorthogonalize: Reorthogonalize::Full,
        ..LanczosParams::new((n - 1).max(1))
    };
    let dec = lanczos(a, v, &params).unwrap();
    let amax = inf_norm(dec.diagonal());
    let first_small = dec
        .off_diagonal()
        .iter()
        .position(|b| *b < B_CAP * amax)
        .map_or(dec.depth(), |i| i + 1);
    k.min(first_small).max(1)
}

/// As [`plain_lanczos_depth`] for plain Arnoldi.
fn plain_arnoldi_depth<A: Operator<f64>>(a: &A, v: &[f64], k: usize) -> usize {
    let n = v.len();
    let dec = arnoldi(a, v, &ArnoldiParams::new((n / 2).max(1))).unwrap();
    k.min(orth_cap(dec.basis(), n, dec.depth()))
}

/// Lanczos of depth `k` on `a` from `v`; full random functional; θ̄ and v̄ against FD.
fn lanczos_fd<A>(label: &str, a: &A, v: &[f64], k: usize, reorth: Reorthogonalize, seed: u64)
where
    A: SelfAdjoint<f64> + ParamVjp<f64> + SetParams<f64> + Clone,
{
    lanczos_fd_dirs(label, a, v, k, reorth, seed, false)
}

fn lanczos_fd_dirs<A>(
    label: &str,
    a: &A,
    v: &[f64],
    k: usize,
    reorth: Reorthogonalize,
    seed: u64,
    coords: bool,
) where
    A: SelfAdjoint<f64> + ParamVjp<f64> + SetParams<f64> + Clone,
{
    let n = v.len();
    let params = LanczosParams {
        reorthogonalize: reorth,
        ..LanczosParams::new(k)
    };
    let dec = lanczos(a, v, &params).unwrap();
    assert_eq!(dec.depth(), k, "{label}: unexpected breakdown");
    let cot = LanczosCot::random(n, k, seed + 200);
    let lc = LanczosCotangent {
        basis: Some(&cot.q),
        diagonal: Some(&cot.a),
        off_diagonal: Some(&cot.b),
        residual: Some(&cot.r),
        inv_norm: cot.c,
    };
    let (mut grads, mut vbars) = (Vec::new(), Vec::new());
    let variants = variants(false);
    for (_, ap) in &variants {
        let mut g = vec![0.0; a.num_params()];
        let vb = lanczos_vjp(a, &dec, &lc, ap, &mut g).unwrap();
        grads.push(g);
        vbars.push(vb);
    }
    check_acc_agree(label, &grads, &vbars);
    let theta = a.params_vec();
    let mut work = a.clone();
    let mut f = |t: &[f64]| {
        work.set_params(t).unwrap();
        cot.rho(&lanczos(&work, v, &params).unwrap())
    };
    for (what, d) in directions(theta.len(), 2, coords, seed + 300) {
        let fd = fd_est(&mut f, &theta, &d);
        for ((name, _), g) in variants.iter().zip(&grads) {
            check(label, &format!("{what} {name}"), fd, g, &d);
        }
    }
    let dv = random_vector::<f64>(n, seed + 400);
    let fd_v = fd_est(&mut |vv| cot.rho(&lanczos(a, vv, &params).unwrap()), v, &dv);
    for ((name, _), vb) in variants.iter().zip(&vbars) {
        check(label, &format!("v̄·d {name}"), fd_v, vb, &dv);
    }
}

/// Arnoldi of depth `k` on `a` from `v`; full random functional; θ̄ and v̄ against FD.
fn arnoldi_fd<A>(label: &str, a: &A, v: &[f64], k: usize, reorth: Reorthogonalize, seed: u64)
where
    A: AdjointOperator<f64> + ParamVjp<f64> + SetParams<f64> + Clone,
{
    let n = v.len();
    let params = ArnoldiParams {
        reorthogonalize: reorth,
        ..ArnoldiParams::new(k)
    };
    let dec = arnoldi(a, v, &params).unwrap();
    assert_eq!(dec.depth(), k, "{label}: unexpected breakdown");
    let cot = ArnoldiCot::random(n, k, seed + 200);
    let ac = ArnoldiCotangent {
        basis: Some(&cot.q),
        hessenberg: Some(&cot.h),
        residual: Some(&cot.r),
        inv_norm: cot.c,
    };
    let (mut grads, mut vbars) = (Vec::new(), Vec::new());
    let variants = variants(reorth == Reorthogonalize::None);
    for (_, ap) in &variants {
        let mut g = vec![0.0; a.num_params()];
        let vb = arnoldi_vjp(a, &dec, &ac, ap, &mut g).unwrap();
        grads.push(g);
        vbars.push(vb);
    }
    check_acc_agree(label, &grads, &vbars);
    let theta = a.params_vec();
    let mut work = a.clone();
    let mut f = |t: &[f64]| {
        work.set_params(t).unwrap();
        cot.rho(&arnoldi(&work, v, &params).unwrap())
    };
    for (what, d) in directions(theta.len(), 2, false, seed + 300) {
        let fd = fd_est(&mut f, &theta, &d);
        for ((name, _), g) in variants.iter().zip(&grads) {
            check(label, &format!("{what} {name}"), fd, g, &d);
        }
    }
    let dv = random_vector::<f64>(n, seed + 400);
    let fd_v = fd_est(&mut |vv| cot.rho(&arnoldi(a, vv, &params).unwrap()), v, &dv);
    for ((name, _), vb) in variants.iter().zip(&vbars) {
        check(label, &format!("v̄·d {name}"), fd_v, vb, &dv);
    }
}

// ------------------------------------------------------------------ operators

/// A random symmetric sparse matrix (about `per_row` off-diagonal entries per row of the lower
/// triangle, N(0,1)) made strictly diagonally dominant: `A_ii = Σ_j |A_ij| + 1 + 3u`, u ~ U(0,1).
/// SPD, spectrum in about `[1, 10]`, eigenvalues spread by the random diagonal.
fn sym_sparse(n: usize, per_row: usize, seed: u64) -> SymCsrMatrix<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let mut absrow = vec![0.0; n];
    for i in 1..n {
        for _ in 0..per_row.min(i) {
            let j = rng.random_range(0..i);
            let x: f64 = rng.sample(StandardNormal);
            r.push(i);
            c.push(j);
            v.push(x);
            absrow[i] += x.abs();
            absrow[j] += x.abs();
        }
    }
    for (i, s) in absrow.iter().enumerate() {
        r.push(i);
        c.push(i);
        v.push(s + 1.0 + 3.0 * rng.random::<f64>());
    }
    SymCsrMatrix::from_triplets(n, &r, &c, &v).unwrap()
}

/// A random general sparse matrix (about `per_row` N(0,1) entries per row, duplicates summed)
/// plus a diagonal `3 + N(0,1)/2` (always stored): eigenvalues spread around 3.
fn gen_sparse(n: usize, per_row: usize, seed: u64) -> CsrMatrix<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        for _ in 0..per_row {
            r.push(i);
            c.push(rng.random_range(0..n));
            v.push(rng.sample(StandardNormal));
        }
        r.push(i);
        c.push(i);
        v.push(3.0 + 0.5 * rng.sample::<f64, _>(StandardNormal));
    }
    CsrMatrix::from_triplets(n, n, &r, &c, &v).unwrap()
}

/// `K(ℓ, s) + σ² I` over `n` points in `d` dimensions. Inputs are N(0, (n^{1/d}/2)²) so that the
/// point density per lengthscale stays moderate as `n` grows (the kernel spectrum then decays
/// slowly and the Ritz values stay separated); ARD lengthscales in `[0.6, 1.4]`, scale in
/// `[0.5, 2]`, σ² in `[0.2, 0.7]`. Parameters `(ℓ_0, …, ℓ_{d−1}, s, σ²)`.
fn kernel_op(kind: KernelKind, n: usize, d: usize, seed: u64) -> Shifted<KernelMatrix<f64>, f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let spread = 0.5 * (n as f64).powf(1.0 / d as f64);
    let x: Vec<f64> = random_vector::<f64>(n * d, seed + 1)
        .into_iter()
        .map(|z| spread * z)
        .collect();
    let ls: Vec<f64> = (0..d).map(|_| 0.6 + 0.8 * rng.random::<f64>()).collect();
    let s = 0.5 + 1.5 * rng.random::<f64>();
    let sigma2 = 0.2 + 0.5 * rng.random::<f64>();
    // A small tile size exercises the tiled products and the tile-pair VJP.
    let k = KernelMatrix::new(kind, n, d, x, ls, s)
        .unwrap()
        .with_tile_size(7)
        .unwrap();
    Shifted::new(k, sigma2).unwrap()
}

fn depth(n: usize, frac: f64, max: usize) -> usize {
    ((n as f64 * frac) as usize).clamp(1, max)
}

// ------------------------------------------------------------------ property suites

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Symmetric CSR, plain Lanczos, K ≤ N/2 (capped by `ORTH_CAP`).
    #[test]
    fn symcsr_lanczos_plain(n in 6usize..48, per_row in 1usize..4, kf in 0.1f64..0.5,
                            seed in 0u64..100_000) {
        let a = sym_sparse(n, per_row, seed);
        let v = random_vector::<f64>(n, seed + 100);
        let k = plain_lanczos_depth(&a, &v, depth(n, kf, n / 2));
        lanczos_fd(&format!("symcsr lanczos n={n} k={k}"), &a, &v, k, Reorthogonalize::None, seed);
    }

    /// Symmetric CSR, fully reorthogonalised Lanczos, up to K = N − 1.
    #[test]
    fn symcsr_lanczos_full(n in 4usize..40, per_row in 1usize..4, kf in 0.3f64..1.0,
                           seed in 0u64..100_000) {
        let a = sym_sparse(n, per_row, seed);
        let v = random_vector::<f64>(n, seed + 100);
        let k = depth(n, kf, n - 1);
        lanczos_fd(&format!("symcsr lanczos-full n={n} k={k}"), &a, &v, k,
                   Reorthogonalize::Full, seed);
    }

    /// Symmetric CSR through Arnoldi (with and without reorthogonalisation).
    #[test]
    fn symcsr_arnoldi(n in 4usize..32, per_row in 1usize..4, kf in 0.3f64..1.0, full: bool,
                      seed in 0u64..100_000) {
        let a = sym_sparse(n, per_row, seed);
        let v = random_vector::<f64>(n, seed + 100);
        let (reorth, k) = if full {
            (Reorthogonalize::Full, depth(n, kf, n - 1))
        } else {
            (Reorthogonalize::None, plain_arnoldi_depth(&a, &v, depth(n, kf / 2.0, n / 2)))
        };
        arnoldi_fd(&format!("symcsr arnoldi-{reorth:?} n={n} k={k}"), &a, &v, k, reorth, seed);
    }

    /// General CSR, plain Arnoldi, K ≤ N/2 (capped by `ORTH_CAP`).
    #[test]
    fn csr_arnoldi_plain(n in 6usize..40, per_row in 1usize..4, kf in 0.1f64..0.5,
                         seed in 0u64..100_000) {
        let a = gen_sparse(n, per_row, seed);
        let v = random_vector::<f64>(n, seed + 100);
        let k = plain_arnoldi_depth(&a, &v, depth(n, kf, n / 2));
        arnoldi_fd(&format!("csr arnoldi n={n} k={k}"), &a, &v, k, Reorthogonalize::None, seed);
    }

    /// General CSR, fully reorthogonalised Arnoldi, up to K = N − 1.
    #[test]
    fn csr_arnoldi_full(n in 4usize..32, per_row in 1usize..4, kf in 0.3f64..1.0,
                        seed in 0u64..100_000) {
        let a = gen_sparse(n, per_row, seed);
        let v = random_vector::<f64>(n, seed + 100);
        let k = depth(n, kf, n - 1);
        arnoldi_fd(&format!("csr arnoldi-full n={n} k={k}"), &a, &v, k, Reorthogonalize::Full,
                   seed);
    }

    /// Kernel + σ²I, plain Lanczos, K ≤ N/2 (capped by `ORTH_CAP`); θ̄ along random
    /// directions and every coordinate.
    #[test]
    fn kernel_lanczos_plain(n in 6usize..40, d in 1usize..4, se: bool, kf in 0.1f64..0.5,
                            seed in 0u64..100_000) {
        let kind = if se { KernelKind::SquaredExponential } else { KernelKind::Matern32 };
        let a = kernel_op(kind, n, d, seed);
        let v = random_vector::<f64>(n, seed + 100);
        let k = plain_lanczos_depth(&a, &v, depth(n, kf, n / 2));
        lanczos_fd_dirs(&format!("kernel {} d={d} lanczos n={n} k={k}", kind.name()), &a, &v, k,
                        Reorthogonalize::None, seed, true);
    }

    /// Kernel + σ²I, fully reorthogonalised Lanczos, up to K = N − 1 (capped by `B_CAP`).
    #[test]
    fn kernel_lanczos_full(n in 4usize..32, d in 1usize..4, se: bool, kf in 0.3f64..1.0,
                           seed in 0u64..100_000) {
        let kind = if se { KernelKind::SquaredExponential } else { KernelKind::Matern32 };
        let a = kernel_op(kind, n, d, seed);
        let v = random_vector::<f64>(n, seed + 100);
        let k = full_lanczos_depth(&a, &v, depth(n, kf, n - 1));
        lanczos_fd_dirs(&format!("kernel {} d={d} lanczos-full n={n} k={k}", kind.name()), &a,
                        &v, k, Reorthogonalize::Full, seed, true);
    }
}

// ------------------------------------------------------------------ breakdown

type ThreeEig = Shifted<SymCsrMatrix<f64>, f64>;

/// `A = Shifted(S, σ)` with `S` the symmetric sparse matrix made of `m` copies of one random SPD
/// 3×3 block `B` (eigenvalues `1, 2.5, 4`) on the interleaved index sets `{b, b+m, b+2m}`:
/// `N = 3m`, exactly three distinct eigenvalues, so Lanczos/Arnoldi from a generic `v` meet an
/// invariant subspace after 3 steps. Returns the operator and, for each parameter, the entry
/// `(p, q)` of `B` it holds (σ, the last parameter, is not listed).
fn three_eigenvalue_op(m: usize, seed: u64) -> (ThreeEig, Vec<(usize, usize)>) {
    let b = matrix_with_spectrum(&[1.0, 2.5, 4.0], seed);
    let (mut r, mut c, mut v, mut pq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for blk in 0..m {
        for p in 0..3 {
            for q in 0..=p {
                r.push(blk + p * m);
                c.push(blk + q * m);
                v.push(b[p + 3 * q]);
                pq.push((p, q));
            }
        }
    }
    let s = SymCsrMatrix::from_triplets(3 * m, &r, &c, &v).unwrap();
    let mut entry = vec![(0, 0); s.nnz()];
    for (e, &p) in s.triplet_to_stored().iter().enumerate() {
        entry[p] = pq[e];
    }
    (Shifted::new(s, 0.3).unwrap(), entry)
}

/// A direction in parameter space that keeps the three-eigenvalue structure: the same random
/// symmetric perturbation `ΔB` in every block, and a random `Δσ`. Returns it and
/// `trace(ΔB) + 3Δσ`, the exact derivative of `trace(T) = Σ eig(B) + 3σ` along it.
fn structured_direction(entry: &[(usize, usize)], seed: u64) -> (Vec<f64>, f64) {
    let db = random_vector::<f64>(9, seed);
    let dsig = random_vector::<f64>(1, seed + 1)[0];
    let mut d: Vec<f64> = entry.iter().map(|&(p, q)| db[p + 3 * q]).collect();
    d.push(dsig);
    (d, db[0] + db[4] + db[8] + 3.0 * dsig)
}

/// Differentiating a decomposition truncated by breakdown (requested depth `N`, reached 3).
///
/// What the truncated adjoint computes is the derivative of the 3-step algorithm that ran. That
/// is tested in three independent ways:
///
/// 1. **Along structure-preserving directions** (same `ΔB` in every block, any `Δσ`, any `δv`)
///    the requested-`N` run still stops at depth 3, so the function that actually runs is
///    differentiable there: FD of `ρ = ⟨ā,a⟩ + ⟨b̄,b⟩ + c̄c` (random `ā, b̄, c̄`; `Q̄, r̄` are left
///    out since `Q`'s continuation past the breakdown is arbitrary) of the requested-`N` run
///    must match `⟨θ̄, d⟩` and `⟨v̄, δv⟩`.
/// 2. **Generic directions, fixed depth**: a generic perturbation splits the multiplicities and
///    the requested-`N` run would go deeper (ρ is discontinuous there). The 3-step algorithm is
///    still smooth (it never divides by `r`), so with the full functional (Q̄ and r̄ included)
///    the VJP must equal FD of `lanczos(…, depth 3)` along random θ and v directions.
/// 3. **Closed forms** at the invariant subspace: for `ρ = Σ a_k = trace(QᵀAQ)`, `AQ = QT` and
///    `QᵀdQ` antisymmetric give `θ̄ = Σ_k ∇θ⟨x_k, A x_k⟩` and `v̄ = 0` exactly (the trace is
///    `Σ eig(B) + 3σ` whatever `v` is), and along a structured direction `⟨θ̄, d⟩ = trace(ΔB) +
///    3Δσ`. For `ρ = a_0² + b_0² = x_0ᵀA²x_0` (`x_0 = v/‖v‖`, cotangents `ā_0 = 2a_0`,
///    `b̄_0 = 2b_0`, all others zero): `θ̄ = ∇θ⟨2Ax_0, A x_0⟩` and
///    `v̄ = 2(A²x_0 − ρ x_0)/‖v‖`.
fn breakdown_case(m: usize, reorth: Reorthogonalize, seed: u64) {
    let label = format!("breakdown m={m} {reorth:?}");
    let (a, entry) = three_eigenvalue_op(m, seed);
    let n = 3 * m;
    let p = a.num_params();
    let v = random_vector::<f64>(n, seed + 100);
    let params = LanczosParams {
        reorthogonalize: reorth,
        ..LanczosParams::new(n)
    };
    let run = |op: &ThreeEig, vv: &[f64]| -> Lanczos<f64> {
        let d = lanczos(op, vv, &params).unwrap();
        assert_eq!(d.depth(), 3, "{label}: breakdown expected at depth 3");
        assert!(d.info().breakdown.is_some());
        d
    };
    let dec = run(&a, &v);
    let theta = a.params_vec();
    let vjp = |lc: &LanczosCotangent<'_, f64>, acc: ParamAccumulation| {
        let mut g = vec![0.0; p];
        let vb = lanczos_vjp(
            &a,
            &dec,
            lc,
            &AdjointParams {
                accumulation: acc,
                ..AdjointParams::default()
            },
            &mut g,
        )
        .unwrap();
        (g, vb)
    };

    // 1. Structure-preserving directions, the requested-N run.
    let cot = LanczosCot::random(n, 3, seed + 200);
    let lc = LanczosCotangent {
        diagonal: Some(&cot.a),
        off_diagonal: Some(&cot.b),
        inv_norm: cot.c,
        ..Default::default()
    };
    let rho_abc = |d: &Lanczos<f64>| {
        dotp(&cot.a, d.diagonal()) + dotp(&cot.b, d.off_diagonal()) + cot.c * d.inv_norm()
    };
    let mut work = a.clone();
    for acc in ACCS {
        let (g, vb) = vjp(&lc, acc);
        for i in 0..2 {
            let (d, _) = structured_direction(&entry, seed + 300 + 2 * i);
            let fd = fd_est(
                &mut |t| {
                    work.set_params(t).unwrap();
                    rho_abc(&run(&work, &v))
                },
                &theta,
                &d,
            );
            check(&label, &format!("structured θ̄·d{i} {acc:?}"), fd, &g, &d);
        }
        let dv = random_vector::<f64>(n, seed + 400);
        let fd = fd_est(&mut |vv| rho_abc(&run(&a, vv)), &v, &dv);
        check(&label, &format!("v̄·d {acc:?}"), fd, &vb, &dv);
    }

    // 2. Generic directions, the fixed-depth-3 algorithm, full functional.
    let fixed = LanczosParams {
        reorthogonalize: reorth,
        ..LanczosParams::new(3)
    };
    let lc_full = LanczosCotangent {
        basis: Some(&cot.q),
        diagonal: Some(&cot.a),
        off_diagonal: Some(&cot.b),
        residual: Some(&cot.r),
        inv_norm: cot.c,
    };
    for acc in ACCS {
        let (g, vb) = vjp(&lc_full, acc);
        for (what, d) in directions(p, 2, false, seed + 500) {
            let fd = fd_est(
                &mut |t| {
                    work.set_params(t).unwrap();
                    cot.rho(&lanczos(&work, &v, &fixed).unwrap())
                },
                &theta,
                &d,
            );
            check(&label, &format!("fixed-depth {what} {acc:?}"), fd, &g, &d);
        }
        let dv = random_vector::<f64>(n, seed + 600);
        let fd = fd_est(
            &mut |vv| cot.rho(&lanczos(&a, vv, &fixed).unwrap()),
            &v,
            &dv,
        );
        check(&label, &format!("fixed-depth v̄·d {acc:?}"), fd, &vb, &dv);
    }

    // 3a. ρ = Σ a_k: θ̄ = Σ_k ∇θ⟨x_k, A x_k⟩, v̄ = 0, ⟨θ̄, d⟩ = trace(ΔB) + 3Δσ.
    let ones = [1.0; 3];
    let mut expected = vec![0.0; p];
    a.vjp_params_block(dec.basis(), dec.basis(), 3, &mut expected);
    let trace: f64 = dec.diagonal().iter().sum();
    assert!(
        (trace - (7.5 + 3.0 * 0.3)).abs() < 1e-12,
        "{label}: trace(T) = {trace}"
    );
    for acc in ACCS {
        let (g, vb) = vjp(
            &LanczosCotangent {
                diagonal: Some(&ones),
                ..Default::default()
            },
            acc,
        );
        let scale = inf_norm(&expected);
        let err = g
            .iter()
            .zip(&expected)
            .fold(0.0f64, |mx, (x, y)| mx.max((x - y).abs()))
            / scale;
        assert!(
            err < 1e-10,
            "{label} Σa θ̄ {acc:?}: closed form rel err {err:.2e}"
        );
        assert!(
            inf_norm(&vb) < 1e-10,
            "{label} Σa v̄ {acc:?}: {:.2e}",
            inf_norm(&vb)
        );
        let (d, exact) = structured_direction(&entry, seed + 700);
        let e = rel_err(dotp(&g, &d), exact, 1e-3);
        assert!(
            e < 1e-10,
            "{label} Σa structured: {} vs {exact}",
            dotp(&g, &d)
        );
        if verbose() {
            eprintln!("{label} Σa closed form {acc:?}: θ̄ rel {err:.2e}, |v̄| {:.2e}, structured rel {e:.2e}", inf_norm(&vb));
        }
    }

    // 3b. ρ = a_0² + b_0² = x_0ᵀA²x_0.
    let (a0, b0) = (dec.diagonal()[0], dec.off_diagonal()[0]);
    let abar = [2.0 * a0, 0.0, 0.0];
    let bbar = [2.0 * b0, 0.0];
    let vn = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let x0: Vec<f64> = v.iter().map(|x| x / vn).collect();
    let mut ax0 = vec![0.0; n];
    a.apply(&x0, &mut ax0);
    let mut a2x0 = vec![0.0; n];
    a.apply(&ax0, &mut a2x0);
    let rho = dotp(&ax0, &ax0);
    assert!((rho - (a0 * a0 + b0 * b0)).abs() < 1e-12 * rho);
    let two_ax0: Vec<f64> = ax0.iter().map(|x| 2.0 * x).collect();
    let mut g_exp = vec![0.0; p];
    a.vjp_params(&two_ax0, &x0, &mut g_exp);
    let vb_exp: Vec<f64> = a2x0
        .iter()
        .zip(&x0)
        .map(|(y, x)| 2.0 * (y - rho * x) / vn)
        .collect();
    for acc in ACCS {
        let (g, vb) = vjp(
            &LanczosCotangent {
                diagonal: Some(&abar),
                off_diagonal: Some(&bbar),
                ..Default::default()
            },
            acc,
        );
        for (what, x, y) in [("θ̄", &g, &g_exp), ("v̄", &vb, &vb_exp)] {
            let err = x
                .iter()
                .zip(y.iter())
                .fold(0.0f64, |mx, (p, q)| mx.max((p - q).abs()))
                / inf_norm(y);
            if verbose() {
                eprintln!("{label} a0²+b0² closed form {what} {acc:?}: rel {err:.2e}");
            }
            assert!(
                err < 1e-10,
                "{label} a0²+b0² {what} {acc:?}: closed form rel err {err:.2e}"
            );
        }
    }
}

/// Arnoldi on the same three-eigenvalue operator: breakdown at depth 3, `H̄` random on its
/// Hessenberg pattern; FD along structure-preserving directions of the requested-`N` run.
fn breakdown_arnoldi_case(m: usize, reorth: Reorthogonalize, seed: u64) {
    let label = format!("breakdown arnoldi m={m} {reorth:?}");
    let (a, entry) = three_eigenvalue_op(m, seed);
    let n = 3 * m;
    let v = random_vector::<f64>(n, seed + 100);
    let params = ArnoldiParams {
        reorthogonalize: reorth,
        ..ArnoldiParams::new(n)
    };
    let run = |op: &ThreeEig, vv: &[f64]| {
        let d = arnoldi(op, vv, &params).unwrap();
        assert_eq!(d.depth(), 3, "{label}: breakdown expected at depth 3");
        d
    };
    let dec = run(&a, &v);
    let cot = ArnoldiCot::random(n, 3, seed + 200);
    let rho = |d: &gradmat_krylov::arnoldi::Arnoldi<f64>| {
        dotp(&cot.h, d.hessenberg()) + cot.c * d.inv_norm()
    };
    let theta = a.params_vec();
    let mut work = a.clone();
    for acc in ACCS {
        let mut g = vec![0.0; a.num_params()];
        let vb = arnoldi_vjp(
            &a,
            &dec,
            &ArnoldiCotangent {
                hessenberg: Some(&cot.h),
                inv_norm: cot.c,
                ..Default::default()
            },
            &AdjointParams {
                accumulation: acc,
                ..AdjointParams::default()
            },
            &mut g,
        )
        .unwrap();
        let (d, _) = structured_direction(&entry, seed + 300);
        let fd = fd_est(
            &mut |t| {
                work.set_params(t).unwrap();
                rho(&run(&work, &v))
            },
            &theta,
            &d,
        );
        check(&label, &format!("structured θ̄·d {acc:?}"), fd, &g, &d);
        let dv = random_vector::<f64>(n, seed + 400);
        let fd = fd_est(&mut |vv| rho(&run(&a, vv)), &v, &dv);
        check(&label, &format!("v̄·d {acc:?}"), fd, &vb, &dv);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn breakdown_lanczos(m in 2usize..10, full: bool, seed in 0u64..100_000) {
        let reorth = if full { Reorthogonalize::Full } else { Reorthogonalize::None };
        breakdown_case(m, reorth, seed);
    }

    #[test]
    fn breakdown_arnoldi(m in 2usize..10, full: bool, seed in 0u64..100_000) {
        let reorth = if full { Reorthogonalize::Full } else { Reorthogonalize::None };
        breakdown_arnoldi_case(m, reorth, seed);
    }
}

/// Fixed small cases of every suite (also the quickest to debug).
#[test]
fn fixed_cases() {
    let a = sym_sparse(20, 2, 1);
    let v = random_vector::<f64>(20, 2);
    let k = plain_lanczos_depth(&a, &v, 8);
    lanczos_fd("symcsr fixed", &a, &v, k, Reorthogonalize::None, 3);
    lanczos_fd("symcsr fixed full", &a, &v, 19, Reorthogonalize::Full, 3);
    arnoldi_fd("symcsr arnoldi fixed", &a, &v, 19, Reorthogonalize::Full, 3);
    let c = gen_sparse(20, 2, 4);
    let k = plain_arnoldi_depth(&c, &v, 8);
    arnoldi_fd("csr fixed", &c, &v, k, Reorthogonalize::None, 5);
    arnoldi_fd("csr fixed full", &c, &v, 19, Reorthogonalize::Full, 5);
    for kind in [KernelKind::Matern32, KernelKind::SquaredExponential] {
        let k = kernel_op(kind, 20, 2, 6);
        let kp = plain_lanczos_depth(&k, &v, 8);
        lanczos_fd_dirs("kernel fixed", &k, &v, kp, Reorthogonalize::None, 7, true);
        lanczos_fd_dirs(
            "kernel fixed full",
            &k,
            &v,
            full_lanczos_depth(&k, &v, 19),
            Reorthogonalize::Full,
            7,
            true,
        );
    }
    // Former failures: two tiny FD steps agreeing by accident (before three-step windows), and
    // a steep full-depth case where fused and online summation differ by 2e-9·‖g‖.
    let (n, seed) = (39, 46088);
    let k = kernel_op(KernelKind::Matern32, n, 3, seed);
    let v39 = random_vector::<f64>(n, seed + 100);
    let kp = plain_lanczos_depth(&k, &v39, depth(n, 0.263, n / 2));
    lanczos_fd_dirs(
        "kernel regression",
        &k,
        &v39,
        kp,
        Reorthogonalize::None,
        seed,
        true,
    );
    let (n, seed) = (22, 54026);
    let k = kernel_op(KernelKind::SquaredExponential, n, 1, seed);
    let v22 = random_vector::<f64>(n, seed + 100);
    lanczos_fd_dirs(
        "kernel regression full",
        &k,
        &v22,
        full_lanczos_depth(&k, &v22, 21),
        Reorthogonalize::Full,
        seed,
        true,
    );
    breakdown_case(4, Reorthogonalize::None, 8);
    breakdown_case(4, Reorthogonalize::Full, 8);
    breakdown_arnoldi_case(4, Reorthogonalize::Full, 8);
}
