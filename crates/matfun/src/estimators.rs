//! Stochastic estimators: trace of `f(A)` and log-determinant by stochastic Lanczos quadrature
//! (SLQ), with the exact gradient of the estimate, and the diagonal of `A`.
//!
//! # Stochastic Lanczos quadrature
//!
//! `tr f(A) = E[vᵀ f(A) v]` for probes with `E[v vᵀ] = I`, and each quadratic form is
//! approximated by `K` steps of Lanczos (Gauss quadrature, see [`crate::krylov`]):
//!
//! ```text
//! tr f(A) ≈ (1/L) Σ_ℓ ρ_ℓ,    ρ_ℓ = ‖v_ℓ‖² e₀ᵀ f(T_ℓ) e₀,    std_error = sd(ρ) / √L
//! ```
//!
//! `log det A = tr log A`. The gradient `θ̄ = (1/L) Σ_ℓ ∇_θ ρ_ℓ` is the **exact gradient of the
//! estimate** (same probes) through the Lanczos adjoint, not a second stochastic estimate of
//! `tr(A⁻¹ ∂A)`: an optimiser that sees the estimate sees its true slope.
//!
//! # Probes and determinism
//!
//! Probe `ℓ` is generated from its own seed `SplitMix64(seed, ℓ)` by a xoshiro256++ generator
//! (Rademacher ±1 entries, or standard normal by Box–Muller), so the probe set depends only on
//! `(seed, ℓ, N)` — not on the number of threads or the processing order (see
//! [`probe_vector`]). Probes are processed in parallel with rayon, each with its own
//! decomposition (`N·K` values per probe in flight, plus `N·K` for the adjoint vectors in the
//! backward pass) and its own `θ̄` buffer; the per-probe values and gradients are then added **in
//! probe order**. Results are therefore bit-identical for any thread count, provided the
//! operator's own products are (those of `gradmat-operators` are). Probes are processed in
//! batches of `rayon::current_num_threads()`, which bounds the memory to one batch of
//! decompositions and gradients without affecting the results.
//!
//! # Example
//!
//! ```
//! use gradmat_matfun::estimators::{logdet_with_grad, SlqParams};
//! use gradmat_operators::algebra::{Diagonal, Shifted};
//! use gradmat_operators::ParamVjp;
//!
//! // A = diag(1..=50) + σI. For a diagonal A and Rademacher probes vᵀ log(A) v = Σᵢ log Aᵢᵢ
//! // exactly, and at full depth (K = N) the quadrature is exact: log det A = Σ log(i + σ).
//! let a = Shifted::new(Diagonal::new((1..=50).map(|i| i as f64).collect())?, 0.5)?;
//! let mut grad = vec![0.0; a.num_params()]; // (diagonal entries, σ)
//! let est = logdet_with_grad(&a, &SlqParams { depth: 50, num_probes: 4, ..SlqParams::default() }, &mut grad)?;
//! let exact: f64 = (1..=50).map(|i| (i as f64 + 0.5).ln()).sum();
//! assert!((est.value - exact).abs() < 1e-10 * exact);
//! // ∂/∂σ log det(A + σI) = tr (A + σI)⁻¹
//! let tr_inv: f64 = (1..=50).map(|i| 1.0 / (i as f64 + 0.5)).sum();
//! assert!((grad[50] - tr_inv).abs() < 1e-10 * tr_inv);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::dense::MatrixFunction;
use crate::krylov::{quadform_lanczos, Convergence, KrylovParams};
use crate::MatfunError;
use gradmat_krylov::Reorthogonalize;
use gradmat_operators::{NonExhaustive, Operator, ParamVjp, Scalar, SelfAdjoint};
use rayon::prelude::*;
use std::time::Instant;

/// Distribution of the entries of a probe vector (independent, mean 0, variance 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Probe {
    /// `±1` with equal probability: the minimum-variance choice for the trace
    /// (`Var = 2 Σ_{i≠j} B_ij²` for `B = f(A)`), and `‖v‖² = N` exactly.
    #[default]
    Rademacher,
    /// Standard normal (`Var = 2 ‖B‖_F²`); rotation-invariant.
    Gaussian,
}

