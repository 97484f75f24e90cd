//! The `gradmat` command line: argument parsing, the two subcommands and their output.
//!
//! [`main_with_args`] is the whole program: it parses the arguments, runs one subcommand and
//! returns the exit status after printing one JSON object to stdout (status 0) or one line
//! `gradmat: <message>` to stderr (status 2). See the binary's documentation for the contract.
//!
//! Without the `cli` feature (no clap) only the file I/O ([`io`]) and the operator and memory
//! helpers ([`ops`]) are built: the pipelines and the fuzz targets use them.

#[cfg(feature = "cli")]
pub mod bnn;
#[cfg(feature = "cli")]
pub mod cluster;
#[cfg(feature = "cli")]
pub mod compute;
#[cfg(feature = "cli")]
pub mod gp;
pub mod io;
#[cfg(feature = "cli")]
pub mod logdet;
pub mod ops;
#[cfg(feature = "cli")]
pub mod pde;
#[cfg(feature = "cli")]
pub mod quadform;

#[cfg(feature = "cli")]
use clap::{Parser, Subcommand, ValueEnum};
#[cfg(feature = "cli")]
use std::io::Write as _;
#[cfg(feature = "cli")]
use std::path::PathBuf;

/// Exit status for every error (bad input, usage errors, failed computations).
pub const EXIT_ERROR: i32 = 2;

#[cfg(feature = "cli")]
/// Exact gradients of functions of large sparse matrices via Lanczos/Arnoldi adjoints.
#[derive(Debug, Parser)]
#[command(
    name = "gradmat",
    version,
    about = "Exact gradients of functions of large sparse matrices (Lanczos/Arnoldi adjoints)",
    long_about = None,
    after_help = "Output: one JSON object on stdout. Errors: one line on stderr, exit status 2."
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

#[cfg(feature = "cli")]
/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Quadratic form vᵀf(A)v by a Krylov method, with gradients in A's entries and v.
    Quadform(QuadformArgs),
    /// Stochastic Lanczos quadrature estimate of log det(A + σI), with gradients in A's entries.
    Logdet(LogdetArgs),
    /// Gaussian-process hyperparameter fitting (CG + SLQ with exact gradients, or exact).
    Gp(GpArgs),
    /// Learn a wave equation's coefficient field through differentiable exp(A)v (Arnoldi
    /// adjoint) or Runge–Kutta baselines; writes DIR/summary.json and PNG plots.
    Pde(pde::PdeArgs),
    /// Laplace calibration of an MNIST MLP: prior precision by SLQ log det with adjoint gradients.
    Bnn(bnn::BnnArgs),
}

#[cfg(feature = "cli")]
/// Kernel of `gradmat gp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpKernel {
    /// Matérn ν = 3/2 with ARD lengthscales.
    Matern32,
    /// Matérn ν = 1/2.
    Matern12,
    /// Matérn ν = 5/2.
    Matern52,
    /// Squared exponential.
    Rbf,
}

