//! Fixed-step explicit Runge–Kutta solvers for the linear ODE `ẇ = A w` on `[0, t]`, with two
//! kinds of reverse-mode gradients (the baselines of the paper's §6):
//!
//! * [`backsolve_vjp`] — the **continuous** adjoint ("differentiate, then discretise"): the
//!   augmented system `w' = −A w`, `a' = Aᵀ a`, `g' = ∇_θ⟨a, A w⟩` is integrated backwards in
//!   time from `(w(t), w̄, 0)` with the same method and steps. It approximates the gradient of
//!   the exact flow and is *not* the exact gradient of the discrete forward solution (the two
//!   differ by the method's discretisation error).
//! * [`discrete_vjp`] — the **discrete** adjoint ("discretise, then differentiate",
//!   checkpointed): the states at the start of every step are stored in the forward pass, the
//!   stages of a step are recomputed from its checkpoint and reversed exactly. It is the exact
//!   gradient of the discrete forward solution.
//!
//! Both methods used here have six stages and a zero weight on the seventh (FSAL) stage, so a
//! step costs six products with `A` (forward) and six with `A` plus six with `Aᵀ` (backward).

use gradmat_operators::{AdjointOperator, Operator, ParamVjp};

/// An explicit six-stage Runge–Kutta tableau for autonomous problems (the `c` nodes are not
/// needed for `ẇ = A w`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tableau {
    /// Name for reports.
    pub name: &'static str,
    /// Strictly lower-triangular coefficients `a[i][j]`, `j < i`.
    pub a: [[f64; 6]; 6],
    /// Weights of the propagated (fifth-order) solution.
    pub b: [f64; 6],
}

