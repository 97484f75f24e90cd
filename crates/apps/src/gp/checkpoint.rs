//! Training checkpoints: the whole state of a `gp` training run after an epoch, so that a run
//! stopped at any point (a session that ends, a machine that reboots, Ctrl-C) continues where
//! it stopped and ends **bit for bit** where the uninterrupted run would have ended.
//!
//! The state is small: the unconstrained parameters, Adam's moments and step count, CG's warm
//! start (the last solution `α`, one value per training point) and the history. Every epoch's
//! probes come from [`epoch_seed`](super::train::epoch_seed)`(seed, e)` alone, so nothing
//! else is needed. A checkpoint records a fingerprint of everything the continuation depends
//! on (the training rows, the kernel, the learning rate, the seed and the stochastic settings;
//! not the number of epochs, so a finished run can be extended) and is refused, with a typed
//! error, when it was written for something else.
//!
//! The file is text, one record per line, floating-point values as the hexadecimal bits of
//! their IEEE-754 representation (exact, and no parser ambiguity):
//!
//! ```text
//! gradmat-gp-checkpoint 1
//! fingerprint 9f0c…
//! epochs 12
//! raw 20 <20 values>
//! adam 12 <m: 20 values> <v: 20 values>
//! warm 36584            (or "warm 0" when there is none yet)
//! <one value per line, as many as announced>
//! history
//! <epoch loss std_error seconds matvecs cg_iterations passes>, one line per epoch
//! end
//! ```
//!
//! Reading is bounded: every count is checked against what the run expects (parameters,
//! training points, epochs) before anything is allocated, lines are read with a length limit,
//! and every error names its line. Writing is atomic (a temporary file renamed into place), so
//! a run killed while writing leaves the previous checkpoint.

use super::data::GpData;
use super::train::{Epoch, TrainConfig};
use crate::optim::Adam;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Format version written in the first line.
pub const VERSION: u32 = 1;

/// Longest line accepted (a history line or the `adam` line of a model with many inputs).
const MAX_LINE: usize = 1 << 20;

/// What goes wrong with a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file cannot be read or written.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a checkpoint of this format.
    #[error("checkpoint {path}, line {line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Checkpoints of a distributed run are not supported.
    #[error(
        "--checkpoint is not supported under mpirun (the warm start is spread over the ranks)"
    )]
    Distributed,
    /// The checkpoint belongs to another run (other data, kernel, seed or settings).
    #[error(
        "checkpoint {path} was written by a run with other data or settings (fingerprint \
         {found:016x}, this run {expected:016x}); remove it or pass another --checkpoint path"
    )]
    OtherRun {
        /// The file.
        path: PathBuf,
        /// This run's fingerprint.
        expected: u64,
        /// The file's.
        found: u64,
    },
}

/// The state of a training run after `history.len()` epochs.
#[derive(Debug, Clone)]
pub struct TrainState {
    /// Unconstrained parameters.
    pub raw: Vec<f64>,
    /// The optimiser.
    pub adam: Adam,
    /// CG's warm start (the last solution), if any.
    pub warm: Option<Vec<f64>>,
    /// The epochs done so far.
    pub history: Vec<Epoch>,
}

/// 64-bit FNV-1a, fed with bytes.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn u64(&mut self, x: u64) {
        self.bytes(&x.to_le_bytes());
    }
    fn f64s(&mut self, xs: &[f64]) {
        self.u64(xs.len() as u64);
        for x in xs {
            self.u64(x.to_bits());
        }
    }
}

/// The fingerprint of everything a continuation depends on: the training rows (bits), the
/// kernel, the learning rate, the probe seed, exact or stochastic and the stochastic settings.
/// Not the number of epochs.
pub fn fingerprint(data: &GpData, cfg: &TrainConfig) -> u64 {
    let mut h = Fnv::new();
    h.u64(u64::from(VERSION));
    h.u64(data.d as u64);
    h.f64s(&data.x_train);
    h.f64s(&data.y_train);
    h.bytes(format!("{:?}", cfg.kernel).as_bytes());
    h.u64(cfg.lr.to_bits());
    h.u64(cfg.seed);
    h.u64(u64::from(cfg.exact));
    if !cfg.exact {
        let s = &cfg.stochastic;
        h.u64(s.depth as u64);
        h.u64(s.probes as u64);
        h.u64(s.precond_rank as u64);
        h.u64(s.cg_tol.to_bits());
        h.u64(s.cg_atol.to_bits());
        // Stored or matrix-free products round differently, so the path taken is part of the
        // run (the path, not the memory budget that chose it: the same run continued on a
        // machine with other memory is the same run).
        h.u64(u64::from(s.kernel_cache.dense_for(data.y_train.len())));
    }
    h.0
}