#[cfg(feature = "cli")]
/// Arguments of `gradmat gp`.
#[derive(Debug, clap::Args)]
pub struct GpArgs {
    /// Dataset: `diamonds` (bundled, the default), a UCI name (elevators, kin40k, protein,
    /// keggdirected, … read from $GRADMAT_UCI_DIR, default ../shared/data/uci), or a path to a
    /// numeric CSV file (optionally gzipped; header optional).
    #[arg(long, value_name = "PATH|NAME", default_value = "diamonds")]
    pub data: String,
    /// Target column: a header name or a 1-based column number [default: the last column].
    #[arg(long, value_name = "COL")]
    pub target: Option<String>,
    /// Kernel (ARD lengthscales).
    #[arg(long, value_enum, default_value = "matern32")]
    pub kernel: GpKernel,
    /// Training epochs (Adam steps on the full training set).
    #[arg(long, value_name = "N", default_value_t = 75)]
    pub epochs: usize,
    /// Adam learning rate.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.05,
        allow_negative_numbers = true
    )]
    pub lr: f64,
    /// Settings preset: `default` (depth 30, 10 probes, rank 15, relative CG tolerance 1e-4) or
    /// `paper` (the paper's Table 3 settings: depth 10, 10 probes, rank 15, CG absolute
    /// tolerance 1 — the same work as GPyTorch's defaults). Explicit flags override it.
    #[arg(long, value_enum, default_value = "default")]
    pub preset: GpPreset,
    /// Lanczos depth of the log-determinant estimate [default: 30; paper preset: 10] (depth 10
    /// biases the loss upwards by ~0.04 per point on diamonds; 30 keeps the bias near one
    /// standard error).
    #[arg(long, value_name = "K")]
    pub depth: Option<usize>,
    /// Probe vectors of the log-determinant estimate, fresh every epoch [default: 10].
    #[arg(long, value_name = "L")]
    pub probes: Option<usize>,
    /// Rank of the pivoted partial Cholesky preconditioner of CG (0: none) [default: 15].
    #[arg(long, value_name = "R")]
    pub precond_rank: Option<usize>,
    /// Relative residual tolerance of CG [default: 1e-4; paper preset: 0].
    #[arg(long, value_name = "TOL")]
    pub cg_tol: Option<f64>,
    /// Absolute residual tolerance of CG, `‖r‖ ≤ max(atol, tol·‖b‖)` [default: 0; paper preset:
    /// 1].
    #[arg(long, value_name = "TOL")]
    pub cg_atol: Option<f64>,
    /// Kernel products: `auto` stores the kernel matrix for the products of an epoch when it
    /// fits --memory-budget and n_train ≤ 8,192 (where that is faster than the matrix-free
    /// engine), `dense` always stores it, `off` stays matrix-free.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernel_cache: GpCache,
    /// Memory the stored kernel matrix may use, in GB [default: a quarter of the machine's].
    /// When given, it also bounds the end-of-run dense evaluation (one n×n matrix for the
    /// exact loss and predictions; above it, predictions by CG and no exact loss).
    #[arg(long, value_name = "GB")]
    pub memory_budget: Option<f64>,
    /// Use N rows drawn at random (0: all) [default: 2500 for the bundled diamonds, all
    /// otherwise].
    #[arg(long, value_name = "N")]
    pub subsample: Option<usize>,
    /// Seed of the subsample, the 80/20 split and the probes.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Drop input columns that are constant on the training split (otherwise an error).
    #[arg(long)]
    pub drop_constant: bool,
    /// Exact mode: dense Cholesky loss and gradient (two dense n×n matrices must fit 80 % of the
    /// available memory).
    #[arg(long)]
    pub exact: bool,
    /// Output directory (summary.json, loss.png, predictions.png).
    #[arg(long, value_name = "DIR", default_value = "gradmat-out/gp")]
    pub out: PathBuf,
    /// Checkpoint file: the training state (parameters, Adam, CG's warm start, history) is
    /// written to FILE atomically after every epoch, and when FILE exists at the start the run
    /// continues from it — ending bit for bit where an uninterrupted run ends. A checkpoint of
    /// other data or settings is refused (--epochs may grow). Not under mpirun.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Also write the prepared split to DIR/train.csv and DIR/test.csv (standardised inputs,
    /// then the scaled target; no header; `%.17e`), so that another library can be run on
    /// exactly the same rows (`bench/gp_peer.py`).
    #[arg(long, value_name = "DIR")]
    pub save_split: Option<PathBuf>,
    /// No progress output on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[cfg(feature = "cli")]
/// Kernel-product modes of `gp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpCache {
    /// Stored when it fits the budget and pays off.
    Auto,
    /// Always stored.
    Dense,
    /// Always matrix-free.
    Off,
}

