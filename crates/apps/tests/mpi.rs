//! `mpirun -np P gradmat …` against the serial command (feature `mpi`; needs `mpirun` on the
//! path: OpenMPI's `openmpi-bin`). `.ci/run` installs OpenMPI and runs
//! `cargo test -p gradmat-apps --features mpi --test mpi`; the README's test command does not
//! build this file.
//!
//! What is checked, for 1, 2 and 3 ranks on loopback:
//! * `logdet`, rows split in aligned blocks (the small test matrices then live on rank 0 and the
//!   other ranks hold **zero rows**): the serial value to the bit, the gradient file to 1e-14;
//! * `logdet --partition balanced` (uneven blocks: N = 1,517 is not divisible by 2 or 3) and
//!   `quadform` (Lanczos and Arnoldi, both gradients): value and gradient files within 1e-12
//!   relative of the serial run (reductions are split at rank boundaries; rounding only);
//! * `logdet --distribute probes`: value and gradient file bit-identical;
//! * `gp` with a converged solve (`--cg-tol 1e-11`): every epoch's loss and the final loss
//!   within 1e-12 relative;
//! * faults: a rank that fails (`GRADMAT_FAIL_RANK`), a malformed file and a singular matrix
//!   make every rank exit with status 2 and rank 0 print one line; no run may hang (each is
//!   killed after 120 s and the test fails).
#![cfg(feature = "mpi")]

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");
const TIMEOUT: Duration = Duration::from_secs(120);

fn scratch(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gradmat-mpi-{}-{tag}-{}",
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

/// Runs `cmd` to completion, killing it (and failing) after [`TIMEOUT`].
fn run_cmd(mut cmd: Command, what: &str) -> Out {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); is mpirun installed?"));
    // Drain both pipes on threads so that a chatty child cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        so.read_to_string(&mut s).unwrap();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        se.read_to_string(&mut s).unwrap();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        status: status.code().unwrap_or(-1),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The serial command (the same binary, not started by mpirun).
fn serial(args: &[String]) -> Out {
    let mut c = Command::new(BIN);
    c.args(args);
    let o = run_cmd(c, &format!("gradmat {}", args.join(" ")));
    assert_eq!(o.status, 0, "serial run failed: {}", o.stderr);
    o
}

/// `mpirun -np p gradmat args` with `env` set on every rank.
fn mpirun_env(p: usize, args: &[String], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new("mpirun");
    // --quiet: without it mpirun adds its own multi-line notice when a rank exits non-zero.
    c.args([
        "--quiet",
        "--oversubscribe",
        "--allow-run-as-root",
        "-np",
        &p.to_string(),
    ]);
    // One thread per rank: the ranks share this machine's cores.
    c.env("RAYON_NUM_THREADS", "1");
    c.args(["-x", "RAYON_NUM_THREADS"]);
    // Containers often forbid the cross-memory attach of OpenMPI's shared-memory transport.
    c.env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    for (k, v) in env {
        c.env(k, v);
        c.args(["-x", k]);
    }
    c.arg(BIN).args(args);
    run_cmd(c, &format!("mpirun -np {p} gradmat {}", args.join(" ")))
}

fn mpirun(p: usize, args: &[String]) -> Out {
    let o = mpirun_env(p, args, &[]);
    assert_eq!(
        o.status,
        0,
        "mpirun -np {p} gradmat {} failed: {}",
        args.join(" "),
        o.stderr
    );
    o
}

fn s(x: &str) -> String {
    x.to_string()
}

/// The number after `"key": ` in a one-line JSON object.
fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = json[at..].trim_start();
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim().parse().unwrap()
}

/// The values of a Matrix Market coordinate file (third column) or a vector file.
fn numbers(path: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().filter(|l| !l.starts_with('%'));
    if path.extension().is_some_and(|e| e == "mtx") {
        lines.next(); // the size line
        lines
            .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
            .collect()
    } else {
        lines.map(|l| l.trim().parse().unwrap()).collect()
    }
}

