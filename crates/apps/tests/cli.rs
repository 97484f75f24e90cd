//! Integration tests of the `gradmat` command: values against dense references, the JSON
//! output, every class of bad input (exit status 2, one line on stderr naming the file), and
//! the gradient files against central finite differences of the command's own value.

use faer::{Mat, Side};
use gradmat_operators::matrix_market::{
    read_matrix_market, write_matrix_market, MatrixMarketFile, Symmetry,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A fresh scratch directory under cargo's test temp dir.
fn scratch(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gradmat-cli-{}-{tag}-{}",
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

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    let o = Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run gradmat");
    Out {
        status: o.status.code().expect("exit code"),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    }
}

/// Runs, asserts success, parses the one JSON object on stdout.
fn run_json<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> serde_json::Value {
    let o = run(args);
    assert_eq!(o.status, 0, "stderr: {}", o.stderr);
    assert!(o.stderr.is_empty(), "stderr: {}", o.stderr);
    assert_eq!(o.stdout.lines().count(), 1, "stdout: {}", o.stdout);
    serde_json::from_str(&o.stdout).expect("JSON")
}

fn value(j: &serde_json::Value) -> f64 {
    j["value"].as_f64().expect("numeric value")
}

fn quadform_args(matrix: &Path, vector: &Path, f: &str, method: &str, k: usize) -> Vec<String> {
    vec![
        "quadform".into(),
        "--matrix".into(),
        matrix.display().to_string(),
        "--vector".into(),
        vector.display().to_string(),
        "--function".into(),
        f.into(),
        "--method".into(),
        method.into(),
        "--depth".into(),
        k.to_string(),
    ]
}

fn read_mm(p: &Path) -> MatrixMarketFile<f64> {
    read_matrix_market::<f64>(p).expect("read Matrix Market")
}

fn read_vec(p: &Path) -> Vec<f64> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.parse().unwrap())
        .collect()
}

fn write_vec(p: &Path, v: &[f64]) {
    let s: String = v.iter().map(|x| format!("{x:e}\n")).collect();
    std::fs::write(p, s).unwrap();
}

/// The full dense matrix (column-major) of a file (symmetric files mirrored, duplicates summed).
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

fn scalar_fn(name: &str) -> fn(f64) -> f64 {
    match name {
        "log" => f64::ln,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "inv-sqrt" => |x: f64| 1.0 / x.sqrt(),
        "inv" => |x: f64| 1.0 / x,
        _ => unreachable!(),
    }
}

/// `vᵀf(A)v` for a symmetric `A` by faer's eigendecomposition.
fn dense_quadform_sym(a: &Mat<f64>, v: &[f64], f: fn(f64) -> f64) -> f64 {
    let e = a.self_adjoint_eigen(Side::Lower).unwrap();
    let (s, u) = (e.S(), e.U());
    (0..a.nrows())
        .map(|i| {
            let c: f64 = (0..a.nrows()).map(|r| u[(r, i)] * v[r]).sum();
            c * c * f(s.column_vector()[i])
        })
        .sum()
}

/// `vᵀexp(A)v` for any square `A`: scaling and squaring of a 30-term Taylor series.
fn dense_quadform_exp(a: &Mat<f64>, v: &[f64]) -> f64 {
    let n = a.nrows();
    let s = 6;
    let b = Mat::from_fn(n, n, |i, j| a[(i, j)] / f64::from(1 << s));
    let mut e = Mat::<f64>::identity(n, n);
    let mut term = Mat::<f64>::identity(n, n);
    for k in 1..30 {
        term = &term * &b * (1.0 / f64::from(k));
        e += &term;
    }
    for _ in 0..s {
        e = &e * &e;
    }
    (0..n)
        .map(|i| (0..n).map(|j| v[i] * e[(i, j)] * v[j]).sum::<f64>())
        .sum()
}

fn logdet_dense(a: &Mat<f64>) -> f64 {
    let l = a.llt(Side::Lower).expect("SPD");
    let l = l.L();
    (0..a.nrows()).map(|i| 2.0 * l[(i, i)].ln()).sum()
}

fn close(a: f64, b: f64, rtol: f64) -> bool {
    (a - b).abs() <= rtol * b.abs().max(1.0)
}

