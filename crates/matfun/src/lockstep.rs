//! Lock-step execution of many probes against one operator: the matrix–vector products that the
//! probes request at the same step are gathered into one [`Operator::apply_block`] call, and
//! their parameter VJPs into one [`ParamVjp::vjp_params_block`] call.
//!
//! Each probe runs the ordinary single-vector code (Lanczos, its adjoint) on its own thread,
//! against a [`Gather`] handle. A call on the handle deposits the request and waits; when every
//! probe that is still running has deposited one request (a *round*), the last one to arrive
//! executes the whole round — one block product for all `apply` requests (columns in probe
//! order), one block VJP for all VJP requests — and wakes the others. A probe that finishes (or
//! fails) leaves the group, so probes truncated by breakdown never stall the rest.
//!
//! Determinism: round `r` holds the `r`-th request of every probe still running, which depends
//! only on the probes' own (deterministic) request sequences, not on thread timing; the columns
//! of a round are ordered by probe index. Parameter gradients of all probes are summed into one
//! shared accumulator in that fixed order ([`Gather::take_grad`]), **not** into the `grad`
//! slices passed to the VJP methods: a `Gather` is therefore only for drivers that take the
//! total from [`Gather::take_grad`], which is why this module is private.

use gradmat_operators::{AdjointOperator, Operator, ParamVjp, Scalar, SelfAdjoint};
use std::sync::{Condvar, Mutex};

/// One probe's pending request.
enum Request<T> {
    /// `y = A x` (or `Aᵀ x`, the same for the self-adjoint operators this is used with).
    Apply(Vec<T>),
    /// `θ̄ += ∇θ Σ_c ⟨u_c, A x_c⟩` over `k` columns.
    Vjp { u: Vec<T>, x: Vec<T>, k: usize },
    /// Both at once (`apply_and_vjp_params`).
    ApplyVjp { x: Vec<T>, u: Vec<T> },
}

struct State<T> {
    active: usize,
    pending: Vec<Option<Request<T>>>,
    results: Vec<Option<Vec<T>>>,
    num_pending: usize,
    /// Round counter, to tell a waiting probe that its round was executed.
    round: u64,
    grad: Vec<T>,
    poisoned: bool,
}

/// The shared gathering operator (see the module documentation).
pub(crate) struct Gather<'a, T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> {
    op: &'a A,
    state: Mutex<State<T>>,
    cv: Condvar,
}

/// One probe's handle on a [`Gather`]; implements the operator traits.
pub(crate) struct Member<'g, 'a, T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> {
    gather: &'g Gather<'a, T, A>,
    index: usize,
}

impl<'a, T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> Gather<'a, T, A> {
    /// A group of `members` probes on `op`.
    pub(crate) fn new(op: &'a A, members: usize) -> Self {
        Gather {
            op,
            state: Mutex::new(State {
                active: members,
                pending: (0..members).map(|_| None).collect(),
                results: (0..members).map(|_| None).collect(),
                num_pending: 0,
                round: 0,
                grad: vec![T::ZERO; op.num_params()],
                poisoned: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// The handle of probe `index` (`< members`). Dropping it leaves the group.
    pub(crate) fn member(&self, index: usize) -> Member<'_, 'a, T, A> {
        Member {
            gather: self,
            index,
        }
    }

    /// The summed parameter gradient of all VJP requests so far.
    pub(crate) fn take_grad(&self) -> Vec<T> {
        let mut st = self.lock();
        std::mem::take(&mut st.grad)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic inside a round poisons the group explicitly (`poisoned`); the mutex itself is
        // never held while user code runs, so its own poison flag carries no extra meaning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deposits a request of probe `index` and waits for its result.
    fn submit(&self, index: usize, req: Request<T>) -> Vec<T> {
        let mut st = self.lock();
        assert!(!st.poisoned, "an operator call of another probe panicked");
        debug_assert!(st.pending[index].is_none());
        st.pending[index] = Some(req);
        st.num_pending += 1;
        let my_round = st.round;
        if st.num_pending == st.active {
            st = self.execute_round(st);
        } else {
            while st.round == my_round && !st.poisoned {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        assert!(!st.poisoned, "an operator call of another probe panicked");
        st.results[index]
            .take()
            .expect("a finished round holds a result for every request")
    }

    /// Probe `index` leaves the group; runs the round if everyone else is waiting.
    fn leave(&self) {
        let mut st = self.lock();
        st.active -= 1;
        if st.active > 0 && st.num_pending == st.active {
            drop(self.execute_round(st));
        }
    }

    /// Executes the pending round (called with the lock held; releases it while computing).
    fn execute_round<'s>(
        &'s self,
        mut st: std::sync::MutexGuard<'s, State<T>>,
    ) -> std::sync::MutexGuard<'s, State<T>> {
        let reqs: Vec<(usize, Request<T>)> = st
            .pending
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| r.take().map(|r| (i, r)))
            .collect();
        st.num_pending = 0;
        let mut grad = std::mem::take(&mut st.grad);
        drop(st);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.compute(&reqs, &mut grad)
        }));
        let mut st = self.lock();
        st.grad = grad;
        match outcome {
            Ok(results) => {
                for (i, y) in results {
                    st.results[i] = Some(y);
                }
            }
            Err(_) => st.poisoned = true,
        }
        st.round += 1;
        self.cv.notify_all();
        st
    }

    /// One block product for all applies, one block VJP for all VJPs, in probe order.
    fn compute(&self, reqs: &[(usize, Request<T>)], grad: &mut [T]) -> Vec<(usize, Vec<T>)> {
        let n = self.op.ncols();
        let mut xs: Vec<T> = Vec::new();
        let mut apply_owner: Vec<usize> = Vec::new();
        let (mut us, mut vx): (Vec<T>, Vec<T>) = (Vec::new(), Vec::new());
        let mut kv = 0usize;
        for (i, r) in reqs {
            match r {
                Request::Apply(x) => {
                    xs.extend_from_slice(x);
                    apply_owner.push(*i);
                }
                Request::Vjp { u, x, k } => {
                    us.extend_from_slice(u);
                    vx.extend_from_slice(x);
                    kv += k;
                }
                Request::ApplyVjp { x, u } => {
                    xs.extend_from_slice(x);
                    apply_owner.push(*i);
                    us.extend_from_slice(u);
                    vx.extend_from_slice(x);
                    kv += 1;
                }
            }
        }
        let ka = apply_owner.len();
        let mut ys = vec![T::ZERO; n * ka];
        if ka > 0 {
            self.op.apply_block(&xs, &mut ys, ka);
        }
        if kv > 0 && !grad.is_empty() {
            self.op.vjp_params_block(&us, &vx, kv, grad);
        }
        let mut out = Vec::with_capacity(reqs.len());
        let mut col = 0;
        for (i, r) in reqs {
            match r {
                Request::Apply(_) | Request::ApplyVjp { .. } => {
                    out.push((*i, ys[col * n..(col + 1) * n].to_vec()));
                    col += 1;
                }
                Request::Vjp { .. } => out.push((*i, Vec::new())),
            }
        }
        out
    }
}

impl<T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> Drop for Member<'_, '_, T, A> {
    fn drop(&mut self) {
        self.gather.leave();
    }
}

impl<T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> Operator<T> for Member<'_, '_, T, A> {
    fn nrows(&self) -> usize {
        self.gather.op.nrows()
    }
    fn ncols(&self) -> usize {
        self.gather.op.ncols()
    }
    fn apply(&self, x: &[T], y: &mut [T]) {
        let r = self.gather.submit(self.index, Request::Apply(x.to_vec()));
        y.copy_from_slice(&r);
    }
}

impl<T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> AdjointOperator<T>
    for Member<'_, '_, T, A>
{
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        // Self-adjoint: Aᵀx = Ax.
        self.apply(x, y);
    }
}