/// Parameters of the stochastic trace / log-determinant estimators.
///
/// Defaults: 10 Rademacher probes, depth 10, full reorthogonalisation, seed 0.
///
/// ```
/// use gradmat_matfun::estimators::{Probe, SlqParams};
/// let p = SlqParams { num_probes: 32, depth: 40, seed: 7, probe: Probe::Gaussian, ..SlqParams::default() };
/// assert_eq!(p.num_probes, 32);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SlqParams {
    /// Number of probe vectors `L` (at least 1; 2 or more for a standard error).
    pub num_probes: usize,
    /// Lanczos depth `K` per probe (clamped to the dimension `N`).
    pub depth: usize,
    /// Seed of the probe set.
    pub seed: u64,
    /// Probe distribution.
    pub probe: Probe,
    /// Reorthogonalisation of each Lanczos run (default full: accurate quadrature and exact
    /// gradients through the projected adjoint).
    pub reorthogonalize: Reorthogonalize,
    /// Run the probes in lock-step (default `false`): every probe on its own thread, the
    /// matrix–vector products of one step gathered into one [`Operator::apply_block`] call and
    /// the parameter VJPs into one [`ParamVjp::vjp_params_block`] call. Results are the same
    /// numbers as without it up to rounding in the operator's block kernels, and bit-identical
    /// for any thread count. Worth it for operators whose block product is much cheaper per
    /// vector than single products (kernel matrices: one pass over the kernel tiles serves all
    /// probes); groups of at most [`LOCKSTEP_GROUP`] probes are in flight at once.
    pub lockstep: bool,
    #[doc(hidden)]
    pub non_exhaustive: NonExhaustive,
}

impl Default for SlqParams {
    /// 10 Rademacher probes, depth 10, full reorthogonalisation, seed 0, no lock-step.
    fn default() -> Self {
        Self {
            num_probes: 10,
            depth: 10,
            seed: 0,
            probe: Probe::Rademacher,
            reorthogonalize: Reorthogonalize::Full,
            lockstep: false,
            non_exhaustive: NonExhaustive::default(),
        }
    }
}

/// The largest number of probes run together by [`SlqParams::lockstep`] (one thread each).
pub const LOCKSTEP_GROUP: usize = 64;

/// A stochastic estimate with its standard error.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Estimate<T> {
    /// The estimate `(1/L) Σ_ℓ ρ_ℓ`.
    pub value: T,
    /// Standard error of the mean, `sd(ρ)/√L` with the sample standard deviation (`L − 1` in
    /// the denominator); NaN for a single probe.
    pub std_error: T,
    /// Number of probes `L`.
    pub num_probes: usize,
    /// Matrix–vector products of the forward passes, summed over probes (the backward pass
    /// costs as many again).
    pub num_matvecs: usize,
    /// Largest Lanczos depth reached over the probes (smaller than requested when every probe
    /// met an invariant subspace, where the quadrature is exact).
    pub depth: usize,
    /// The per-probe values `ρ_ℓ`, in probe order.
    pub per_probe: Vec<T>,
    /// The smallest and largest Ritz value over all probes (`(min, max)`). The Ritz values lie
    /// in the operator's spectrum; a smallest one far below the largest (say below `1e-12` of
    /// it) warns of a (numerically) singular operator — which SLQ at `K ≪ N` cannot detect in
    /// general, since a null space that gets little weight from the probes need not show up
    /// among the Ritz values at all.
    pub ritz_range: (f64, f64),
    /// Seconds the probes spent in their forward passes (decomposition and small matrix
    /// function), summed over probes: with probes in parallel these are thread-seconds, not
    /// wall time (in lock-step runs they include the waits for the gathered products).
    pub seconds_forward: f64,
    /// Seconds the probes spent in their backward passes, summed likewise (0 without a
    /// gradient).
    pub seconds_backward: f64,
    /// The mean over probes of each probe's
    /// [`Convergence::last_step_change`](crate::krylov::Convergence): how much the last
    /// Lanczos step changed the estimate (the same probes, one step less). Compare it with
    /// `std_error`: a change far below the standard error means the depth is not what limits
    /// the accuracy. `None` when a probe has no such value (depth 1), and from the
    /// preconditioned estimator of [`crate::preconditioned`] (not computed there).
    pub last_step_change: Option<T>,
    /// Every probe's decomposition is exact (an invariant subspace or the whole space): the
    /// estimate has no truncation error, only the sampling error.
    pub exact: bool,
}