/// `max |a − b| ≤ tol · max |a|`.
fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= tol * scale,
        "{what}: max error {err:e} (scale {scale:e})"
    );
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// A 2-D grid Laplacian (`nx × ny`, five-point) plus `diag` on the diagonal, symmetric
/// storage; with `skew`, a general (non-symmetric) file with a convection term.
fn grid_matrix(dir: &Path, nx: usize, ny: usize, diag: f64, skew: Option<f64>) -> PathBuf {
    let n = nx * ny;
    let id = |i: usize, j: usize| i * ny + j;
    let mut entries = Vec::new();
    for i in 0..nx {
        for j in 0..ny {
            let r = id(i, j);
            entries.push((r, r, 4.0 + diag + 0.01 * ((r * 7919) % 13) as f64));
            let mut nb = vec![];
            if i + 1 < nx {
                nb.push(id(i + 1, j));
            }
            if j + 1 < ny {
                nb.push(id(i, j + 1));
            }
            for c in nb {
                match skew {
                    None => entries.push((c, r, -1.0)),
                    Some(s) => {
                        entries.push((c, r, -1.0 - s));
                        entries.push((r, c, -1.0 + s));
                    }
                }
            }
        }
    }
    let sym = if skew.is_none() {
        "symmetric"
    } else {
        "general"
    };
    let mut t = format!("%%MatrixMarket matrix coordinate real {sym}\n");
    writeln!(t, "{n} {n} {}", entries.len()).unwrap();
    for (r, c, v) in entries {
        writeln!(t, "{} {} {v:.17e}", r + 1, c + 1).unwrap();
    }
    let p = dir.join(format!("grid_{sym}.mtx"));
    std::fs::write(&p, t).unwrap();
    p
}

const N_X: usize = 41;
const N_Y: usize = 37; // N = 1,517: not divisible by 2 or 3

#[test]
fn logdet_matches_serial() {
    let dir = scratch("logdet");
    let m = grid_matrix(&dir, N_X, N_Y, 0.05, None);
    let base = |g: &Path| {
        vec![
            s("logdet"),
            s("--matrix"),
            m.display().to_string(),
            s("--probes"),
            s("5"),
            s("--depth"),
            s("25"),
            s("--grad-dir"),
            g.display().to_string(),
        ]
    };
    let g0 = dir.join("serial");
    let o = serial(&base(&g0));
    let v0 = field(&o.stdout, "value");
    let grad0 = numbers(&g0.join("d_matrix.mtx"));
    for p in [1, 2, 3] {
        // Aligned blocks: all 1,517 rows on rank 0, none on the others.
        let g = dir.join(format!("aligned{p}"));
        let o = mpirun(p, &base(&g));
        assert_eq!(field(&o.stdout, "value").to_bits(), v0.to_bits(), "np {p}");
        assert!(
            o.stdout.contains(&format!("\"ranks\": {p}")),
            "{}",
            o.stdout
        );
        close(&grad0, &numbers(&g.join("d_matrix.mtx")), 1e-14, "aligned");
        // Balanced (uneven) blocks: rounding only.
        let g = dir.join(format!("balanced{p}"));
        let mut a = base(&g);
        a.extend([s("--partition"), s("balanced")]);
        let o = mpirun(p, &a);
        assert!(
            rel(field(&o.stdout, "value"), v0) <= 1e-12,
            "np {p} balanced"
        );
        close(&grad0, &numbers(&g.join("d_matrix.mtx")), 1e-12, "balanced");
        // Probes split over the ranks: the serial bits.
        let g = dir.join(format!("probes{p}"));
        let mut a = base(&g);
        a.extend([s("--distribute"), s("probes")]);
        let o = mpirun(p, &a);
        assert_eq!(field(&o.stdout, "value").to_bits(), v0.to_bits());
        assert_eq!(
            std::fs::read(g.join("d_matrix.mtx")).unwrap(),
            std::fs::read(g0.join("d_matrix.mtx")).unwrap(),
            "np {p}: probe-split gradient file"
        );
        // Exactly one JSON line (rank 0).
        assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
    }
}

#[test]
fn quadform_matches_serial() {
    let dir = scratch("quadform");
    let sym = grid_matrix(&dir, N_X, N_Y, 0.05, None);
    let gen = grid_matrix(&dir, N_X, N_Y, 0.05, Some(0.3));
    for (m, method, function) in [(&sym, "lanczos", "log"), (&gen, "arnoldi", "exp")] {
        let base = |g: &Path| {
            vec![
                s("quadform"),
                s("--matrix"),
                m.display().to_string(),
                s("--vector"),
                s("random:3"),
                s("--method"),
                s(method),
                s("--function"),
                s(function),
                s("--depth"),
                s("30"),
                s("--shift"),
                s("0.5"),
                s("--grad-dir"),
                g.display().to_string(),
            ]
        };
        let g0 = dir.join(format!("serial-{method}"));
        let v0 = field(&serial(&base(&g0)).stdout, "value");
        for p in [1, 2, 3] {
            let g = dir.join(format!("{method}{p}"));
            let mut a = base(&g);
            a.extend([s("--partition"), s("balanced")]);
            let o = mpirun(p, &a);
            let what = format!("{method} np {p}");
            assert!(rel(field(&o.stdout, "value"), v0) <= 1e-12, "{what}");
            close(
                &numbers(&g0.join("d_matrix.mtx")),
                &numbers(&g.join("d_matrix.mtx")),
                1e-12,
                &format!("{what} d_matrix"),
            );
            close(
                &numbers(&g0.join("d_vector.txt")),
                &numbers(&g.join("d_vector.txt")),
                1e-12,
                &format!("{what} d_vector"),
            );
        }
    }
}

