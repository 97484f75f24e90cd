//! [`ThreadComm`]: `P` ranks as threads of one process (tests and experiments without MPI).

use super::{check_counts, Comm, CommStats, Counters};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// What one rank deposits in an exchange.
#[derive(Debug, Clone)]
enum Payload {
    F64(Vec<f64>),
    U64(Vec<u64>),
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    arrived: usize,
    slots: Vec<Option<Payload>>,
    result: Option<Arc<Vec<Payload>>>,
}

/// The state shared by the ranks of one communicator.
#[derive(Debug)]
struct Shared {
    p: usize,
    state: Mutex<State>,
    cv: Condvar,
    /// Duplicates, in creation order (the `i`-th duplicate of every rank is the same).
    children: Mutex<Vec<Arc<Shared>>>,
}

impl Shared {
    fn new(p: usize) -> Arc<Self> {
        Arc::new(Shared {
            p,
            state: Mutex::new(State {
                slots: vec![None; p],
                ..State::default()
            }),
            cv: Condvar::new(),
            children: Mutex::new(Vec::new()),
        })
    }
}

/// `P` ranks as threads of one process: every collective is one exchange of the ranks' parts
/// through shared memory (a generation-counted barrier). For tests of distributed code
/// without an MPI installation; create the ranks with [`ThreadComm::create`] and run each on
/// its own thread (not a rayon task: a blocked rank must not hold a worker the others need).
#[derive(Debug)]
pub struct ThreadComm {
    rank: usize,
    shared: Arc<Shared>,
    dups: AtomicUsize,
    counters: Arc<Counters>,
}

impl ThreadComm {
    /// The `p` ranks of a new communicator (`p ≥ 1`).
    ///
    /// # Panics
    /// If `p == 0`.
    pub fn create(p: usize) -> Vec<ThreadComm> {
        assert!(p > 0, "a communicator needs at least one rank");
        let shared = Shared::new(p);
        (0..p)
            .map(|rank| ThreadComm {
                rank,
                shared: shared.clone(),
                dups: AtomicUsize::new(0),
                counters: Arc::new(Counters::default()),
            })
            .collect()
    }

