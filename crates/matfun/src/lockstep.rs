//! Lock-step execution of several Krylov runs against one operator: the matrix–vector products
//! that the runs request at the same step are gathered into one [`Operator::apply_block`] call,
//! and all their parameter VJPs into one [`ParamVjp::vjp_params_block`] call at the end.
//!
//! Each run (an SLQ probe's Lanczos and adjoint, a conjugate-gradient solve, …) is ordinary
//! single-vector code on its own thread, against a [`Member`] handle of a shared [`Gather`]. An
//! `apply` on the handle deposits the request and waits; when every member that is still
//! running has deposited one (a *round*), the last to arrive executes the whole round — one
//! block product, columns in member order — and wakes the others. A member that finishes (or
//! fails) leaves the group when its handle is dropped, so runs of different lengths (breakdown,
//! CG iterations) never stall the rest. For a kernel operator one round is one pass over the
//! kernel tiles for all members.
//!
//! **Parameter VJPs are deferred**: a VJP request returns at once and is kept; [`Gather::take_grad`]
//! executes all of them as one block VJP (one pass over the tiles for every pair of every
//! member), each member's pairs scaled by its weight ([`Gather::member_weighted`]), into one
//! shared accumulator — **not** into the `grad` slices passed to the VJP methods (those stay
//! untouched). A `Gather` is therefore only for drivers that take the total from `take_grad`.
//!
//! Distributed (inside a scope of `gradmat_krylov::distributed`): the drivers give every member
//! thread its own duplicate of the communicator for its reductions; the rounds' products are
//! the operator's own collectives, executed one round at a time by whichever member arrives
//! last — the same sequence on every rank, since membership changes only when a run ends, which
//! depends on reduced (global) values.
//!
//! Determinism: round `r` holds the `r`-th apply of every member still running, which depends
//! only on the members' own (deterministic) request sequences, not on thread timing; the
//! columns of a round are ordered by member index; deferred VJPs are ordered by (member, order
//! of submission). Results are bit-identical for any thread count.

use gradmat_krylov::distributed::Distributed;
use gradmat_operators::{AdjointOperator, Operator, ParamVjp, Scalar, SelfAdjoint};

/// One distributed scope per member thread of a group of `k` (each with its own duplicate of
/// the communicator, so that the members' reductions are independent collectives), or `None`s
/// outside a distributed scope. Collective: every rank calls it at the same point.
pub(crate) fn member_scopes(k: usize) -> Vec<Option<Distributed>> {
    match gradmat_krylov::distributed::current() {
        Some(d) => (0..k).map(|_| Some(d.duplicate())).collect(),
        None => vec![None; k],
    }
}
use std::sync::{Condvar, Mutex};

/// A deferred VJP: `θ̄ += w ∇θ Σ_c ⟨u_c, A x_c⟩` over `k` columns of member `member`.
struct Deferred<T> {
    member: usize,
    weight: T,
    u: Vec<T>,
    x: Vec<T>,
    k: usize,
}

/// How many passes over the operator a group made (for a kernel: passes over its tiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatherStats {
    /// Block products executed (rounds).
    pub apply_passes: usize,
    /// Columns of those products (single-vector products they stand for).
    pub apply_columns: usize,
    /// Block VJPs executed.
    pub vjp_passes: usize,
    /// Column pairs of those VJPs.
    pub vjp_columns: usize,
}

struct State<T> {
    active: usize,
    pending: Vec<Option<Vec<T>>>,
    results: Vec<Option<Vec<T>>>,
    num_pending: usize,
    /// Round counter, to tell a waiting member that its round was executed.
    round: u64,
    deferred: Vec<Deferred<T>>,
    grad: Vec<T>,
    stats: GatherStats,
    poisoned: bool,
}

/// The shared gathering operator (see the module documentation).
pub struct Gather<'a, T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> {
    op: &'a A,
    state: Mutex<State<T>>,
    cv: Condvar,
}

/// One member's handle on a [`Gather`]; implements the operator traits (self-adjoint: the
/// operator must be). Dropping it leaves the group.
pub struct Member<'g, 'a, T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> {
    gather: &'g Gather<'a, T, A>,
    index: usize,
    weight: T,
}