// ---------------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------------

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman & Vigna), seeded by SplitMix64.
struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    fn for_probe(seed: u64, index: usize) -> Self {
        // One SplitMix64 step mixes the index into the seed, then four more fill the state.
        let mut st = seed;
        let mixed = splitmix64(&mut st) ^ (index as u64).wrapping_mul(GOLDEN).rotate_left(17);
        let mut st = mixed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Self { s }
    }
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
    /// Uniform in the open interval (0, 1) (53 random bits, offset by half an ulp).
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }
}

/// Writes probe `index` of the probe set `seed` into `out` (its length is the dimension).
///
/// The probe depends only on `(seed, index, out.len(), probe)`; this is the probe the
/// estimators use, so a caller can reproduce any `ρ_ℓ`.
pub fn fill_probe<T: Scalar>(probe: Probe, seed: u64, index: usize, out: &mut [T]) {
    let mut rng = Xoshiro256pp::for_probe(seed, index);
    match probe {
        Probe::Rademacher => {
            for chunk in out.chunks_mut(64) {
                let bits = rng.next_u64();
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = if (bits >> j) & 1 == 1 {
                        T::ONE
                    } else {
                        -T::ONE
                    };
                }
            }
        }
        Probe::Gaussian => {
            for pair in out.chunks_mut(2) {
                // Box–Muller: two independent normals from two uniforms.
                let (u1, u2) = (rng.next_open01(), rng.next_open01());
                let r = (-2.0 * u1.ln()).sqrt();
                let a = std::f64::consts::TAU * u2;
                pair[0] = T::from_f64(r * a.cos());
                if pair.len() > 1 {
                    pair[1] = T::from_f64(r * a.sin());
                }
            }
        }
    }
}

/// Rows `r0..r0 + out.len()` of probe `index` of the probe set `seed` for dimension `n`: the
/// same values as those rows of [`fill_probe`] on the whole vector (the generator is advanced
/// past the rows before `r0`: one step per 64 rows for Rademacher probes, one per row for
/// Gaussian ones). This is how a rank of a distributed run gets its rows of a probe.
///
/// ```
/// use gradmat_matfun::estimators::{fill_probe, fill_probe_rows, Probe};
/// for probe in [Probe::Rademacher, Probe::Gaussian] {
///     let mut whole = vec![0.0f64; 300];
///     fill_probe(probe, 9, 2, &mut whole);
///     let mut rows = vec![0.0f64; 101];
///     fill_probe_rows(probe, 9, 2, 300, 77, &mut rows);
///     assert_eq!(&whole[77..178], &rows[..]);
/// }
/// ```
///
/// # Panics
/// If the rows do not fit in `n`.
pub fn fill_probe_rows<T: Scalar>(
    probe: Probe,
    seed: u64,
    index: usize,
    n: usize,
    r0: usize,
    out: &mut [T],
) {
    assert!(
        r0 + out.len() <= n,
        "probe rows {r0}..{} out of range for dimension {n}",
        r0 + out.len()
    );
    let mut rng = Xoshiro256pp::for_probe(seed, index);
    match probe {
        Probe::Rademacher => {
            for _ in 0..r0 / 64 {
                rng.next_u64();
            }
            let mut bits = 0u64;
            for (t, o) in out.iter_mut().enumerate() {
                let i = r0 + t;
                if t == 0 || i.is_multiple_of(64) {
                    bits = rng.next_u64();
                }
                *o = if (bits >> (i % 64)) & 1 == 1 {
                    T::ONE
                } else {
                    -T::ONE
                };
            }
        }
        Probe::Gaussian => {
            for _ in 0..2 * (r0 / 2) {
                rng.next_u64();
            }
            let mut pair = (0.0f64, 0.0f64);
            for (t, o) in out.iter_mut().enumerate() {
                let i = r0 + t;
                if t == 0 || i.is_multiple_of(2) {
                    let (u1, u2) = (rng.next_open01(), rng.next_open01());
                    let r = (-2.0 * u1.ln()).sqrt();
                    let a = std::f64::consts::TAU * u2;
                    pair = (r * a.cos(), r * a.sin());
                }
                *o = T::from_f64(if i.is_multiple_of(2) { pair.0 } else { pair.1 });
            }
        }
    }
}