#[test]
fn quadform_matches_dense_eigendecomposition() {
    let v = read_vec(&data("v6.txt"));
    assert_eq!(v.len(), 6, "comments and blank lines are skipped");
    let a = dense(&read_mm(&data("spd6_sym.mtx")));
    for file in ["spd6_sym.mtx", "spd6_general.mtx"] {
        for f in ["log", "exp", "sqrt", "inv-sqrt", "inv"] {
            let reference = dense_quadform_sym(&a, &v, scalar_fn(f));
            for method in ["lanczos", "arnoldi"] {
                let j = run_json(&quadform_args(&data(file), &data("v6.txt"), f, method, 6));
                assert!(
                    close(value(&j), reference, 1e-11),
                    "{file} {f} {method}: {} vs {reference}",
                    value(&j)
                );
                assert_eq!(j["depth"].as_u64(), Some(6));
                assert_eq!(j["matvecs"].as_u64(), Some(6));
                assert!(j["seconds_forward"].as_f64().unwrap() >= 0.0);
                assert!(j["seconds_gradient"].is_null());
            }
        }
    }
    // Without reorthogonalisation, and at a smaller depth (an approximation that improves).
    let mut args = quadform_args(&data("spd6_sym.mtx"), &data("v6.txt"), "log", "lanczos", 6);
    args.extend(["--reorthogonalize".into(), "none".into()]);
    let j = run_json(&args);
    let reference = dense_quadform_sym(&a, &v, f64::ln);
    assert!(close(value(&j), reference, 1e-10));
    let e3 = (value(&run_json(&quadform_args(
        &data("spd6_sym.mtx"),
        &data("v6.txt"),
        "log",
        "lanczos",
        3,
    ))) - reference)
        .abs();
    let e5 = (value(&run_json(&quadform_args(
        &data("spd6_sym.mtx"),
        &data("v6.txt"),
        "log",
        "lanczos",
        5,
    ))) - reference)
        .abs();
    assert!(e5 < e3 && e3 < 1e-1, "errors {e3} {e5}");
}

#[test]
fn quadform_exp_of_nonsymmetric_matrix_by_arnoldi() {
    let v = read_vec(&data("v6.txt"));
    let a = dense(&read_mm(&data("nonsym6.mtx")));
    let reference = dense_quadform_exp(&a, &v);
    let j = run_json(&quadform_args(
        &data("nonsym6.mtx"),
        &data("v6.txt"),
        "exp",
        "arnoldi",
        6,
    ));
    assert!(
        close(value(&j), reference, 1e-11),
        "{} vs {reference}",
        value(&j)
    );
    // Options of the forward and backward passes leave the full-depth value unchanged.
    let dir = scratch("noproj");
    let mut args = quadform_args(&data("nonsym6.mtx"), &data("v6.txt"), "exp", "arnoldi", 6);
    args.extend([
        "--no-projection".into(),
        "--reorthogonalize".into(),
        "none".into(),
        "--grad-dir".into(),
        dir.display().to_string(),
    ]);
    let j = run_json(&args);
    assert!(close(value(&j), reference, 1e-10));
    assert!(j["seconds_gradient"].as_f64().unwrap() >= 0.0);
    assert!(dir.join("d_matrix.mtx").exists() && dir.join("d_vector.txt").exists());
}

#[test]
fn gzipped_matrix_is_read() {
    let dir = scratch("gz");
    let gz = dir.join("a.mtx.gz");
    write_matrix_market(&gz, &read_mm(&data("spd6_sym.mtx"))).unwrap();
    let plain = run_json(&quadform_args(
        &data("spd6_sym.mtx"),
        &data("v6.txt"),
        "exp",
        "lanczos",
        6,
    ));
    let zipped = run_json(&quadform_args(&gz, &data("v6.txt"), "exp", "lanczos", 6));
    assert!(close(value(&plain), value(&zipped), 1e-15));
}

fn logdet_args(matrix: &Path, probes: usize, k: usize, seed: u64) -> Vec<String> {
    vec![
        "logdet".into(),
        "--matrix".into(),
        matrix.display().to_string(),
        "--probes".into(),
        probes.to_string(),
        "--depth".into(),
        k.to_string(),
        "--seed".into(),
        seed.to_string(),
    ]
}

