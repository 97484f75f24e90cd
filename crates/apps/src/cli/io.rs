//! File input and output of the `gradmat` command: Matrix Market matrices, vector files,
//! gradient files, and the number formats they use.
//!
//! Every error is an [`anyhow::Error`] whose message is one line starting with the file name
//! (and the 1-based line number where one applies), e.g. `v.txt:3: not a number: "abc"`.

use crate::report::Outputs;
use anyhow::{anyhow, bail, Context, Result};
use gradmat_operators::matrix_market::{
    read_matrix_market, write_matrix_market_to, MatrixMarketError, MatrixMarketFile,
    MatrixMarketOperator,
};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Reads a (possibly gzipped) Matrix Market file, turning the reader's errors into
/// `path:line: message` form.
pub fn read_matrix(path: &Path) -> Result<MatrixMarketFile<f64>> {
    read_matrix_market::<f64>(path).map_err(|e| matrix_market_error(path, e))
}

/// `path: message` or `path:line: message` for a Matrix Market error.
fn matrix_market_error(path: &Path, e: MatrixMarketError) -> anyhow::Error {
    let p = path.display();
    match e {
        MatrixMarketError::Io { source, .. } => anyhow!("{p}: {}", io_message(&source)),
        MatrixMarketError::Empty => anyhow!("{p}: empty file (no Matrix Market header)"),
        other => {
            let text = other.to_string();
            // The reader's messages with a line number start with "line N: ".
            if let Some(rest) = text.strip_prefix("line ") {
                if let Some((num, msg)) = rest.split_once(": ") {
                    if num.chars().all(|c| c.is_ascii_digit()) {
                        return anyhow!("{p}:{num}: {msg}");
                    }
                }
            }
            // "truncated input at line N: ..." and other forms keep their own wording.
            anyhow!("{p}: {text}")
        }
    }
}

/// A short description of an I/O error ("cannot open: No such file or directory", …).
pub fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "cannot open: no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "cannot open: permission denied".to_string(),
        _ => format!("{e}"),
    }
}

/// Parses a vector file: one number per line; blank lines and lines whose first non-blank
/// character is `#` are ignored. Values must be finite.
pub fn read_vector(path: &Path) -> Result<Vec<f64>> {
    let bytes = fs::read(path).map_err(|e| anyhow!("{}: {}", path.display(), io_message(&e)))?;
    vector_from_bytes(path, bytes)
}

/// [`read_vector`] on the bytes of a file already read; `path` only names the file in errors.
pub fn vector_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Vec<f64>> {
    let p = path.display();
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{p}: not a UTF-8 text file"))?;
    parse_vector(&text).map_err(|(line, msg)| anyhow!("{p}:{line}: {msg}"))
}

/// Parses the text of a vector file; errors are `(1-based line, message)`.
pub fn parse_vector(text: &str) -> std::result::Result<Vec<f64>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let shown: String = t.chars().take(60).collect();
        if t.split_ascii_whitespace().count() != 1 {
            return Err((
                i + 1,
                format!("expected one number per line, found {shown:?}"),
            ));
        }
        let v: f64 = t
            .parse()
            .map_err(|_| (i + 1, format!("not a number: {shown:?}")))?;
        if !v.is_finite() {
            return Err((i + 1, format!("non-finite value: {shown:?}")));
        }
        out.push(v);
    }
    Ok(out)
}

/// `x` in C's `%.17e` form: `-1.23456789012345678e+00` (sign of the exponent always written,
/// at least two exponent digits). Non-finite values print as `nan`, `inf`, `-inf`.
pub fn format_c_exp17(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let s = format!("{x:.17e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!("{mant}e{sign}{:02}", e.unsigned_abs())
        }
        None => s,
    }
}

/// `x` as a JSON number that parses back to the same `f64` (shortest round-trip digits in
/// exponent form, e.g. `1.5e0`).
pub fn json_number(x: f64) -> Result<String> {
    if !x.is_finite() {
        bail!("internal: non-finite result {x}");
    }
    Ok(format!("{x:e}"))
}

/// Creates `dir` (and parents) if missing.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| anyhow!("{}: cannot create directory: {e}", dir.display()))
}