/// Probe `index` for an operator with `n_local` rows on this thread: the whole probe
/// serially, this rank's rows of the global probe inside a distributed scope
/// (`gradmat_krylov::distributed`).
pub(crate) fn probe_local<T: Scalar>(
    probe: Probe,
    seed: u64,
    index: usize,
    n_local: usize,
) -> Vec<T> {
    match gradmat_krylov::distributed::current() {
        Some(d) if d.local_len() == n_local => {
            let mut v = vec![T::ZERO; n_local];
            fill_probe_rows(
                probe,
                seed,
                index,
                d.global_len(),
                d.local_range().start,
                &mut v,
            );
            v
        }
        _ => probe_vector(probe, seed, index, n_local),
    }
}

/// Probe `index` of the probe set `seed` as a new vector of length `n` (see [`fill_probe`]).
///
/// ```
/// use gradmat_matfun::estimators::{probe_vector, Probe};
/// let v: Vec<f64> = probe_vector(Probe::Rademacher, 42, 3, 100);
/// assert!(v.iter().all(|x| x.abs() == 1.0));
/// assert_eq!(v, probe_vector(Probe::Rademacher, 42, 3, 100));
/// ```
pub fn probe_vector<T: Scalar>(probe: Probe, seed: u64, index: usize, n: usize) -> Vec<T> {
    let mut v = vec![T::ZERO; n];
    fill_probe(probe, seed, index, &mut v);
    v
}

// ---------------------------------------------------------------------------------------------
// SLQ
// ---------------------------------------------------------------------------------------------

/// Mean and standard error of the mean (`sd/√L`, sample standard deviation), in `f64`, in the
/// given order.
fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let l = values.len() as f64;
    let mean = values.iter().sum::<f64>() / l;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (l - 1.0);
    (mean, (var / l).sqrt())
}

/// What one probe contributes.
pub(crate) struct ProbeResult<T> {
    pub(crate) value: T,
    pub(crate) conv: Convergence<T>,
    pub(crate) depth: usize,
    pub(crate) matvecs: usize,
    pub(crate) grad: Option<Vec<T>>,
    pub(crate) ritz: (f64, f64),
    /// Forward and backward seconds.
    pub(crate) seconds: (f64, f64),
}

/// The probes' contributions folded in probe order (deterministic for any thread count).
pub(crate) struct Totals<T> {
    values: Vec<T>,
    convs: Vec<Convergence<T>>,
    depth: usize,
    matvecs: usize,
    ritz: (f64, f64),
    seconds: (f64, f64),
    grad: Vec<T>,
}

impl<T: Scalar> Totals<T> {
    /// Empty totals; `num_params` entries of gradient (0 without one).
    pub(crate) fn new(num_probes: usize, num_params: usize) -> Self {
        Totals {
            values: Vec::with_capacity(num_probes),
            convs: Vec::with_capacity(num_probes),
            depth: 0,
            matvecs: 0,
            ritz: (f64::INFINITY, f64::NEG_INFINITY),
            seconds: (0.0, 0.0),
            grad: vec![T::ZERO; num_params],
        }
    }
    /// Adds one probe (its gradient, if any, into the running sum).
    pub(crate) fn add(&mut self, r: ProbeResult<T>) {
        self.values.push(r.value);
        self.convs.push(r.conv);
        self.depth = self.depth.max(r.depth);
        self.matvecs += r.matvecs;
        self.ritz = (self.ritz.0.min(r.ritz.0), self.ritz.1.max(r.ritz.1));
        self.seconds = (self.seconds.0 + r.seconds.0, self.seconds.1 + r.seconds.1);
        if let Some(g) = r.grad {
            self.add_grad(&g);
        }
    }
    /// Adds a gradient contribution gathered elsewhere (a lock-step group's).
    pub(crate) fn add_grad(&mut self, g: &[T]) {
        for (a, x) in self.grad.iter_mut().zip(g) {
            *a += *x;
        }
    }
    /// Mean, standard error and `θ̄ += (Σ gradients) / L` into `theta_grad`.
    pub(crate) fn finish(self, theta_grad: Option<&mut [T]>) -> Result<Estimate<T>, MatfunError> {
        let mut est = finish_estimate(
            self.values,
            self.depth,
            self.matvecs,
            self.ritz,
            self.seconds,
            theta_grad.map(|tg| (tg, self.grad)),
        )?;
        set_convergence(&mut est, &self.convs);
        Ok(est)
    }
}

