//! Hostile input files under a 4 GB address-space limit (reliability issue): a gzip file of a
//! few MB holding one 3 GB line, a 0.4 MB gzip file holding 2·10⁸ comment lines, and
//! `/dev/zero` used to make `gradmat logdet` abort (status 134, "memory allocation failed")
//! in the Matrix Market reader. Each must now exit with status 2 and one line on stderr naming
//! the file and the line. The vector reader gets `/dev/zero` too.
//!
//! The command runs in `sh -c 'ulimit -v …; exec gradmat …'`, so only the child is limited. The
//! gzip files are generated on the fly and streamed to disk: one small gzip member is written
//! many times (a concatenation of gzip members is one gzip stream for the reader), so nothing
//! large is ever in memory or compressed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_gradmat");

/// The address-space limit of the command, in KiB (4 GB).
const LIMIT_KIB: u64 = 4 << 20;

fn tmp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradmat-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `gradmat args…` under the address-space limit.
fn run_limited(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .output()
        .expect("running gradmat under sh")
}

/// Writes `head` (plain gzip member) then `times` gzip members each holding `chunk`.
fn write_gzip_members(path: &Path, head: &[u8], chunk: &[u8], times: usize) -> u64 {
    let member = |bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&member(head)).unwrap();
    let m = member(chunk);
    for _ in 0..times {
        f.write_all(&m).unwrap();
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Status 2, nothing on stdout, one line on stderr that starts with `gradmat: <file>:<line>: `
/// (or `gradmat: <file>: ` when `line` is `None`) and contains `what`.
fn assert_one_line_error(out: &Output, file: &Path, line: Option<usize>, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "status {:?}, stderr: {stderr}",
        out.status
    );
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    let prefix = match line {
        Some(l) => format!("gradmat: {}:{l}: ", file.display()),
        None => format!("gradmat: {}: ", file.display()),
    };
    assert!(
        stderr.starts_with(&prefix),
        "expected {prefix:?}, got {stderr}"
    );
    assert!(stderr.contains(what), "expected {what:?} in {stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
}

fn logdet(matrix: &Path) -> Output {
    run_limited(&[
        "logdet",
        "--matrix",
        matrix.to_str().unwrap(),
        "--probes",
        "1",
        "--depth",
        "2",
        "--seed",
        "0",
    ])
}

/// A gzip file of ~3 MB whose second line (a comment) is 3·10⁹ bytes long.
#[test]
fn matrix_market_three_gigabyte_line() {
    let dir = tmp_dir();
    let path = dir.join("long-line.mtx.gz");
    let chunk = vec![b'x'; 1 << 20];
    let size = write_gzip_members(
        &path,
        b"%%MatrixMarket matrix coordinate real symmetric\n%",
        &chunk,
        3_000_000_000 / chunk.len() + 1,
    );
    assert!(size < 8 << 20, "{size} bytes");
    let out = logdet(&path);
    assert_one_line_error(&out, &path, Some(2), "line is too long");
    std::fs::remove_file(&path).unwrap();
}

/// A 0.4 MB gzip file of 2·10⁸ comment lines (and nothing else): the reader keeps a bounded
/// number of them and reaches the end of the input, where the size line is missing.
#[test]
fn matrix_market_two_hundred_million_comment_lines() {
    let dir = tmp_dir();
    let path = dir.join("comments.mtx.gz");
    let lines_per_member = 1_000_000;
    let members = 200;
    let chunk = "%\n".repeat(lines_per_member);
    let size = write_gzip_members(
        &path,
        b"%%MatrixMarket matrix coordinate real symmetric\n",
        chunk.as_bytes(),
        members,
    );
    assert!(size < 1 << 20, "{size} bytes");
    let out = logdet(&path);
    // Header, 2·10⁸ comments, then the missing size line.
    let line = 1 + lines_per_member * members + 1;
    assert_one_line_error(&out, &path, Some(line), "bad size line");
    std::fs::remove_file(&path).unwrap();
}

/// `/dev/zero` as the matrix: no line break at all.
#[test]
fn matrix_market_dev_zero() {
    let path = Path::new("/dev/zero");
    if !path.exists() {
        eprintln!("no /dev/zero: skipped");
        return;
    }
    let out = logdet(path);
    assert_one_line_error(&out, path, Some(1), "line is too long");
}

/// `/dev/zero` as the vector of `quadform` (the vector reader already failed cleanly: its
/// `read` grows the buffer fallibly and stops at the address-space limit).
#[test]
fn vector_dev_zero() {
    let path = Path::new("/dev/zero");
    if !path.exists() {
        eprintln!("no /dev/zero: skipped");
        return;
    }
    let out = run_limited(&[
        "quadform",
        "--matrix",
        data("spd6_sym.mtx").to_str().unwrap(),
        "--vector",
        "/dev/zero",
        "--function",
        "log",
        "--method",
        "lanczos",
        "--depth",
        "3",
    ]);
    assert_one_line_error(&out, path, None, "");
}
