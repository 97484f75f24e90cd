//! The `gradmat` command never panics on malformed input: every subcommand runs on every
//! malformed input of each file it reads (and on malformed arguments), and must exit with
//! status 2, print nothing on stdout, and print exactly one line `gradmat: …` on stderr that is
//! not the panic hook's `internal error`.
//!
//! **Table-driven:** a new subcommand is one row of [`SUBCOMMANDS`] (its name, the input files
//! it reads, how to build a valid argument list, and its bad arguments). A new kind of input
//! file is one variant of [`Input`] with its valid fixture and malformed contents.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

/// The kinds of input file a subcommand reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// A Matrix Market matrix (`--matrix`).
    Matrix,
    /// A vector file, one number per line (`--vector`).
    Vector,
    /// A numeric CSV table (`gp --data`).
    Csv,
}

/// Paths of one set of input files (valid unless a case replaced one).
struct Paths {
    matrix: PathBuf,
    vector: PathBuf,
    csv: PathBuf,
    /// An output directory (for subcommands that write one).
    out: PathBuf,
}

impl Paths {
    /// These paths with the file of `kind` replaced by `path`.
    fn with(&self, kind: Input, path: &Path) -> Paths {
        let pick = |k: Input, v: &PathBuf| {
            if k == kind {
                path.to_path_buf()
            } else {
                v.clone()
            }
        };
        Paths {
            matrix: pick(Input::Matrix, &self.matrix),
            vector: pick(Input::Vector, &self.vector),
            csv: pick(Input::Csv, &self.csv),
            out: self.out.clone(),
        }
    }
    fn get(&self, kind: Input) -> &Path {
        match kind {
            Input::Matrix => &self.matrix,
            Input::Vector => &self.vector,
            Input::Csv => &self.csv,
        }
    }
}

