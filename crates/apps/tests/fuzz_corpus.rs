//! Stable replay of this crate's fuzz corpora (`csv`, `idx`, `vector`): every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the same check function
//! the cargo-fuzz target calls (`gradmat_apps::fuzz`), so `cargo test -p gradmat-apps` exercises
//! the fuzz properties on a stable toolchain. A violated property fails the test with the file's
//! name. The other targets are replayed by the crates that own them (`tests/fuzz_corpus.rs` of
//! gradmat-operators, -krylov, -adjoint and -matfun); the last test checks that every target of
//! `fuzz/Cargo.toml` has an owner.

use gradmat_apps::fuzz::TARGETS;

gradmat_operators::fuzz_replay_tests!(TARGETS, manifest: "gradmat_apps");

/// Every `[[bin]]` of `fuzz/Cargo.toml` is a target of exactly one crate's `fuzz::TARGETS`, and
/// every committed corpus directory belongs to a target: nothing is fuzzed without being
/// replayed by `cargo test --workspace`.
#[test]
fn every_fuzz_target_has_an_owner() {
    let owners: Vec<(&str, &str)> = [
        ("gradmat-operators", gradmat_operators::fuzz::TARGETS),
        ("gradmat-adjoint", gradmat_adjoint::fuzz::TARGETS),
        ("gradmat-matfun", gradmat_matfun::fuzz::TARGETS),
        ("gradmat-apps", TARGETS),
    ]
    .iter()
    .flat_map(|(krate, targets)| targets.iter().map(move |(t, _)| (*krate, *t)))
    .collect();
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "gradmat-fuzz")
        .collect();
    assert!(!bins.is_empty());
    for bin in &bins {
        let n = owners.iter().filter(|(_, t)| t == bin).count();
        assert_eq!(n, 1, "fuzz target {bin} is owned by {n} crates: {owners:?}");
    }
    assert_eq!(
        bins.len(),
        owners.len(),
        "targets without a [[bin]]: {owners:?}"
    );
    for dir in ["corpus", "regressions"] {
        for entry in std::fs::read_dir(fuzz_dir().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            assert!(
                bins.contains(&name.as_str()),
                "fuzz/{dir}/{name} belongs to no fuzz target"
            );
        }
    }
}