fn hex(x: f64) -> String {
    format!("{:016x}", x.to_bits())
}

/// The checkpoint text of `state` for a run with fingerprint `fp`.
pub fn to_text(state: &TrainState, fp: u64) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "gradmat-gp-checkpoint {VERSION}");
    let _ = writeln!(s, "fingerprint {fp:016x}");
    let _ = writeln!(s, "epochs {}", state.history.len());
    let _ = write!(s, "raw {}", state.raw.len());
    for &x in &state.raw {
        let _ = write!(s, " {}", hex(x));
    }
    let (m, v) = state.adam.moments();
    let _ = write!(s, "\nadam {}", state.adam.steps());
    for &x in m.iter().chain(v) {
        let _ = write!(s, " {}", hex(x));
    }
    let warm = state.warm.as_deref().unwrap_or(&[]);
    let _ = writeln!(s, "\nwarm {}", warm.len());
    for &x in warm {
        let _ = writeln!(s, "{}", hex(x));
    }
    s.push_str("history\n");
    for e in &state.history {
        let _ = writeln!(
            s,
            "{} {} {} {} {} {} {}",
            e.epoch,
            hex(e.loss),
            hex(e.std_error),
            hex(e.seconds),
            e.matvecs,
            e.cg_iterations,
            e.passes
        );
    }
    s.push_str("end\n");
    s
}

/// Writes `state` to `path` atomically.
///
/// # Errors
/// [`CheckpointError::Io`] when the file cannot be written.
pub fn save(path: &Path, state: &TrainState, fp: u64) -> Result<(), CheckpointError> {
    crate::report::write_atomic(path, to_text(state, fp).as_bytes()).map_err(|e| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("{e:#}")),
        }
    })
}

/// Line reader with line numbers and a length limit.
struct Lines<R> {
    inner: R,
    line: usize,
    path: PathBuf,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn err(&self, message: impl Into<String>) -> CheckpointError {
        CheckpointError::Malformed {
            path: self.path.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    /// The next line without its newline; an error at the end of the file.
    fn next(&mut self) -> Result<String, CheckpointError> {
        self.buf.clear();
        self.line += 1;
        let n = (&mut self.inner)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| CheckpointError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(self.err("unexpected end of file (a checkpoint cut short?)"));
        }
        if self.buf.len() > MAX_LINE {
            return Err(self.err(format!("line longer than {MAX_LINE} bytes")));
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        String::from_utf8(std::mem::take(&mut self.buf)).map_err(|_| self.err("not UTF-8 text"))
    }

    /// The next line, which must start with `key`; its remaining fields.
    fn keyed(&mut self, key: &str) -> Result<Vec<String>, CheckpointError> {
        let l = self.next()?;
        let mut f = l.split_ascii_whitespace();
        if f.next() != Some(key) {
            return Err(self.err(format!("expected a line starting with '{key}'")));
        }
        Ok(f.map(str::to_owned).collect())
    }

    fn count(&self, s: Option<&String>, what: &str, max: usize) -> Result<usize, CheckpointError> {
        let n: usize = s
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.err(format!("{what}: not a count")))?;
        if n > max {
            return Err(self.err(format!("{what} {n} exceeds {max}")));
        }
        Ok(n)
    }

    fn float(&self, s: &str) -> Result<f64, CheckpointError> {
        if s.len() != 16 {
            return Err(self.err(format!("'{s}' is not 16 hexadecimal digits")));
        }
        u64::from_str_radix(s, 16)
            .map(f64::from_bits)
            .map_err(|_| self.err(format!("'{s}' is not 16 hexadecimal digits")))
    }

    fn finite(&self, s: &str, what: &str) -> Result<f64, CheckpointError> {
        let x = self.float(s)?;
        if !x.is_finite() {
            return Err(self.err(format!("{what} is not finite")));
        }
        Ok(x)
    }
}

/// What a run expects of its checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// The run's [`fingerprint`].
    pub fingerprint: u64,
    /// Unconstrained parameters.
    pub params: usize,
    /// Training points (the warm start's length).
    pub points: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// The most epochs the checkpoint may hold.
    pub max_epochs: usize,
}