#[cfg(feature = "cli")]
/// Settings presets of `gp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpPreset {
    /// gradmat's defaults (depth 30).
    Default,
    /// The paper's Table 3 settings (depth 10, CG absolute tolerance 1).
    Paper,
}

#[cfg(feature = "cli")]
/// The matrix function of `quadform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Function {
    /// Natural logarithm (needs a positive spectrum).
    Log,
    /// Exponential.
    Exp,
    /// Square root (needs a positive spectrum).
    Sqrt,
    /// Inverse square root (needs a positive spectrum).
    InvSqrt,
    /// Inverse.
    Inv,
}

#[cfg(feature = "cli")]
/// The Krylov method of `quadform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Lanczos (symmetric matrices only).
    Lanczos,
    /// Arnoldi (any square matrix for exp; other functions need a symmetric matrix).
    Arnoldi,
}

#[cfg(feature = "cli")]
/// Reorthogonalisation of the Krylov basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Reorth {
    /// Plain recursion.
    None,
    /// Full reorthogonalisation against the whole basis at every step.
    Full,
}

#[cfg(feature = "cli")]
/// Probe distribution of `logdet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeKind {
    /// Independent ±1 entries.
    Rademacher,
    /// Independent standard normal entries.
    Gaussian,
}

/// The depth of `quadform` and `logdet` when `--depth` is not given (or the dimension `N`
/// when that is smaller).
pub const DEFAULT_DEPTH: usize = 30;

#[cfg(feature = "cli")]
/// Arguments of `gradmat quadform`.
#[derive(Debug, clap::Args)]
pub struct QuadformArgs {
    /// Matrix Market file (coordinate or array; real, integer or pattern; general or symmetric;
    /// optionally gzipped).
    #[arg(long, value_name = "A.mtx[.gz]")]
    pub matrix: PathBuf,
    /// The vector v: a file with one number per line (blank lines and lines starting with '#'
    /// are ignored), or `ones` (all ones), or `random:SEED` (independent standard normal
    /// entries from matfun's seeded generator, reproducible for a given SEED and N). A file
    /// named `ones` is given as `./ones`.
    #[arg(long, value_name = "v.txt|ones|random:SEED")]
    pub vector: PathBuf,
    /// The function f.
    #[arg(long, value_enum)]
    pub function: Function,
    /// Krylov method.
    #[arg(long, value_enum, default_value = "lanczos")]
    pub method: Method,
    /// Krylov depth K (number of matrix-vector products), 1 ≤ K ≤ N [default: 30, or N when
    /// smaller].
    #[arg(long, value_name = "K")]
    pub depth: Option<usize>,
    /// Compute vᵀf(A + σI)v instead (the gradient file holds the A part).
    #[arg(
        long,
        value_name = "SIGMA",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub shift: f64,
    /// Reorthogonalisation of the Krylov basis [default: full].
    #[arg(
        long,
        value_enum,
        value_name = "none|full",
        default_value = "full",
        hide_default_value = true
    )]
    pub reorthogonalize: Reorth,
    /// Turn off the re-projection step of the Arnoldi adjoint (also used by Lanczos with full
    /// reorthogonalisation); by default the adjoint library decides (currently: on).
    #[arg(long)]
    pub no_projection: bool,
    /// Write DIR/d_matrix.mtx (∂value/∂ each stored entry, same header and entry order as the
    /// input) and DIR/d_vector.txt (∂value/∂v, one value per line in %.17e form); DIR is created
    /// if missing.
    #[arg(long, value_name = "DIR")]
    pub grad_dir: Option<PathBuf>,
    /// No warnings on stderr (errors are still reported).
    #[arg(long)]
    pub quiet: bool,
    /// Under mpirun: row blocks of the distributed matrix — `aligned` (multiples of 16,384
    /// rows: the serial run's bits) or `balanced` (equal rows, agreement to rounding).
    #[arg(long, value_enum, default_value = "aligned")]
    pub partition: cluster::Partition,
}