impl<T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> SelfAdjoint<T> for Member<'_, '_, T, A> {}

impl<T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> ParamVjp<T> for Member<'_, '_, T, A> {
    fn num_params(&self) -> usize {
        self.gather.op.num_params()
    }
    fn params(&self, out: &mut [T]) {
        self.gather.op.params(out);
    }
    /// Gathered: the contribution goes to the group's shared accumulator, not to `grad`.
    fn vjp_params(&self, u: &[T], x: &[T], _grad: &mut [T]) {
        self.gather.submit(
            self.index,
            Request::Vjp {
                u: u.to_vec(),
                x: x.to_vec(),
                k: 1,
            },
        );
    }
    /// Gathered: the contribution goes to the group's shared accumulator, not to `grad`.
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, _grad: &mut [T]) {
        self.gather.submit(
            self.index,
            Request::Vjp {
                u: u.to_vec(),
                x: x.to_vec(),
                k,
            },
        );
    }
    /// Gathered: the contribution goes to the group's shared accumulator, not to `grad`.
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], _grad: &mut [T]) {
        let r = self.gather.submit(
            self.index,
            Request::ApplyVjp {
                x: x.to_vec(),
                u: u.to_vec(),
            },
        );
        y.copy_from_slice(&r);
    }
    fn prefers_block_vjp(&self) -> bool {
        self.gather.op.prefers_block_vjp()
    }
    fn vjp_block_size(&self) -> usize {
        self.gather.op.vjp_block_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradmat_operators::algebra::Diagonal;

    /// Members with different numbers of requests (as after breakdown): every result equals the
    /// direct product, nobody stalls, and the gathered gradient is the sum of all VJPs.
    #[test]
    fn uneven_members_finish_with_exact_results() {
        let d: Vec<f64> = (1..=6).map(f64::from).collect();
        let op = Diagonal::new(d.clone()).unwrap();
        let gather = Gather::new(&op, 3);
        let counts = [1usize, 3, 5];
        std::thread::scope(|s| {
            for (m, &count) in counts.iter().enumerate() {
                let member = gather.member(m);
                let d = &d;
                s.spawn(move || {
                    for r in 0..count {
                        let x: Vec<f64> = (0..6).map(|i| (i + m + r) as f64).collect();
                        let mut y = vec![0.0; 6];
                        member.apply(&x, &mut y);
                        for i in 0..6 {
                            assert_eq!(y[i].to_bits(), (d[i] * x[i]).to_bits());
                        }
                        let u = vec![1.0; 6];
                        let mut unused = vec![0.0; 6];
                        member.vjp_params(&u, &x, &mut unused);
                        assert!(unused.iter().all(|&g| g == 0.0));
                    }
                });
            }
        });
        // ∇_d ⟨u, diag(d) x⟩ = u ∘ x with u = 1: the sum of all x over all requests.
        let g = gather.take_grad();
        for (i, gi) in g.iter().enumerate() {
            let mut want = 0.0;
            for (m, &count) in counts.iter().enumerate() {
                for r in 0..count {
                    want += (i + m + r) as f64;
                }
            }
            assert_eq!(gi.to_bits(), f64::to_bits(want), "entry {i}");
        }
    }
}
