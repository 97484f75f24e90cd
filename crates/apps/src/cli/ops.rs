//! Operators built from Matrix Market files for the `gradmat` command.

use anyhow::{bail, Result};
use gradmat_operators::csr::CsrMatrix;
use gradmat_operators::{AdjointOperator, Operator, ParamVjp, SelfAdjoint};

/// A general-storage [`CsrMatrix`] that was checked to be symmetric, so that Lanczos (which
/// needs [`SelfAdjoint`]) can run on a `general` Matrix Market file.
///
/// **Parameters** are those of the [`CsrMatrix`]: every stored entry `A[i, j]` is its own
/// parameter, and its gradient is `∂/∂A[i, j]` with the entries treated as independent
/// (`CsrMatrix::vjp_params`: `u[i]·x[j]` summed over the adjoint pairs). The sum of the
/// gradients of a mirror pair `A[i, j]`, `A[j, i]` is the derivative along the symmetric
/// perturbation that changes both.
///
/// The [`SelfAdjoint`] promise holds for the parameter values checked at construction; the
/// wrapper gives no way to change them.
#[derive(Debug, Clone)]
pub struct CheckedSymmetricCsr(CsrMatrix<f64>);

/// The first pair of mirror entries that differ (0-based `(i, j, A[i, j], A[j, i])`).
#[derive(Debug, Clone, Copy)]
pub struct Asymmetry {
    /// Row.
    pub i: usize,
    /// Column.
    pub j: usize,
    /// `A[i, j]`.
    pub aij: f64,
    /// `A[j, i]` (0 when not stored).
    pub aji: f64,
}

/// Checks `A[i, j] = A[j, i]` for all stored entries, up to a relative `4ε` (values that went
/// through a decimal round trip may differ in the last bit).
pub fn check_symmetric(a: &CsrMatrix<f64>) -> std::result::Result<(), Asymmetry> {
    if a.nrows() != a.ncols() {
        return Err(Asymmetry {
            i: a.nrows(),
            j: a.ncols(),
            aij: 0.0,
            aji: 0.0,
        });
    }
    let (rp, ci, v) = (a.row_ptr(), a.col_idx(), a.values());
    for i in 0..a.nrows() {
        for p in rp[i]..rp[i + 1] {
            let j = ci[p];
            let aij = v[p];
            let aji = a.get(j, i).unwrap_or(0.0);
            let tol = 4.0 * f64::EPSILON * aij.abs().max(aji.abs());
            if (aij - aji).abs() > tol {
                return Err(Asymmetry { i, j, aij, aji });
            }
        }
    }
    Ok(())
}

impl CheckedSymmetricCsr {
    /// Wraps `a` after checking it is square and symmetric.
    pub fn new(a: CsrMatrix<f64>) -> std::result::Result<Self, Asymmetry> {
        check_symmetric(&a)?;
        Ok(Self(a))
    }
    /// The wrapped matrix.
    pub fn inner(&self) -> &CsrMatrix<f64> {
        &self.0
    }
}

impl Operator<f64> for CheckedSymmetricCsr {
    fn nrows(&self) -> usize {
        self.0.nrows()
    }
    fn ncols(&self) -> usize {
        self.0.ncols()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.0.apply(x, y)
    }
    fn apply_block(&self, x: &[f64], y: &mut [f64], k: usize) {
        self.0.apply_block(x, y, k)
    }
}

impl AdjointOperator<f64> for CheckedSymmetricCsr {
    fn apply_transpose(&self, x: &[f64], y: &mut [f64]) {
        // Symmetric: Aᵀx = Ax, and the parallel SpMV is faster than the scatter.
        self.0.apply(x, y)
    }
}

impl SelfAdjoint<f64> for CheckedSymmetricCsr {}

impl ParamVjp<f64> for CheckedSymmetricCsr {
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    fn params(&self, out: &mut [f64]) {
        self.0.params(out)
    }
    fn vjp_params(&self, u: &[f64], x: &[f64], grad: &mut [f64]) {
        self.0.vjp_params(u, x, grad)
    }
    fn vjp_params_block(&self, u: &[f64], x: &[f64], k: usize, grad: &mut [f64]) {
        self.0.vjp_params_block(u, x, k, grad)
    }
    fn apply_and_vjp_params(&self, x: &[f64], y: &mut [f64], u: &[f64], grad: &mut [f64]) {
        self.0.apply_and_vjp_params(x, y, u, grad)
    }
}

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
