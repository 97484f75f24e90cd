//! `gradmat bnn` end to end on tiny synthetic IDX data (8×8 images), and its errors: a missing
//! data directory and malformed IDX files exit with status 2 and one line naming the file.

use gradmat_apps::bnn::idx::write_idx;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

fn scratch(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gradmat-bnn-cli-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` 8×8 images: class k lights up row k (k < 8) or column k−8 (k ≥ 8), plus deterministic
/// noise; gzipped like the real files.
fn write_split(dir: &Path, prefix: &str, n: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % 10;
        labels.push(k as u8);
        for r in 0..8 {
            for c in 0..8 {
                let on = if k < 8 { r == k } else { c == k - 8 };
                let noise = (next() % 60) as u8;
                images.push(if on { 195 + noise } else { noise });
            }
        }
    }
    write_idx(
        &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
        &[n, 8, 8],
        &images,
        true,
    )
    .unwrap();
    write_idx(
        &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
        &[n],
        &labels,
        true,
    )
    .unwrap();
}

struct Out {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    let o = Command::new(BIN)
        .args(args)
        .env_remove("GRADMAT_MNIST_DIR")
        .output()
        .expect("run gradmat");
    Out {
        status: o.status.code().expect("exit code"),
        stdout: String::from_utf8(o.stdout).unwrap(),
        stderr: String::from_utf8(o.stderr).unwrap(),
    }
}

fn small_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "bnn",
        "--data",
        data,
        "--out",
        out,
        "--hidden",
        "6",
        "--map-epochs",
        "150",
        "--ggn-subsample",
        "60",
        "--alpha-steps",
        "4",
        "--samples",
        "3",
        "--matvecs",
        "12",
        "--eval-train",
        "80",
        "--reference-matvecs",
        "12",
        "--quiet",
    ]
}

#[test]
fn runs_end_to_end_on_tiny_data() {
    let dir = scratch("ok");
    write_split(&dir, "train", 200, 1);
    write_split(&dir, "t10k", 60, 2);
    let out = dir.join("out");
    let (d, o) = (dir.to_str().unwrap(), out.to_str().unwrap());
    let r = run(&small_args(d, o));
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    let line: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(line["methods"].as_array().unwrap().len(), 2);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["num_params"], 64 * 6 + 6 + 6 * 10 + 10);
    let methods = summary["methods"].as_array().unwrap();
    assert_eq!(methods[0]["method"], "lanczos-12");
    assert_eq!(methods[1]["method"], "diagonal-12");
    for m in methods {
        assert_eq!(m["trace"].as_array().unwrap().len(), 4);
        let a = m["alpha"][0].as_f64().unwrap();
        assert!(a.is_finite() && a > 0.0);
        for split in ["train", "test"] {
            let acc = m[split]["accuracy"].as_f64().unwrap();
            let ece = m[split]["ece"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc) && (0.0..=1.0).contains(&ece));
            assert!(m[split]["nlpd"].as_f64().unwrap().is_finite());
        }
        let au = m["ood_auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&au));
    }
    // The toy task is easy: the MAP network must have learnt it (chance is 0.1).
    let acc = summary["map"]["test"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "MAP test accuracy {acc}");
    assert!(out.join("objective.png").metadata().unwrap().len() > 1000);
    assert!(std::fs::read_to_string(out.join("table.md"))
        .unwrap()
        .contains("| lanczos-12 |"));
}

#[test]
fn missing_data_directory_exits_2() {
    let dir = scratch("missing");
    let nope = dir.join("nope");
    let r = run(&["bnn", "--data", nope.to_str().unwrap(), "--quiet"]);
    assert_eq!(r.status, 2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("gradmat: "), "{}", r.stderr);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn bad_options_exit_2_with_one_line() {
    for args in [
        vec!["bnn", "--hidden-layers", "0", "--quiet"],
        vec!["bnn", "--hidden", "0", "--quiet"],
        vec!["bnn", "--probes", "0", "--quiet"],
    ] {
        let r = run(&args);
        assert_eq!(r.status, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("gradmat: "), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn two_hidden_layers_run_end_to_end() {
    // --hidden-layers 2: a D-H-H-10 network, the flag of the 1.86M-parameter model.
    let dir = scratch("deep");
    write_split(&dir, "train", 120, 3);
    write_split(&dir, "t10k", 40, 4);
    let out = dir.join("out");
    let mut args = small_args(dir.to_str().unwrap(), out.to_str().unwrap());
    args.extend(["--hidden-layers", "2", "--method", "lanczos"]);
    let r = run(&args);
    assert_eq!(r.status, 0, "stderr: {}", r.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["architecture"], serde_json::json!([64, 6, 6, 10]));
    assert_eq!(summary["num_params"], 64 * 6 + 6 + 6 * 6 + 6 + 6 * 10 + 10);
    let m = &summary["methods"][0];
    assert!(m["median_step_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(m["trace"].as_array().unwrap().len(), 4);
}

#[test]
fn malformed_idx_files_exit_2_naming_the_file() {
    let dir = scratch("bad");
    write_split(&dir, "train", 30, 1);
    write_split(&dir, "t10k", 20, 2);
    // Truncated test images.
    let img = dir.join("t10k-images-idx3-ubyte.gz");
    let mut raw = Vec::new();
    {
        use std::io::Read;
        flate2::read::GzDecoder::new(std::fs::File::open(&img).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
    }
    std::fs::remove_file(&img).unwrap();
    let plain = dir.join("t10k-images-idx3-ubyte");
    std::fs::write(&plain, &raw[..raw.len() - 5]).unwrap();
    let out = dir.join("out");
    let r = run(&small_args(dir.to_str().unwrap(), out.to_str().unwrap()));
    assert_eq!(r.status, 2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("t10k-images-idx3-ubyte"), "{}", r.stderr);
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
    // Labels out of range.
    std::fs::write(&plain, &raw).unwrap();
    let mut labels = vec![0u8; 20];
    labels[7] = 12;
    write_idx(&dir.join("t10k-labels-idx1-ubyte.gz"), &[20], &labels, true).unwrap();
    let r = run(&small_args(dir.to_str().unwrap(), out.to_str().unwrap()));
    assert_eq!(r.status, 2);
    assert!(r.stderr.contains("label 12 at index 7"), "{}", r.stderr);
    assert!(
        r.stderr.contains("t10k-labels-idx1-ubyte.gz"),
        "{}",
        r.stderr
    );
}
