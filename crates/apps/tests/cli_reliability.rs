//! The reliability issue's CLI items, one test each (all failed before the fixes): memory needs
//! checked up front for every size option, outputs written atomically (temporary file and
//! rename, one complete set of files per run, nothing half-written after a failure), a closed
//! stdout, one-line errors before any progress output, causes printed once, messages that name
//! the right culprit, no standard error for one probe, labelled timings, the defaults and
//! options a user expects (`--vector ones|random:SEED`, `--shift` and `--quiet` everywhere,
//! subcommand usage hints) and a convergence indicator in the JSON.

use gradmat_apps::bnn::idx::write_idx;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gradmat-rel-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Debug)]
struct Out {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("GRADMAT_MNIST_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run gradmat");
    Out {
        status: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    run_env(args, &[])
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Exit status 2, nothing on stdout, exactly one line `gradmat: …` on stderr containing every
/// needle, no caught panic.
fn assert_one_line_failure(what: &str, o: &Out, needles: &[&str]) {
    assert_eq!(o.status, Some(2), "{what}: {o:?}");
    assert!(o.stdout.is_empty(), "{what}: stdout {:?}", o.stdout);
    assert_eq!(o.stderr.lines().count(), 1, "{what}: stderr {:?}", o.stderr);
    assert!(o.stderr.starts_with("gradmat: "), "{what}: {:?}", o.stderr);
    assert!(
        !o.stderr.contains("internal error") && !o.stderr.contains("panicked"),
        "{what}: {:?}",
        o.stderr
    );
    for n in needles {
        assert!(o.stderr.contains(n), "{what}: {n:?} not in {:?}", o.stderr);
    }
}

fn json_ok(what: &str, o: &Out) -> serde_json::Value {
    assert_eq!(o.status, Some(0), "{what}: {o:?}");
    assert_eq!(o.stdout.lines().count(), 1, "{what}: {:?}", o.stdout);
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {:?}", o.stdout))
}

fn quadform(matrix: &Path, vector: &str, f: &str, method: &str, k: usize) -> Vec<String> {
    let mut a = s(&["quadform", "--matrix"]);
    a.push(p(matrix));
    a.extend(s(&[
        "--vector",
        vector,
        "--function",
        f,
        "--method",
        method,
    ]));
    a.extend(s(&["--depth", &k.to_string()]));
    a
}

fn plus(base: &[String], extra: &[&str]) -> Vec<String> {
    let mut a = base.to_vec();
    a.extend(s(extra));
    a
}

/// `base` option pairs with those given again in `extra` (pairs) replaced, then the rest of
/// `extra` appended (an option may be given only once).
fn overridden(base: &[(&str, &str)], extra: &[&str]) -> Vec<String> {
    let pairs: Vec<(&str, &str)> = extra.chunks(2).map(|c| (c[0], c[1])).collect();
    let mut a = Vec::new();
    for (k, v) in base {
        let v = pairs.iter().find(|(e, _)| e == k).map_or(*v, |(_, x)| *x);
        a.extend(s(&[k, v]));
    }
    for (k, v) in &pairs {
        if !base.iter().any(|(b, _)| b == k) {
            a.extend(s(&[k, v]));
        }
    }
    a
}

fn write_vec(path: &Path, v: &[f64]) {
    let text: String = v.iter().map(|x| format!("{x:.17e}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn read_vec(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// A small CSV for `gp` (40 rows, two inputs, a header).
fn small_csv(dir: &Path) -> PathBuf {
    let csv = dir.join("small.csv");
    let mut text = String::from("u,v,target\n");
    for i in 0..40 {
        let (u, v) = (i as f64 / 7.0, (i * i % 13) as f64);
        text += &format!("{u},{v},{}\n", u.sin() + 0.1 * v);
    }
    std::fs::write(&csv, text).unwrap();
    csv
}

fn gp_small(csv: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = s(&["gp", "--data"]);
    a.push(p(csv));
    a.extend(s(&[
        "--epochs", "2", "--probes", "2", "--depth", "4", "--out",
    ]));
    a.push(p(out));
    a.extend(s(extra));
    a
}

/// `n` 8×8 images of 10 classes in IDX.gz files (the layout of `bnn --data`).
fn write_mnist_like(dir: &Path, prefix: &str, n: usize) {
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % 10;
        labels.push(k as u8);
        for r in 0..8 {
            for c in 0..8 {
                let on = if k < 8 { r == k } else { c == k - 8 };
                images.push(if on {
                    220
                } else {
                    ((i * 7 + r * 3 + c) % 40) as u8
                });
            }
        }
    }
    let img = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    write_idx(&img, &[n, 8, 8], &images, true).unwrap();
    let lab = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    write_idx(&lab, &[n], &labels, true).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Crashes and silent drops
// ---------------------------------------------------------------------------------------------

/// Every size option is checked against the memory it needs before anything is allocated:
/// the requests below asked for terabytes (and aborted the process) before.
#[test]
fn every_size_option_is_checked_against_memory_up_front() {
    let dir = scratch("mem");
    let out = dir.join("out");
    let pde = |extra: &[&str]| {
        let base = [
            ("--grid", "4"),
            ("--epochs", "1"),
            ("--initial-conditions", "5"),
            ("--hidden", "4"),
        ];
        let mut a = s(&["pde", "--no-work-precision", "--out"]);
        a.push(p(&out));
        a.extend(overridden(&base, extra));
        a
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (pde(&["--hidden", "1000000"]), "--hidden"),
        (
            pde(&["--initial-conditions", "1000000000000"]),
            "--initial-conditions",
        ),
        (
            pde(&["--solver", "tsit5", "--steps", "100000000000"]),
            "--steps",
        ),
        (pde(&["--grid", "512", "--depth", "524288"]), "--depth"),
    ];
    for (args, option) in &cases {
        let o = run(args);
        assert_one_line_failure(&format!("{args:?}"), &o, &["memory", option]);
    }
    // bnn: the network's size is known once the images' size is (8×8 here).
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    write_mnist_like(&mnist, "train", 40);
    write_mnist_like(&mnist, "t10k", 20);
    let bnn = |extra: &[&str]| {
        let base = [
            ("--hidden", "4"),
            ("--map-epochs", "1"),
            ("--alpha-steps", "1"),
        ];
        let mut a = s(&["bnn", "--quiet", "--data"]);
        a.push(p(&mnist));
        a.push("--out".into());
        a.push(p(&out));
        a.extend(overridden(&base, extra));
        a
    };
    for (args, option) in [
        (bnn(&["--hidden", "100000000"]), "--hidden"),
        (bnn(&["--samples", "1000000000000"]), "--samples"),
        (
            bnn(&["--hidden", "100000", "--hidden-layers", "3"]),
            "--hidden",
        ),
    ] {
        let o = run(&args);
        assert_one_line_failure(&format!("{args:?}"), &o, &["memory", option]);
    }
    // quadform with a vector that needs no file, on a huge declared dimension.
    let huge = dir.join("huge.mtx");
    std::fs::write(
        &huge,
        "%%MatrixMarket matrix coordinate real symmetric\n4000000000 4000000000 1\n1 1 1\n",
    )
    .unwrap();
    let o = run(&quadform(&huge, "ones", "log", "lanczos", 3));
    assert_one_line_failure("quadform 4e9 ones", &o, &["huge.mtx", "memory"]);
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// With stdout unwritable (`> /dev/full`) the result cannot be delivered: status 2 and one line, instead
/// of a lost result and status 0.
#[test]
fn unwritable_stdout_fails_with_status_2() {
    let dir = scratch("closed");
    let csv = small_csv(&dir);
    let runs = vec![
        quadform(
            &data("spd6_sym.mtx"),
            &p(&data("v6.txt")),
            "log",
            "lanczos",
            4,
        ),
        s(&[
            "logdet",
            "--matrix",
            &p(&data("spd6_sym.mtx")),
            "--probes",
            "2",
        ])
        .into_iter()
        .chain(s(&["--depth", "3", "--seed", "1"]))
        .collect(),
        gp_small(&csv, &dir.join("gp"), &["--quiet"]),
    ];
    for args in runs {
        // Rust's runtime reopens a closed descriptor on /dev/null before `main`, so `>&-`
        // cannot be detected from safe code (see cli::stdout_is_open); a result that cannot be
        // written is: /dev/full fails every write.
        let o = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" > /dev/full")
            .arg(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("standard output"), "{args:?}: {stderr}");
    }
}

/// A failed write of one gradient file leaves the previous files as they were (before: a new
/// `d_matrix.mtx` beside an old `d_vector.txt`), and no temporary file behind.
#[test]
fn failed_gradient_write_keeps_the_previous_files() {
    let dir = scratch("failwrite");
    let g = dir.join("g");
    std::fs::create_dir_all(g.join("d_vector.txt").join("blocker")).unwrap();
    std::fs::write(g.join("d_matrix.mtx"), "old").unwrap();
    let args = plus(
        &quadform(
            &data("spd6_sym.mtx"),
            &p(&data("v6.txt")),
            "log",
            "lanczos",
            6,
        ),
        &["--grad-dir", &p(&g)],
    );
    let o = run(&args);
    assert_one_line_failure("d_vector.txt is a directory", &o, &["d_vector.txt"]);
    assert_eq!(
        std::fs::read_to_string(g.join("d_matrix.mtx")).unwrap(),
        "old"
    );
    let names: Vec<String> = std::fs::read_dir(&g)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "left behind: {names:?}");
}

/// Runs writing into the same directory at the same time leave the files of one run, never a
/// mix (each run stages its files and renames them into place under a lock).
#[test]
fn concurrent_runs_into_one_directory_leave_one_complete_set() {
    let dir = scratch("concurrent");
    // quadform: two vectors, the two gradient files must come from the same one.
    let g = dir.join("g");
    let (va, vb) = (dir.join("a.txt"), dir.join("b.txt"));
    write_vec(&va, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    write_vec(&vb, &[-3.0, 1.0, 0.5, 2.0, -1.0, 0.25]);
    let qf = |v: &Path, gd: &Path| {
        plus(
            &quadform(&data("spd6_sym.mtx"), &p(v), "inv", "lanczos", 6),
            &["--grad-dir", &p(gd)],
        )
    };
    let reference = |v: &Path, tag: &str| {
        let rd = dir.join(tag);
        json_ok(tag, &run(&qf(v, &rd)));
        (
            std::fs::read(rd.join("d_matrix.mtx")).unwrap(),
            std::fs::read(rd.join("d_vector.txt")).unwrap(),
        )
    };
    let (ra, rb) = (reference(&va, "ra"), reference(&vb, "rb"));
    for trial in 0..12 {
        let spawn = |v: &Path| {
            Command::new(BIN)
                .args(qf(v, &g))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn(&va), spawn(&vb));
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
        let got = (
            std::fs::read(g.join("d_matrix.mtx")).unwrap(),
            std::fs::read(g.join("d_vector.txt")).unwrap(),
        );
        assert!(got == ra || got == rb, "trial {trial}: a mix of two runs");
    }
    // gp: summary.json, loss.png and predictions.png of one run (seeds 1 and 2 differ).
    let csv = small_csv(&dir);
    let gp = |seed: &str, out: &Path| gp_small(&csv, out, &["--quiet", "--seed", seed]);
    let files = ["summary.json", "loss.png", "predictions.png"];
    let pngs = |d: &Path| -> Vec<Vec<u8>> {
        files[1..]
            .iter()
            .map(|f| std::fs::read(d.join(f)).unwrap())
            .collect()
    };
    let (r1, r2) = (dir.join("r1"), dir.join("r2"));
    json_ok("gp seed 1", &run(&gp("1", &r1)));
    json_ok("gp seed 2", &run(&gp("2", &r2)));
    let (p1, p2) = (pngs(&r1), pngs(&r2));
    assert_ne!(p1, p2, "the two seeds must give different plots");
    let out = dir.join("gp-out");
    for trial in 0..6 {
        let spawn = |seed: &str| {
            Command::new(BIN)
                .args(gp(seed, &out))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn("1"), spawn("2"));
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let want = match summary["settings"]["seed"].as_u64() {
            Some(1) => &p1,
            Some(2) => &p2,
            other => panic!("seed {other:?}"),
        };
        assert!(&pngs(&out) == want, "trial {trial}: a mix of two runs");
        let stray: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !files.contains(&n.as_str()) && !n.starts_with(".gradmat.lock"))
            .collect();
        assert!(stray.is_empty(), "trial {trial}: left behind {stray:?}");
    }
}

/// An output directory that cannot be written is reported before the computation: the errors
/// below are about the directory, not about the input that would fail the run later.
#[test]
fn unwritable_output_directory_is_reported_before_the_run() {
    // /sys exists and refuses new files, even for root.
    let probe = Path::new("/sys/gradmat-write-test");
    if std::fs::write(probe, b"").is_ok() {
        let _ = std::fs::remove_file(probe);
        eprintln!("skipped: /sys is writable here");
        return;
    }
    let o = run(&plus(
        &quadform(
            &data("indef6.mtx"),
            &p(&data("v6.txt")),
            "log",
            "lanczos",
            6,
        ),
        &["--grad-dir", "/sys"],
    ));
    assert_one_line_failure("quadform --grad-dir /sys", &o, &["/sys"]);
    let o = run(&s(&[
        "logdet",
        "--matrix",
        &p(&data("indef6.mtx")),
        "--probes",
        "2",
        "--depth",
        "6",
        "--seed",
        "1",
        "--grad-dir",
        "/sys",
    ]));
    assert_one_line_failure("logdet --grad-dir /sys", &o, &["/sys"]);
    let dir = scratch("unwritable");
    let o = run(&s(&[
        "bnn",
        "--data",
        &p(&dir.join("no-such-data")),
        "--out",
        "/sys",
        "--quiet",
    ]));
    assert_one_line_failure("bnn --out /sys", &o, &["/sys"]);
    let o = run(&s(&[
        "gp",
        "--data",
        &p(&dir.join("missing.csv")),
        "--save-split",
        "/sys",
        "--quiet",
        "--out",
        &p(&dir.join("o")),
    ]));
    assert_one_line_failure("gp --save-split /sys", &o, &["/sys"]);
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Errors that can be found before training are found before the first progress line: one
/// line on stderr even without `--quiet`.
#[test]
fn errors_found_before_progress_output_are_one_line() {
    let dir = scratch("oneline");
    let csv = small_csv(&dir);
    let out = dir.join("out");
    // --exact over its memory limit (the limit is lowered through GRADMAT_MEMORY_LIMIT_GB).
    let o = run_env(
        &gp_small(&csv, &out, &["--exact"]),
        &[("GRADMAT_MEMORY_LIMIT_GB", "0.00001")],
    );
    assert_one_line_failure("gp --exact over the limit", &o, &["exact"]);
    // A learning rate that can only diverge.
    let o = run(&gp_small(&csv, &out, &["--lr", "1e300"]));
    assert_one_line_failure("gp --lr 1e300", &o, &["--lr"]);
    assert!(!o.stderr.contains("invalid parameter"), "{}", o.stderr);
    // pde and bnn without --quiet.
    let o = run(&s(&[
        "pde",
        "--grid",
        "4",
        "--initial-conditions",
        "5",
        "--hidden",
        "1000000",
        "--out",
        &p(&out),
    ]));
    assert_one_line_failure("pde without --quiet", &o, &["--hidden"]);
}

/// An error whose message already includes its cause prints the cause once.
#[test]
fn error_causes_are_printed_once() {
    let dir = scratch("causes");
    let missing = dir.join("missing.csv");
    let o = run(&s(&[
        "gp",
        "--data",
        &p(&missing),
        "--quiet",
        "--out",
        &p(&dir.join("o")),
    ]));
    assert_one_line_failure("gp missing file", &o, &["missing.csv"]);
    assert_eq!(o.stderr.matches("os error 2").count(), 1, "{}", o.stderr);
    let o = run(&s(&[
        "bnn",
        "--data",
        &p(&dir),
        "--quiet",
        "--out",
        &p(&dir.join("b")),
    ]));
    assert_eq!(o.status, Some(2), "{o:?}");
    assert!(o.stderr.matches("os error").count() <= 1, "{}", o.stderr);
}

/// A diverging learning rate is reported as a diverging optimisation, not as an invalid
/// operator parameter.
#[test]
fn diverging_learning_rate_is_named() {
    let dir = scratch("diverge");
    let csv = small_csv(&dir);
    let o = run(&gp_small(
        &csv,
        &dir.join("o"),
        &["--lr", "1e300", "--quiet"],
    ));
    assert_eq!(o.status, Some(2), "{o:?}");
    assert!(
        !o.stderr.contains("invalid parameter") && !o.stderr.contains("(scale)"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("--lr"), "{}", o.stderr);
}

/// A valid start vector whose norm is too small for `1/‖v‖` is computed (scaled by a power of
/// two), not blamed on the matrix; the gradient in `v` is that of the scaled problem.
#[test]
fn tiny_start_vector_is_not_blamed_on_the_matrix() {
    let dir = scratch("tiny");
    let w = [0.5, -1.0, 0.25, 1.5, -0.75, 1.0];
    let scale = 2f64.powi(-1030); // entries are subnormal; 1/‖v‖ overflows
    let v: Vec<f64> = w.iter().map(|x| x * scale).collect();
    let (pw, pv) = (dir.join("w.txt"), dir.join("v.txt"));
    write_vec(&pw, &w);
    write_vec(&pv, &v);
    for method in ["lanczos", "arnoldi"] {
        let (gw, gv) = (
            dir.join(format!("gw-{method}")),
            dir.join(format!("gv-{method}")),
        );
        let jw = json_ok(
            "w",
            &run(&plus(
                &quadform(&data("spd6_sym.mtx"), &p(&pw), "log", method, 6),
                &["--grad-dir", &p(&gw)],
            )),
        );
        let o = run(&plus(
            &quadform(&data("spd6_sym.mtx"), &p(&pv), "log", method, 6),
            &["--grad-dir", &p(&gv)],
        ));
        let jv = json_ok(&format!("tiny v, {method}"), &o);
        // ρ(v) = 2^-2060 ρ(w) underflows to 0; ∇_v ρ = 2^-1030 ∇_w ρ is representable.
        assert_eq!(jv["value"].as_f64(), Some(0.0));
        assert!(jw["value"].as_f64().unwrap().is_finite());
        let (dw, dv) = (
            read_vec(&gw.join("d_vector.txt")),
            read_vec(&gv.join("d_vector.txt")),
        );
        for (a, b) in dw.iter().zip(&dv) {
            let want = a * scale;
            assert!(
                (b - want).abs() <= 1e-9 * want.abs().max(1e-320),
                "{method}: {b:e} vs {want:e}"
            );
        }
    }
}

/// Errors of a Lanczos run name Lanczos (fully reorthogonalised Lanczos runs on the Arnoldi
/// code, whose errors said "step 0 of arnoldi").
#[test]
fn lanczos_errors_name_lanczos() {
    let dir = scratch("lanczos-name");
    let m = dir.join("big.mtx");
    std::fs::write(
        &m,
        "%%MatrixMarket matrix coordinate real symmetric\n2 2 3\n1 1 1.5e308\n2 1 1.5e308\n2 2 1.5e308\n",
    )
    .unwrap();
    let v = dir.join("v.txt");
    write_vec(&v, &[1.0, 1.0]);
    for reorth in ["full", "none"] {
        let o = run(&plus(
            &quadform(&m, &p(&v), "exp", "lanczos", 2),
            &["--reorthogonalize", reorth],
        ));
        assert_one_line_failure(reorth, &o, &["big.mtx", "Lanczos"]);
        assert!(!o.stderr.to_lowercase().contains("arnoldi"), "{}", o.stderr);
    }
}

/// With one probe the standard error is undefined: `null` in summary.json (as `logdet` does),
/// not 0.
#[test]
fn one_probe_reports_no_standard_error() {
    let dir = scratch("oneprobe");
    let csv = small_csv(&dir);
    let out = dir.join("out");
    let o = run(&s(&[
        "gp",
        "--data",
        &p(&csv),
        "--epochs",
        "2",
        "--probes",
        "1",
        "--depth",
        "4",
        "--out",
        &p(&out),
    ]));
    assert_eq!(o.status, Some(0), "{o:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["final_train_loss_std_error"].is_null(), "{summary}");
    for e in summary["history"].as_array().unwrap() {
        assert!(e["std_error"].is_null(), "{e}");
    }
    assert!(!o.stderr.contains("±0.0000"), "{}", o.stderr);
}

/// Every seconds-per-epoch figure on stderr says which it is (the last epoch's time or the
/// mean over the run).
#[test]
fn epoch_time_figures_are_labelled() {
    let dir = scratch("labels");
    let csv = small_csv(&dir);
    let o = run(&gp_small(&csv, &dir.join("out"), &[]));
    assert_eq!(o.status, Some(0), "{o:?}");
    let mut seen = 0;
    for line in o.stderr.lines() {
        // (" s/epoch": "matvecs/epoch" is a count, not a time)
        for (i, _) in line.match_indices(" s/epoch") {
            seen += 1;
            assert!(line[i..].contains("mean"), "unlabelled s/epoch in {line:?}");
        }
    }
    assert!(seen > 0, "{}", o.stderr);
}

// ---------------------------------------------------------------------------------------------
// The CLI a user expects
// ---------------------------------------------------------------------------------------------

/// A first `logdet` needs only `--matrix` (probes 10, depth 30 clamped to N, seed 0), and
/// `quadform` only the matrix, the vector and the function (Lanczos, depth 30 clamped to N).
#[test]
fn logdet_and_quadform_have_defaults() {
    let a = p(&data("spd6_sym.mtx"));
    let j = json_ok("logdet defaults", &run(&s(&["logdet", "--matrix", &a])));
    assert_eq!(j["depth"].as_u64(), Some(6));
    assert_eq!(j["matvecs"].as_u64(), Some(60));
    let explicit = json_ok(
        "logdet explicit",
        &run(&s(&[
            "logdet", "--matrix", &a, "--probes", "10", "--depth", "6", "--seed", "0",
        ])),
    );
    assert_eq!(
        j["value"].as_f64().unwrap().to_bits(),
        explicit["value"].as_f64().unwrap().to_bits()
    );
    let v = p(&data("v6.txt"));
    let j = json_ok(
        "quadform defaults",
        &run(&s(&[
            "quadform",
            "--matrix",
            &a,
            "--vector",
            &v,
            "--function",
            "log",
        ])),
    );
    let explicit = json_ok(
        "quadform explicit",
        &run(&quadform(&data("spd6_sym.mtx"), &v, "log", "lanczos", 6)),
    );
    assert_eq!(
        j["value"].as_f64().unwrap().to_bits(),
        explicit["value"].as_f64().unwrap().to_bits()
    );
    assert_eq!(j["depth"].as_u64(), Some(6));
}

/// `quadform --shift σ` computes `vᵀf(A + σI)v`; the gradient file holds the `A` part, equal to
/// the gradient for a file with the shifted diagonal.
#[test]
fn quadform_shift_matches_a_shifted_file() {
    let dir = scratch("shift");
    let sigma = 0.75;
    let text = std::fs::read_to_string(data("spd6_sym.mtx")).unwrap();
    // The same entries with σ added to each diagonal entry once (the (4,4) duplicate once).
    let mut shifted = String::new();
    let mut seen_44 = false;
    let mut size_line = true;
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        // Comments and the size line "6 6 14" (not the entry "6 6 4.0") are copied.
        let header = line.starts_with('%') || std::mem::replace(&mut size_line, false);
        if line.starts_with('%') {
            size_line = true;
        }
        if header || t.len() != 3 {
            shifted += line;
            shifted += "\n";
            continue;
        }
        let (i, j, v): (usize, usize, f64) = (
            t[0].parse().unwrap(),
            t[1].parse().unwrap(),
            t[2].parse().unwrap(),
        );
        let add = i == j && !(i == 4 && std::mem::replace(&mut seen_44, true));
        shifted += &format!("{i} {j} {:e}\n", v + if add { sigma } else { 0.0 });
    }
    let sf = dir.join("shifted.mtx");
    std::fs::write(&sf, shifted).unwrap();
    let v = p(&data("v6.txt"));
    for f in ["log", "inv"] {
        let (g1, g2) = (dir.join(format!("g1-{f}")), dir.join(format!("g2-{f}")));
        let a = json_ok(
            "--shift",
            &run(&plus(
                &quadform(&data("spd6_sym.mtx"), &v, f, "lanczos", 6),
                &["--shift", "0.75", "--grad-dir", &p(&g1)],
            )),
        );
        let b = json_ok(
            "shifted file",
            &run(&plus(
                &quadform(&sf, &v, f, "lanczos", 6),
                &["--grad-dir", &p(&g2)],
            )),
        );
        let (x, y) = (a["value"].as_f64().unwrap(), b["value"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-12 * y.abs(), "{f}: {x} vs {y}");
        let read = |d: &Path| -> Vec<f64> {
            std::fs::read_to_string(d.join("d_matrix.mtx"))
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('%'))
                .skip(1)
                .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
                .collect()
        };
        let (ga, gb) = (read(&g1), read(&g2));
        assert_eq!(ga.len(), 14);
        for (x, y) in ga.iter().zip(&gb) {
            assert!((x - y).abs() < 1e-10 * y.abs().max(1.0), "{f}: {x} vs {y}");
        }
        assert_eq!(read_vec(&g1.join("d_vector.txt")).len(), 6);
    }
    let o = run(&plus(
        &quadform(&data("spd6_sym.mtx"), &v, "log", "lanczos", 6),
        &["--shift", "nan"],
    ));
    assert_one_line_failure("--shift nan", &o, &["--shift"]);
}

/// Usage errors point at the subcommand's own help.
#[test]
fn usage_hints_name_the_subcommand() {
    for sub in ["quadform", "logdet", "gp", "pde", "bnn"] {
        let o = run(&[sub, "--bogus"]);
        assert_one_line_failure(sub, &o, &[&format!("(see gradmat {sub} --help)")]);
    }
    let o = run(&["frobnicate"]);
    assert_one_line_failure("unknown subcommand", &o, &["(see gradmat --help)"]);
}

/// `--quiet` on every subcommand; on `quadform` and `logdet` it silences the warnings.
#[test]
fn every_subcommand_accepts_quiet() {
    let dir = scratch("quiet");
    let m = dir.join("near.mtx");
    let mut text = String::from("%%MatrixMarket matrix coordinate real symmetric\n6 6 6\n");
    for i in 0..6 {
        let d = if i == 0 { 1e-13 } else { i as f64 };
        text += &format!("{} {} {d:e}\n", i + 1, i + 1);
    }
    std::fs::write(&m, text).unwrap();
    let args = quadform(&m, "ones", "inv", "lanczos", 6);
    let loud = run(&args);
    assert_eq!(loud.status, Some(0), "{loud:?}");
    assert!(loud.stderr.contains("warning"), "{}", loud.stderr);
    let quiet = run(&plus(&args, &["--quiet"]));
    assert_eq!(quiet.status, Some(0), "{quiet:?}");
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
    let quiet = run(&s(&[
        "logdet",
        "--matrix",
        &p(&m),
        "--quiet",
        "--depth",
        "6",
    ]));
    assert_eq!(quiet.status, Some(0), "{quiet:?}");
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
    for sub in ["gp", "pde", "bnn"] {
        let o = run(&[sub, "--help"]);
        assert!(o.stdout.contains("--quiet"), "{sub}");
    }
}

/// `--vector ones` and `--vector random:SEED` need no file; random vectors are reproducible.
#[test]
fn vector_option_needs_no_file() {
    let dir = scratch("vecspec");
    let ones = dir.join("ones.txt");
    write_vec(&ones, &[1.0; 6]);
    let a = data("spd6_sym.mtx");
    let from_file = json_ok("file", &run(&quadform(&a, &p(&ones), "log", "lanczos", 6)));
    let spec = json_ok("ones", &run(&quadform(&a, "ones", "log", "lanczos", 6)));
    assert_eq!(
        from_file["value"].as_f64().unwrap().to_bits(),
        spec["value"].as_f64().unwrap().to_bits()
    );
    let r1 = json_ok(
        "random:1",
        &run(&quadform(&a, "random:1", "log", "lanczos", 6)),
    );
    let r1b = json_ok(
        "random:1",
        &run(&quadform(&a, "random:1", "log", "lanczos", 6)),
    );
    let r2 = json_ok(
        "random:2",
        &run(&quadform(&a, "random:2", "log", "lanczos", 6)),
    );
    assert_eq!(r1["value"], r1b["value"]);
    assert_ne!(r1["value"], r2["value"]);
    let g = dir.join("g");
    json_ok(
        "random with gradient",
        &run(&plus(
            &quadform(&a, "random:3", "exp", "arnoldi", 6),
            &["--grad-dir", &p(&g)],
        )),
    );
    assert_eq!(read_vec(&g.join("d_vector.txt")).len(), 6);
    for bad in ["random:", "random:x", "random:-1"] {
        let o = run(&quadform(&a, bad, "log", "lanczos", 6));
        assert_one_line_failure(bad, &o, &[bad]);
    }
}

/// The README's `quadform` and `logdet` examples run as written (from the repository root).
#[test]
fn readme_examples_run_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("$ gradmat "))
        .filter(|l| l.starts_with("quadform") || l.starts_with("logdet"))
        .collect();
    assert!(
        commands.iter().any(|c| c.starts_with("quadform")),
        "no quadform example in the README"
    );
    let dir = scratch("readme");
    for c in commands {
        let args: Vec<String> = c
            .split_whitespace()
            .map(|a| {
                if a == "out" {
                    p(&dir.join("out"))
                } else {
                    a.to_string()
                }
            })
            .collect();
        let o = Command::new(BIN)
            .args(&args)
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{c}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(j["value"].as_f64().unwrap().is_finite(), "{c}");
    }
}

/// The JSON says how settled the value is: `last_step_change` (the value at depth K minus the
/// value at depth K − 1) and `exact` (an invariant Krylov space or K = N). A converged `inv`
/// and an unconverged one can be told apart.
#[test]
fn json_reports_convergence() {
    let a = data("spd6_sym.mtx");
    let v = p(&data("v6.txt"));
    let change = |k: usize| -> (f64, bool, f64) {
        let j = json_ok("inv", &run(&quadform(&a, &v, "inv", "lanczos", k)));
        (
            j["last_step_change"].as_f64().unwrap_or(f64::NAN),
            j["exact"].as_bool().expect("exact is a boolean"),
            j["value"].as_f64().unwrap(),
        )
    };
    let j1 = json_ok("depth 1", &run(&quadform(&a, &v, "inv", "lanczos", 1)));
    assert!(j1["last_step_change"].is_null(), "{j1}");
    let (c2, e2, v2) = change(2);
    let (c4, e4, _) = change(4);
    let (_, e6, v6) = change(6);
    assert!(!e2 && !e4 && e6);
    assert!(c2.abs() > c4.abs() && c4.abs() > 0.0, "{c2} {c4}");
    // 1/x has even derivatives of one sign on x > 0, so the Gauss values underestimate and
    // increase towards the exact value: every step's change is positive and the value at
    // depth 2 lies below the exact one (depth 6 = N).
    assert!(c2 > 0.0 && c4 > 0.0 && v2 < v6, "{c2} {c4} {v2} {v6}");
    let j = json_ok("arnoldi", &run(&quadform(&a, &v, "exp", "arnoldi", 3)));
    assert!(j["last_step_change"].as_f64().unwrap().is_finite());
    assert_eq!(j["exact"], false);
    let j = json_ok(
        "logdet",
        &run(&s(&[
            "logdet",
            "--matrix",
            &p(&a),
            "--depth",
            "3",
            "--probes",
            "4",
        ])),
    );
    assert!(j["last_step_change"].as_f64().unwrap().is_finite(), "{j}");
    assert_eq!(j["exact"], false);
}
