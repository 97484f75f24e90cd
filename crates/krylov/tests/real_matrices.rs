//! Lanczos, Arnoldi, Golub–Kahan and CG on real SPD matrices read through the Matrix Market
//! reader: bcsstk14 (SuiteSparse, 1,806², cond ≈ 1.2e10) and the 4elt graph Laplacian
//! (METIS, 15,606²) shifted by σ = 0.1. Both files are committed under `data/matrices/`.
//!
//! Tolerances as in `lanczos_arnoldi.rs`: orthogonality ≤ 10·eps·N·K with full
//! reorthogonalisation; relations ≤ 10·eps·N·K relative to ‖A‖ (the largest Ritz value, which is
//! within a factor (1 − tiny) of ‖A‖₂ for these K).

use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::cg::{solve, CgParams};
use gradmat_krylov::golub_kahan::{golub_kahan, GkParams};
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::csr::SymCsrMatrix;
use gradmat_operators::matrix_market::read_matrix_market;
use gradmat_operators::testing::random_vector;
use gradmat_operators::{AdjointOperator, Operator};

fn load(name: &str) -> SymCsrMatrix<f64> {
    let path = format!("{}/../../data/matrices/{name}", env!("CARGO_MANIFEST_DIR"));
    read_matrix_market::<f64>(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_sym_csr()
        .unwrap()
}

fn orth_error(q: &[f64], n: usize, k: usize) -> f64 {
    let mut e: f64 = 0.0;
    for i in 0..k {
        for j in 0..=i {
            let d: f64 = q[i * n..(i + 1) * n]
                .iter()
                .zip(&q[j * n..(j + 1) * n])
                .map(|(a, b)| a * b)
                .sum();
            e = e.max((d - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    e
}

/// max_i ‖A q_c − Σ_l q_l H[l,c] − [c = K−1] r‖ / scale
fn relation_error<A: Operator<f64>>(
    a: &A,
    q: &[f64],
    h: &[f64],
    r: &[f64],
    n: usize,
    k: usize,
    scale: f64,
) -> f64 {
    let mut aq = vec![0.0; n * k];
    a.apply_block(&q[..n * k], &mut aq, k);
    let mut worst: f64 = 0.0;
    for c in 0..k {
        for i in 0..n {
            let mut s = aq[i + c * n];
            for l in 0..k {
                s -= q[i + l * n] * h[l + c * k];
            }
            if c + 1 == k {
                s -= r[i];
            }
            worst = worst.max(s.abs());
        }
    }
    worst / scale
}

fn check_symmetric_krylov<A: gradmat_operators::SelfAdjoint<f64>>(a: &A, lo: f64, name: &str) {
    let n = a.nrows();
    let v = random_vector::<f64>(n, 42);
    let k = 60;
    let dec = lanczos(
        a,
        &v,
        &LanczosParams {
            reorthogonalize: Reorthogonalize::Full,
            ..LanczosParams::new(k)
        },
    )
    .unwrap();
    let kk = dec.depth();
    assert_eq!(kk, k);
    let t = dec.small_matrix();
    let tm = faer::Mat::from_fn(kk, kk, |i, j| t[i + j * kk]);
    let ritz = tm.self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
    let (rmin, rmax) = (ritz[0], ritz[kk - 1]);
    let bound = 10.0 * f64::EPSILON * (n * kk) as f64;
    let eo = orth_error(dec.basis(), n, kk);
    let arn = dec.arnoldi().unwrap();
    let er = relation_error(
        a,
        arn.basis(),
        arn.hessenberg(),
        arn.residual(),
        n,
        kk,
        rmax,
    );
    println!("{name}: Lanczos K={k} (full reorth): Ritz range [{rmin:.4e}, {rmax:.4e}], orth {eo:.1e}, relation {er:.1e}");
    assert!(
        eo <= bound && er <= bound,
        "{name}: orth {eo:e} relation {er:e} bound {bound:e}"
    );
    assert!(
        rmin >= lo * (1.0 - 1e-8),
        "{name}: Ritz value {rmin} below the spectrum bound {lo}"
    );
    // Plain three-term recursion: the relation still holds; orthogonality loss is reported.
    let plain = lanczos(a, &v, &LanczosParams::new(k)).unwrap();
    let ep = orth_error(plain.basis(), n, plain.depth());
    let erp = relation_error(
        a,
        plain.basis(),
        &plain.small_matrix(),
        plain.residual(),
        n,
        plain.depth(),
        rmax,
    );
    println!("{name}: Lanczos K={k} (no reorth): orth {ep:.1e}, relation {erp:.1e}");
    assert!(erp <= bound);
    // Arnoldi with full reorthogonalisation on the same operator.
    let d = arnoldi(
        a,
        &v,
        &ArnoldiParams {
            reorthogonalize: Reorthogonalize::Full,
            ..ArnoldiParams::new(40)
        },
    )
    .unwrap();
    let ea = relation_error(
        a,
        d.basis(),
        d.hessenberg(),
        d.residual(),
        n,
        d.depth(),
        rmax,
    );
    let eao = orth_error(d.basis(), n, d.depth());
    println!("{name}: Arnoldi K=40: orth {eao:.1e}, relation {ea:.1e}");
    assert!(ea <= bound && eao <= bound);
}

#[test]
fn bcsstk14_krylov() {
    let a = load("bcsstk14.mtx.gz");
    assert_eq!(a.dim(), 1806);
    check_symmetric_krylov(&a, 0.0, "bcsstk14");
}

#[test]
fn laplacian_4elt_shifted_krylov_and_cg() {
    let l = load("4elt_laplacian.mtx.gz");
    assert_eq!(l.dim(), 15606);
    let sigma = 0.1;
    let a = Shifted::new(l, sigma).unwrap();
    // L is PSD, so every Ritz value of L + σI is ≥ σ.
    check_symmetric_krylov(&a, sigma, "4elt+0.1I");
    // CG: true relative residual ≤ 1e-8 (recursive residual tolerance 1e-10, cond ≈ 1e2..1e3).
    let n = a.nrows();
    let b = random_vector::<f64>(n, 7);
    let sol = solve(
        &a,
        &b,
        1,
        &CgParams {
            rtol: Some(1e-10),
            ..CgParams::default()
        },
    )
    .unwrap();
    assert!(sol.info().all_converged());
    let mut ax = vec![0.0; n];
    a.apply(sol.solution(), &mut ax);
    let res: f64 = ax
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt();
    let bn: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    println!(
        "4elt+0.1I: CG {} iterations, true relative residual {:.1e}",
        sol.info().iterations[0],
        res / bn
    );
    assert!(res / bn <= 1e-8);
}

#[test]
fn bcsstk14_golub_kahan() {
    let a = load("bcsstk14.mtx.gz");
    let n = a.dim();
    let b = random_vector::<f64>(n, 3);
    let k = 30;
    let gk = golub_kahan(&a, &b, &GkParams::new(k)).unwrap();
    let kk = gk.depth();
    assert_eq!(kk, k);
    let bound = 10.0 * f64::EPSILON * (n * kk) as f64;
    let (u, v) = (gk.left_basis(), gk.right_basis());
    let (eu, ev) = (orth_error(u, n, kk), orth_error(v, n, kk));
    // Aᵀ U = V Bᵀ holds exactly (see the module docs): check it.
    let bmat = gk.small_matrix();
    let mut atu = vec![0.0; n * kk];
    a.apply_transpose_block(&u[..n * kk], &mut atu, kk);
    let scale = bmat.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut worst: f64 = 0.0;
    for c in 0..kk {
        for i in 0..n {
            let mut s = atu[i + c * n];
            for l in 0..kk {
                s -= v[i + l * n] * bmat[c + l * kk];
            }
            worst = worst.max(s.abs());
        }
    }
    println!(
        "bcsstk14: Golub-Kahan K={k}: orth U {eu:.1e}, V {ev:.1e}, AᵀU − VBᵀ {:.1e}",
        worst / scale
    );
    assert!(eu <= bound && ev <= bound && worst / scale <= bound);
}