/// One probe `z` on a lock-step member `op` (or an operator built on one): the quadrature and,
/// with `want_grad`, its backward pass, whose VJPs the member defers to its group (the buffer
/// passed here only satisfies the length check and stays zero).
pub(crate) fn member_probe<T, A>(
    op: &A,
    z: &[T],
    f: &MatrixFunction,
    kp: &KrylovParams,
    want_grad: bool,
) -> Result<ProbeResult<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    let t0 = Instant::now();
    let qf = quadform_lanczos(op, z, f, kp)?;
    let forward = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    if want_grad {
        let mut unused = vec![T::ZERO; op.num_params()];
        qf.gradient(op, &mut unused)?;
    }
    Ok(ProbeResult {
        value: qf.value(),
        conv: qf.convergence(),
        depth: qf.depth(),
        matvecs: qf.num_matvecs(),
        grad: None,
        ritz: qf.ritz_range(),
        seconds: (forward, t1.elapsed().as_secs_f64()),
    })
}

pub(crate) fn check_slq<T: Scalar, A: Operator<T> + ?Sized>(
    op: &A,
    params: &SlqParams,
) -> Result<(), MatfunError> {
    if params.num_probes == 0 {
        return Err(MatfunError::InvalidParameter(
            "the number of probes must be at least 1".into(),
        ));
    }
    if params.depth == 0 {
        return Err(MatfunError::InvalidParameter(
            "the Lanczos depth must be at least 1".into(),
        ));
    }
    if op.nrows() != op.ncols() {
        return Err(MatfunError::Krylov(
            gradmat_krylov::KrylovError::NotSquare {
                nrows: op.nrows(),
                ncols: op.ncols(),
            },
        ));
    }
    if gradmat_krylov::distributed::global_dim(op.ncols()) == 0 {
        return Err(MatfunError::EmptyMatrix { what: "operator" });
    }
    Ok(())
}

/// The shared SLQ loop: `per_probe(ℓ, v_ℓ)` for every probe, in parallel batches, folded in
/// probe order.
fn slq_driver<T, G>(
    n: usize,
    params: &SlqParams,
    num_params: usize,
    theta_grad: Option<&mut [T]>,
    per_probe: G,
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    G: Fn(&[T], bool) -> Result<ProbeResult<T>, MatfunError> + Sync,
{
    let l = params.num_probes;
    let want_grad = theta_grad.is_some();
    let mut totals = Totals::new(l, if want_grad { num_params } else { 0 });
    fold_probes(n, params, 0..l, want_grad, per_probe, |r| totals.add(r))?;
    totals.finish(theta_grad)
}

/// `per_probe` on the probes `range` of the set, in parallel batches (one at a time in a
/// distributed scope: each product and reduction is already a collective spread over the ranks
/// and their threads); every result passed to `sink` in probe order, so what `sink` folds is
/// deterministic for any batch size and thread count. The first error stops the run.
pub(crate) fn fold_probes<T, G>(
    n: usize,
    params: &SlqParams,
    range: std::ops::Range<usize>,
    want_grad: bool,
    per_probe: G,
    mut sink: impl FnMut(ProbeResult<T>),
) -> Result<(), MatfunError>
where
    T: Scalar,
    G: Fn(&[T], bool) -> Result<ProbeResult<T>, MatfunError> + Sync,
{
    let distributed = gradmat_krylov::distributed::is_active();
    let batch = if distributed {
        1
    } else {
        rayon::current_num_threads().max(1)
    };
    let mut start = range.start;
    while start < range.end {
        let end = (start + batch).min(range.end);
        let run = |idx: usize| {
            let v = probe_local::<T>(params.probe, params.seed, idx, n);
            per_probe(&v, want_grad).map_err(|e| MatfunError::Probe {
                probe: idx,
                source: Box::new(e),
            })
        };
        let results: Vec<Result<ProbeResult<T>, MatfunError>> = if distributed {
            (start..end).map(run).collect()
        } else {
            (start..end).into_par_iter().map(run).collect()
        };
        for r in results {
            sink(r?);
        }
        start = end;
    }
    Ok(())
}

/// The per-probe work of [`trace_fn`] / [`trace_fn_with_grad`].
pub(crate) fn slq_probe<T, A>(
    op: &A,
    f: &MatrixFunction,
    kp: &KrylovParams,
    v: &[T],
    want: bool,
) -> Result<ProbeResult<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    let t0 = Instant::now();
    let qf = quadform_lanczos(op, v, f, kp)?;
    let forward = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let grad = if want {
        let mut g = vec![T::ZERO; op.num_params()];
        qf.gradient(op, &mut g)?;
        Some(g)
    } else {
        None
    };
    Ok(ProbeResult {
        value: qf.value(),
        depth: qf.depth(),
        matvecs: qf.num_matvecs(),
        grad,
        ritz: qf.ritz_range(),
        conv: qf.convergence(),
        seconds: (
            forward,
            if want {
                t1.elapsed().as_secs_f64()
            } else {
                0.0
            },
        ),
    })
}