/// One subcommand under test.
struct Sub {
    /// Subcommand name.
    name: &'static str,
    /// The files it reads.
    inputs: &'static [Input],
    /// A valid argument list (after the program name) for the given inputs.
    args: fn(&Paths) -> Vec<String>,
    /// Argument lists that must be rejected (each a full argument list).
    bad_args: fn(&Paths) -> Vec<Vec<String>>,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn quadform_args(i: &Paths) -> Vec<String> {
    let mut a = s(&["quadform", "--matrix"]);
    a.push(p(&i.matrix));
    a.extend(s(&["--vector"]));
    a.push(p(&i.vector));
    a.extend(s(&[
        "--function",
        "log",
        "--method",
        "lanczos",
        "--depth",
        "3",
    ]));
    a
}

fn logdet_args(i: &Paths) -> Vec<String> {
    let mut a = s(&["logdet", "--matrix"]);
    a.push(p(&i.matrix));
    a.extend(s(&["--probes", "3", "--depth", "3", "--seed", "1"]));
    a
}

fn gp_args(i: &Paths) -> Vec<String> {
    let mut a = s(&["gp", "--data"]);
    a.push(p(&i.csv));
    a.extend(s(&[
        "--epochs", "1", "--probes", "2", "--depth", "4", "--seed", "1", "--quiet",
    ]));
    a.extend(s(&["--out"]));
    a.push(p(&i.out));
    a
}

/// `base` with the value after `flag` replaced by `value`.
fn with(base: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut a = base.to_vec();
    let i = a.iter().position(|x| x == flag).expect("flag present") + 1;
    a[i] = value.to_string();
    a
}

/// `base` without `flag` and its value.
fn without(base: &[String], flag: &str) -> Vec<String> {
    let mut a = base.to_vec();
    let i = a.iter().position(|x| x == flag).expect("flag present");
    a.drain(i..i + 2);
    a
}

fn plus(base: &[String], extra: &[&str]) -> Vec<String> {
    let mut a = base.to_vec();
    a.extend(s(extra));
    a
}

/// Every subcommand of `gradmat` (add a row per new subcommand).
const SUBCOMMANDS: &[Sub] = &[
    Sub {
        name: "quadform",
        inputs: &[Input::Matrix, Input::Vector],
        args: quadform_args,
        bad_args: |i| {
            let b = quadform_args(i);
            vec![
                with(&b, "--depth", "0"),
                with(&b, "--depth", "7"),
                with(&b, "--depth", "-1"),
                with(&b, "--depth", "abc"),
                with(&b, "--depth", "99999999999999999999999"),
                with(&b, "--function", "cosh"),
                with(&b, "--method", ""),
                without(&b, "--matrix"),
                without(&b, "--vector"),
                // (--depth has a default since issue 18)
                plus(&b, &["--bogus"]),
                plus(&b, &["--reorthogonalize", "partial"]),
                plus(&b, &["--grad-dir", ""]),
                plus(&b, &["extra-positional"]),
            ]
        },
    },
    Sub {
        name: "logdet",
        inputs: &[Input::Matrix],
        args: logdet_args,
        bad_args: |i| {
            let b = logdet_args(i);
            vec![
                with(&b, "--probes", "0"),
                with(&b, "--probes", "-2"),
                with(&b, "--depth", "0"),
                with(&b, "--depth", "7"),
                with(&b, "--seed", "-1"),
                with(&b, "--seed", "1.5"),
                plus(&b, &["--shift", "nan"]),
                plus(&b, &["--shift", "inf"]),
                plus(&b, &["--shift", "-1e300"]),
                plus(&b, &["--shift", "x"]),
                plus(&b, &["--probe", "uniform"]),
                without(&b, "--matrix"),
                // (--probes, --depth and --seed have defaults since issue 18)
                plus(&b, &["--bogus"]),
            ]
        },
    },
    Sub {
        name: "gp",
        inputs: &[Input::Csv],
        args: gp_args,
        bad_args: |i| {
            let b = gp_args(i);
            vec![
                with(&b, "--epochs", "0"),
                with(&b, "--epochs", "x"),
                with(&b, "--probes", "0"),
                with(&b, "--depth", "0"),
                with(&b, "--seed", "-1"),
                plus(&b, &["--target", "99"]),
                plus(&b, &["--lr", "-1"]),
                plus(&b, &["--lr", "nan"]),
                plus(&b, &["--kernel", "cosine"]),
                without(&b, "--epochs")
                    .into_iter()
                    .chain(s(&["--bogus"]))
                    .collect(),
            ]
        },
    },
    Sub {
        name: "pde",
        inputs: &[],
        args: pde_args,
        bad_args: |i| {
            let b = pde_args(i);
            vec![
                with(&b, "--grid", "0"),
                with(&b, "--grid", "1"),
                with(&b, "--grid", "x"),
                with(&b, "--epochs", "-1"),
                with(&b, "--initial-conditions", "0"),
                with(&b, "--hidden", "0"),
                plus(&b, &["--learning-rate", "nan"]),
                plus(&b, &["--learning-rate", "-1"]),
                plus(&b, &["--depth", "0"]),
                plus(&b, &["--steps", "0"]),
                plus(&b, &["--solver", "euler"]),
                plus(&b, &["--bogus"]),
            ]
        },
    },
    // bnn: its malformed-IDX and missing-directory cases are in tests/bnn_cli.rs (a valid run
    // needs IDX files, which that test writes).
];

fn pde_args(i: &Paths) -> Vec<String> {
    let mut a = s(&[
        "pde",
        "--grid",
        "4",
        "--epochs",
        "1",
        "--initial-conditions",
        "5",
        "--hidden",
        "4",
        "--out",
    ]);
    a.push(p(&i.out));
    a
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn scratch() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Gzip of `text` written by the crate's own writer (a `.mtx.gz` path).
fn gzip_of(text: &str, dir: &Path) -> Vec<u8> {
    use gradmat_operators::matrix_market::{read_matrix_market_from, write_matrix_market};
    let f = read_matrix_market_from::<f64, _>(text.as_bytes()).unwrap();
    let path = dir.join("tmp.mtx.gz");
    write_matrix_market(&path, &f).unwrap();
    std::fs::read(&path).unwrap()
}

/// Malformed contents of each kind of input file: (label, bytes).
fn malformed(kind: Input, dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let h = "%%MatrixMarket matrix coordinate real symmetric\n";
    let t = |x: &str| x.as_bytes().to_vec();
    match kind {
        Input::Matrix => {
            let spd6 = std::fs::read_to_string(data_dir().join("spd6_sym.mtx")).unwrap();
            let gz = gzip_of(&spd6, dir);
            vec![
                ("empty file", vec![]),
                ("header only", t(h)),
                ("not matrix market", t("hello world\n1 2 3\n")),
                ("binary garbage", (0..=255u8).rev().collect()),
                ("NUL bytes", vec![0; 64]),
                (
                    "invalid UTF-8",
                    b"%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 \xff\xfe\n"
                        .to_vec(),
                ),
                (
                    "bad header",
                    t("%%MatrixMarket vector coordinate real general\n1 1 1\n1 1 1\n"),
                ),
                (
                    "complex field",
                    t("%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n"),
                ),
                ("bad size line", t(&format!("{h}6 six 3\n"))),
                (
                    "truncated entries",
                    t(&format!("{h}6 6 14\n1 1 4.0\n2 2 4.0\n")),
                ),
                ("too many entries", t(&format!("{h}1 1 1\n1 1 1\n1 1 1\n"))),
                ("NaN entry", t(&format!("{h}2 2 2\n1 1 nan\n2 2 1\n"))),
                (
                    "overflowing entry",
                    t(&format!("{h}2 2 2\n1 1 1e999\n2 2 1\n")),
                ),
                ("index zero", t(&format!("{h}2 2 2\n0 1 1\n2 2 1\n"))),
                ("index past end", t(&format!("{h}2 2 2\n3 1 1\n2 2 1\n"))),
                ("negative index", t(&format!("{h}2 2 2\n-1 1 1\n2 2 1\n"))),
                (
                    "both triangles",
                    t(&format!("{h}2 2 3\n1 1 2\n2 1 1\n1 2 1\n")),
                ),
                (
                    "non-square",
                    t("%%MatrixMarket matrix coordinate real general\n2 3 1\n1 1 1\n"),
                ),
                (
                    "0x0 matrix",
                    t("%%MatrixMarket matrix coordinate real general\n0 0 0\n"),
                ),
                (
                    "huge header, N*N overflows",
                    t(&format!(
                        "{h}18446744073709551615 18446744073709551615 1\n1 1 1\n"
                    )),
                ),
                (
                    "huge header, N = 4e9",
                    t(&format!("{h}4000000000 4000000000 1\n1 1 1\n")),
                ),
                (
                    "huge entry count",
                    t(&format!("{h}6 6 18446744073709551615\n1 1 1\n")),
                ),
                (
                    "huge array",
                    t("%%MatrixMarket matrix array real general\n4000000000 4000000000\n1\n"),
                ),
                ("zero matrix (not PD)", t(&format!("{h}6 6 1\n1 1 0\n"))),
                ("indefinite", t(&format!("{h}2 2 3\n1 1 1\n2 1 2\n2 2 1\n"))),
                ("truncated gzip", gz[..gz.len() / 2].to_vec()),
                ("gzip header only", gz[..10].to_vec()),
            ]
        }
        Input::Vector => vec![
            ("empty file", vec![]),
            ("comments only", t("# nothing\n\n")),
            ("not a number", t("1\n2\nabc\n4\n5\n6\n")),
            ("two per line", t("1 2\n3\n4\n5\n6\n")),
            ("NaN", t("1\n2\nnan\n4\n5\n6\n")),
            ("infinity", t("1\n2\ninf\n4\n5\n6\n")),
            ("overflow", t("1\n2\n1e999\n4\n5\n6\n")),
            ("too short", t("1\n2\n3\n")),
            ("too long", t("1\n2\n3\n4\n5\n6\n7\n")),
            ("zero vector", t("0\n0\n0\n0\n0\n0\n")),
            ("binary garbage", (0..=255u8).collect()),
            ("invalid UTF-8", b"1\n2\n\xff\n4\n5\n6\n".to_vec()),
        ],
        Input::Csv => {
            let rows = |f: &dyn Fn(usize) -> String| (0..30).map(f).collect::<Vec<_>>().join("\n");
            vec![
                ("empty file", vec![]),
                ("header only", t("a,b,y\n")),
                ("comments only", t("# x\n\n")),
                (
                    "not a number",
                    t(&format!(
                        "{}\n1,x,3\n",
                        rows(&|i| format!("{i},{},{}", i % 4, i % 7))
                    )),
                ),
                (
                    "NaN cell",
                    t(&format!(
                        "{}\n1,NaN,3\n",
                        rows(&|i| format!("{i},{},{}", i % 4, i % 7))
                    )),
                ),
                (
                    "infinite cell",
                    t(&format!(
                        "{}\n1,inf,3\n",
                        rows(&|i| format!("{i},{},{}", i % 4, i % 7))
                    )),
                ),
                (
                    "overflowing cell",
                    t(&format!(
                        "{}\n1,1e999,3\n",
                        rows(&|i| format!("{i},{},{}", i % 4, i % 7))
                    )),
                ),
                (
                    "ragged row",
                    t(&format!(
                        "{}\n1,2\n",
                        rows(&|i| format!("{i},{},{}", i % 4, i % 7))
                    )),
                ),
                ("too few rows", t("1,2\n3,4\n5,6\n")),
                ("constant column", t(&rows(&|i| format!("{i},7,{}", i % 5)))),
                ("one column", t(&rows(&|i| format!("{i}")))),
                ("invalid UTF-8", b"a,b\n1,\xff\n".to_vec()),
                ("binary garbage", (0..=255u8).collect()),
                ("NUL bytes", vec![0; 64]),
            ]
        }
    }
}

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[String]) -> Run {
    let o = Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run gradmat");
    Run {
        status: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Exit status 2, empty stdout, one line `gradmat: …` on stderr, not a caught panic.
fn assert_clean_failure(what: &str, r: &Run) {
    assert_eq!(
        r.status,
        Some(2),
        "{what}: status {:?}, stderr {:?}",
        r.status,
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{what}: stdout {:?}", r.stdout);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: stderr is not one line: {:?}",
        r.stderr
    );
    assert!(lines[0].starts_with("gradmat: "), "{what}: {:?}", lines[0]);
    assert!(
        !lines[0].contains("internal error") && !lines[0].contains("panicked"),
        "{what}: a panic reached the hook: {:?}",
        lines[0]
    );
    assert!(
        lines[0].len() > "gradmat: ".len() + 5,
        "{what}: empty message"
    );
}

#[test]
fn every_subcommand_rejects_every_malformed_input_with_one_line() {
    let dir = scratch();
    let good_csv = dir.join("good.csv");
    let rows: Vec<String> = (0..30)
        .map(|i| format!("{i},{},{}", i % 4, i % 7))
        .collect();
    std::fs::write(&good_csv, rows.join("\n")).unwrap();
    let valid = Paths {
        matrix: data_dir().join("spd6_sym.mtx"),
        vector: data_dir().join("v6.txt"),
        csv: good_csv,
        out: dir.join("out"),
    };
    let mut count = 0;
    for sub in SUBCOMMANDS {
        // The valid arguments succeed (so every failure below is due to the one bad input).
        let ok = run(&(sub.args)(&valid));
        assert_eq!(
            ok.status,
            Some(0),
            "{}: valid run failed: {}",
            sub.name,
            ok.stderr
        );
        for &kind in sub.inputs {
            for (label, bytes) in malformed(kind, &dir) {
                let path = dir.join(format!(
                    "{}-{kind:?}-{}",
                    sub.name,
                    label.replace([' ', ','], "_")
                ));
                std::fs::write(&path, &bytes).unwrap();
                let paths = valid.with(kind, &path);
                let r = run(&(sub.args)(&paths));
                let what = format!("{} with {kind:?} {label:?}", sub.name);
                assert_clean_failure(&what, &r);
                // The message names the file it is about.
                let fname = paths
                    .get(kind)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                assert!(
                    r.stderr.contains(&fname),
                    "{what}: message does not name the file: {}",
                    r.stderr
                );
                count += 1;
            }
            // A missing file and a directory in place of the file.
            for (label, path) in [
                ("missing", dir.join("does-not-exist")),
                ("directory", dir.clone()),
            ] {
                let paths = valid.with(kind, &path);
                assert_clean_failure(
                    &format!("{} with {kind:?} {label}", sub.name),
                    &run(&(sub.args)(&paths)),
                );
                count += 1;
            }
        }
        for args in (sub.bad_args)(&valid) {
            assert_clean_failure(&format!("{} {args:?}", sub.name), &run(&args));
            count += 1;
        }
    }
    // Usage errors common to all subcommands.
    for args in [
        vec![],
        s(&["frobnicate"]),
        s(&["--bogus"]),
        s(&["quadform", "--matrix"]),
    ] {
        assert_clean_failure(&format!("{args:?}"), &run(&args));
        count += 1;
    }
    assert!(count > 80, "only {count} malformed runs");
}
