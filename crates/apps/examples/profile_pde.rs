//! Timing of one training epoch of `gradmat pde` on synthetic data (no reference solves).
use gradmat_apps::nn::Activation;
use gradmat_apps::pde::train::{loss_and_grad, FieldModel, Loss, Solver};
use gradmat_apps::pde::Dataset;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let g: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(128);
    let reps: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(3);
    let which = args.get(3).cloned().unwrap_or_else(|| "all".into());
    let n = g * g;
    let num = 256;
    let field = |s: f64, p: usize| -> f64 {
        let (i, j) = ((p % g) as f64 / g as f64, (p / g) as f64 / g as f64);
        (s * i * 3.0).sin() * (s * j * 2.0 + 0.3).cos()
    };
    let inputs: Vec<Vec<f64>> = (0..num)
        .map(|k| {
            (0..2 * n)
                .map(|p| field(1.0 + k as f64 * 0.01, p % n))
                .collect()
        })
        .collect();
    let targets = inputs
        .iter()
        .map(|v| v.iter().map(|x| 0.9 * x).collect())
        .collect();
    let data = Dataset {
        grid: g,
        omega: (0..n).map(|p| 0.005 * (1.0 + field(2.0, p))).collect(),
        inputs,
        targets,
        reference_crosscheck: 0.0,
        stencil: gradmat_apps::pde::Stencil::Neumann,
    };
    let (train, _) = data.split();
    let model = FieldModel::new(g, &[500, 500], Activation::Relu, 1)?;
    for s in [
        Solver::Arnoldi { depth: 10 },
        Solver::Dopri5 { steps: 3 },
        Solver::Tsit5 { steps: 3 },
    ] {
        if which != "all" && which != s.name() {
            continue;
        }
        let mut times = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let (l, gr) = loss_and_grad(&model, &s, Loss::RelativeMse, &data, train.clone())?;
            times.push(t.elapsed().as_secs_f64());
            std::hint::black_box((l, gr));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{}: median {:.3} s/epoch over {reps} ({times:?})",
            s.name(),
            times[reps / 2]
        );
    }
    if which == "micro" {
        use gradmat_apps::pde::WaveOperator;
        use gradmat_matfun::dense::MatrixFunction;
        use gradmat_matfun::krylov::{apply_arnoldi, KrylovParams};
        let op = WaveOperator::new(g, data.omega.clone())?;
        let w0 = &data.inputs[3];
        let reps = 40;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(apply_arnoldi(
                &op,
                w0,
                &MatrixFunction::Exp,
                &KrylovParams::new(10),
            )?);
        }
        let tf = t.elapsed().as_secs_f64() / reps as f64;
        let r = apply_arnoldi(&op, w0, &MatrixFunction::Exp, &KrylovParams::new(10))?;
        let t = Instant::now();
        for _ in 0..reps {
            let mut gbar = vec![0.0; n];
            r.vjp(&op, w0, &mut gbar)?;
            std::hint::black_box(gbar);
        }
        let tb = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        let mut y = vec![0.0; 2 * n];
        for _ in 0..reps * 10 {
            gradmat_operators::Operator::apply(&op, w0, &mut y);
        }
        let ta = t.elapsed().as_secs_f64() / (reps * 10) as f64;
        println!(
            "one IC: Arnoldi-10 forward {:.3} ms, adjoint {:.3} ms, one stencil product {:.4} ms",
            tf * 1e3,
            tb * 1e3,
            ta * 1e3
        );
        return Ok(());
    }
    let t = Instant::now();
    let (w, batch) = model.omega_with_pullback()?;
    let t1 = t.elapsed().as_secs_f64();
    let gr = model.pullback(&batch, &w);
    println!(
        "MLP forward {t1:.3} s, backward {:.3} s",
        t.elapsed().as_secs_f64() - t1
    );
    std::hint::black_box(gr);
    Ok(())
}
