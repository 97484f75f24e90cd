//! `gradmat gp` end to end: a short run on the bundled data writes `summary.json` with the
//! contract's keys and two PNG plots; bad input exits with status 2 and one line on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gradmat-gp-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().expect("run gradmat");
    (
        o.status.code().expect("exit code"),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

#[test]
fn short_run_writes_summary_and_plots() {
    let dir = scratch("ok");
    let out = dir.join("out");
    let (status, stdout, stderr) = run(&[
        "gp",
        "--subsample",
        "300",
        "--epochs",
        "3",
        "--probes",
        "4",
        "--depth",
        "8",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--save-split",
        dir.join("split").to_str().unwrap(),
    ]);
    assert_eq!(status, 0, "{stderr}");
    // The saved split: 240 / 60 rows of 9 standardised inputs and the target, which round-trip
    // to the standardised statistics (training inputs: mean 0 per column).
    let train = std::fs::read_to_string(dir.join("split/train.csv")).unwrap();
    let test = std::fs::read_to_string(dir.join("split/test.csv")).unwrap();
    assert_eq!(train.lines().count(), 240);
    assert_eq!(test.lines().count(), 60);
    let rows: Vec<Vec<f64>> = train
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 10));
    for c in 0..10 {
        let mean = rows.iter().map(|r| r[c]).sum::<f64>() / 240.0;
        assert!(mean.abs() < 1e-12, "column {c}: mean {mean}");
    }
    for key in [
        "peak_rss_training_mb",
        "kernel_products",
        "passes_per_epoch",
    ] {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let v = if key == "kernel_products" {
            &s["settings"][key]
        } else {
            &s[key]
        };
        assert!(!v.is_null(), "summary.json lacks {key}");
    }
    // Not a terminal: plain progress lines on stderr, the one-line JSON on stdout.
    assert!(stderr.contains("epoch 3/3"), "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["n_train"], 240);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "dataset",
        "n",
        "d",
        "settings",
        "final_train_loss",
        "test_rmse",
        "test_nlpd",
        "seconds_per_epoch",
        "matvecs_per_epoch",
        "hyperparameters",
        "exact_final_train_loss",
    ] {
        assert!(!s[key].is_null(), "summary.json lacks {key}: {s}");
    }
    assert_eq!(s["dataset"], "diamonds");
    assert_eq!(s["d"], 9);
    assert_eq!(s["settings"]["depth"], 8);
    assert_eq!(
        s["hyperparameters"]["lengthscales"]
            .as_array()
            .unwrap()
            .len(),
        9
    );
    assert_eq!(s["history"].as_array().unwrap().len(), 3);
    for png in ["loss.png", "predictions.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
    // --exact on a CSV file with a header, target chosen by name.
    let csv = dir.join("small.csv");
    let mut text = String::from("u,v,target\n");
    for i in 0..40 {
        let (u, v) = (i as f64 / 7.0, (i * i % 13) as f64);
        text += &format!("{u},{v},{}\n", (u).sin() + 0.1 * v);
    }
    std::fs::write(&csv, text).unwrap();
    let (status, stdout, stderr) = run(&[
        "gp",
        "--data",
        csv.to_str().unwrap(),
        "--target",
        "target",
        "--exact",
        "--epochs",
        "5",
        "--kernel",
        "rbf",
        "--quiet",
        "--out",
        dir.join("out2").to_str().unwrap(),
    ]);
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.is_empty(), "--quiet: {stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["n_train"], 32);
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = scratch("bad");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let rows = |f: &dyn Fn(usize) -> String| (0..30).map(f).collect::<Vec<_>>().join("\n");
    let nonnum = write(
        "nonnum.csv",
        &format!(
            "a,b,y\n{}\n1,x,3\n",
            rows(&|i| format!("{i},{},{}", i * 2 % 5, i % 3))
        ),
    );
    let nan = write(
        "nan.csv",
        &format!("{}\n1,NaN,3\n", rows(&|i| format!("{i},{},{}", i % 4, i))),
    );
    let few = write("few.csv", "1,2\n3,4\n5,6\n");
    let constant = write("const.csv", &rows(&|i| format!("{i},7,{}", i % 5)));
    let ragged = write(
        "ragged.csv",
        &format!("{}\n1,2\n", rows(&|i| format!("{i},{},{}", i % 4, i))),
    );
    let empty = write("empty.csv", "");
    let missing = dir.join("missing.csv").to_str().unwrap().to_string();
    let good = write("good.csv", &rows(&|i| format!("{i},{},{}", i % 4, i % 7)));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--data", &missing], "cannot read"),
        (
            vec!["--data", &nonnum],
            "nonnum.csv:32: column 2: \"x\" is not a number",
        ),
        (
            vec!["--data", &nan],
            "nan.csv:31: column 2: \"NaN\" is not a finite number",
        ),
        (vec!["--data", &few], "3 data rows; at least 10"),
        (vec!["--data", &constant], "column 2 (column 2) is constant"),
        (
            vec!["--data", &ragged],
            "ragged.csv:31: 2 cells, but the first row has 3",
        ),
        (vec!["--data", &empty], "no data rows"),
        (vec!["--data", &good, "--target", "9"], "--target \"9\""),
        (vec!["--data", &good, "--epochs", "0"], "--epochs"),
        (vec!["--data", &good, "--lr", "-1"], "--lr"),
        (vec!["--data", &good, "--kernel", "cosine"], "cosine"),
        (vec!["--data", "elevators-nope"], "cannot read"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["gp", "--quiet", "--out", dir.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let (status, stdout, stderr) = run(&args);
        assert_eq!(status, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("gradmat: "), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr} lacks {want}");
    }
}

#[test]
fn checkpoint_continues_a_stopped_run_and_refuses_a_broken_file() {
    let dir = scratch("ckpt");
    let ckpt = dir.join("run.ckpt");
    let args = |epochs: &'static str, out: &Path, ckpt: Option<&Path>| {
        let mut a: Vec<String> = [
            "gp",
            "--quiet",
            "--subsample",
            "300",
            "--epochs",
            epochs,
            "--probes",
            "4",
            "--depth",
            "8",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(out.to_str().unwrap().to_string());
        if let Some(c) = ckpt {
            a.push("--checkpoint".into());
            a.push(c.to_str().unwrap().to_string());
        }
        a
    };
    let summary = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
    };
    let call = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&a)
    };
    let (s, _, e) = call(args("3", &dir.join("whole"), None));
    assert_eq!(s, 0, "{e}");
    let (s, _, e) = call(args("2", &dir.join("first"), Some(&ckpt)));
    assert_eq!(s, 0, "{e}");
    let (s, _, e) = call(args("3", &dir.join("rest"), Some(&ckpt)));
    assert_eq!(s, 0, "{e}");
    let (whole, rest) = (summary(&dir.join("whole")), summary(&dir.join("rest")));
    assert_eq!(rest["checkpoint"]["resumed_after_epoch"], 2);
    assert!(whole["checkpoint"].is_null());
    for key in ["final_train_loss", "test_rmse", "hyperparameters"] {
        assert_eq!(whole[key], rest[key], "{key}");
    }
    assert_eq!(whole["history"][2]["loss"], rest["history"][2]["loss"]);
    // A damaged checkpoint: status 2, one line naming the file and the line.
    let text = std::fs::read_to_string(&ckpt).unwrap();
    std::fs::write(&ckpt, text.replacen("epochs 3", "epochs three", 1)).unwrap();
    let (s, out, e) = call(args("4", &dir.join("bad"), Some(&ckpt)));
    assert_eq!(s, 2, "{e}");
    assert!(out.is_empty());
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(e.contains("run.ckpt, line 3"), "{e}");
}
