//! Training checkpoints (`gradmat gp --checkpoint`): a run stopped after any epoch and continued
//! from its checkpoint ends bit for bit where the uninterrupted run ends; a checkpoint of other
//! data or settings, a truncated one and hostile ones are refused with typed errors naming the
//! line, never a panic or a silently different run.

use gradmat_apps::gp::checkpoint::{self, CheckpointError};
use gradmat_apps::gp::csv::read_csv;
use gradmat_apps::gp::data::{prepare, GpData};
use gradmat_apps::gp::model::{GpError, Kernel, KernelCache, Stochastic};
use gradmat_apps::gp::train::{train, TrainConfig, TrainOutcome};
use gradmat_apps::report::Progress;
use std::path::{Path, PathBuf};

fn diamonds(rows: usize, seed: u64) -> GpData {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/gp/diamonds.csv.gz");
    let t = read_csv(&path).unwrap();
    prepare(&t, 9, Some(rows), seed).unwrap()
}

fn config(epochs: usize, checkpoint: Option<PathBuf>) -> TrainConfig {
    TrainConfig {
        kernel: Kernel::Matern32,
        epochs,
        lr: 0.05,
        stochastic: Stochastic::default(),
        seed: 3,
        exact: false,
        dense_eval_budget: None,
        checkpoint,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradmat-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("state.ckpt")
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn run(data: &GpData, cfg: &TrainConfig) -> Result<TrainOutcome, GpError> {
    train(data, cfg, &Progress::quiet("epoch", cfg.epochs as u64))
}

fn assert_same_run(a: &TrainOutcome, b: &TrainOutcome) {
    assert_eq!(bits(&a.raw), bits(&b.raw));
    assert_eq!(a.history.len(), b.history.len());
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(x.loss.to_bits(), y.loss.to_bits(), "epoch {}", x.epoch);
        assert_eq!(x.std_error.to_bits(), y.std_error.to_bits());
        assert_eq!(
            (x.matvecs, x.cg_iterations, x.passes),
            (y.matvecs, y.cg_iterations, y.passes)
        );
    }
    assert_eq!(a.final_loss.to_bits(), b.final_loss.to_bits());
    assert_eq!(a.test_rmse.to_bits(), b.test_rmse.to_bits());
}

#[test]
fn a_run_continued_from_its_checkpoint_ends_bit_for_bit_where_the_uninterrupted_run_ends() {
    let data = diamonds(300, 1);
    let whole = run(&data, &config(6, None)).unwrap();
    assert_eq!(whole.resumed_epochs, 0);
    // Stopped after 2 epochs, then after 4 (a second interruption), then to the end.
    let path = scratch("resume");
    let _ = std::fs::remove_file(&path);
    let first = run(&data, &config(2, Some(path.clone()))).unwrap();
    assert_eq!(first.resumed_epochs, 0);
    for (a, b) in first.history.iter().zip(&whole.history) {
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    }
    let second = run(&data, &config(4, Some(path.clone()))).unwrap();
    assert_eq!(second.resumed_epochs, 2);
    let last = run(&data, &config(6, Some(path.clone()))).unwrap();
    assert_eq!(last.resumed_epochs, 4);
    assert_same_run(&last, &whole);
    // The earlier process's seconds are kept in the history.
    assert_eq!(
        last.history[0].seconds.to_bits(),
        first.history[0].seconds.to_bits()
    );
    // A finished run's checkpoint only evaluates again: same outcome, no epoch trained.
    let again = run(&data, &config(6, Some(path.clone()))).unwrap();
    assert_eq!(again.resumed_epochs, 6);
    assert_same_run(&again, &whole);
    // Fewer epochs than the checkpoint holds: refused, naming the line.
    let err = run(&data, &config(5, Some(path.clone()))).unwrap_err();
    assert!(
        matches!(
            err,
            GpError::Checkpoint(CheckpointError::Malformed { line: 3, .. })
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_checkpoint_of_other_data_or_settings_is_refused() {
    let data = diamonds(200, 1);
    let path = scratch("other");
    let _ = std::fs::remove_file(&path);
    run(&data, &config(1, Some(path.clone()))).unwrap();
    let other_seed = TrainConfig {
        seed: 4,
        ..config(2, Some(path.clone()))
    };
    let other_lr = TrainConfig {
        lr: 0.1,
        ..config(2, Some(path.clone()))
    };
    let other_depth = TrainConfig {
        stochastic: Stochastic {
            depth: 11,
            ..Stochastic::default()
        },
        ..config(2, Some(path.clone()))
    };
    // Matrix-free products where the first run stored the kernel matrix (n = 160 fits the
    // default budget): another rounding, another run.
    let other_path = TrainConfig {
        stochastic: Stochastic {
            kernel_cache: KernelCache::MatrixFree,
            ..Stochastic::default()
        },
        ..config(2, Some(path.clone()))
    };
    for cfg in [other_seed, other_lr, other_depth, other_path] {
        let err = run(&data, &cfg).unwrap_err();
        assert!(
            matches!(err, GpError::Checkpoint(CheckpointError::OtherRun { .. })),
            "{err}"
        );
    }
    // Another memory budget that takes the same path (a machine with more memory): the same
    // run, continued.
    let more_memory = TrainConfig {
        stochastic: Stochastic {
            kernel_cache: KernelCache::Auto { budget: 1e12 },
            ..Stochastic::default()
        },
        ..config(2, Some(path.clone()))
    };
    assert_eq!(run(&data, &more_memory).unwrap().resumed_epochs, 1);
    // Other rows (another split seed).
    let err = run(&diamonds(200, 2), &config(2, Some(path.clone()))).unwrap_err();
    assert!(
        matches!(err, GpError::Checkpoint(CheckpointError::OtherRun { .. })),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Parses `text` as a checkpoint for 12 parameters (d = 9: 9 lengthscales, output scale,
/// noise, mean), 4 training points, at most 3 epochs; the fingerprint 1.
fn parse(text: &str) -> Result<checkpoint::TrainState, CheckpointError> {
    checkpoint::parse(text.as_bytes(), Path::new("t.ckpt"), &expected(1))
}

fn expected(fingerprint: u64) -> checkpoint::Expected {
    checkpoint::Expected {
        fingerprint,
        params: 12,
        points: 4,
        lr: 0.05,
        max_epochs: 3,
    }
}

fn valid() -> String {
    let one = format!("{:016x}", 1.0f64.to_bits());
    let raw = vec![one.clone(); 12].join(" ");
    let adam = vec![one.clone(); 24].join(" ");
    format!(
        "gradmat-gp-checkpoint 1\nfingerprint 0000000000000001\nepochs 1\nraw 12 {raw}\n\
         adam 1 {adam}\nwarm 4\n{one}\n{one}\n{one}\n{one}\nhistory\n\
         1 {one} {one} {one} 5 6 7\nend\n"
    )
}

#[test]
fn malformed_and_hostile_checkpoints_get_typed_errors_with_their_line() {
    let st = parse(&valid()).unwrap();
    assert_eq!((st.raw.len(), st.history.len()), (12, 1));
    assert_eq!(st.warm.as_ref().map(Vec::len), Some(4));
    assert_eq!(st.adam.steps(), 1);
    // Round trip through the writer.
    let again = checkpoint::to_text(&st, 1);
    assert_eq!(again, valid());
    let nan = format!("{:016x}", f64::NAN.to_bits());
    let one = format!("{:016x}", 1.0f64.to_bits());
    let v = valid();
    let cases: Vec<(String, usize)> = vec![
        (String::new(), 1),
        ("PNG\u{1a}\n".into(), 1),
        (
            v.replace("gradmat-gp-checkpoint 1", "gradmat-gp-checkpoint 2"),
            1,
        ),
        (
            v.replace("fingerprint 0000000000000001", "fingerprint zz"),
            2,
        ),
        (v.replace("epochs 1", "epochs 99999999999999999999"), 3),
        (v.replace("epochs 1", "epochs 4"), 3),
        (v.replace("raw 12", "raw 13"), 4),
        (
            v.replacen(&format!("raw 12 {one}"), &format!("raw 12 {nan}"), 1),
            4,
        ),
        (v.replacen(&format!("raw 12 {one}"), "raw 12 1.0", 1), 4),
        (v.replace("adam 1", "adam 2"), 5),
        (v.replace("warm 4", "warm 1000000000000"), 6),
        (v.replace("warm 4", "warm 3"), 6),
        (v.replace("\nhistory\n", "\nhist\n"), 11),
        (v.replace("history\n1 ", "history\n2 "), 12),
        (v.replace(" 5 6 7", " 5 6"), 12),
        (v.replace(" 5 6 7", " 5 -6 7"), 12),
        (v.replace("\nend\n", "\n"), 13),
        // An endless line without a newline: bounded, refused.
        (
            format!(
                "gradmat-gp-checkpoint 1\nfingerprint {}",
                "0".repeat(3 << 20)
            ),
            2,
        ),
    ];
    for (text, line) in cases {
        match parse(&text) {
            Err(CheckpointError::Malformed { line: l, .. }) => {
                assert_eq!(l, line, "{:?}", &text[..text.len().min(80)])
            }
            other => panic!("{:?}: {other:?}", &text[..text.len().min(80)]),
        }
    }
    // Cut short anywhere: the cut line (or the missing one after a complete line) is named.
    for cut in (0..v.len()).step_by(7).chain([v.len() - 1]) {
        let text = &v[..cut];
        if cut + 1 == v.len() {
            // Only the final newline missing: complete.
            assert!(parse(text).is_ok());
            continue;
        }
        // A cut just before a newline leaves a whole last line: the error is at the next one.
        let whole_last = text.is_empty() || text.ends_with('\n') || v.as_bytes()[cut] == b'\n';
        let line = text.lines().count() + usize::from(whole_last);
        match parse(text) {
            Err(CheckpointError::Malformed { line: l, .. }) => assert_eq!(l, line, "cut {cut}"),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    // A valid file of another run.
    let err = checkpoint::parse(valid().as_bytes(), Path::new("t"), &expected(2));
    assert!(matches!(
        err,
        Err(CheckpointError::OtherRun { found: 1, .. })
    ));
}
