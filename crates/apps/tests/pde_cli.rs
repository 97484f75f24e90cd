//! `gradmat pde` end to end on a tiny grid: exit status, summary.json fields, the PNG plots,
//! and bad input (one line on stderr, exit status 2).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gradmat-pde-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn pde_all_solvers_writes_summary_and_plots() {
    let out = scratch("all");
    let o = Command::new(BIN)
        .args([
            "pde",
            "--grid",
            "6",
            "--epochs",
            "3",
            "--initial-conditions",
            "10",
            "--hidden",
            "8",
            "--solver",
            "all",
            "--seed",
            "2",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stderr: {stderr}");
    let stdout: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stdout["runs"].as_array().unwrap().len(), 3);
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["grid"], 6);
    assert_eq!(
        (s["train"].as_u64(), s["test"].as_u64()),
        (Some(8), Some(2))
    );
    let runs = s["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["solver"].as_str().unwrap()).collect();
    assert_eq!(names, ["arnoldi", "dopri5", "tsit5"]);
    for r in runs {
        for key in [
            "test_loss",
            "parameter_rmse",
            "seconds_per_epoch",
            "parameter_rel_mse",
        ] {
            let v = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
        }
        assert_eq!(r["train_loss"].as_array().unwrap().len(), 3);
    }
    // 8 training pairs × (10 Arnoldi | 3 steps × 6 stages) forward products.
    assert_eq!(runs[0]["matvecs_per_epoch"], 80);
    assert_eq!(runs[1]["matvecs_per_epoch"], 8 * 18);
    for name in [
        "fields.png",
        "work_precision_forward.png",
        "work_precision_gradient.png",
        "loss_vs_time.png",
    ] {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{name}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn pde_bad_input_is_one_line_and_status_2() {
    let out = scratch("bad");
    for args in [
        vec!["pde", "--grid", "2"],
        vec!["pde", "--initial-conditions", "3"],
        vec!["pde", "--learning-rate", "-1"],
        vec!["pde", "--steps", "0"],
        vec!["pde", "--grid", "4", "--depth", "33"],
        vec!["pde", "--solver", "euler"],
        vec!["pde", "--loss", "mse"],
        vec!["pde", "--stencil", "dirichlet"],
    ] {
        let o = Command::new(BIN)
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("gradmat: "), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
