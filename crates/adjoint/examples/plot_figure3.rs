//! Figure 3 of the paper as a PNG: wall-clock time of the forward decomposition and of forward +
//! gradient against the Krylov depth K, on the 2-D five-point Laplacian (symmetric CSR,
//! parameters = stored entries), for Lanczos without reorthogonalisation and Lanczos / Arnoldi
//! with full reorthogonalisation. Timing follows `bench_krylov.rs`: each point is the median over
//! `--reps` runs of the forward pass and of the backward pass (adjoint with the fused parameter
//! VJP, cotangent `ā = 1` resp. `H̄ = I`, i.e. the gradient of trace(T)); forward + gradient is
//! the median of their sums.
//!
//! Run (N = grid² = 10⁶):
//! `cargo run --release -p gradmat-adjoint --example plot_figure3 -- --grid 1000 --ks 10,25,50,100 --out gradmat-out/figure3.png`
//!
//! Options: `--grid G` (N = G²), `--ks K1,K2,…`, `--reps R` (default 3), `--variants`
//! (default `lanczos,lanczos-full,arnoldi-full`), `--out PATH.png` (a CSV with the numbers is
//! written next to it, `PATH.csv`), `--linear` (linear axes instead of log-log), `--from-csv
//! PATH.csv` (redraw from a CSV written earlier, without timing runs).
//!
//! The labels are drawn with DejaVu Sans, embedded from `assets/fonts/` (licence in
//! `assets/fonts/LICENSE-DejaVu.txt`), so no system fonts are needed.

use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointParams, ArnoldiCotangent, LanczosCotangent,
};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::lanczos::{lanczos, LanczosParams};
use gradmat_operators::csr::SymCsrMatrix;
use gradmat_operators::ParamVjp;
use plotters::prelude::*;
use plotters::style::register_font;
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// One timed forward + backward run: `(forward seconds, backward seconds)`.
fn run_once(a: &SymCsrMatrix<f64>, v: &[f64], variant: &str, k: usize) -> (f64, f64) {
    let mut grad = vec![0.0; a.num_params()];
    match variant {
        "lanczos" | "lanczos-full" => {
            let reorth = if variant == "lanczos" {
                Reorthogonalize::None
            } else {
                Reorthogonalize::Full
            };
            let t0 = Instant::now();
            let dec = lanczos(
                a,
                v,
                &LanczosParams {
                    reorthogonalize: reorth,
                    ..LanczosParams::new(k)
                },
            )
            .unwrap();
            let tf = t0.elapsed().as_secs_f64();
            let abar = vec![1.0; dec.depth()];
            let t0 = Instant::now();
            let vbar = lanczos_vjp(
                a,
                &dec,
                &LanczosCotangent {
                    diagonal: Some(&abar),
                    ..Default::default()
                },
                &AdjointParams::default(),
                &mut grad,
            )
            .unwrap();
            let tb = t0.elapsed().as_secs_f64();
            std::hint::black_box((vbar, grad));
            (tf, tb)
        }
        "arnoldi" | "arnoldi-full" => {
            let reorth = if variant == "arnoldi" {
                Reorthogonalize::None
            } else {
                Reorthogonalize::Full
            };
            let t0 = Instant::now();
            let dec = arnoldi(
                a,
                v,
                &ArnoldiParams {
                    reorthogonalize: reorth,
                    ..ArnoldiParams::new(k)
                },
            )
            .unwrap();
            let tf = t0.elapsed().as_secs_f64();
            let kk = dec.depth();
            let mut hbar = vec![0.0; kk * kk];
            for i in 0..kk {
                hbar[i + i * kk] = 1.0;
            }
            let t0 = Instant::now();
            let vbar = arnoldi_vjp(
                a,
                &dec,
                &ArnoldiCotangent {
                    hessenberg: Some(&hbar),
                    ..Default::default()
                },
                &AdjointParams::default(),
                &mut grad,
            )
            .unwrap();
            let tb = t0.elapsed().as_secs_f64();
            std::hint::black_box((vbar, grad));
            (tf, tb)
        }
        other => panic!("unknown variant {other} (lanczos, lanczos-full, arnoldi, arnoldi-full)"),
    }
}

/// Timings of one variant: `(K, forward, backward, forward + backward)` medians.
struct Series {
    variant: String,
    points: Vec<(usize, f64, f64, f64)>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let g: usize = arg(&args, "--grid", "1000").parse()?;
    let reps: usize = arg(&args, "--reps", "3").parse::<usize>()?.max(1);
    let ks: Vec<usize> = arg(&args, "--ks", "10,25,50,100")
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let variants: Vec<String> = arg(&args, "--variants", "lanczos,lanczos-full,arnoldi-full")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let out = PathBuf::from(arg(&args, "--out", "gradmat-out/figure3.png"));
    let linear = args.iter().any(|a| a == "--linear");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if let Some(csv) = args
        .iter()
        .position(|a| a == "--from-csv")
        .and_then(|i| args.get(i + 1))
    {
        // Redraw from a CSV this example wrote (no timing runs).
        let (all, n) = read_csv(csv)?;
        draw(&out, &all, n, rayon::current_num_threads(), linear)?;
        eprintln!("wrote {}", out.display());
        return Ok(());
    }