    /// Runs `f` once per rank of a new `p`-rank communicator, each on its own scoped thread,
    /// and returns the results in rank order: the SPMD program of `mpirun -np p` inside one
    /// process.
    ///
    /// ```
    /// use gradmat_operators::comm::{Comm, ThreadComm};
    /// let ranks = ThreadComm::run(3, |c| c.rank());
    /// assert_eq!(ranks, vec![0, 1, 2]);
    /// ```
    ///
    /// # Panics
    /// If `p == 0`, or (re-raised) if `f` panics on a rank.
    pub fn run<R: Send>(p: usize, f: impl Fn(Arc<dyn Comm>) -> R + Sync) -> Vec<R> {
        let comms = ThreadComm::create(p);
        std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .into_iter()
                .map(|c| {
                    let f = &f;
                    s.spawn(move || f(Arc::new(c)))
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// Deposits `mine` and returns every rank's payload, in rank order.
    fn exchange(&self, mine: Payload) -> Arc<Vec<Payload>> {
        let sh = &*self.shared;
        let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        let gen = st.generation;
        st.slots[self.rank] = Some(mine);
        st.arrived += 1;
        if st.arrived == sh.p {
            let all: Vec<Payload> = st
                .slots
                .iter_mut()
                .map(|s| s.take().expect("every rank deposited"))
                .collect();
            st.result = Some(Arc::new(all));
            st.arrived = 0;
            st.generation += 1;
            sh.cv.notify_all();
        } else {
            while st.generation == gen {
                st = sh.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        st.result.clone().expect("result of the exchange")
    }

    fn f64s(all: &[Payload]) -> impl Iterator<Item = &[f64]> {
        all.iter().map(|p| match p {
            Payload::F64(v) => v.as_slice(),
            Payload::U64(_) => panic!("mismatched collectives (f64 against u64)"),
        })
    }

    fn u64s(all: &[Payload]) -> impl Iterator<Item = &[u64]> {
        all.iter().map(|p| match p {
            Payload::U64(v) => v.as_slice(),
            Payload::F64(_) => panic!("mismatched collectives (u64 against f64)"),
        })
    }
}

/// The part for rank `q` of a concatenation with `counts`.
fn part<'v, X>(v: &'v [X], counts: &[usize], q: usize) -> &'v [X] {
    let start: usize = counts[..q].iter().sum();
    &v[start..start + counts[q]]
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.p
    }
    fn barrier(&self) {
        self.counters.add(0);
        self.exchange(Payload::U64(Vec::new()));
    }
    fn allgatherv_f64(&self, local: &[f64], counts: &[usize], out: &mut [f64]) {
        check_counts("allgatherv", local.len(), counts, out.len(), self.rank);
        self.counters.add(8 * local.len());
        let all = self.exchange(Payload::F64(local.to_vec()));
        let mut at = 0;
        for (q, v) in Self::f64s(&all).enumerate() {
            assert_eq!(
                v.len(),
                counts[q],
                "allgatherv: rank {q} sent {} entries",
                v.len()
            );
            out[at..at + v.len()].copy_from_slice(v);
            at += v.len();
        }
    }
    fn allgatherv_u64(&self, local: &[u64], counts: &[usize], out: &mut [u64]) {
        check_counts("allgatherv", local.len(), counts, out.len(), self.rank);
        self.counters.add(8 * local.len());
        let all = self.exchange(Payload::U64(local.to_vec()));
        let mut at = 0;
        for (q, v) in Self::u64s(&all).enumerate() {
            assert_eq!(
                v.len(),
                counts[q],
                "allgatherv: rank {q} sent {} entries",
                v.len()
            );
            out[at..at + v.len()].copy_from_slice(v);
            at += v.len();
        }
    }
    fn alltoallv_f64(&self, send: &[f64], sc: &[usize], recv: &mut [f64], rc: &[usize]) {
        let p = self.size();
        assert!(sc.len() == p && rc.len() == p && sc.iter().sum::<usize>() == send.len());
        assert!(rc.iter().sum::<usize>() == recv.len());
        let mine = sc.iter().sum::<usize>() - sc[self.rank];
        self.counters.add(8 * mine);
        // Every rank deposits its counts (as f64, exact) followed by its data.
        let mut payload: Vec<f64> = sc.iter().map(|c| *c as f64).collect();
        payload.extend_from_slice(send);
        let all = self.exchange(Payload::F64(payload));
        let mut at = 0;
        for (q, v) in Self::f64s(&all).enumerate() {
            let (counts, data) = v.split_at(p);
            let counts: Vec<usize> = counts.iter().map(|c| *c as usize).collect();
            let piece = part(data, &counts, self.rank);
            assert_eq!(
                piece.len(),
                rc[q],
                "alltoallv: rank {q} sent {} entries",
                piece.len()
            );
            recv[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
    }
    fn alltoallv_u64(&self, send: &[u64], sc: &[usize], recv: &mut [u64], rc: &[usize]) {
        let p = self.size();
        assert!(sc.len() == p && rc.len() == p && sc.iter().sum::<usize>() == send.len());
        assert!(rc.iter().sum::<usize>() == recv.len());
        let mine = sc.iter().sum::<usize>() - sc[self.rank];
        self.counters.add(8 * mine);
        let mut payload: Vec<u64> = sc.iter().map(|c| *c as u64).collect();
        payload.extend_from_slice(send);
        let all = self.exchange(Payload::U64(payload));
        let mut at = 0;
        for (q, v) in Self::u64s(&all).enumerate() {
            let (counts, data) = v.split_at(p);
            let counts: Vec<usize> = counts.iter().map(|c| *c as usize).collect();
            let piece = part(data, &counts, self.rank);
            assert_eq!(
                piece.len(),
                rc[q],
                "alltoallv: rank {q} sent {} entries",
                piece.len()
            );
            recv[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
    }
    fn allreduce_max_f64(&self, buf: &mut [f64]) {
        self.counters.add(8 * buf.len());
        let all = self.exchange(Payload::F64(buf.to_vec()));
        // NaN-propagating: once a NaN is taken, no comparison replaces it.
        for v in Self::f64s(&all) {
            for (b, x) in buf.iter_mut().zip(v) {
                if x.is_nan() || *x > *b {
                    *b = *x;
                }
            }
        }
    }
    fn allreduce_min_u64(&self, buf: &mut [u64]) {
        self.counters.add(8 * buf.len());
        let all = self.exchange(Payload::U64(buf.to_vec()));
        for v in Self::u64s(&all) {
            for (b, x) in buf.iter_mut().zip(v) {
                *b = (*b).min(*x);
            }
        }
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) {
        self.counters
            .add(if self.rank == root { 8 * buf.len() } else { 0 });
        let all = self.exchange(Payload::F64(if self.rank == root {
            buf.to_vec()
        } else {
            Vec::new()
        }));
        let src = Self::f64s(&all).nth(root).expect("root in range");
        buf.copy_from_slice(src);
    }
    fn broadcast_u64(&self, buf: &mut [u64], root: usize) {
        self.counters
            .add(if self.rank == root { 8 * buf.len() } else { 0 });
        let all = self.exchange(Payload::U64(if self.rank == root {
            buf.to_vec()
        } else {
            Vec::new()
        }));
        let src = Self::u64s(&all).nth(root).expect("root in range");
        buf.copy_from_slice(src);
    }
    fn duplicate(&self) -> Arc<dyn Comm> {
        let i = self.dups.fetch_add(1, Ordering::Relaxed);
        let child = {
            let mut ch = self
                .shared
                .children
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            while ch.len() <= i {
                ch.push(Shared::new(self.shared.p));
            }
            ch[i].clone()
        };
        Arc::new(ThreadComm {
            rank: self.rank,
            shared: child,
            dups: AtomicUsize::new(0),
            counters: self.counters.clone(),
        })
    }
    fn stats(&self) -> CommStats {
        self.counters.get()
    }
    fn abort(&self, code: i32) -> ! {
        panic!("ThreadComm::abort({code}) on rank {}", self.rank)
    }
}
