//! Stable replay of the fuzz corpora: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same check function the cargo-fuzz target
//! calls (`gradmat_apps::fuzz_checks::TARGETS`), so `cargo test --workspace` exercises the fuzz
//! properties on a stable toolchain. A check that panics fails the test with the file's name.

use gradmat_apps::fuzz_checks::{Outcome, TARGETS};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Replays `dir` through `check`; returns (values, typed errors, skipped).
fn replay(target: &str, check: fn(&[u8]) -> Outcome, dir: &Path) -> (usize, usize, usize) {
    let (mut values, mut errors, mut skipped) = (0, 0, 0);
    for path in files(dir) {
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| check(&data));
        match r {
            Ok(Outcome::Value) => values += 1,
            Ok(Outcome::Error(_)) => errors += 1,
            Ok(Outcome::Skipped) => skipped += 1,
            Err(_) => panic!("{target}: property violated on {}", path.display()),
        }
    }
    (values, errors, skipped)
}

#[test]
fn corpus_replay() {
    for (target, check) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let n = files(&dir).len();
        assert!(n >= 5, "{target}: the committed corpus has only {n} files");
        let (v, e, s) = replay(target, *check, &dir);
        println!("{target}: {n} corpus files: {v} values, {e} typed errors, {s} skipped");
        // A corpus that never reaches a value (or never an error) exercises half the contract.
        assert!(v > 0, "{target}: no corpus input reached a value");
        assert!(e > 0, "{target}: no corpus input reached a typed error");
    }
}

#[test]
fn regressions_replay() {
    for (target, check) in TARGETS {
        let dir = fuzz_dir().join("regressions").join(target);
        let (v, e, s) = replay(target, *check, &dir);
        println!("{target}: regressions: {v} values, {e} typed errors, {s} skipped");
    }
}

/// Every fuzz target has a `[[bin]]` in `fuzz/Cargo.toml` and a source file calling its check.
#[test]
fn fuzz_targets_match_checks() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        let src = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{target}.rs")))
            .unwrap_or_else(|_| panic!("fuzz/fuzz_targets/{target}.rs is missing"));
        assert!(
            src.contains(&format!("check_{target}(")),
            "{target}.rs does not call its check"
        );
    }
}