/// The lock-step SLQ driver (see [`SlqParams::lockstep`]): groups of probes on scoped threads
/// against a [`crate::lockstep::Gather`]; values folded in probe order, the gradient from the
/// group's shared accumulator (summed in probe order inside each gathered block call).
pub(crate) fn slq_lockstep<T, A>(
    op: &A,
    f: &MatrixFunction,
    params: &SlqParams,
    theta_grad: Option<&mut [T]>,
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    let kp = krylov_params(params);
    let (n, p, l) = (op.ncols(), op.num_params(), params.num_probes);
    let want = theta_grad.is_some();
    let mut totals = Totals::new(l, if want { p } else { 0 });
    let mut start = 0;
    while start < l {
        let end = (start + LOCKSTEP_GROUP).min(l);
        let gather = crate::lockstep::Gather::new(op, end - start);
        // Distributed: every member thread reduces over its own duplicate of the communicator.
        let scopes = crate::lockstep::member_scopes(end - start);
        let results: Vec<Result<ProbeResult<T>, MatfunError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (start..end)
                .zip(scopes)
                .map(|(idx, scope)| {
                    let member = gather.member(idx - start);
                    let kp = &kp;
                    s.spawn(move || {
                        let _scope = scope.map(|d| d.enter());
                        let v = probe_local::<T>(params.probe, params.seed, idx, n);
                        let r = member_probe(&member, &v, f, kp, want);
                        drop(member);
                        r.map_err(|e| MatfunError::Probe {
                            probe: idx,
                            source: Box::new(e),
                        })
                    })
                })
                .collect();
            join_all(handles)
        });
        for r in results {
            totals.add(r?);
        }
        if want {
            totals.add_grad(&gather.take_grad());
        }
        start = end;
    }
    totals.finish(theta_grad)
}

/// Joins scoped threads in order, re-raising a panic of any of them.
pub(crate) fn join_all<R>(handles: Vec<std::thread::ScopedJoinHandle<'_, R>>) -> Vec<R> {
    handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(r) => r,
            Err(payload) => std::panic::resume_unwind(payload),
        })
        .collect()
}

/// Mean, standard error and the scaled gradient `θ̄ += acc / L` of an SLQ run.
fn finish_estimate<T: Scalar>(
    values: Vec<T>,
    depth: usize,
    matvecs: usize,
    ritz_range: (f64, f64),
    seconds: (f64, f64),
    grad: Option<(&mut [T], Vec<T>)>,
) -> Result<Estimate<T>, MatfunError> {
    let l = values.len();
    let v64: Vec<f64> = values.iter().map(|x| x.to_f64()).collect();
    let (mean, se) = mean_and_stderr(&v64);
    let value = T::from_f64(mean);
    if !value.is_finite() {
        return Err(MatfunError::NonFiniteResult {
            what: "stochastic trace estimate",
        });
    }
    if let Some((tg, acc)) = grad {
        let inv_l = T::ONE / T::from_usize(l);
        for (g, a) in tg.iter_mut().zip(&acc) {
            *g += *a * inv_l;
        }
    }
    Ok(Estimate {
        value,
        std_error: T::from_f64(se),
        num_probes: l,
        num_matvecs: matvecs,
        depth,
        per_probe: values,
        ritz_range,
        seconds_forward: seconds.0,
        seconds_backward: seconds.1,
        last_step_change: None,
        exact: false,
    })
}