#[test]
fn gp_matches_serial() {
    let dir = scratch("gp");
    let base = |out: &Path| {
        vec![
            s("gp"),
            s("--subsample"),
            s("500"),
            s("--epochs"),
            s("3"),
            s("--cg-tol"),
            s("1e-11"),
            // The serial run would store the kernel (another rounding); the distributed
            // kernel is always matrix-free.
            s("--kernel-cache"),
            s("off"),
            s("--quiet"),
            s("--out"),
            out.display().to_string(),
        ]
    };
    let o0 = dir.join("serial");
    let l0 = field(&serial(&base(&o0)).stdout, "final_train_loss");
    let h0 = history(&o0);
    for p in [1, 2, 3] {
        let out = dir.join(format!("np{p}"));
        let o = mpirun(p, &base(&out));
        let l = field(&o.stdout, "final_train_loss");
        assert!(rel(l, l0) <= 1e-12, "np {p}: final loss {l} vs {l0}");
        for (e, (a, b)) in history(&out).iter().zip(&h0).enumerate() {
            assert!(rel(*a, *b) <= 1e-12, "np {p} epoch {e}: {a} vs {b}");
        }
        assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
    }
}

/// The per-epoch losses of a `gp` run's summary.json.
fn history(out: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let h = &text[text.find("\"history\"").unwrap()..];
    let h = &h[..h.find(']').unwrap()];
    h.match_indices("\"loss\":")
        .map(|(i, k)| {
            let rest = h[i + k.len()..].trim_start();
            let end = rest.find([',', '}']).unwrap();
            rest[..end].trim().parse().unwrap()
        })
        .collect()
}

/// Every failing run: status 2 and one line on stderr (rank 0's), no hang.
fn assert_one_line_failure(o: &Out, what: &str) {
    assert_eq!(o.status, 2, "{what}: status {} ({})", o.status, o.stderr);
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: stderr {:?}", o.stderr);
    assert!(lines[0].starts_with("gradmat: "), "{what}: {}", lines[0]);
    assert!(o.stdout.is_empty(), "{what}: stdout {:?}", o.stdout);
}

#[test]
fn failures_on_any_rank_exit_2_with_one_line() {
    let dir = scratch("faults");
    let m = grid_matrix(&dir, N_X, N_Y, 0.05, None);
    let logdet = |extra: &[&str]| {
        let mut a = vec![
            s("logdet"),
            s("--matrix"),
            m.display().to_string(),
            s("--probes"),
            s("3"),
            s("--depth"),
            s("10"),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    for p in [2, 3] {
        for fail in 0..p {
            for extra in [
                &["--partition", "balanced"][..],
                &["--distribute", "probes"],
            ] {
                let o = mpirun_env(
                    p,
                    &logdet(extra),
                    &[("GRADMAT_FAIL_RANK", &fail.to_string())],
                );
                let what = format!("np {p}, rank {fail} fails, {extra:?}");
                assert_one_line_failure(&o, &what);
                assert!(o.stderr.contains("injected fault"), "{what}: {}", o.stderr);
            }
        }
        // A malformed file (read by rank 0, or by every rank).
        let bad = dir.join("bad.mtx");
        std::fs::write(
            &bad,
            "%%MatrixMarket matrix coordinate real symmetric\n3 3 2\n1 1 1.0\n2 x 1.0\n",
        )
        .unwrap();
        for extra in [&[][..], &["--distribute", "probes"]] {
            let mut a = vec![
                s("logdet"),
                s("--matrix"),
                bad.display().to_string(),
                s("--depth"),
                s("2"),
            ];
            a.extend(extra.iter().map(|x| x.to_string()));
            let o = mpirun_env(p, &a, &[]);
            let what = format!("np {p} malformed {extra:?}");
            assert_one_line_failure(&o, &what);
            assert!(
                o.stderr.contains(":4:"),
                "{what}: no line number: {}",
                o.stderr
            );
        }
        // A singular matrix: a numerical failure found on the reduced values, on every rank.
        let sing = dir.join("singular.mtx");
        std::fs::write(
            &sing,
            "%%MatrixMarket matrix coordinate real symmetric\n2 2 3\n1 1 1.0\n2 1 1.0\n2 2 1.0\n",
        )
        .unwrap();
        let a = vec![
            s("quadform"),
            s("--matrix"),
            sing.display().to_string(),
            s("--vector"),
            s("random:1"),
            s("--function"),
            s("inv"),
            s("--depth"),
            s("2"),
            s("--partition"),
            s("balanced"),
        ];
        let o = mpirun_env(p, &a, &[]);
        assert_one_line_failure(&o, &format!("np {p} singular"));
    }
}