    let a = SymCsrMatrix::laplacian_2d(g)?;
    let n = g * g;
    let v: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1013) as f64 / 1013.0 - 0.5)
        .collect();
    let threads = rayon::current_num_threads();
    eprintln!(
        "2-D Laplacian, N = {n}, nnz (full) = {}, threads = {threads}, reps = {reps}",
        a.full().nnz()
    );

    let mut all = Vec::new();
    let mut csv = String::from("variant,N,K,forward_s,backward_s,forward_plus_gradient_s\n");
    for variant in &variants {
        let mut points = Vec::new();
        for &k in &ks {
            let (mut tf, mut tb, mut tt) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..reps {
                let (f, b) = run_once(&a, &v, variant, k);
                tf.push(f);
                tb.push(b);
                tt.push(f + b);
            }
            let (f, b, t) = (median(tf), median(tb), median(tt));
            eprintln!("{variant:>13} K = {k:>4}: forward {f:.4} s, backward {b:.4} s, forward + gradient {t:.4} s ({:.2}× forward)", t / f);
            csv.push_str(&format!("{variant},{n},{k},{f:.6e},{b:.6e},{t:.6e}\n"));
            points.push((k, f, b, t));
        }
        all.push(Series {
            variant: variant.clone(),
            points,
        });
    }
    let csv_path = out.with_extension("csv");
    std::fs::write(&csv_path, csv)?;

    draw(&out, &all, n, threads, linear)?;
    eprintln!("wrote {} and {}", out.display(), csv_path.display());
    Ok(())
}

/// The series of a CSV written by this example (`variant,N,K,forward_s,backward_s,…`).
fn read_csv(path: &str) -> Result<(Vec<Series>, usize), Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut all: Vec<Series> = Vec::new();
    let mut n = 0;
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            return Err(format!("{path}:{}: expected 6 fields, got {}", i + 1, f.len()).into());
        }
        let bad = |what: &str| format!("{path}:{}: bad {what}", i + 1);
        n = f[1].parse().map_err(|_| bad("N"))?;
        let k: usize = f[2].parse().map_err(|_| bad("K"))?;
        let t: Vec<f64> = f[3..]
            .iter()
            .map(|v| v.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("time"))?;
        match all.iter_mut().find(|s| s.variant == f[0]) {
            Some(s) => s.points.push((k, t[0], t[1], t[2])),
            None => all.push(Series {
                variant: f[0].to_string(),
                points: vec![(k, t[0], t[1], t[2])],
            }),
        }
    }
    Ok((all, n))
}

/// Log-axis tick label: only 1, 2 and 5 times a power of ten are labelled (the others stay as
/// grid lines), so neighbouring labels such as 90 and 100 do not overlap.
fn log_tick(x: f64) -> String {
    let m = x / 10f64.powf(x.log10().floor());
    if [1.0, 2.0, 5.0].iter().any(|t| (m - t).abs() < 1e-6) {
        format!("{}", x.round())
    } else {
        String::new()
    }
}

fn draw(
    out: &PathBuf,
    all: &[Series],
    n: usize,
    threads: usize,
    linear: bool,
) -> Result<(), Box<dyn Error>> {
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| "invalid embedded font")?;
    let kmin = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .min()
        .ok_or("no depths")? as f64;
    let kmax = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .max()
        .ok_or("no depths")? as f64;
    let times = all
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.1, p.3]));
    let (tmin, tmax) = times.fold((f64::INFINITY, 0.0f64), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    let tmin = tmin.max(1e-9);

    let root = BitMapBackend::new(out, (1100, 750)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption =
        format!("Forward vs forward + gradient, 2-D Laplacian, N = {n} ({threads} threads)");
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(caption, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80);

    // The two axis kinds have different coordinate types; draw through one generic helper.
    if linear {
        let mut chart = builder.build_cartesian_2d(0.0..kmax * 1.05, 0.0..tmax * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("Krylov depth K (matrix-vector products)")
            .y_desc("wall-clock time [s]")
            .label_style(("sans-serif", 18))
            .axis_desc_style(("sans-serif", 20))
            .draw()?;
        plot_series(&mut chart, all, &palette)?;
        legend(&mut chart)?;
    } else {
        let mut chart = builder.build_cartesian_2d(
            (kmin / 1.2..kmax * 1.2).log_scale(),
            (tmin / 1.5..tmax * 1.5).log_scale(),
        )?;
        chart
            .configure_mesh()
            .x_desc("Krylov depth K (matrix-vector products), log scale")
            .x_label_formatter(&|x| log_tick(*x))
            .y_desc("wall-clock time [s], log scale")
            .label_style(("sans-serif", 18))
            .axis_desc_style(("sans-serif", 20))
            .draw()?;
        plot_series(&mut chart, all, &palette)?;
        legend(&mut chart)?;
    }
    root.present()?;
    Ok(())
}

fn plot_series<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    all: &[Series],
    palette: &[RGBColor],
) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, s) in all.iter().enumerate() {
        let color = palette[i % palette.len()];
        let fwd: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0 as f64, p.1)).collect();
        let tot: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0 as f64, p.3)).collect();
        chart
            .draw_series(LineSeries::new(fwd.clone(), color.stroke_width(2)))?
            .label(format!("{} forward", s.variant))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (24, 0)], color.stroke_width(2))
                    + Circle::new((12, 0), 4, color.filled())
            });
        chart.draw_series(fwd.iter().map(|&p| Circle::new(p, 5, color.filled())))?;
        chart
            .draw_series(LineSeries::new(tot.clone(), color.stroke_width(4)))?
            .label(format!("{} forward + gradient", s.variant))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (24, 0)], color.stroke_width(4))
                    + TriangleMarker::new((12, 0), 7, color.filled())
            });
        chart.draw_series(
            tot.iter()
                .map(|&p| TriangleMarker::new(p, 8, color.filled())),
        )?;
    }
    Ok(())
}

fn legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> Result<(), Box<dyn Error>>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
