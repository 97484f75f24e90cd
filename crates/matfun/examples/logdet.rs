//! Log-determinant of the 4elt graph Laplacian plus `0.1·I` (N = 15,606) by stochastic Lanczos
//! quadrature, with the exact gradient of the estimate with respect to every stored matrix
//! entry and the shift.
//!
//! Prints the estimate and its standard error, the time per probe, the ratio
//! (value + gradient)/value, `∂ log det/∂σ` (an estimate of `tr (L + σI)⁻¹`), and the speed-up of
//! processing probes in parallel (1-thread pool vs the default pool; the results are
//! bit-identical).
//!
//! Timings are medians over `reps` runs.
//!
//! Run: `cargo run --release -p gradmat-matfun --example logdet -- [num_probes] [depth] [reps] [grid] [none|full]`
//!
//! With a `grid` argument G the matrix is the 2-D five-point Laplacian on a G×G grid (N = G²)
//! plus 0.1·I instead of 4elt; the last argument chooses the reorthogonalisation (default full).

use gradmat_krylov::arnoldi::Reorthogonalize;
use gradmat_matfun::estimators::{logdet, logdet_with_grad, SlqParams};
use gradmat_operators::algebra::Shifted;
use gradmat_operators::csr::SymCsrMatrix;
use gradmat_operators::matrix_market::read_matrix_market;
use gradmat_operators::{Operator, ParamVjp};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let probes: usize = args.get(1).map_or(Ok(32), |s| s.parse())?;
    let depth: usize = args.get(2).map_or(Ok(30), |s| s.parse())?;
    let reps: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let grid: Option<usize> = args.get(4).map(|s| s.parse()).transpose()?;
    let reorth = match args.get(5).map(String::as_str) {
        Some("none") => Reorthogonalize::None,
        _ => Reorthogonalize::Full,
    };
    let (lap, name) = match grid {
        Some(g) => (
            SymCsrMatrix::laplacian_2d(g)?,
            format!("2-D Laplacian {g}×{g}"),
        ),
        None => {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../data/matrices/4elt_laplacian.mtx.gz"
            );
            (
                read_matrix_market::<f64>(path)?.to_sym_csr()?,
                "4elt Laplacian".to_string(),
            )
        }
    };
    let sigma = 0.1;
    let op = Shifted::new(lap, sigma)?;
    let n = op.nrows();
    let params = SlqParams {
        num_probes: probes,
        depth,
        seed: 2024,
        reorthogonalize: reorth,
        ..SlqParams::default()
    };
    println!(
        "{name} + {sigma}·I: N = {n}, parameters = {} (stored lower-triangle entries + σ), \
         {probes} Rademacher probes, depth {depth}, reorthogonalisation {reorth:?}, {} threads",
        op.num_params(),
        rayon::current_num_threads()
    );

    // Forward only, then forward + gradient, on the default pool.
    let mut est = logdet(&op, &params)?;
    let t_fwd = median(reps, || {
        est = logdet(&op, &params)?;
        Ok(())
    })?;
    let mut grad = vec![0.0; op.num_params()];
    let mut est_g = est.clone();
    let t_grad = median(reps, || {
        grad.iter_mut().for_each(|g| *g = 0.0);
        est_g = logdet_with_grad(&op, &params, &mut grad)?;
        Ok(())
    })?;
    assert_eq!(est.value.to_bits(), est_g.value.to_bits());

    println!(
        "log det ≈ {:.6e} ± {:.2e} (std error; {:.1e} relative), max depth {}, {} matvecs",
        est.value,
        est.std_error,
        est.std_error / est.value.abs(),
        est.depth,
        est.num_matvecs
    );
    println!(
        "∂ log det / ∂σ = {:.6e} (estimate of tr (L + σI)⁻¹; N/σ would be {:.3e})",
        grad[grad.len() - 1],
        n as f64 / sigma
    );
    println!(
        "forward: {:.3} s ({:.2} ms per probe); forward + gradient: {:.3} s ({:.2} ms per probe); \
         ratio (forward+gradient)/forward = {:.2}",
        t_fwd,
        1e3 * t_fwd / probes as f64,
        t_grad,
        1e3 * t_grad / probes as f64,
        t_grad / t_fwd
    );

    // Parallel probes: 1-thread pool vs the default pool.
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut g1 = vec![0.0; op.num_params()];
    let mut est1 = est_g.clone();
    let t_one = pool1.install(|| {
        median(reps, || {
            g1.iter_mut().for_each(|g| *g = 0.0);
            est1 = logdet_with_grad(&op, &params, &mut g1)?;
            Ok(())
        })
    })?;
    let identical = est1.value.to_bits() == est_g.value.to_bits()
        && g1
            .iter()
            .zip(&grad)
            .all(|(a, b)| a.to_bits() == b.to_bits());
    println!(
        "value + gradient on 1 thread: {:.3} s; on {} threads: {:.3} s; speed-up {:.2}× \
         (results bit-identical: {identical})",
        t_one,
        rayon::current_num_threads(),
        t_grad,
        t_one / t_grad
    );
    Ok(())
}

/// Median wall time of `reps` runs of `f`.
fn median(
    reps: usize,
    mut f: impl FnMut() -> Result<(), gradmat_matfun::MatfunError>,
) -> Result<f64, gradmat_matfun::MatfunError> {
    let mut t = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}