impl<'a, T: Scalar, A: SelfAdjoint<T> + ParamVjp<T> + ?Sized> Gather<'a, T, A> {
    /// A group of `members` runs on `op`. Every index `0..members` must be handed out (as
    /// [`member`](Self::member) or [`member_weighted`](Self::member_weighted)) and dropped
    /// eventually, or the others wait for it.
    pub fn new(op: &'a A, members: usize) -> Self {
        Gather {
            op,
            state: Mutex::new(State {
                active: members,
                pending: (0..members).map(|_| None).collect(),
                results: (0..members).map(|_| None).collect(),
                num_pending: 0,
                round: 0,
                deferred: Vec::new(),
                grad: vec![T::ZERO; op.num_params()],
                stats: GatherStats::default(),
                poisoned: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// The handle of member `index` (`< members`), its VJPs with weight 1.
    pub fn member(&self, index: usize) -> Member<'_, 'a, T, A> {
        self.member_weighted(index, T::ONE)
    }

    /// The handle of member `index` whose VJPs enter the total with weight `weight`.
    pub fn member_weighted(&self, index: usize, weight: T) -> Member<'_, 'a, T, A> {
        Member {
            gather: self,
            index,
            weight,
        }
    }

    /// Executes the deferred VJPs (one block VJP, members in index order, each member's in the
    /// order it submitted them) and returns the weighted total `θ̄` of all VJP requests so far.
    pub fn take_grad(&self) -> Vec<T> {
        let mut st = self.lock();
        let mut deferred = std::mem::take(&mut st.deferred);
        // Stable: a member's requests keep their order of submission.
        deferred.sort_by_key(|d| d.member);
        let k: usize = deferred.iter().map(|d| d.k).sum();
        if k > 0 && !st.grad.is_empty() {
            let n = self.op.ncols();
            let (mut us, mut xs) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
            for d in &deferred {
                if d.weight == T::ONE {
                    us.extend_from_slice(&d.u);
                } else {
                    us.extend(d.u.iter().map(|v| *v * d.weight));
                }
                xs.extend_from_slice(&d.x);
            }
            drop(deferred);
            let mut grad = std::mem::take(&mut st.grad);
            self.op.vjp_params_block(&us, &xs, k, &mut grad);
            st.grad = grad;
            st.stats.vjp_passes += 1;
            st.stats.vjp_columns += k;
        }
        std::mem::replace(&mut st.grad, vec![T::ZERO; self.op.num_params()])
    }

    /// The passes made so far.
    pub fn stats(&self) -> GatherStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic inside a round poisons the group explicitly (`poisoned`); the mutex itself is
        // never held while user code runs, so its own poison flag carries no extra meaning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a VJP of member `index` for [`take_grad`](Self::take_grad).
    fn defer(&self, index: usize, weight: T, u: &[T], x: &[T], k: usize) {
        let mut st = self.lock();
        st.deferred.push(Deferred {
            member: index,
            weight,
            u: u.to_vec(),
            x: x.to_vec(),
            k,
        });
    }

    /// Deposits a product request of member `index` and waits for its result.
    fn submit(&self, index: usize, x: Vec<T>) -> Vec<T> {
        let mut st = self.lock();
        assert!(!st.poisoned, "an operator call of another member panicked");
        debug_assert!(st.pending[index].is_none());
        st.pending[index] = Some(x);
        st.num_pending += 1;
        let my_round = st.round;
        if st.num_pending == st.active {
            st = self.execute_round(st);
        } else {
            while st.round == my_round && !st.poisoned {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        assert!(!st.poisoned, "an operator call of another member panicked");
        st.results[index]
            .take()
            .expect("a finished round holds a result for every request")
    }

    /// Member `index` leaves the group; runs the round if everyone else is waiting.
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
        let reqs: Vec<(usize, Vec<T>)> = st
            .pending
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| r.take().map(|r| (i, r)))
            .collect();
        st.num_pending = 0;
        st.stats.apply_passes += 1;
        st.stats.apply_columns += reqs.len();
        drop(st);
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.compute(&reqs)));
        let mut st = self.lock();
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

    /// One block product for all requests of the round, columns in member order.
    fn compute(&self, reqs: &[(usize, Vec<T>)]) -> Vec<(usize, Vec<T>)> {
        let n = self.op.ncols();
        let k = reqs.len();
        let mut xs: Vec<T> = Vec::with_capacity(n * k);
        for (_, x) in reqs {
            xs.extend_from_slice(x);
        }
        let mut ys = vec![T::ZERO; n * k];
        self.op.apply_block(&xs, &mut ys, k);
        reqs.iter()
            .enumerate()
            .map(|(c, (i, _))| (*i, ys[c * n..(c + 1) * n].to_vec()))
            .collect()
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
        let r = self.gather.submit(self.index, x.to_vec());
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
    /// Deferred to [`Gather::take_grad`]: the contribution goes to the group's accumulator, not
    /// to `grad`.
    fn vjp_params(&self, u: &[T], x: &[T], _grad: &mut [T]) {
        self.gather.defer(self.index, self.weight, u, x, 1);
    }
    /// Deferred to [`Gather::take_grad`]: the contribution goes to the group's accumulator, not
    /// to `grad`.
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, _grad: &mut [T]) {
        self.gather.defer(self.index, self.weight, u, x, k);
    }
    /// The product gathered into the round, the VJP deferred to [`Gather::take_grad`].
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], _grad: &mut [T]) {
        self.gather.defer(self.index, self.weight, u, x, 1);
        self.apply(x, y);
    }
    /// All pairs at once: they are only stored until [`Gather::take_grad`].
    fn vjp_block_size(&self) -> usize {
        usize::MAX
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
