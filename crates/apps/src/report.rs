//! Shared output helpers of the pipelines: a progress display, PNG plots and `summary.json`.
//!
//! * [`Progress`] shows an indicatif bar on a terminal and plain lines otherwise (CI logs,
//!   pipes), so long runs always say where they are. Without the `cli` feature (no indicatif)
//!   it always prints plain lines.
//! * `line_plot`, `scatter_plot` and `heatmaps` (feature `cli`) draw PNG files with plotters;
//!   the labels use DejaVu Sans embedded in the binary (`assets/fonts/`), so no system fonts are
//!   needed.
//! * [`write_json`] writes a `serde_json` value, pretty-printed, creating the directory;
//!   [`Outputs`] writes a set of files atomically.
//! * `gp`, `pde` and `bnn` (feature `cli`) write the outcomes of those pipelines (summary,
//!   plots, table).

use anyhow::Context as _;
#[cfg(feature = "cli")]
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
#[cfg(feature = "cli")]
use std::time::Duration;
use std::time::Instant;

#[cfg(feature = "cli")]
pub mod bnn;
#[cfg(feature = "cli")]
pub mod gp;
#[cfg(feature = "cli")]
pub mod pde;
#[cfg(feature = "cli")]
mod plot;
#[cfg(feature = "cli")]
pub use plot::{
    axis_labeller, heatmaps, line_plot, scatter_plot, viridis, Field, Scale, Series, Style,
};

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
    fn finish_and_clear(&self) {
        match *self {}
    }
}

/// Progress of a loop of `total` steps: an indicatif bar on a terminal, otherwise one plain
/// line on stderr per `every` steps (and for the last one). Quiet mode prints nothing.
///
/// On a terminal the bar is cleared when the loop finishes ([`finish`](Self::finish)) or the
/// display is dropped (an error ended the loop), so lines printed afterwards — the closing
/// summary, an error, the JSON on stdout — start on a line of their own and the bar is not
/// redrawn under them.
pub struct Progress {
    bar: Option<ProgressBar>,
    finished: AtomicBool,
    total: u64,
    every: u64,
    label: String,
    start: Instant,
    quiet: bool,
    terminal: bool,
    /// Where lines go once the bar is finished (stderr; a test's virtual terminal).
    lines: Box<dyn Fn(&str) + Send + Sync>,
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

    #[cfg(feature = "cli")]
    fn with_mode(label: &str, total: u64, terminal: bool, quiet: bool) -> Self {
        let target = (terminal && !quiet).then(ProgressDrawTarget::stderr);
        Self::with_target(label, total, target, quiet)
    }

    /// Without the `cli` feature: plain lines (or nothing when `quiet`), never a bar.
    #[cfg(not(feature = "cli"))]
    fn with_mode(label: &str, total: u64, _terminal: bool, quiet: bool) -> Self {
        Self::from_parts(label, total, None, false, quiet)
    }

    /// A display drawing its bar to `target` (`None`: plain lines, or nothing when `quiet`).
    #[cfg(feature = "cli")]
    fn with_target(
        label: &str,
        total: u64,
        target: Option<ProgressDrawTarget>,
        quiet: bool,
    ) -> Self {
        let terminal = target.is_some();
        let bar = if let Some(target) = target {
            let bar = ProgressBar::with_draw_target(Some(total), target);
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(250));
            Some(bar)
        } else {
            None
        };
        Self::from_parts(label, total, bar, terminal, quiet)
    }

    fn from_parts(
        label: &str,
        total: u64,
        bar: Option<ProgressBar>,
        terminal: bool,
        quiet: bool,
    ) -> Self {
        Progress {
            bar,
            finished: AtomicBool::new(false),
            total,
            every: (total / 20).max(1),
            label: label.to_string(),
            start: Instant::now(),
            quiet,
            terminal,
            lines: Box::new(|m: &str| eprintln!("{m}")),
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
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
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

    /// Prints a line above the bar (after [`finish`](Self::finish): where the bar was).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            // Above a live bar; once the bar is finished and cleared, a plain line (indicatif
            // pads a line printed through a finished bar to the terminal's width and leaves the
            // cursor at its end, where stdout's JSON would follow).
            Some(bar) if !self.finished.load(Ordering::Relaxed) => bar.println(msg),
            _ if !self.quiet => (self.lines)(msg),
            _ => {}
        }
    }

    /// Ends the display: the bar is cleared (the loop's figures are in the closing lines the
    /// caller prints); later [`step`](Self::step) calls are ignored.
    pub fn finish(&self) {
        if !self.finished.swap(true, Ordering::Relaxed) {
            if let Some(bar) = &self.bar {
                bar.finish_and_clear();
            }
        }
    }
}

