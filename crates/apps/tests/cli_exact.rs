//! The command at invariant subspaces, on singular input and at full depth on an
//! ill-conditioned real matrix (issue 14): values against dense references (faer's dense
//! Cholesky and self-adjoint eigensolver, not the Krylov code), gradient files against the dense
//! Daleckii–Krein closed form, and singular input refused with exit status 2.

use faer::{Mat, Side};
use gradmat_operators::matrix_market::{
    read_matrix_market, write_matrix_market, MatrixMarketFile, Symmetry,
};
use gradmat_operators::testing::{random_orthogonal, random_vector};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

fn scratch(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gradmat-exact-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Out {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[String]) -> Out {
    let o = Command::new(BIN).args(args).output().expect("run gradmat");
    Out {
        status: o.status.code().expect("exit code"),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    }
}

fn write_vec(p: &Path, v: &[f64]) {
    let s: String = v.iter().map(|x| format!("{x:.17e}\n")).collect();
    std::fs::write(p, s).unwrap();
}

fn read_vec(p: &Path) -> Vec<f64> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn quadform(m: &Path, v: &Path, f: &str, method: &str, k: usize, reorth: &str) -> Vec<String> {
    [
        "quadform",
        "--matrix",
        &m.display().to_string(),
        "--vector",
        &v.display().to_string(),
        "--function",
        f,
        "--method",
        method,
        "--depth",
        &k.to_string(),
        "--reorthogonalize",
        reorth,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The full dense matrix of a file (symmetric files mirrored, duplicates summed).
fn dense(f: &MatrixMarketFile<f64>) -> Mat<f64> {
    let n = f.nrows();
    let mut a = Mat::<f64>::zeros(n, n);
    for t in 0..f.nnz() {
        let (i, j, v) = (f.rows()[t], f.cols()[t], f.values()[t]);
        a[(i, j)] += v;
        if f.header().symmetry == Symmetry::Symmetric && i != j {
            a[(j, i)] += v;
        }
    }
    a
}

/// A scalar function and its derivative.
type ScalarPair = (fn(f64) -> f64, fn(f64) -> f64);

fn scalar(name: &str) -> ScalarPair {
    match name {
        "log" => (f64::ln, |x| 1.0 / x),
        "exp" => (f64::exp, f64::exp),
        "sqrt" => (f64::sqrt, |x| 0.5 / x.sqrt()),
        "inv-sqrt" => (|x| 1.0 / x.sqrt(), |x| -0.5 / (x * x.sqrt())),
        "inv" => (|x| 1.0 / x, |x| -1.0 / (x * x)),
        _ => unreachable!(),
    }
}

/// `vᵀf(A)v` and its gradient `Ā = U(F ∘ (Uᵀvvᵀ U))Uᵀ` from the dense eigendecomposition
/// (divided differences by the derivative at the midpoint for eigenvalues closer than 1e-7
/// relative, where the difference quotient would cancel).
fn dense_reference(a: &Mat<f64>, v: &[f64], name: &str) -> (f64, Mat<f64>) {
    let n = a.nrows();
    let (f, df) = scalar(name);
    let evd = a.self_adjoint_eigen(Side::Lower).unwrap();
    let (w, u) = (evd.S().column_vector(), evd.U());
    let c: Vec<f64> = (0..n)
        .map(|l| (0..n).map(|i| u[(i, l)] * v[i]).sum())
        .collect();
    let value = (0..n).map(|l| c[l] * c[l] * f(w[l])).sum();
    let scale = (0..n).fold(0.0_f64, |m, l| m.max(w[l].abs()));
    let mut g = Mat::<f64>::zeros(n, n);
    for j in 0..n {
        for i in 0..n {
            let (a, b) = (w[i], w[j]);
            let dd = if (a - b).abs() > 1e-7 * scale {
                (f(a) - f(b)) / (a - b)
            } else {
                df(0.5 * (a + b))
            };
            g[(i, j)] = dd * c[i] * c[j];
        }
    }
    (value, &(u * &g) * u.transpose())
}

/// A symmetric matrix with groups of exactly equal eigenvalues (the Krylov space of a generic
/// vector is invariant at 9 dimensions, far below N = 48).
fn repeated_matrix(dir: &Path) -> (PathBuf, Mat<f64>) {
    let n = 48;
    let lam: Vec<f64> = (0..n)
        .map(|i| [0.4, 0.9, 1.3, 2.0, 2.5, 3.1, 3.6, 4.2, 4.8][i % 9])
        .collect();
    let u = random_orthogonal(n, 3);
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    for j in 0..n {
        for i in j..n {
            let s: f64 = (0..n).map(|l| u[i + l * n] * lam[l] * u[j + l * n]).sum();
            rows.push(i);
            cols.push(j);
            vals.push(s);
        }
    }
    let p = dir.join("repeated.mtx");
    let file = MatrixMarketFile::new_coordinate(
        n,
        n,
        gradmat_operators::matrix_market::Field::Real,
        Symmetry::Symmetric,
        rows,
        cols,
        vals,
    )
    .unwrap();
    write_matrix_market(&p, &file).unwrap();
    let a = dense(&read_matrix_market::<f64>(&p).unwrap());
    (p, a)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// The gradient file of a symmetric input (one entry per stored lower-triangle entry, standing
/// for both `A_ij` and `A_ji`) against the dense `Ā`: relative error in the 2-norm.
fn gradient_error(dir: &Path, input: &Path, abar: &Mat<f64>) -> f64 {
    let f = read_matrix_market::<f64>(input).unwrap();
    let g = read_matrix_market::<f64>(dir.join("d_matrix.mtx")).unwrap();
    let (mut d2, mut r2) = (0.0, 0.0);
    for t in 0..f.nnz() {
        let (i, j) = (f.rows()[t], f.cols()[t]);
        let want = if i == j {
            abar[(i, i)]
        } else {
            abar[(i, j)] + abar[(j, i)]
        };
        d2 += (g.values()[t] - want).powi(2);
        r2 += want * want;
    }
    (d2 / r2).sqrt()
}

/// The first case: full depth on a matrix with repeated eigenvalues stops at the
/// invariant subspace; value, v̄ and the gradient in every stored entry match the dense
/// closed form for all five functions, Lanczos (plain and fully reorthogonalised) and Arnoldi.
/// (Before the invariant-subspace gradient the matrix gradient was off by 6e-4 to 5e-3.)
/// Tolerance 1e-9 relative (derivation in `gradmat-matfun`'s `tests/invariant.rs`).
#[test]
fn quadform_gradient_at_invariant_subspace_matches_dense() {
    let dir = scratch("inv");
    let (m, a) = repeated_matrix(&dir);
    let n = a.nrows();
    let v = random_vector::<f64>(n, 11);
    let vp = dir.join("v.txt");
    write_vec(&vp, &v);
    for f in ["log", "exp", "sqrt", "inv-sqrt", "inv"] {
        let (want, abar) = dense_reference(&a, &v, f);
        for (method, reorth) in [
            ("lanczos", "full"),
            ("lanczos", "none"),
            ("arnoldi", "full"),
        ] {
            let g = dir.join(format!("g-{f}-{method}-{reorth}"));
            let mut args = quadform(&m, &vp, f, method, n, reorth);
            args.extend(["--grad-dir".to_string(), g.display().to_string()]);
            let o = run(&args);
            assert_eq!(o.status, 0, "{f} {method} {reorth}: {}", o.stderr);
            let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
            let value = j["value"].as_f64().unwrap();
            assert!(
                rel(value, want) < 1e-12,
                "{f} {method} {reorth}: value {value} vs {want}"
            );
            let depth = j["depth"].as_u64().unwrap();
            if reorth == "full" {
                assert!(
                    depth < n as u64,
                    "{f} {method}: expected the invariant subspace"
                );
            }
            let e = gradient_error(&g, &m, &abar);
            assert!(
                e < 1e-9,
                "{f} {method} {reorth}: matrix gradient error {e:.2e}"
            );
            // v̄ = 2 f(A) v.
            let vbar = read_vec(&g.join("d_vector.txt"));
            let evd = a.self_adjoint_eigen(Side::Lower).unwrap();
            let (w, u) = (evd.S().column_vector(), evd.U());
            let (fun, _) = scalar(f);
            let mut err2 = 0.0;
            let mut nrm2 = 0.0;
            for i in 0..n {
                let want: f64 = (0..n)
                    .map(|l| {
                        let c: f64 = (0..n).map(|r| u[(r, l)] * v[r]).sum();
                        2.0 * u[(i, l)] * fun(w[l]) * c
                    })
                    .sum();
                err2 += (vbar[i] - want).powi(2);
                nrm2 += want * want;
            }
            let ev = (err2 / nrm2).sqrt();
            assert!(ev < 1e-9, "{f} {method} {reorth}: v̄ error {ev:.2e}");
        }
    }
}

/// Singular input gives a typed error and exit status 2 for every reorthogonalisation option
/// and method, never a confident finite number (`[[1,1],[1,1]]`: `vᵀA⁻¹v` was 3.6e14, exit 0).
#[test]
fn singular_input_exits_2() {
    let dir = scratch("sing");
    let m = dir.join("ones.mtx");
    std::fs::write(
        &m,
        "%%MatrixMarket matrix coordinate real symmetric\n2 2 3\n1 1 1\n2 1 1\n2 2 1\n",
    )
    .unwrap();
    for seed in 0..20 {
        let vp = dir.join(format!("v{seed}.txt"));
        write_vec(&vp, &random_vector::<f64>(2, seed));
        for f in ["log", "inv", "inv-sqrt"] {
            for (method, reorth) in [
                ("lanczos", "full"),
                ("lanczos", "none"),
                ("arnoldi", "full"),
            ] {
                let o = run(&quadform(&m, &vp, f, method, 2, reorth));
                assert_eq!(
                    o.status, 2,
                    "{f} {method} {reorth} seed {seed}: {}",
                    o.stdout
                );
                assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
                assert!(o.stderr.contains("singular"), "{}", o.stderr);
            }
        }
    }
}

/// A nearly singular matrix that passes the rounding threshold gets a warning on stderr.
#[test]
fn nearly_singular_input_warns() {
    let dir = scratch("near");
    let m = dir.join("near.mtx");
    let n = 6;
    let mut text = format!("%%MatrixMarket matrix coordinate real symmetric\n{n} {n} {n}\n");
    for i in 0..n {
        let d = if i == 0 { 1e-13 } else { i as f64 };
        text.push_str(&format!("{} {} {d:e}\n", i + 1, i + 1));
    }
    std::fs::write(&m, text).unwrap();
    let vp = dir.join("v.txt");
    write_vec(&vp, &[1.0; 6]);
    let o = run(&quadform(&m, &vp, "inv", "lanczos", n, "full"));
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("warning") && o.stderr.contains("singular"),
        "{}",
        o.stderr
    );
}

/// The test vectors of the bcsstk14 case, `v_i = sin(1 + i(0.7 + 0.1 s)) + cos(3i/N + s)/2`
/// (reproducible in `data/matrices/bcsstk14_reference.py`).
fn bcsstk14_vector(n: usize, seed: u64) -> Vec<f64> {
    let s = seed as f64;
    (0..n)
        .map(|i| {
            let x = i as f64;
            (1.0 + x * (0.7 + 0.1 * s)).sin() + 0.5 * (3.0 * x / n as f64 + s).cos()
        })
        .collect()
}

/// Full depth on the committed bcsstk14 (N = 1,806, cond ≈ 1.2e10): the values match
/// references to the conditioning limit — `vᵀA⁻¹v` against dense Cholesky (faer, here) and
/// `vᵀA^{-1/2}v` within 1e-6 relative, `vᵀlog(A)v` within 1e-9. The last two references come
/// from integral representations evaluated with LAPACK Cholesky solves
/// (`data/matrices/bcsstk14_reference.py`; a dense eigendecomposition is only accurate to
/// `ε‖A‖` in the small eigenvalues and is off by 3e-8 in `log` here). Before the tridiagonal
/// eigensolver with relative accuracy, `inv` was off by 1e-2 to 4e-2 and `log` by 3e-5.
/// Measured: inv 5e-11 / 3e-8, inv-sqrt 3e-11 / 1e-8, log 2e-10 / 1e-10 (seeds 1 / 2; the
/// suite runs seed 2 for `inv` only).
#[test]
fn bcsstk14_full_depth_matches_references() {
    let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/matrices/bcsstk14.mtx.gz");
    let a = dense(&read_matrix_market::<f64>(&m).unwrap());
    let n = a.nrows();
    let dir = scratch("bcsstk14");
    let chol = a.llt(Side::Lower).unwrap();
    let l = chol.L();
    let references = [
        (1u64, 33.6326606921183, 18641.509976453137),
        (2, 27.233302645417496, 18556.73301425844),
    ];
    for (seed, isq, log) in references {
        let v = bcsstk14_vector(n, seed);
        let vp = dir.join(format!("v{seed}.txt"));
        write_vec(&vp, &v);
        // vᵀA⁻¹v = ‖L⁻¹v‖² by forward substitution.
        let mut y = v.clone();
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[(i, k)] * y[k]).sum();
            y[i] = (y[i] - s) / l[(i, i)];
        }
        let inv: f64 = y.iter().map(|x| x * x).sum();
        if seed == 1 {
            // The gradient of vᵀA⁻¹v is −xxᵀ with x = A⁻¹v (back substitution), and v̄ = 2x:
            // the gradient at the invariant subspace the run stops at (depth 1,773 < N),
            // within the conditioning limit 1e-6.
            let mut x = y.clone();
            for i in (0..n).rev() {
                let s: f64 = (i + 1..n).map(|k| l[(k, i)] * x[k]).sum();
                x[i] = (x[i] - s) / l[(i, i)];
            }
            let g = dir.join("grad");
            let mut args = quadform(&m, &vp, "inv", "lanczos", n, "full");
            args.extend(["--grad-dir".to_string(), g.display().to_string()]);
            let o = run(&args);
            assert_eq!(o.status, 0, "{}", o.stderr);
            let abar = Mat::from_fn(n, n, |i, j| -x[i] * x[j]);
            let e = gradient_error(&g, &m, &abar);
            let vbar = read_vec(&g.join("d_vector.txt"));
            let ev = (vbar
                .iter()
                .zip(&x)
                .map(|(a, b)| (a - 2.0 * b).powi(2))
                .sum::<f64>()
                / x.iter().map(|b| 4.0 * b * b).sum::<f64>())
            .sqrt();
            println!("bcsstk14 inv gradient: matrix {e:.2e}, vector {ev:.2e}");
            assert!(e < 1e-6 && ev < 1e-6, "gradient errors {e:.2e} {ev:.2e}");
        }
        // (Seed 2 checks the most sensitive function only, to keep the suite's time down.)
        let cases = [
            ("inv", inv, 1e-6),
            ("inv-sqrt", isq, 1e-6),
            ("log", log, 1e-9),
        ];
        for (f, want, tol) in cases.into_iter().take(if seed == 1 { 3 } else { 1 }) {
            let o = run(&quadform(&m, &vp, f, "lanczos", n, "full"));
            assert_eq!(o.status, 0, "{f}: {}", o.stderr);
            let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
            let value = j["value"].as_f64().unwrap();
            let e = rel(value, want);
            println!(
                "bcsstk14 seed {seed} {f}: relative error {e:.2e}, depth {}",
                j["depth"]
            );
            assert!(e < tol, "{f} seed {seed}: {value} vs {want}: {e:.2e}");
        }
    }
}