#[cfg(feature = "cli")]
/// Arguments of `gradmat logdet`.
#[derive(Debug, clap::Args)]
pub struct LogdetArgs {
    /// Symmetric positive-definite matrix in Matrix Market form (a `general` file must be
    /// symmetric; optionally gzipped).
    #[arg(long, value_name = "A.mtx[.gz]")]
    pub matrix: PathBuf,
    /// Number of probe vectors L ≥ 1 (std_error is null for L = 1). Probes come from matfun's
    /// seeded generator: probe ℓ depends only on (seed, ℓ, N).
    #[arg(long, value_name = "L", default_value_t = 10)]
    pub probes: usize,
    /// Lanczos depth K per probe (fully reorthogonalised), 1 ≤ K ≤ N [default: 30, or N when
    /// smaller].
    #[arg(long, value_name = "K")]
    pub depth: Option<usize>,
    /// Seed of the probe generator.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Probe distribution [default: rademacher].
    #[arg(
        long,
        value_enum,
        value_name = "rademacher|gaussian",
        default_value = "rademacher",
        hide_default_value = true
    )]
    pub probe: ProbeKind,
    /// Estimate log det(A + σI) instead.
    #[arg(
        long,
        value_name = "SIGMA",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub shift: f64,
    /// Write DIR/d_matrix.mtx: ∂value/∂ each stored entry of A (same header and entry order as
    /// the input); DIR is created if missing.
    #[arg(long, value_name = "DIR")]
    pub grad_dir: Option<PathBuf>,
    /// No warnings on stderr (errors are still reported).
    #[arg(long)]
    pub quiet: bool,
    /// Under mpirun: split the matrix's `rows` over the ranks (read once by rank 0 and
    /// scattered), or the `probes` (every rank reads the whole matrix).
    #[arg(long, value_enum, default_value = "rows")]
    pub distribute: cluster::Distribute,
    /// Under mpirun with `--distribute rows`: `aligned` row blocks (multiples of 16,384 rows:
    /// the serial run's bits) or `balanced` (equal rows, agreement to rounding).
    #[arg(long, value_enum, default_value = "aligned")]
    pub partition: cluster::Partition,
}

/// One line: newlines and tabs of `s` replaced by spaces.
pub fn one_line(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    t.trim().to_string()
}

/// The subcommands, for the usage hints.
#[cfg(feature = "cli")]
const SUBCOMMANDS: [&str; 5] = ["quadform", "logdet", "gp", "pde", "bnn"];

/// Whether standard output is open. With it closed (`>&-`) Rust's `stdout()` silently discards
/// what is written, and files opened later could even take its descriptor; the result would be
/// lost with exit status 0.
#[cfg(feature = "cli")]
fn stdout_is_open() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        if std::io::stdout().as_fd().try_clone_to_owned().is_err() {
            return false;
        }
    }
    // Rust's runtime reopens a descriptor the parent closed (`>&-`) on /dev/null before
    // `main` (Linux, macOS), which cannot be told apart from a deliberate `> /dev/null`
    // (Python's subprocess.DEVNULL opens it read-write, as the runtime does): such a run
    // writes into /dev/null and exits 0. A failing write (`> /dev/full`, a closed pipe) exits
    // 2 with "cannot write to standard output".
    true
}

/// The one-line message of an error and its causes: each cause once (a cause whose text the
/// message already contains — an error whose `Display` includes its source — is not repeated).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if msg.is_empty() {
            msg = c;
        } else if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    one_line(&msg)
}