/// Sets the convergence fields of `est` from the probes' (in probe order).
fn set_convergence<T: Scalar>(est: &mut Estimate<T>, convs: &[Convergence<T>]) {
    let sum: Option<f64> = convs
        .iter()
        .map(|c| c.last_step_change.map(|x| x.to_f64()))
        .sum();
    est.last_step_change = sum.map(|s| T::from_f64(s / convs.len().max(1) as f64));
    est.exact = !convs.is_empty() && convs.iter().all(|c| c.exact);
}

pub(crate) fn krylov_params(params: &SlqParams) -> KrylovParams {
    KrylovParams {
        reorthogonalize: params.reorthogonalize,
        ..KrylovParams::new(params.depth)
    }
}

/// Stochastic Lanczos quadrature estimate of `tr f(A)` for a self-adjoint `op`.
///
/// # Errors
/// [`MatfunError::InvalidParameter`] (zero probes or depth), [`MatfunError::EmptyMatrix`],
/// [`MatfunError::Krylov`] (non-square operator), and per-probe errors wrapped in
/// [`MatfunError::Probe`] (e.g. [`MatfunError::RitzValueOutsideDomain`] for `log` of an
/// operator that is not positive definite).
pub fn trace_fn<T, A>(
    op: &A,
    f: &MatrixFunction,
    params: &SlqParams,
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    check_slq(op, params)?;
    let kp = krylov_params(params);
    if params.lockstep {
        return slq_lockstep(&gradmat_adjoint::NoParams(op), f, params, None);
    }
    let op = gradmat_adjoint::NoParams(op);
    slq_driver(op.ncols(), params, 0, None, |v, _| {
        slq_probe(&op, f, &kp, v, false)
    })
}

/// [`trace_fn`] and the exact gradient of the estimate: **accumulates**
/// `θ̄ += ∇_θ [(1/L) Σ_ℓ ρ_ℓ]` into `theta_grad` (length `op.num_params()`), with the same
/// probes. Costs about twice [`trace_fn`] (one backward Lanczos pass per probe).
///
/// # Errors
/// As [`trace_fn`]; [`MatfunError::DimensionMismatch`] for a wrong `theta_grad` length, and the
/// errors of the backward pass (wrapped in [`MatfunError::Probe`]). `theta_grad` is unchanged on
/// error.
pub fn trace_fn_with_grad<T, A>(
    op: &A,
    f: &MatrixFunction,
    params: &SlqParams,
    theta_grad: &mut [T],
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    check_slq(op, params)?;
    let p = op.num_params();
    if theta_grad.len() != p {
        return Err(MatfunError::DimensionMismatch {
            what: "parameter gradient",
            expected: p,
            got: theta_grad.len(),
        });
    }
    let kp = krylov_params(params);
    if params.lockstep {
        return slq_lockstep(op, f, params, Some(theta_grad));
    }
    slq_driver(op.ncols(), params, p, Some(theta_grad), |v, want| {
        slq_probe(op, f, &kp, v, want)
    })
}

/// Stochastic Lanczos quadrature estimate of `log det A = tr log A` for a self-adjoint,
/// positive definite `op`.
///
/// # Errors
/// As [`trace_fn`]. A Ritz value `≤ 0` in some probe
/// ([`MatfunError::RitzValueOutsideDomain`] inside [`MatfunError::Probe`]) means the operator
/// is not positive definite.
pub fn logdet<T, A>(op: &A, params: &SlqParams) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ?Sized,
{
    trace_fn(op, &MatrixFunction::Log, params)
}

/// [`logdet`] and the exact gradient of the estimate, **accumulated** into `theta_grad`
/// (length `op.num_params()`). In expectation this is `∇_θ log det A = tr(A⁻¹ ∂A/∂θ)`.
///
/// # Errors
/// As [`trace_fn_with_grad`].
pub fn logdet_with_grad<T, A>(
    op: &A,
    params: &SlqParams,
    theta_grad: &mut [T],
) -> Result<Estimate<T>, MatfunError>
where
    T: Scalar,
    A: SelfAdjoint<T> + ParamVjp<T> + ?Sized,
{
    trace_fn_with_grad(op, &MatrixFunction::Log, params, theta_grad)
}

// ---------------------------------------------------------------------------------------------
// Diagonal
// ---------------------------------------------------------------------------------------------