#[test]
fn logdet_estimates_cholesky_reference() {
    let a = dense(&read_mm(&data("spd6_sym.mtx")));
    let reference = logdet_dense(&a);
    for (file, probe) in [
        ("spd6_sym.mtx", "rademacher"),
        ("spd6_general.mtx", "gaussian"),
    ] {
        let mut args = logdet_args(&data(file), 400, 6, 11);
        args.extend(["--probe".into(), probe.into()]);
        let j = run_json(&args);
        let se = j["std_error"].as_f64().unwrap();
        assert!(se > 0.0 && se < 0.5, "std error {se}");
        assert!(
            (value(&j) - reference).abs() < 4.0 * se,
            "{file} {probe}: {} vs {reference} (se {se})",
            value(&j)
        );
        assert_eq!(j["depth"].as_u64(), Some(6));
        assert_eq!(j["matvecs"].as_u64(), Some(2400));
        assert!(j["seconds_gradient"].is_null());
    }
    // Shift: log det(A + σI); same seed gives the same estimate.
    let sigma = 0.75;
    let shifted = Mat::from_fn(6, 6, |i, j| a[(i, j)] + if i == j { sigma } else { 0.0 });
    let mut args = logdet_args(&data("spd6_sym.mtx"), 400, 6, 5);
    args.extend(["--shift".into(), sigma.to_string()]);
    let j1 = run_json(&args);
    let j2 = run_json(&args);
    assert_eq!(value(&j1).to_bits(), value(&j2).to_bits());
    let se = j1["std_error"].as_f64().unwrap();
    assert!((value(&j1) - logdet_dense(&shifted)).abs() < 4.0 * se);
    // One probe: std_error is null.
    let j = run_json(&logdet_args(&data("spd6_sym.mtx"), 1, 6, 5));
    assert!(j["std_error"].is_null());
}

