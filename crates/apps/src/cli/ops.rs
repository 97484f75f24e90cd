//! Operators built from Matrix Market files for the `gradmat` command.

use anyhow::{bail, Result};
use gradmat_operators::matrix_market::{
    IntoOperatorError, MatrixMarketFile, MatrixMarketOperator, OperatorKind,
};

/// Moved to `gradmat-operators` (next to the CSR types); re-exported here for existing users.
pub use gradmat_operators::csr::{check_symmetric, Asymmetry, CheckedSymmetricCsr};

/// Fails unless the matrix is square.
pub fn require_square(path: &std::path::Path, nrows: usize, ncols: usize) -> Result<()> {
    if nrows != ncols {
        bail!(
            "{}: the matrix is {nrows}×{ncols}; a square matrix is required",
            path.display()
        );
    }
    if nrows == 0 {
        bail!("{}: the matrix is empty (0×0)", path.display());
    }
    Ok(())
}

/// The value of `key` (a line `key: <number> kB`) in the Linux status file `file`, in bytes;
/// `None` where the file or the line is not readable (non-Linux systems).
fn proc_bytes(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.split(':').next() == Some(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Environment variable capping the memory the up-front checks assume available, in GB (a
/// positive number; other values are ignored): a run is refused when it needs more.
pub const MEMORY_LIMIT_ENV: &str = "GRADMAT_MEMORY_LIMIT_GB";

/// Bytes of memory available to a run: what the system reports (`MemAvailable` in
/// `/proc/meminfo`), capped by [`MEMORY_LIMIT_ENV`] when set; `None` where neither is known
/// (non-Linux systems without the variable: no check).
pub fn available_memory() -> Option<u64> {
    let limit = std::env::var(MEMORY_LIMIT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|g| g.is_finite() && *g > 0.0)
        .map(|g| (g * 1e9) as u64);
    match (proc_bytes("/proc/meminfo", "MemAvailable"), limit) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    }
}

/// Bytes of memory the machine has (`MemTotal`), or `None` where that is not readable.
pub fn total_memory() -> Option<u64> {
    proc_bytes("/proc/meminfo", "MemTotal")
}

/// The peak resident set size of this process so far (`VmHWM` in `/proc/self/status`), in
/// bytes, or `None` where that is not readable.
pub fn peak_rss() -> Option<u64> {
    proc_bytes("/proc/self/status", "VmHWM")
}

/// Fails when a computation on the `n×n` matrix of `path` needs at least `bytes` bytes and the
/// system reports less memory available. A Matrix Market header can declare a dimension of
/// 4·10⁹ with a single entry; without this check the `O(N)` work vectors would be allocated
/// (and filled) before anything else fails, and the process would be killed for memory instead
/// of exiting with a message.
pub fn require_memory(path: &std::path::Path, n: usize, what: &str, bytes: f64) -> Result<()> {
    if let Some(avail) = available_memory() {
        if bytes > avail as f64 {
            bail!(
                "{}: the matrix is {n}×{n}; {what} needs at least {} of memory, more than \
                 the {} available",
                path.display(),
                format_bytes(bytes),
                format_bytes(avail as f64)
            );
        }
    }
    Ok(())
}

/// The operator of `file` for a caller that needs `kind`
/// ([`MatrixMarketFile::into_operator`]), with its errors as one line naming `path`; `needs`
/// completes the message of a non-symmetric matrix (e.g. `"--method lanczos needs a symmetric
/// matrix (use --method arnoldi)"`).
pub fn file_operator(
    path: &std::path::Path,
    file: MatrixMarketFile<f64>,
    kind: OperatorKind,
    needs: &str,
) -> Result<MatrixMarketOperator<f64>> {
    let p = path.display();
    file.into_operator(kind).map_err(|e| match e {
        IntoOperatorError::NotSymmetric(_) => anyhow::anyhow!("{p}: {e}; {needs}"),
        other => anyhow::anyhow!("{p}: {other}"),
    })
}

/// Bytes as `12.3 GB` (or TB above 10,000 GB).
pub fn format_bytes(b: f64) -> String {
    if b >= 1e13 {
        format!("{:.1} TB", b / 1e12)
    } else {
        format!("{:.1} GB", b / 1e9)
    }
}

/// One part of a run's memory need: what it is for (naming the option that sets its size) and
/// a lower bound in bytes (computed in `f64`, so that absurd sizes do not overflow).
#[derive(Debug, Clone)]
pub struct MemoryPart {
    /// E.g. `"--hidden 1000000 (the network's 1.0e12 parameters with their Adam state)"`.
    pub what: String,
    /// Bytes.
    pub bytes: f64,
}

impl MemoryPart {
    /// A part of `bytes` bytes for `what`.
    pub fn new(what: impl Into<String>, bytes: f64) -> Self {
        MemoryPart {
            what: what.into(),
            bytes,
        }
    }
}

/// Fails, before anything large is allocated, when the parts of a run's memory need add up to
/// more than the memory available ([`available_memory`]); the message names the largest part.
/// `context` starts the message (e.g. `"pde"`).
pub fn require_memory_parts(context: &str, parts: &[MemoryPart]) -> Result<()> {
    let total: f64 = parts.iter().map(|p| p.bytes).sum();
    let Some(avail) = available_memory() else {
        return Ok(());
    };
    if total > avail as f64 {
        let largest = parts
            .iter()
            .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
            .map(|p| format!("; the largest part: {}, {}", p.what, format_bytes(p.bytes)))
            .unwrap_or_default();
        bail!(
            "{context} needs at least {} of memory, more than the {} available{largest}",
            format_bytes(total),
            format_bytes(avail as f64)
        );
    }
    Ok(())
}
