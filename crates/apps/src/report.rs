//! Shared output helpers of the pipelines: a progress display, PNG plots and `summary.json`.
//!
//! * [`Progress`] shows an [indicatif] bar on a terminal and plain lines otherwise (CI logs,
//!   pipes), so long runs always say where they are.
//! * [`line_plot`], [`scatter_plot`] and [`heatmaps`] draw PNG files with [plotters]; the
//!   labels use DejaVu Sans embedded in the binary (`assets/fonts/`), so no system fonts are
//!   needed.
//! * [`write_json`] writes a `serde_json` value, pretty-printed, creating the directory.
//! * [`pde`] and [`bnn`] write the outcomes of those pipelines (summary, plots, table).

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plotters::prelude::*;
use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

pub mod bnn;
pub mod gp;
pub mod pde;

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static FONT_ONCE: Once = Once::new();

fn register_font() {
    FONT_ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; failure would only lose the labels.
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT);
    });
}

/// Progress of a loop of `total` steps: an indicatif bar on a terminal, otherwise one plain
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
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
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

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One named curve of a [`line_plot`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y)`; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

/// Axis scaling of a plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear axis.
    Linear,
    /// Logarithmic axis (non-positive values are skipped).
    Log,
}

fn finite_range(vals: impl Iterator<Item = f64>, scale: Scale) -> Option<(f64, f64)> {
    let (lo, hi) = vals
        .filter(|v| v.is_finite() && (scale == Scale::Linear || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    Some(match scale {
        Scale::Linear => {
            let pad = if hi > lo {
                0.05 * (hi - lo)
            } else {
                0.5 * lo.abs().max(1.0)
            };
            (lo - pad, hi + pad)
        }
        Scale::Log => {
            if hi > lo {
                (lo / 1.3, hi * 1.3)
            } else {
                (lo / 2.0, hi * 2.0)
            }
        }
    })
}

/// Draws curves into a PNG file at `path` (1000×700 pixels).
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_scale: Scale,
    y_scale: Scale,
) -> anyhow::Result<()> {
    register_font();
    let ok = |p: &(f64, f64)| {
        p.0.is_finite()
            && p.1.is_finite()
            && (x_scale == Scale::Linear || p.0 > 0.0)
            && (y_scale == Scale::Linear || p.1 > 0.0)
    };
    let clean: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: s.points.iter().copied().filter(ok).collect(),
        })
        .collect();
    let xr = finite_range(
        clean.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        x_scale,
    )
    .context("nothing to plot")?;
    let yr = finite_range(
        clean.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        y_scale,
    )
    .context("nothing to plot")?;
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            let (x_fmt, y_fmt) = (log_labeller(x_scale, xr), log_labeller(y_scale, yr));
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_label)
                .y_desc(y_label)
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 18));
            if let Some(f) = &x_fmt {
                mesh.x_label_formatter(f);
            }
            if let Some(f) = &y_fmt {
                mesh.y_label_formatter(f);
            }
            mesh.draw().map_err(plot_err)?;
            for (i, s) in clean.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                    });
                if s.points.len() <= 60 {
                    chart
                        .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(plot_err)?;
                }
            }
            if clean.len() > 1 || clean.iter().any(|s| !s.name.is_empty()) {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .label_font(("sans-serif", 16))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(plot_err)?;
            }
        }};
    }
    match (x_scale, y_scale) {
        (Scale::Linear, Scale::Linear) => draw!(builder
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(plot_err)?),
        (Scale::Linear, Scale::Log) => draw!(builder
            .build_cartesian_2d(xr.0..xr.1, (yr.0..yr.1).log_scale())
            .map_err(plot_err)?),
        (Scale::Log, Scale::Linear) => draw!(builder
            .build_cartesian_2d((xr.0..xr.1).log_scale(), yr.0..yr.1)
            .map_err(plot_err)?),
        (Scale::Log, Scale::Log) => draw!(builder
            .build_cartesian_2d((xr.0..xr.1).log_scale(), (yr.0..yr.1).log_scale())
            .map_err(plot_err)?),
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Tick labels of a log axis: over a decade or more, only 1, 2 and 5 × 10^k are labelled (the
/// other ticks stay as grid lines, so neighbours such as 90 and 100 do not overlap), in compact
/// form (`1e-8`, `0.02`, `500`). `None` for a linear axis (plotters' default labels).
fn log_labeller(scale: Scale, range: (f64, f64)) -> Option<impl Fn(&f64) -> String> {
    if scale != Scale::Log {
        return None;
    }
    let decades = (range.1 / range.0).log10();
    Some(move |v: &f64| {
        let e = v.log10().floor();
        let m = v / 10f64.powf(e);
        let keep = decades < 1.0 || [1.0, 2.0, 5.0].iter().any(|t| (m - t).abs() < 1e-6);
        if !keep {
            String::new()
        } else if (-3.0..4.0).contains(&e) {
            format!("{}", (v * 1e3).round() / 1e3)
        } else {
            format!("{}e{}", (m * 10.0).round() / 10.0, e)
        }
    })
}

/// Draws predicted (`y`) against true (`x`) values with the diagonal `y = x` into a PNG file.
pub fn scatter_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
) -> anyhow::Result<()> {
    register_font();
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let r = finite_range(pts.iter().flat_map(|p| [p.0, p.1]), Scale::Linear)
        .context("nothing to plot")?;
    let root = BitMapBackend::new(path, (800, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(r.0..r.1, r.0..r.1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(
            vec![(r.0, r.0), (r.1, r.1)],
            BLACK.stroke_width(1),
        ))
        .map_err(plot_err)?;
    let color = PALETTE[0].mix(0.5);
    chart
        .draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// One field on a `rows × cols` grid (row-major values) for [`heatmaps`].
#[derive(Debug, Clone)]
pub struct Field<'a> {
    /// Panel title.
    pub title: String,
    /// Number of grid rows.
    pub rows: usize,
    /// Number of grid columns.
    pub cols: usize,
    /// Row-major values (`rows * cols`).
    pub values: &'a [f64],
}

/// Draws fields side by side as heat maps sharing one colour scale (viridis-like) into a PNG.
pub fn heatmaps(path: &Path, title: &str, fields: &[Field<'_>]) -> anyhow::Result<()> {
    register_font();
    anyhow::ensure!(!fields.is_empty(), "nothing to plot");
    for f in fields {
        anyhow::ensure!(f.values.len() == f.rows * f.cols, "field size mismatch");
    }
    let (lo, hi) = fields
        .iter()
        .flat_map(|f| f.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    anyhow::ensure!(lo.is_finite(), "nothing to plot");
    let span = if hi > lo { hi - lo } else { 1.0 };
    let panel = 420u32;
    let width = panel * fields.len() as u32 + 40;
    let root = BitMapBackend::new(path, (width, panel + 110)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(
            &format!("{title}  (colour scale {lo:.3e} … {hi:.3e})"),
            ("sans-serif", 22),
        )
        .map_err(plot_err)?;
    let panels = root.split_evenly((1, fields.len()));
    for (area, f) in panels.iter().zip(fields) {
        let mut chart = ChartBuilder::on(area)
            .caption(&f.title, ("sans-serif", 18))
            .margin(10)
            .build_cartesian_2d(0..f.cols, 0..f.rows)
            .map_err(plot_err)?;
        chart
            .draw_series((0..f.rows).flat_map(|r| {
                (0..f.cols).map(move |c| {
                    let v = f.values[r * f.cols + c];
                    let t = if v.is_finite() { (v - lo) / span } else { 0.0 };
                    Rectangle::new([(c, r), (c + 1, r + 1)], viridis(t).filled())
                })
            }))
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// A viridis-like colour map on `t ∈ [0, 1]` (piecewise linear through five anchors).
pub fn viridis(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let s = t - i as f64;
    let lerp = |a: f64, b: f64| (a + s * (b - a)).round() as u8;
    RGBColor(
        lerp(A[i].0, A[i + 1].0),
        lerp(A[i].1, A[i + 1].1),
        lerp(A[i].2, A[i + 1].2),
    )
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_write_png_files() {
        let dir = std::env::temp_dir().join(format!("gradmat-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Series {
            name: "loss".into(),
            points: (1..20).map(|i| (i as f64, 1.0 / i as f64)).collect(),
        };
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

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
    }
}
