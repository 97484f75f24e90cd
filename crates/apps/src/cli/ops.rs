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

/// Bytes of memory the system reports as available (`MemAvailable` in `/proc/meminfo`), or
/// `None` where that is not readable (non-Linux systems: no check).
pub fn available_memory() -> Option<u64> {
    proc_bytes("/proc/meminfo", "MemAvailable")
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
                "{}: the matrix is {n}×{n}; {what} needs at least {:.1} GB of memory, more than \
                 the {:.1} GB available",
                path.display(),
                bytes / 1e9,
                avail as f64 / 1e9
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