impl Drop for Progress {
    /// Clears an unfinished bar (a loop ended by an error), so that the error line printed
    /// next is not glued to it.
    fn drop(&mut self) {
        self.finish();
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

/// Creates `dir` (and its parents) and checks that files can be created in it, so that an
/// unwritable output directory is reported before a long run, not after it.
pub fn prepare_output_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let probe = dir.join(format!(".gradmat-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| format!("cannot write into {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
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

/// Name of the lock file in an output directory ([`Outputs::commit`]): runs writing into the
/// same directory move their files into place one run at a time.
pub const LOCK_FILE: &str = ".gradmat.lock";

/// The output files of one run in one directory, written as a set: each file is written to a
/// temporary file in the directory and flushed to disk ([`write`](Self::write),
/// [`render`](Self::render)), and [`commit`](Self::commit) renames them all into place while
/// holding the directory's lock ([`LOCK_FILE`]). So a failed run leaves the previous files as
/// they were (nothing is renamed until every file was written), two runs into the same
/// directory leave the complete set of one of them, and a reader never sees a half-written
/// file. Temporary files not committed are removed when the set is dropped.
#[derive(Debug)]
pub struct Outputs {
    dir: PathBuf,
    /// `(temporary, target)` pairs, in the order they were staged.
    staged: Vec<(PathBuf, PathBuf)>,
}

/// Distinguishes the temporary files of one process.
static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Outputs {
    /// A set of files in `dir`, which is created and checked to be writable first
    /// ([`prepare_output_dir`]).
    ///
    /// # Errors
    /// The directory cannot be created or written into.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        prepare_output_dir(dir)?;
        Ok(Outputs {
            dir: dir.to_path_buf(),
            staged: Vec::new(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The target `dir/name`, refused if it is a directory (it could not be replaced).
    fn target(&self, name: &str) -> anyhow::Result<PathBuf> {
        let target = self.dir.join(name);
        if target.is_dir() {
            anyhow::bail!("{}: cannot write: it is a directory", target.display());
        }
        Ok(target)
    }

    /// A fresh temporary path in the directory whose name ends in `name` (so that writers that
    /// choose the format by the extension, like the PNG encoder, see the right one).
    fn temp_path(&self, name: &str) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!(".gradmat-tmp-{}-{n}-{name}", std::process::id()))
    }

    /// Writes `bytes` as the file `name` of the set (to a temporary file, flushed to disk).
    ///
    /// # Errors
    /// `name` is a directory, or the temporary file cannot be written.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.render(name, |tmp| {
            std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))
        })
    }

    /// Writes `value` as pretty-printed JSON to the file `name` of the set.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_json(&mut self, name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.write(name, (text + "\n").as_bytes())
    }

    /// Has `render` write the file `name` of the set at the temporary path it is given (a plot),
    /// then flushes it to disk.
    ///
    /// # Errors
    /// `name` is a directory, or `render` fails (its error, naming `name`).
    pub fn render(
        &mut self,
        name: &str,
        render: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let target = self.target(name)?;
        let tmp = self.temp_path(name);
        let result = render(&tmp).and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot write {}", tmp.display()))
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            anyhow::bail!("{}: cannot write: {}", target.display(), e.root_cause());
        }
        self.staged.push((tmp, target));
        Ok(())
    }

    /// Moves every file of the set into place, holding the directory's lock ([`LOCK_FILE`];
    /// where the file system has no locks, without it). If a rename fails, the files already
    /// moved are put back as they were (the previous versions are kept as hard links until all
    /// renames succeeded).
    ///
    /// # Errors
    /// A rename fails.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let staged = std::mem::take(&mut self.staged);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(LOCK_FILE));
        if let Ok(f) = &lock {
            // Blocks while another run moves its files; released when `f` is closed.
            let _ = f.lock();
        }
        let pid = std::process::id();
        let mut backups: Vec<Option<PathBuf>> = Vec::with_capacity(staged.len());
        let mut failure = None;
        for (i, (tmp, target)) in staged.iter().enumerate() {
            let backup = self.dir.join(format!(".gradmat-bak-{pid}-{i}"));
            let kept = target.is_file() && std::fs::hard_link(target, &backup).is_ok();
            backups.push(kept.then_some(backup));
            if let Err(e) = std::fs::rename(tmp, target) {
                failure = Some((i, e));
                break;
            }
        }
        if let Some((failed, e)) = failure {
            // Undo: the committed targets get their previous version back (or disappear).
            for (j, (_, target)) in staged.iter().enumerate().take(failed) {
                match &backups[j] {
                    Some(b) => {
                        let _ = std::fs::rename(b, target);
                    }
                    None => {
                        let _ = std::fs::remove_file(target);
                    }
                }
            }
            for (tmp, _) in &staged[failed..] {
                let _ = std::fs::remove_file(tmp);
            }
            for b in backups.iter().flatten() {
                let _ = std::fs::remove_file(b);
            }
            anyhow::bail!("{}: cannot write: {e}", staged[failed].1.display());
        }
        for b in backups.iter().flatten() {
            let _ = std::fs::remove_file(b);
        }
        drop(lock);
        Ok(())
    }
}

