//! PNG plots (feature `cli`): line and scatter plots and heat maps drawn with plotters, labels
//! in DejaVu Sans embedded in the binary.

use anyhow::Context as _;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");

static FONT_ONCE: Once = Once::new();

fn register_font() {
    FONT_ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; failure would only lose the labels.
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT);
    });
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
    /// Drawn as a line or as separate points.
    pub style: Style,
}

/// How a [`Series`] is drawn (and shown in the legend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A line through the points (with a small marker on each when there are at most 60).
    Line,
    /// Markers only (a single value such as a reference loss), a marker in the legend.
    Points,
}

impl Series {
    /// A curve drawn as a line.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            style: Style::Line,
        }
    }
    /// Values drawn as separate points.
    pub fn points(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            style: Style::Points,
        }
    }
}

/// Axis scaling of a plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear axis.
    Linear,
    /// Linear axis labelled at integers only (epochs, iterations).
    Integer,
    /// Logarithmic axis (non-positive values are skipped).
    Log,
}

fn finite_range(vals: impl Iterator<Item = f64>, scale: Scale) -> Option<(f64, f64)> {
    let (lo, hi) = vals
        .filter(|v| v.is_finite() && (scale != Scale::Log || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    Some(match scale {
        Scale::Linear | Scale::Integer => {
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
            && (x_scale != Scale::Log || p.0 > 0.0)
            && (y_scale != Scale::Log || p.1 > 0.0)
    };
    let clean: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: s.points.iter().copied().filter(ok).collect(),
            style: s.style,
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
            let (x_fmt, y_fmt) = (axis_labeller(x_scale, xr), axis_labeller(y_scale, yr));
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_label)
                .y_desc(y_label)
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 18))
                .x_label_formatter(x_fmt.as_ref())
                .y_label_formatter(y_fmt.as_ref());
            if x_scale == Scale::Integer {
                // About one label per integer up to 10 (the formatter skips the others).
                mesh.x_labels(((xr.1 - xr.0).ceil() as usize + 1).clamp(2, 10));
            }
            mesh.draw().map_err(plot_err)?;
            for (i, s) in clean.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                match s.style {
                    Style::Line => {
                        chart
                            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                            .map_err(plot_err)?
                            .label(s.name.clone())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                            });
                        if s.points.len() <= 60 {
                            chart
                                .draw_series(
                                    s.points.iter().map(|&p| Circle::new(p, 3, color.filled())),
                                )
                                .map_err(plot_err)?;
                        }
                    }
                    Style::Points => {
                        chart
                            .draw_series(
                                s.points.iter().map(|&p| Circle::new(p, 6, color.filled())),
                            )
                            .map_err(plot_err)?
                            .label(s.name.clone())
                            .legend(move |(x, y)| Circle::new((x + 12, y), 6, color.filled()));
                    }
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
    let log = |s: Scale| s == Scale::Log;
    match (log(x_scale), log(y_scale)) {
        (false, false) => draw!(builder
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(plot_err)?),
        (false, true) => draw!(builder
            .build_cartesian_2d(xr.0..xr.1, (yr.0..yr.1).log_scale())
            .map_err(plot_err)?),
        (true, false) => draw!(builder
            .build_cartesian_2d((xr.0..xr.1).log_scale(), yr.0..yr.1)
            .map_err(plot_err)?),
        (true, true) => draw!(builder
            .build_cartesian_2d((xr.0..xr.1).log_scale(), (yr.0..yr.1).log_scale())
            .map_err(plot_err)?),
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Tick labels of a log axis: over a decade or more, only 1, 2 and 5 × 10^k are labelled (the
/// other ticks stay as grid lines, so neighbours such as 90 and 100 do not overlap), in compact
/// form (`1e-8`, `0.02`, `500`). `None` for a linear axis (plotters' default labels).
pub(super) fn log_labeller(scale: Scale, range: (f64, f64)) -> Option<impl Fn(&f64) -> String> {
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

/// The tick labels of an axis: `log_labeller`'s on a log axis; on a linear one as many
/// decimals as the tick spacing (about a tenth of the range) needs, never `-0` (a tick at zero
/// computed as `-0.0`, or rounding to zero, is `0`), scientific form for very large or small
/// magnitudes; on an integer axis only the integers are labelled.
pub fn axis_labeller(scale: Scale, range: (f64, f64)) -> Box<dyn Fn(&f64) -> String> {
    if let Some(f) = log_labeller(scale, range) {
        return Box::new(f);
    }
    let (lo, hi) = range;
    let step = ((hi - lo).abs() / 10.0).max(f64::MIN_POSITIVE);
    let decimals = (-step.log10().floor()).clamp(0.0, 12.0) as usize;
    let big = lo.abs().max(hi.abs());
    let scientific = big >= 1e6 || (big < 1e-3 && big > 0.0);
    let integer = scale == Scale::Integer;
    Box::new(move |v: &f64| {
        if integer && (v - v.round()).abs() > 1e-9 * v.abs().max(1.0) {
            return String::new();
        }
        let s = if integer {
            format!("{:.0}", v.round())
        } else if scientific {
            format!("{v:.2e}")
        } else {
            format!("{v:.decimals$}")
        };
        // "-0", "-0.00", "0.0": a zero is "0" ("0.00e0" in scientific notation).
        let mantissa = s.split('e').next().unwrap_or("");
        if !mantissa.chars().any(|c| c.is_ascii_digit() && c != '0') {
            if scientific {
                "0.00e0".to_string()
            } else {
                "0".to_string()
            }
        } else {
            s
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
    let fmt = axis_labeller(Scale::Linear, r);
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(fmt.as_ref())
        .y_label_formatter(fmt.as_ref())
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