#[cfg(feature = "cli")]
/// Runs the command on `args` (including the program name) and returns the exit status.
pub fn main_with_args<I, S>(args: I) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    if !stdout_is_open() {
        eprintln!("gradmat: standard output is closed: the result could not be delivered");
        return EXIT_ERROR;
    }
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    // The subcommand named on the line (for "see gradmat <subcommand> --help").
    let sub = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| SUBCOMMANDS.contains(a));
    let help = match sub {
        Some(s) => format!("see gradmat {s} --help"),
        None => "see gradmat --help".to_string(),
    };
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    // Normal help/version output, exit status 0.
                    if crate::cluster::is_root() {
                        let _ = e.print();
                    }
                    0
                }
                // Under mpirun every rank parses the same arguments: rank 0 alone reports.
                _ if !crate::cluster::is_root() => EXIT_ERROR,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                | ErrorKind::MissingSubcommand => {
                    eprintln!(
                        "gradmat: a subcommand is required: quadform, logdet, gp, pde or bnn (see gradmat --help)"
                    );
                    EXIT_ERROR
                }
                _ => {
                    // clap's message is a first paragraph (e.g. "error: the following
                    // required arguments were not provided:" and the indented arguments),
                    // then tips and the usage: keep the first paragraph, joined into one line.
                    let text = e.render().to_string();
                    let para: Vec<&str> = text
                        .lines()
                        .map(str::trim)
                        .skip_while(|l| l.is_empty())
                        .take_while(|l| !l.is_empty())
                        .collect();
                    let first = para.join(" ");
                    let first = first.strip_prefix("error: ").unwrap_or(&first);
                    let first = if first.is_empty() {
                        "invalid arguments"
                    } else {
                        first
                    };
                    eprintln!("gradmat: {} ({help})", one_line(first));
                    EXIT_ERROR
                }
            };
        }
    };
    let world = crate::cluster::world();
    let result = match (&cli.command, world) {
        (Command::Quadform(a), Some(c)) => cluster::quadform(a, c),
        (Command::Logdet(a), Some(c)) => cluster::logdet(a, c),
        (Command::Pde(_) | Command::Bnn(_), Some(c)) if c.size() > 1 => Err(anyhow::anyhow!(
            "the pde and bnn pipelines do not run distributed: run them without mpirun \
             (quadform, logdet and gp do)"
        )),
        (Command::Quadform(a), _) => quadform::run(a),
        (Command::Logdet(a), _) => logdet::run(a),
        (Command::Gp(a), _) => gp::run(a),
        (Command::Pde(a), _) => pde::run(a),
        (Command::Bnn(a), _) => bnn::run(a),
    };
    // Under mpirun: every rank learns whether all succeeded; rank 0 alone prints.
    let result = match world {
        Some(c) => cluster::agree(&**c, result),
        None => result,
    };
    if !crate::cluster::is_root() {
        return if result.is_ok() { 0 } else { EXIT_ERROR };
    }
    match result {
        Ok(json) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{json}").and_then(|()| out.flush()).is_err() {
                eprintln!("gradmat: cannot write to standard output");
                return EXIT_ERROR;
            }
            0
        }
        Err(e) => {
            eprintln!("gradmat: {}", error_line(&e));
            EXIT_ERROR
        }
    }
}

/// Builds the output JSON object from `(key, value)` pairs whose values are already JSON.
pub fn json_object(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// The depth of a run on an `n×n` matrix: `--depth` when given (checked `1 ≤ K ≤ N`), else
/// [`DEFAULT_DEPTH`] or `N` when that is smaller.
pub fn depth_or_default(
    depth: Option<usize>,
    n: usize,
    matrix: &std::path::Path,
) -> anyhow::Result<usize> {
    match depth {
        Some(k) => check_depth(k, n, matrix).map(|()| k),
        None => Ok(DEFAULT_DEPTH.min(n)),
    }
}

/// Checks `1 ≤ k ≤ n` for `--depth`.
pub fn check_depth(k: usize, n: usize, matrix: &std::path::Path) -> anyhow::Result<()> {
    if k == 0 || k > n {
        anyhow::bail!(
            "--depth {k} is out of range: it must be between 1 and the dimension {n} of {}",
            matrix.display()
        );
    }
    Ok(())
}