/// Stages `d_matrix.mtx` in `files`: the input file's header and entries in order, with the
/// value of file entry `t` equal to `grad[mm.entry_to_param[t]]` (the gradient of the operator
/// parameter that file entry `t` feeds).
pub fn write_matrix_gradient(
    files: &mut Outputs,
    mm: &MatrixMarketOperator<f64>,
    grad: &[f64],
) -> Result<()> {
    use gradmat_operators::ParamVjp as _;
    if grad.len() != mm.operator.num_params() {
        bail!(
            "internal: {} gradient entries for {} parameters",
            grad.len(),
            mm.operator.num_params()
        );
    }
    if let Some(t) = mm.entry_to_param.iter().position(|&p| !grad[p].is_finite()) {
        bail!("internal: non-finite gradient for matrix entry {}", t + 1);
    }
    let mut out = mm
        .entry_values(grad)
        .context("building the gradient file")?;
    out.set_comments(vec![
        " gradmat: gradient of the reported value with respect to each stored entry".into(),
    ]);
    let mut bytes = Vec::new();
    write_matrix_market_to(&mut bytes, &out).context("formatting the gradient file")?;
    files.write("d_matrix.mtx", &bytes)
}

/// Stages `d_vector.txt` in `files`, one value per line in `%.17e` form.
pub fn write_vector_gradient(files: &mut Outputs, grad: &[f64]) -> Result<()> {
    let mut s = String::with_capacity(grad.len() * 26);
    for &g in grad {
        if !g.is_finite() {
            bail!("internal: non-finite vector gradient");
        }
        let _ = writeln!(s, "{}", format_c_exp17(g));
    }
    files.write("d_vector.txt", s.as_bytes())
}

/// What `--vector` names: a file, all ones, or a seeded random vector.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorSpec {
    /// A vector file (see [`read_vector`]).
    File(std::path::PathBuf),
    /// `ones`: every entry 1.
    Ones,
    /// `random:SEED`: independent standard normal entries from matfun's seeded generator
    /// (`probe_vector(Gaussian, SEED, 0, N)`), reproducible for a given seed and dimension.
    Random(u64),
}

impl VectorSpec {
    /// Parses `--vector`: `ones`, `random:SEED` (SEED a non-negative integer), or a path.
    ///
    /// # Errors
    /// `random:` with a missing or invalid seed.
    pub fn parse(arg: &Path) -> Result<Self> {
        match arg.to_str() {
            Some("ones") => Ok(VectorSpec::Ones),
            Some(s) if s.starts_with("random:") => {
                let seed = &s["random:".len()..];
                seed.parse().map(VectorSpec::Random).map_err(|_| {
                    anyhow!(
                        "--vector {s}: the seed {seed:?} is not a non-negative integer \
                         (random:SEED, e.g. random:1)"
                    )
                })
            }
            _ => Ok(VectorSpec::File(arg.to_path_buf())),
        }
    }

    /// Whether the vector is read from a file (its length is known only after reading).
    pub fn is_file(&self) -> bool {
        matches!(self, VectorSpec::File(_))
    }

    /// The vector for dimension `n` (a file is read; its length is checked by the caller).
    ///
    /// # Errors
    /// The errors of [`read_vector`].
    pub fn vector(&self, n: usize) -> Result<Vec<f64>> {
        Ok(match self {
            VectorSpec::File(p) => read_vector(p)?,
            VectorSpec::Ones => vec![1.0; n],
            VectorSpec::Random(seed) => gradmat_matfun::estimators::probe_vector(
                gradmat_matfun::estimators::Probe::Gaussian,
                *seed,
                0,
                n,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_exponent_format() {
        assert_eq!(format_c_exp17(1.0), "1.00000000000000000e+00");
        assert_eq!(format_c_exp17(-0.00123), "-1.22999999999999997e-03");
        assert_eq!(format_c_exp17(1e300), "1.00000000000000005e+300");
        assert_eq!(format_c_exp17(0.0), "0.00000000000000000e+00");
        for x in [std::f64::consts::PI, -1e-310, 123456.789] {
            let back: f64 = format_c_exp17(x).parse().unwrap();
            assert_eq!(back.to_bits(), x.to_bits());
        }
    }

    #[test]
    fn vector_parsing() {
        assert_eq!(
            parse_vector("# c\n1\n\n  2.5 \n#x\n-3e-1\n").unwrap(),
            vec![1.0, 2.5, -0.3]
        );
        assert_eq!(parse_vector("1\nabc\n").unwrap_err().0, 2);
        assert_eq!(parse_vector("1 2\n").unwrap_err().0, 1);
        assert_eq!(parse_vector("\n\nnan\n").unwrap_err().0, 3);
    }

    #[test]
    fn json_numbers_round_trip() {
        for x in [0.1, -2.5e-300, 1.0 / 3.0, 7.0] {
            let s = json_number(x).unwrap();
            let back: f64 = s.parse().unwrap();
            assert_eq!(back.to_bits(), x.to_bits());
        }
        assert!(json_number(f64::NAN).is_err());
    }
}