/// Asserts exit status 2, nothing on stdout and exactly one line on stderr containing every
/// string of `needles`.
fn assert_fails<S: AsRef<std::ffi::OsStr>>(args: &[S], needles: &[&str]) {
    let o = run(args);
    assert_eq!(o.status, 2, "stdout {:?} stderr {:?}", o.stdout, o.stderr);
    assert!(o.stdout.is_empty(), "stdout {:?}", o.stdout);
    assert_eq!(o.stderr.lines().count(), 1, "stderr {:?}", o.stderr);
    assert!(o.stderr.starts_with("gradmat: "), "stderr {:?}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "stderr {:?}", o.stderr);
    for n in needles {
        assert!(o.stderr.contains(n), "{n:?} not in {:?}", o.stderr);
    }
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let (a, v) = (data("spd6_sym.mtx"), data("v6.txt"));
    // Missing files.
    assert_fails(
        &quadform_args(&data("missing.mtx"), &v, "log", "lanczos", 3),
        &["missing.mtx"],
    );
    assert_fails(
        &quadform_args(&a, &data("missing.txt"), "log", "lanczos", 3),
        &["missing.txt"],
    );
    assert_fails(
        &logdet_args(&data("missing.mtx"), 3, 3, 1),
        &["missing.mtx"],
    );
    // Malformed lines, with the line number.
    assert_fails(
        &quadform_args(&data("bad_line.mtx"), &v, "log", "lanczos", 3),
        &["bad_line.mtx:4:", "x2.0"],
    );
    assert_fails(
        &quadform_args(&a, &data("bad_vector.txt"), "log", "lanczos", 3),
        &["bad_vector.txt:3:", "abc"],
    );
    // Dimension mismatch.
    assert_fails(
        &quadform_args(&a, &data("short_vector.txt"), "log", "lanczos", 3),
        &["short_vector.txt", "3 entries"],
    );
    // Depth out of range.
    assert_fails(&quadform_args(&a, &v, "log", "lanczos", 0), &["--depth 0"]);
    assert_fails(&quadform_args(&a, &v, "log", "arnoldi", 7), &["--depth 7"]);
    assert_fails(&logdet_args(&a, 3, 0, 1), &["--depth 0"]);
    assert_fails(&logdet_args(&a, 3, 7, 1), &["--depth 7"]);
    assert_fails(&logdet_args(&a, 0, 3, 1), &["--probes 0"]);
    // Non-positive spectrum for log.
    assert_fails(
        &quadform_args(&data("indef6.mtx"), &v, "log", "lanczos", 6),
        &["indef6.mtx", "log"],
    );
    assert_fails(
        &logdet_args(&data("indef6.mtx"), 4, 6, 1),
        &["indef6.mtx", "log"],
    );
    let mut shifted = logdet_args(&a, 4, 6, 1);
    shifted.extend(["--shift".into(), "-100".into()]);
    assert_fails(&shifted, &["spd6_sym.mtx", "log"]);
    // Non-symmetric matrix with Lanczos (and with logdet), or with a non-exp Arnoldi function.
    assert_fails(
        &quadform_args(&data("nonsym6.mtx"), &v, "exp", "lanczos", 3),
        &["nonsym6.mtx", "not symmetric"],
    );
    assert_fails(
        &logdet_args(&data("nonsym6.mtx"), 4, 6, 1),
        &["nonsym6.mtx", "not symmetric"],
    );
    assert_fails(
        &quadform_args(&data("nonsym6.mtx"), &v, "log", "arnoldi", 6),
        &["nonsym6.mtx", "symmetric"],
    );
    // Usage errors: unknown option, bad value, missing subcommand or option.
    let mut unknown = quadform_args(&a, &v, "log", "lanczos", 3);
    unknown.push("--bogus".into());
    assert_fails(&unknown, &["--bogus"]);
    assert_fails(&quadform_args(&a, &v, "cosh", "lanczos", 3), &["cosh"]);
    // --depth has a default now (issue 18); --matrix is still required.
    assert_fails(
        &[
            &["quadform".to_string()][..],
            &quadform_args(&a, &v, "log", "lanczos", 3)[3..],
        ]
        .concat(),
        &["--matrix"],
    );
    assert_fails::<&str>(&[], &["subcommand"]);
    assert_fails(&["frobnicate"], &["frobnicate"]);
    assert_fails(&["quadform", "--depth", "-3"], &["-3"]);
    // A directory that cannot be created.
    let mut bad_dir = quadform_args(&a, &v, "log", "lanczos", 3);
    bad_dir.extend([
        "--grad-dir".into(),
        data("v6.txt").join("sub").display().to_string(),
    ]);
    assert_fails(&bad_dir, &["v6.txt"]);
}

#[test]
fn help_exits_0() {
    for args in [
        vec!["--help"],
        vec!["quadform", "--help"],
        vec!["logdet", "--help"],
    ] {
        let o = run(&args);
        assert_eq!(o.status, 0);
        assert!(o.stdout.contains("Usage"), "{}", o.stdout);
    }
    let o = run(&["quadform", "--help"]);
    assert!(o.stdout.contains("default: full"));
}

/// Central difference of the command's value when file entry `t` moves by ±h.
fn fd_matrix_entries(
    file: &MatrixMarketFile<f64>,
    entries: &[usize],
    dir: &Path,
    args_for: &dyn Fn(&Path) -> Vec<String>,
    h: f64,
) -> Vec<f64> {
    entries
        .iter()
        .map(|&t| {
            let mut vals = [0.0; 2];
            for (s, sign) in [1.0, -1.0].into_iter().enumerate() {
                let mut new = file.values().to_vec();
                new[t] += sign * h;
                let p = dir.join(format!("fd_{t}_{s}.mtx"));
                write_matrix_market(&p, &file.with_values(&new).unwrap()).unwrap();
                vals[s] = value(&run_json(&args_for(&p)));
            }
            (vals[0] - vals[1]) / (2.0 * h)
        })
        .collect()
}

/// Reads `dir/d_matrix.mtx` and checks it has the input's header kind, size and coordinates.
fn read_grad_matrix(dir: &Path, input: &MatrixMarketFile<f64>) -> MatrixMarketFile<f64> {
    let g = read_mm(&dir.join("d_matrix.mtx"));
    assert_eq!(g.header().symmetry, input.header().symmetry);
    assert_eq!(g.header().format, input.header().format);
    assert_eq!(
        (g.nrows(), g.ncols(), g.nnz()),
        (input.nrows(), input.ncols(), input.nnz())
    );
    assert_eq!(g.rows(), input.rows());
    assert_eq!(g.cols(), input.cols());
    g
}

#[test]
fn quadform_gradients_match_finite_differences_symmetric_file() {
    let dir = scratch("qsym");
    let input = read_mm(&data("spd6_sym.mtx"));
    let v = read_vec(&data("v6.txt"));
    let gdir = dir.join("grads/nested");
    for (f, method) in [("log", "lanczos"), ("inv-sqrt", "arnoldi")] {
        let mut args = quadform_args(&data("spd6_sym.mtx"), &data("v6.txt"), f, method, 6);
        args.extend(["--grad-dir".into(), gdir.display().to_string()]);
        let j = run_json(&args);
        assert!(j["seconds_gradient"].as_f64().unwrap() >= 0.0);
        let g = read_grad_matrix(&gdir, &input);
        // Diagonal, off-diagonal, both copies of the duplicate (4,4), and a far entry.
        let entries = [0, 1, 3, 7, 12];
        assert_eq!(
            g.values()[3].to_bits(),
            g.values()[7].to_bits(),
            "duplicates share"
        );
        let fd = fd_matrix_entries(
            &input,
            &entries,
            &dir,
            &|p| quadform_args(p, &data("v6.txt"), f, method, 6),
            1e-5,
        );
        for (&t, d) in entries.iter().zip(&fd) {
            assert!(
                (g.values()[t] - d).abs() < 1e-7 * d.abs().max(1.0),
                "{f} {method} entry {t}: {} vs FD {d}",
                g.values()[t]
            );
        }
        // d_vector.txt: %.17e lines, against FD in v.
        let text = std::fs::read_to_string(gdir.join("d_vector.txt")).unwrap();
        assert_eq!(text.lines().count(), 6);
        for line in text.lines() {
            let (mant, exp) = line.split_once('e').unwrap();
            assert_eq!(mant.trim_start_matches('-').len(), 19, "{line}");
            assert!(exp.starts_with('+') || exp.starts_with('-'), "{line}");
            assert!(exp.len() >= 3, "{line}");
        }
        let dv = read_vec(&gdir.join("d_vector.txt"));
        for i in [0, 3, 5] {
            let h = 1e-5;
            let mut vals = [0.0; 2];
            for (s, sign) in [1.0, -1.0].into_iter().enumerate() {
                let mut w = v.clone();
                w[i] += sign * h;
                let p = dir.join(format!("v_{i}_{s}.txt"));
                write_vec(&p, &w);
                vals[s] = value(&run_json(&quadform_args(
                    &data("spd6_sym.mtx"),
                    &p,
                    f,
                    method,
                    6,
                )));
            }
            let d = (vals[0] - vals[1]) / (2.0 * h);
            assert!(
                (dv[i] - d).abs() < 1e-7 * d.abs().max(1.0),
                "v[{i}]: {} vs {d}",
                dv[i]
            );
        }
    }
}

#[test]
fn quadform_gradients_general_files() {
    let dir = scratch("qgen");
    // Non-symmetric file, exp by Arnoldi: every entry is its own parameter.
    let input = read_mm(&data("nonsym6.mtx"));
    let gdir = dir.join("g1");
    let mut args = quadform_args(&data("nonsym6.mtx"), &data("v6.txt"), "exp", "arnoldi", 6);
    args.extend(["--grad-dir".into(), gdir.display().to_string()]);
    run_json(&args);
    let g = read_grad_matrix(&gdir, &input);
    let entries = [0, 1, 2, 9, 15];
    let fd = fd_matrix_entries(
        &input,
        &entries,
        &dir,
        &|p| quadform_args(p, &data("v6.txt"), "exp", "arnoldi", 6),
        1e-5,
    );
    for (&t, d) in entries.iter().zip(&fd) {
        assert!(
            (g.values()[t] - d).abs() < 1e-7 * d.abs().max(1.0),
            "entry {t}: {} vs FD {d}",
            g.values()[t]
        );
    }

    // Symmetric matrix in a general file under Lanczos: entries are independent parameters;
    // the sum over a mirror pair is the derivative along the symmetric perturbation, which is
    // the symmetric file's gradient of that off-diagonal parameter.
    let input = read_mm(&data("spd6_general.mtx"));
    let gdir = dir.join("g2");
    let mut args = quadform_args(
        &data("spd6_general.mtx"),
        &data("v6.txt"),
        "log",
        "lanczos",
        6,
    );
    args.extend(["--grad-dir".into(), gdir.display().to_string()]);
    run_json(&args);
    let g = read_grad_matrix(&gdir, &input);
    let sym_dir = dir.join("g3");
    let mut args = quadform_args(&data("spd6_sym.mtx"), &data("v6.txt"), "log", "lanczos", 6);
    args.extend(["--grad-dir".into(), sym_dir.display().to_string()]);
    run_json(&args);
    let gs = read_mm(&sym_dir.join("d_matrix.mtx"));
    // (2,1)/(1,2) are general entries 1, 2 and symmetric entry 1; (1,1) is 0 and 0.
    let pair = g.values()[1] + g.values()[2];
    assert!(
        (pair - gs.values()[1]).abs() < 1e-10,
        "{pair} vs {}",
        gs.values()[1]
    );
    assert!((g.values()[0] - gs.values()[0]).abs() < 1e-10);
    // FD of the symmetric perturbation of the pair (both file entries move).
    let h = 1e-5;
    let mut vals = [0.0; 2];
    for (s, sign) in [1.0, -1.0].into_iter().enumerate() {
        let mut new = input.values().to_vec();
        new[1] += sign * h;
        new[2] += sign * h;
        let p = dir.join(format!("pair_{s}.mtx"));
        write_matrix_market(&p, &input.with_values(&new).unwrap()).unwrap();
        vals[s] = value(&run_json(&quadform_args(
            &p,
            &data("v6.txt"),
            "log",
            "lanczos",
            6,
        )));
    }
    let d = (vals[0] - vals[1]) / (2.0 * h);
    assert!(
        (pair - d).abs() < 1e-7 * d.abs().max(1.0),
        "{pair} vs FD {d}"
    );
}

#[test]
fn logdet_gradient_matches_finite_differences() {
    let dir = scratch("ldet");
    let input = read_mm(&data("spd6_sym.mtx"));
    let gdir = dir.join("g");
    let base = |p: &Path| {
        let mut a = logdet_args(p, 8, 6, 42);
        a.extend(["--shift".into(), "0.5".into()]);
        a
    };
    let mut args = base(&data("spd6_sym.mtx"));
    args.extend(["--grad-dir".into(), gdir.display().to_string()]);
    let j = run_json(&args);
    assert!(j["seconds_gradient"].as_f64().unwrap() >= 0.0);
    // The sequential gradient path gives the same estimate as the parallel estimator.
    let plain = run_json(&base(&data("spd6_sym.mtx")));
    assert_eq!(value(&plain).to_bits(), value(&j).to_bits());
    assert_eq!(
        plain["std_error"].as_f64().unwrap().to_bits(),
        j["std_error"].as_f64().unwrap().to_bits()
    );
    assert!(!gdir.join("d_vector.txt").exists());
    let g = read_grad_matrix(&gdir, &input);
    let entries = [0, 1, 3, 12];
    let fd = fd_matrix_entries(&input, &entries, &dir, &base, 1e-5);
    for (&t, d) in entries.iter().zip(&fd) {
        assert!(
            (g.values()[t] - d).abs() < 1e-7 * d.abs().max(1.0),
            "entry {t}: {} vs FD {d}",
            g.values()[t]
        );
    }
}

#[test]
fn pattern_and_array_files_round_trip_gradients() {
    let dir = scratch("patarr");
    for (file, vec, f, method, n) in [
        ("pattern4.mtx", "v4.txt", "exp", "lanczos", 4),
        ("array3.mtx", "v3.txt", "log", "arnoldi", 3),
    ] {
        let input = read_mm(&data(file));
        let gdir = dir.join(file);
        let mut args = quadform_args(&data(file), &data(vec), f, method, n);
        args.extend(["--grad-dir".into(), gdir.display().to_string()]);
        let j = run_json(&args);
        let a = dense(&input);
        let v = read_vec(&data(vec));
        let reference = dense_quadform_sym(&a, &v, scalar_fn(f));
        assert!(close(value(&j), reference, 1e-11), "{file}");
        let g = read_grad_matrix(&gdir, &input);
        let entries: Vec<usize> = (0..input.nnz()).collect();
        let fd = fd_matrix_entries(
            &input,
            &entries,
            &dir,
            &|p| quadform_args(p, &data(vec), f, method, n),
            1e-5,
        );
        for (&t, d) in entries.iter().zip(&fd) {
            assert!(
                (g.values()[t] - d).abs() < 1e-6 * d.abs().max(1.0),
                "{file} entry {t}: {} vs FD {d}",
                g.values()[t]
            );
        }
    }
}