impl Drop for Outputs {
    /// Removes the temporary files of a set that was not committed.
    fn drop(&mut self) {
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::plot::log_labeller;
    use super::*;
    use plotters::prelude::RGBColor;

    #[test]
    fn plots_write_png_files() {
        let dir = std::env::temp_dir().join(format!("gradmat-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Series::line(
            "loss",
            (1..20).map(|i| (i as f64, 1.0 / i as f64)).collect(),
        );
        line_plot(
            &dir.join("a.png"),
            "t",
            "x",
            "y",
            std::slice::from_ref(&s),
            Scale::Linear,
            Scale::Log,
        )
        .unwrap();
        scatter_plot(&dir.join("b.png"), "t", "x", "y", &[(0.0, 0.1), (1.0, 0.9)]).unwrap();
        let v: Vec<f64> = (0..12).map(f64::from).collect();
        let f = Field {
            title: "f".into(),
            rows: 3,
            cols: 4,
            values: &v,
        };
        heatmaps(&dir.join("c.png"), "t", &[f.clone(), f]).unwrap();
        for name in ["a.png", "b.png", "c.png"] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{name} is not a PNG");
        }
        assert!(line_plot(
            &dir.join("d.png"),
            "t",
            "x",
            "y",
            &[],
            Scale::Linear,
            Scale::Linear
        )
        .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Log-axis labels: 1-2-5 ticks over a decade or more, compact numbers, none for linear.
    #[test]
    fn log_axis_labels() {
        assert!(log_labeller(Scale::Linear, (1.0, 100.0)).is_none());
        let f = log_labeller(Scale::Log, (1e-9, 1e-2)).unwrap();
        let l: Vec<String> = [1e-8, 2e-8, 3e-8, 5e-3, 9e-3, 0.01]
            .iter()
            .map(&f)
            .collect();
        assert_eq!(l, ["1e-8", "2e-8", "", "0.005", "", "0.01"]);
        let g = log_labeller(Scale::Log, (10.0, 300.0)).unwrap();
        assert_eq!([g(&90.0), g(&100.0), g(&200.0)], ["", "100", "200"]);
        // Under a decade every tick is labelled.
        let h = log_labeller(Scale::Log, (0.3, 0.45)).unwrap();
        assert_eq!(h(&0.35), "0.35");
    }

    /// A terminal screen for indicatif's `TermLike`: lines of text and a cursor.
    #[derive(Debug, Default)]
    struct Screen {
        lines: Vec<String>,
        row: usize,
        col: usize,
    }

    #[derive(Debug, Clone, Default)]
    struct VirtualTerm(std::sync::Arc<std::sync::Mutex<Screen>>);

    impl VirtualTerm {
        fn screen(&self) -> std::sync::MutexGuard<'_, Screen> {
            self.0.lock().unwrap()
        }
        fn put(&self, s: &str) {
            let mut sc = self.screen();
            let row = sc.row;
            while sc.lines.len() <= row {
                sc.lines.push(String::new());
            }
            let col = sc.col;
            let mut chars: Vec<char> = sc.lines[row].chars().collect();
            chars.resize(chars.len().max(col), ' ');
            chars.truncate(col);
            chars.extend(s.chars());
            sc.col = chars.len();
            sc.lines[row] = chars.into_iter().collect();
        }
    }

    impl indicatif::TermLike for VirtualTerm {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            let mut sc = self.screen();
            sc.row = sc.row.saturating_sub(n);
            Ok(())
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.screen().row += n;
            Ok(())
        }
        fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
            self.screen().col += n;
            Ok(())
        }
        fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
            let mut sc = self.screen();
            sc.col = sc.col.saturating_sub(n);
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.put(s);
            let mut sc = self.screen();
            sc.row += 1;
            sc.col = 0;
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.put(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            let mut sc = self.screen();
            let row = sc.row;
            if let Some(l) = sc.lines.get_mut(row) {
                l.clear();
            }
            sc.col = 0;
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn bar_on(term: &VirtualTerm, total: u64) -> Progress {
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(term.clone()), 200);
        let mut p = Progress::with_target("epoch", total, Some(target), false);
        let t = term.clone();
        p.lines = Box::new(move |m: &str| {
            let _ = indicatif::TermLike::write_line(&t, m);
        });
        p
    }

    /// On a terminal the final line is not followed by a redrawn bar, and the cursor is at the
    /// start of a fresh line (where stdout's JSON goes); a bar ended by an error is cleared.
    #[test]
    fn terminal_bar_is_cleared_before_the_closing_lines() {
        let term = VirtualTerm::default();
        let p = bar_on(&term, 3);
        for e in 1..=3 {
            p.step(e, "loss 1.0");
            std::thread::sleep(Duration::from_millis(10));
        }
        p.finish();
        p.println("final loss 0.5");
        drop(p);
        let sc = term.screen();
        let text: Vec<&str> = sc
            .lines
            .iter()
            .map(|l| l.trim_end())
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(text.last(), Some(&"final loss 0.5"), "{:?}", sc.lines);
        assert!(!text.iter().any(|l| l.contains("3/3")), "{:?}", sc.lines);
        assert_eq!(
            sc.col, 0,
            "cursor not at the start of a line: {:?}",
            sc.lines
        );
        drop(sc);
        // An error ends the loop: dropping the display clears the bar.
        let term = VirtualTerm::default();
        let p = bar_on(&term, 10);
        p.step(4, "loss 2.0");
        std::thread::sleep(Duration::from_millis(10));
        p.step(5, "loss 2.0");
        drop(p);
        let sc = term.screen();
        assert!(
            sc.lines.iter().all(|l| l.trim().is_empty()),
            "{:?}",
            sc.lines
        );
        assert_eq!(sc.col, 0);
    }

    #[test]
    fn linear_axis_labels_have_no_negative_zero() {
        let f = axis_labeller(Scale::Linear, (-1.0, 1.0));
        assert_eq!(f(&-0.0), "0");
        assert_eq!(f(&-1e-17), "0");
        assert_eq!(f(&0.4), "0.4");
        assert_eq!(f(&-0.6), "-0.6");
        let g = axis_labeller(Scale::Linear, (-3e-5, 2e-5));
        assert_eq!(g(&-0.0), "0.00e0");
        assert_eq!(g(&1e-5), "1.00e-5");
        let h = axis_labeller(Scale::Linear, (0.0, 250.0));
        assert_eq!(h(&100.0), "100");
    }

    #[test]
    fn integer_axis_labels_only_integers() {
        let f = axis_labeller(Scale::Integer, (0.9, 3.1));
        let l: Vec<String> = [1.0, 1.5, 2.0, 2.2, 3.0].iter().map(&f).collect();
        assert_eq!(l, ["1", "", "2", "", "3"]);
        assert_eq!(f(&-0.0), "0");
    }

    #[test]
    fn points_series_draw_a_png() {
        let dir = std::env::temp_dir().join(format!("gradmat-points-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let series = [
            Series::line("loss", vec![(1.0, 2.0), (2.0, 1.5), (3.0, 1.2)]),
            Series::points("exact loss", vec![(3.0, 1.1)]),
        ];
        line_plot(
            &dir.join("p.png"),
            "t",
            "epoch",
            "y",
            &series,
            Scale::Integer,
            Scale::Linear,
        )
        .unwrap();
        assert_eq!(&std::fs::read(dir.join("p.png")).unwrap()[1..4], b"PNG");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Staged files appear only at the commit, all together; an uncommitted set leaves
    /// nothing; a failed rename puts the files already moved back as they were.
    #[test]
    fn outputs_are_committed_as_a_set() {
        let dir = std::env::temp_dir().join(format!("gradmat-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut o = Outputs::new(&dir).unwrap();
        o.write("a.txt", b"new a").unwrap();
        o.render("b.txt", |p| Ok(std::fs::write(p, b"new b")?))
            .unwrap();
        assert!(!dir.join("a.txt").exists() && !dir.join("b.txt").exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"new a");
        assert_eq!(std::fs::read(dir.join("b.txt")).unwrap(), b"new b");
        assert_eq!(names(&dir), [LOCK_FILE, "a.txt", "b.txt"]);
        // Dropped without commit: the temporary files go, the old files stay.
        let mut o = Outputs::new(&dir).unwrap();
        o.write("a.txt", b"newer a").unwrap();
        drop(o);
        assert_eq!(names(&dir), [LOCK_FILE, "a.txt", "b.txt"]);
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"new a");
        // A target that is a directory is refused when staged.
        std::fs::create_dir_all(dir.join("c.txt/x")).unwrap();
        let mut o = Outputs::new(&dir).unwrap();
        assert!(o.write("c.txt", b"c").is_err());
        // A rename that fails at the commit (the target became a directory): undone.
        let mut o = Outputs::new(&dir).unwrap();
        o.write("a.txt", b"newest a").unwrap();
        o.write("d.txt", b"d").unwrap();
        std::fs::create_dir_all(dir.join("d.txt/x")).unwrap();
        let e = o.commit().unwrap_err();
        assert!(e.to_string().contains("d.txt"), "{e}");
        assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"new a");
        assert_eq!(names(&dir), [LOCK_FILE, "a.txt", "b.txt", "c.txt", "d.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
    }
}