/// Reads the checkpoint at `path` for the run described by `expect`; `Ok(None)` when the
/// file does not exist.
///
/// # Errors
/// [`CheckpointError`]: unreadable, malformed (with its line), or written by another run.
pub fn load(path: &Path, expect: &Expected) -> Result<Option<TrainState>, CheckpointError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse(BufReader::new(file), path, expect).map(Some)
}

/// [`load`] from a reader (`path` names it in errors).
///
/// # Errors
/// As [`load`].
pub fn parse<R: BufRead>(
    reader: R,
    path: &Path,
    expect: &Expected,
) -> Result<TrainState, CheckpointError> {
    let Expected {
        fingerprint: fp,
        params: p,
        points: n,
        lr,
        max_epochs,
    } = *expect;
    let mut r = Lines {
        inner: reader,
        line: 0,
        path: path.to_path_buf(),
        buf: Vec::new(),
    };
    let head = r.next()?;
    if head != format!("gradmat-gp-checkpoint {VERSION}") {
        return Err(r.err(format!(
            "not a gradmat gp checkpoint of version {VERSION} (first line '{}')",
            head.chars().take(60).collect::<String>()
        )));
    }
    let f = r.keyed("fingerprint")?;
    let found = match f.as_slice() {
        [h] if h.len() == 16 => u64::from_str_radix(h, 16).ok(),
        _ => None,
    }
    .ok_or_else(|| r.err("fingerprint: not 16 hexadecimal digits"))?;
    if found != fp {
        return Err(CheckpointError::OtherRun {
            path: path.to_path_buf(),
            expected: fp,
            found,
        });
    }
    let f = r.keyed("epochs")?;
    let epochs = r.count(f.first(), "epochs", max_epochs)?;
    let f = r.keyed("raw")?;
    if r.count(f.first(), "parameters", p)? != p || f.len() != p + 1 {
        return Err(r.err(format!("expected {p} parameters")));
    }
    let raw = f[1..]
        .iter()
        .map(|s| r.finite(s, "a parameter"))
        .collect::<Result<Vec<_>, _>>()?;
    let f = r.keyed("adam")?;
    let steps = r.count(f.first(), "Adam steps", max_epochs)?;
    if steps != epochs || f.len() != 2 * p + 1 {
        return Err(r.err(format!(
            "expected {epochs} Adam steps and {} moment values",
            2 * p
        )));
    }
    let moments = f[1..]
        .iter()
        .map(|s| r.finite(s, "an Adam moment"))
        .collect::<Result<Vec<_>, _>>()?;
    let adam = Adam::restore(lr, steps, moments[..p].to_vec(), moments[p..].to_vec())
        .ok_or_else(|| r.err("Adam state out of range"))?;
    let f = r.keyed("warm")?;
    let w = r.count(f.first(), "warm start length", n)?;
    if w != 0 && w != n {
        return Err(r.err(format!("warm start of {w} values for {n} training points")));
    }
    let mut warm = Vec::with_capacity(w);
    for _ in 0..w {
        let l = r.next()?;
        warm.push(r.finite(l.trim(), "a warm-start value")?);
    }
    if r.next()? != "history" {
        return Err(r.err("expected 'history'"));
    }
    let mut history = Vec::with_capacity(epochs);
    for e in 0..epochs {
        let l = r.next()?;
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        if f.len() != 7 {
            return Err(r.err("a history line has 7 fields"));
        }
        let int = |s: &str, what: &str| -> Result<usize, CheckpointError> {
            s.parse().map_err(|_| r.err(format!("{what}: not a count")))
        };
        if int(f[0], "epoch")? != e + 1 {
            return Err(r.err(format!("expected epoch {}", e + 1)));
        }
        history.push(Epoch {
            epoch: e + 1,
            loss: r.finite(f[1], "a loss")?,
            // NaN with one probe: any bits.
            std_error: r.float(f[2])?,
            seconds: r.finite(f[3], "seconds")?,
            matvecs: int(f[4], "matvecs")?,
            cg_iterations: int(f[5], "CG iterations")?,
            passes: int(f[6], "passes")?,
        });
    }
    if r.next()? != "end" {
        return Err(r.err("expected 'end'"));
    }
    Ok(TrainState {
        raw,
        adam,
        warm: (w > 0).then_some(warm),
        history,
    })
}