/// Dormand–Prince 5(4) ("Dopri5"), propagating the fifth-order solution.
pub const DOPRI5: Tableau = Tableau {
    name: "dopri5",
    a: [
        [0.0; 6],
        [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
        [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
        [
            19372.0 / 6561.0,
            -25360.0 / 2187.0,
            64448.0 / 6561.0,
            -212.0 / 729.0,
            0.0,
            0.0,
        ],
        [
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
            0.0,
        ],
    ],
    b: [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
};

/// Tsitouras 5(4) ("Tsit5", Ch. Tsitouras, Comput. Math. Appl. 62, 2011), propagating the
/// fifth-order solution.
#[allow(clippy::excessive_precision)]
pub const TSIT5: Tableau = Tableau {
    name: "tsit5",
    a: [
        [0.0; 6],
        [0.161, 0.0, 0.0, 0.0, 0.0, 0.0],
        [-0.008480655492356989, 0.335480655492357, 0.0, 0.0, 0.0, 0.0],
        [
            2.897153057105493,
            -6.359448489975075,
            4.3622954328695815,
            0.0,
            0.0,
            0.0,
        ],
        [
            5.325864828439257,
            -11.748883564062828,
            7.4955393428898365,
            -0.09249506636175525,
            0.0,
            0.0,
        ],
        [
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
            0.0,
        ],
    ],
    b: [
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
    ],
};

/// Products with the operator per step (forward).
pub const STAGES: usize = 6;

/// Elements per cache block of the fused vector updates.
const BLOCK: usize = 512;

thread_local! {
    /// Work vectors of the solvers, reused across calls on the same thread.
    static POOL: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A vector of length `n` from this thread's pool (contents unspecified: every user overwrites
/// it before reading).
fn take(n: usize) -> Vec<f64> {
    let mut v = POOL
        .with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .unwrap_or_default();
    v.resize(n, 0.0);
    v
}

fn put(v: Vec<f64>) {
    POOL.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.push(v);
        }
    });
}

fn take_stages(n: usize) -> Vec<Vec<f64>> {
    (0..STAGES).map(|_| take(n)).collect()
}

fn put_all(vs: Vec<Vec<f64>>) {
    vs.into_iter().for_each(put);
}

/// `out = base + Σ_t c_t x_t` (terms with `c_t = 0` skipped), in cache blocks: each input is
/// read once and `out` written once, with the additions in the order of the terms (the same
/// rounding as `out = base` followed by one axpy per term).
fn combine(out: &mut [f64], base: Option<&[f64]>, terms: &[(f64, &[f64])]) {
    for (b, ob) in out.chunks_mut(BLOCK).enumerate() {
        let r = b * BLOCK..b * BLOCK + ob.len();
        if let Some(base) = base {
            ob.copy_from_slice(&base[r.clone()]);
        }
        for &(c, x) in terms {
            if c != 0.0 {
                ob.iter_mut()
                    .zip(&x[r.clone()])
                    .for_each(|(o, v)| *o += c * v);
            }
        }
    }
}

/// `z = y + h Σ_{j<i} a_ij k_j`.
fn stage_input(tab: &Tableau, i: usize, h: f64, y: &[f64], k: &[Vec<f64>], z: &mut [f64]) {
    let mut terms: [(f64, &[f64]); STAGES] = [(0.0, &[]); STAGES];
    for (j, kj) in k.iter().enumerate().take(i) {
        terms[j] = (h * tab.a[i][j], kj);
    }
    combine(z, Some(y), &terms[..i.min(k.len())]);
}

/// `y += h Σ_i b_i k_i`.
fn advance(tab: &Tableau, h: f64, y: &mut [f64], k: &[Vec<f64>]) {
    let mut terms: [(f64, &[f64]); STAGES] = [(0.0, &[]); STAGES];
    for (i, ki) in k.iter().enumerate().take(STAGES) {
        terms[i] = (h * tab.b[i], ki);
    }
    combine(y, None, &terms[..k.len().min(STAGES)]);
}

/// One forward step `y ← y + h Σ b_i k_i`, `k_i = A z_i`; the stage inputs are written to `zs`
/// when given. `k` and `z` are scratch.
fn step<A: Operator<f64> + ?Sized>(
    op: &A,
    tab: &Tableau,
    h: f64,
    y: &mut [f64],
    k: &mut [Vec<f64>],
    z: &mut [f64],
    mut zs: Option<&mut [Vec<f64>]>,
) {
    for i in 0..STAGES {
        stage_input(tab, i, h, y, &k[..i], z);
        op.apply(z, &mut k[i]);
        if let Some(zs) = zs.as_deref_mut() {
            zs[i].copy_from_slice(z);
        }
    }
    advance(tab, h, y, k);
}

/// `w(t) ≈ exp(tA) w₀` by `steps` fixed steps of the method (`steps·6` products with `A`).
/// Returns the end state. `steps = 0` returns `w₀`.
///
/// # Panics
/// If `w0.len()` differs from the operator's dimension.
pub fn solve<A: Operator<f64> + ?Sized>(
    op: &A,
    tab: &Tableau,
    w0: &[f64],
    t: f64,
    steps: usize,
) -> Vec<f64> {
    let n = op.ncols();
    assert_eq!(w0.len(), n, "rk::solve: start vector length");
    let mut y = w0.to_vec();
    if steps == 0 {
        return y;
    }
    let h = t / steps as f64;
    let mut k = take_stages(n);
    let mut z = take(n);
    for _ in 0..steps {
        step(op, tab, h, &mut y, &mut k, &mut z, None);
    }
    put_all(k);
    put(z);
    y
}

/// Forward solve followed by the **continuous** (backsolve) adjoint. `cot(w(t))` returns the
/// loss value and its cotangent `w̄`; the parameter gradient `∇_θ loss` (through the adjoint
/// ODE) is **accumulated** into `theta_grad`. Returns `(value, w(t), w̄₀)` where `w̄₀` is the
/// adjoint state at time 0 (the gradient with respect to `w₀`).
///
/// Cost: `6·steps` products with `A` forward; `6·steps` with `A` and `6·steps` with `Aᵀ` (plus
/// the parameter VJPs) backward. Memory `O(N)` independent of `steps`.
///
/// # Errors
/// Whatever `cot` returns.
pub fn backsolve_vjp<A, F, E>(
    op: &A,
    tab: &Tableau,
    w0: &[f64],
    t: f64,
    steps: usize,
    cot: F,
    theta_grad: &mut [f64],
) -> Result<(f64, Vec<f64>, Vec<f64>), E>
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
    F: FnOnce(&[f64]) -> Result<(f64, Vec<f64>), E>,
{
    let n = op.ncols();
    let w1 = solve(op, tab, w0, t, steps);
    let (value, wbar) = cot(&w1)?;
    let mut w = w1.clone();
    let mut a = wbar;
    if steps == 0 {
        return Ok((value, w1, a));
    }
    let h = t / steps as f64;
    let (mut kw, mut ka) = (take_stages(n), take_stages(n));
    let (mut zw, mut za) = (take(n), take(n));
    let mut u = take(n);
    for _ in 0..steps {
        for i in 0..STAGES {
            stage_input(tab, i, h, &w, &kw[..i], &mut zw);
            stage_input(tab, i, h, &a, &ka[..i], &mut za);
            // kw_i = −A zw_i (reversed time), g += h b_i ∇θ⟨za_i, A zw_i⟩ in the same pass.
            let hb = h * tab.b[i];
            if hb != 0.0 {
                u.iter_mut().zip(&za).for_each(|(o, v)| *o = hb * v);
                op.apply_and_vjp_params(&zw, &mut kw[i], &u, theta_grad);
            } else {
                op.apply(&zw, &mut kw[i]);
            }
            kw[i].iter_mut().for_each(|v| *v = -*v);
            op.apply_transpose(&za, &mut ka[i]);
        }
        advance(tab, h, &mut w, &kw);
        advance(tab, h, &mut a, &ka);
    }
    put_all(kw);
    put_all(ka);
    put(zw);
    put(za);
    put(u);
    Ok((value, w1, a))
}

/// Forward solve followed by the **discrete** adjoint with checkpoints at every step start.
/// Same contract as [`backsolve_vjp`]; the result is the exact gradient of the discrete
/// solution. Memory `O(N·steps)` for the checkpoints plus `O(N)` for one step's stages.
///
/// # Errors
/// Whatever `cot` returns.
pub fn discrete_vjp<A, F, E>(
    op: &A,
    tab: &Tableau,
    w0: &[f64],
    t: f64,
    steps: usize,
    cot: F,
    theta_grad: &mut [f64],
) -> Result<(f64, Vec<f64>, Vec<f64>), E>
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
    F: FnOnce(&[f64]) -> Result<(f64, Vec<f64>), E>,
{
    let n = op.ncols();
    assert_eq!(w0.len(), n, "rk::discrete_vjp: start vector length");
    let h = if steps == 0 { 0.0 } else { t / steps as f64 };
    let mut k = take_stages(n);
    let mut z = take(n);
    let mut checkpoints = Vec::with_capacity(steps);
    let mut y = w0.to_vec();
    for _ in 0..steps {
        let mut c = take(n);
        c.copy_from_slice(&y);
        checkpoints.push(c);
        step(op, tab, h, &mut y, &mut k, &mut z, None);
    }
    let (value, mut ybar) = match cot(&y) {
        Ok(v) => v,
        Err(e) => {
            put_all(checkpoints);
            put_all(k);
            put(z);
            return Err(e);
        }
    };
    let mut zs = take_stages(n);
    let mut kbar = take_stages(n);
    let mut zbar = take(n);
    let mut yc = take(n);
    for yn in checkpoints.iter().rev() {
        // Recompute the stage inputs of this step from its checkpoint.
        yc.copy_from_slice(yn);
        step(op, tab, h, &mut yc, &mut k, &mut z, Some(&mut zs));
        for (i, kb) in kbar.iter_mut().enumerate() {
            let c = h * tab.b[i];
            kb.iter_mut().zip(&ybar).for_each(|(o, v)| *o = c * v);
        }
        // ȳ_n = ȳ_{n+1} + Σ_i z̄_i, z̄_i = Aᵀ k̄_i, k̄_j += h a_ij z̄_i (j < i).
        for i in (0..STAGES).rev() {
            op.apply_transpose(&kbar[i], &mut zbar);
            op.vjp_params(&kbar[i], &zs[i], theta_grad);
            let (lower, _) = kbar.split_at_mut(i);
            for (b, zb) in zbar.chunks(BLOCK).enumerate() {
                let r = b * BLOCK..b * BLOCK + zb.len();
                ybar[r.clone()]
                    .iter_mut()
                    .zip(zb)
                    .for_each(|(o, v)| *o += v);
                for (j, kj) in lower.iter_mut().enumerate() {
                    let c = h * tab.a[i][j];
                    if c != 0.0 {
                        kj[r.clone()]
                            .iter_mut()
                            .zip(zb)
                            .for_each(|(o, v)| *o += c * v);
                    }
                }
            }
        }
    }
    put_all(checkpoints);
    put_all(k);
    put_all(zs);
    put_all(kbar);
    put(z);
    put(zbar);
    put(yc);
    Ok((value, y, ybar))
}