/// A stochastic estimate of the diagonal of an operator.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DiagonalEstimate<T> {
    /// `d_i ≈ (1/L) Σ_ℓ v_ℓ[i] (A v_ℓ)[i]`.
    pub value: Vec<T>,
    /// Per-entry standard error of the mean (`sd/√L`); NaN for a single probe.
    pub std_error: Vec<T>,
    /// Number of probes `L`.
    pub num_probes: usize,
}

/// Probes per block product in [`diagonal_estimate`] (fixed, so results do not depend on the
/// thread count).
const DIAG_BLOCK: usize = 8;

/// Stochastic diagonal estimate `diag(A) ≈ mean_ℓ(v_ℓ ∘ A v_ℓ)` with Rademacher probes from
/// `seed` (Bekas, Kokiopoulou & Saad 2007). Unbiased; the error of entry `i` has variance
/// `Σ_{j≠i} A_ij² / L`, so it is exact for a diagonal matrix. Probes are applied in blocks of 8
/// ([`Operator::apply_block`], SpMM for sparse matrices); accumulation is in probe order
/// (deterministic).
///
/// # Errors
/// [`MatfunError::InvalidParameter`] for zero probes, [`MatfunError::Krylov`] for a
/// non-square operator, [`MatfunError::NonFiniteResult`] if the operator produced NaN/∞.
pub fn diagonal_estimate<T, A>(
    op: &A,
    num_probes: usize,
    seed: u64,
) -> Result<DiagonalEstimate<T>, MatfunError>
where
    T: Scalar,
    A: Operator<T> + ?Sized,
{
    diagonal_estimate_with(op, num_probes, seed, Probe::Rademacher)
}

/// [`diagonal_estimate`] with a choice of probe distribution (Gaussian probes are unbiased too,
/// with variance `(A_ii² + Σ_j A_ij²)/L` per entry).
///
/// # Errors
/// As [`diagonal_estimate`].
pub fn diagonal_estimate_with<T, A>(
    op: &A,
    num_probes: usize,
    seed: u64,
    probe: Probe,
) -> Result<DiagonalEstimate<T>, MatfunError>
where
    T: Scalar,
    A: Operator<T> + ?Sized,
{
    if num_probes == 0 {
        return Err(MatfunError::InvalidParameter(
            "the number of probes must be at least 1".into(),
        ));
    }
    let n = op.ncols();
    if op.nrows() != n {
        return Err(MatfunError::Krylov(
            gradmat_krylov::KrylovError::NotSquare {
                nrows: op.nrows(),
                ncols: n,
            },
        ));
    }
    // Welford's running mean and sum of squared deviations, in f64, in probe order.
    let mut mean = vec![0.0f64; n];
    let mut m2 = vec![0.0f64; n];
    let mut x = vec![T::ZERO; n * DIAG_BLOCK];
    let mut y = vec![T::ZERO; n * DIAG_BLOCK];
    let mut count = 0usize;
    let mut start = 0;
    while start < num_probes {
        let b = DIAG_BLOCK.min(num_probes - start);
        x[..n * b]
            .par_chunks_mut(n.max(1))
            .enumerate()
            .for_each(|(j, col)| fill_probe(probe, seed, start + j, col));
        op.apply_block(&x[..n * b], &mut y[..n * b], b);
        for j in 0..b {
            count += 1;
            let cf = count as f64;
            let (xc, yc) = (&x[j * n..(j + 1) * n], &y[j * n..(j + 1) * n]);
            for i in 0..n {
                let s = xc[i].to_f64() * yc[i].to_f64();
                let d = s - mean[i];
                mean[i] += d / cf;
                m2[i] += d * (s - mean[i]);
            }
        }
        start += b;
    }
    if mean.iter().chain(&m2).any(|v| !v.is_finite()) {
        return Err(MatfunError::NonFiniteResult {
            what: "diagonal estimate",
        });
    }
    let l = num_probes as f64;
    let std_error = m2
        .iter()
        .map(|s| {
            if num_probes < 2 {
                T::from_f64(f64::NAN)
            } else {
                T::from_f64((s / (l - 1.0) / l).sqrt())
            }
        })
        .collect();
    Ok(DiagonalEstimate {
        value: mean.into_iter().map(T::from_f64).collect(),
        std_error,
        num_probes,
    })
}
