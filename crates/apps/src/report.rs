//! Shared output helpers of the pipelines: a progress display, PNG plots and `summary.json`.
//!
//! * [`Progress`] shows an indicatif bar on a terminal and plain lines otherwise (CI logs,
//!   pipes), so long runs always say where they are. Without the `cli` feature (no indicatif)
//!   it always prints plain lines.
//! * `line_plot`, `scatter_plot` and `heatmaps` (feature `cli`) draw PNG files with plotters;
//!   the labels use DejaVu Sans embedded in the binary (`assets/fonts/`), so no system fonts are
//!   needed.
//! * [`write_json`] writes a `serde_json` value, pretty-printed, creating the directory.
//! * `pde` and `bnn` (feature `cli`) write the outcomes of those pipelines (summary, plots,
//!   table).

use anyhow::Context as _;
#[cfg(feature = "cli")]
use indicatif::{ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use std::path::Path;
#[cfg(feature = "cli")]
use std::time::Duration;
use std::time::Instant;

#[cfg(feature = "cli")]
pub mod bnn;
#[cfg(feature = "cli")]
pub mod pde;
#[cfg(feature = "cli")]
mod plot;
#[cfg(feature = "cli")]
pub use plot::{heatmaps, line_plot, scatter_plot, viridis, Field, Scale, Series};

#[cfg(feature = "cli")]
use indicatif::ProgressBar;

/// Without the `cli` feature there is no indicatif: the bar is an empty type, never built, and
/// [`Progress`] prints plain lines (or nothing when quiet).
#[cfg(not(feature = "cli"))]
enum ProgressBar {}

#[cfg(not(feature = "cli"))]
impl ProgressBar {
    fn set_position(&self, _: u64) {
        match *self {}
    }
    fn set_message(&self, _: String) {
        match *self {}
    }
    fn println(&self, _: &str) {
        match *self {}
    }
    fn finish(&self) {
        match *self {}
    }
}

/// An indicatif bar on stderr (feature `cli`).
#[cfg(feature = "cli")]
fn terminal_bar(label: &str, total: u64) -> Option<ProgressBar> {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    Some(bar)
}

/// No bar without the `cli` feature: plain lines instead.
#[cfg(not(feature = "cli"))]
fn terminal_bar(_label: &str, _total: u64) -> Option<ProgressBar> {
    None
}

/// Progress of a loop of `total` steps: an indicatif bar on a terminal (feature `cli`), otherwise one plain
/// line on stderr per `every` steps (and for the last one). Quiet mode prints nothing.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    every: u64,
    label: String,
    start: Instant,
    quiet: bool,
    terminal: bool,
}

impl Progress {
    /// Starts a progress display for `total` steps labelled `label` (e.g. `"epoch"`).
    ///
    /// On a terminal (stderr) this is a bar; otherwise plain lines, about 20 per run.
    pub fn new(label: &str, total: u64) -> Self {
        Self::with_mode(label, total, std::io::stderr().is_terminal(), false)
    }

    /// A display that prints nothing (library use, tests).
    pub fn quiet(label: &str, total: u64) -> Self {
        Self::with_mode(label, total, false, true)
    }

    fn with_mode(label: &str, total: u64, terminal: bool, quiet: bool) -> Self {
        let bar = if terminal && !quiet {
            terminal_bar(label, total)
        } else {
            None
        };
        Progress {
            bar,
            total,
            every: (total / 20).max(1),
            label: label.to_string(),
            start: Instant::now(),
            quiet,
            terminal,
        }
    }

    /// A display for a stage of `total` steps in the same mode as this one (bar, plain lines or
    /// quiet): pipelines take one `&Progress` and open one child per loop.
    pub fn child(&self, label: &str, total: u64) -> Self {
        Self::with_mode(label, total, self.terminal, self.quiet)
    }

    /// Whether this display prints nothing.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Records that step `pos` (1-based) finished, with a short message (e.g. the loss).
    pub fn step(&self, pos: u64, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.set_message(msg.to_string());
        } else if !self.quiet && (pos.is_multiple_of(self.every) || pos == self.total || pos == 1) {
            eprintln!(
                "{} {pos}/{} [{:.1} s] {msg}",
                self.label,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Prints a line without breaking the bar.
    pub fn println(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.println(msg);
        } else if !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// Ends the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Writes `value` as pretty-printed JSON to `path`, creating its directory.
pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    let text = serde_json::to_string_pretty(value)?;
    write_atomic(path, (text + "\n").as_bytes())
}

/// Writes `bytes` to `path` atomically: to a temporary file in the same directory, flushed to
/// disk, then renamed over `path`, so a reader sees either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
