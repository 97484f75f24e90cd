//! [`MpiComm`]: the [`Comm`] trait over MPI (rsmpi 0.8 and the system MPI library).
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! use gradmat_operators::comm::{Comm, MpiComm};
//! let (universe, world) = MpiComm::init()?; // MPI_Init_thread(MPI_THREAD_MULTIPLE)
//! println!("rank {} of {}", world.rank(), world.size());
//! drop(world);
//! drop(universe); // MPI_Finalize
//! # Ok(()) }
//! ```
//!
//! Run under `mpirun -np P`. MPI is initialised with `MPI_THREAD_MULTIPLE`: gradmat's
//! lock-step runs (several Krylov runs on their own threads sharing the operator's products)
//! give each thread its own duplicate of the communicator, and their collectives then proceed
//! concurrently.

use super::{check_counts, Comm, CommStats, Counters};
use mpi::collective::CommunicatorCollectives;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;
use mpi::Count;
use std::sync::Arc;

/// The MPI library's state: MPI is finalised when this is dropped (after every [`MpiComm`]
/// has been dropped).
pub struct MpiUniverse {
    _universe: Universe,
}

impl std::fmt::Debug for MpiUniverse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MpiUniverse")
    }
}

/// A communicator over MPI (see the [module documentation](self)).
pub struct MpiComm {
    comm: SimpleCommunicator,
    rank: usize,
    size: usize,
    counters: Arc<Counters>,
}

// SAFETY: MPI is initialised with MPI_THREAD_MULTIPLE (checked in `init`), under which MPI
// calls may be made from any thread; the communicator handle is an opaque, immutable
// reference to library state. gradmat never issues two collectives on the *same*
// communicator concurrently (threads that need their own sequence of collectives get a
// duplicate), which is the MPI rule for collectives.
#[allow(unsafe_code)]
unsafe impl Send for MpiComm {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for MpiComm {}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiComm(rank {} of {})", self.rank, self.size)
    }
}

fn counts_displs(counts: &[usize]) -> (Vec<Count>, Vec<Count>) {
    let c: Vec<Count> = counts
        .iter()
        .map(|v| Count::try_from(*v).expect("MPI message part above 2^31 entries"))
        .collect();
    let mut d = Vec::with_capacity(c.len());
    let mut at: Count = 0;
    for v in &c {
        d.push(at);
        at = at.checked_add(*v).expect("MPI message above 2^31 entries");
    }
    (c, d)
}

impl MpiComm {
    /// Initialises MPI (`MPI_Init_thread` with `MPI_THREAD_MULTIPLE`) and returns the library
    /// state and `MPI_COMM_WORLD`. Drop the communicators before the universe.
    ///
    /// # Errors
    /// When MPI was already initialised, or the library does not provide
    /// `MPI_THREAD_MULTIPLE`.
    pub fn init() -> Result<(MpiUniverse, Arc<MpiComm>), String> {
        let (universe, provided) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| "MPI was already initialised".to_string())?;
        if provided < mpi::Threading::Multiple {
            return Err(format!(
                "the MPI library provides thread support {provided:?}, gradmat needs Multiple"
            ));
        }
        let world = universe.world();
        let comm = Arc::new(MpiComm::from_communicator(world));
        Ok((
            MpiUniverse {
                _universe: universe,
            },
            comm,
        ))
    }

    fn from_communicator(comm: SimpleCommunicator) -> Self {
        let rank = usize::try_from(comm.rank()).expect("MPI rank is non-negative");
        let size = usize::try_from(comm.size()).expect("MPI size is positive");
        MpiComm {
            comm,
            rank,
            size,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`):
    /// one of the environment variables OpenMPI, MPICH/Hydra, PMIx or Slurm set for their
    /// processes is present.
    pub fn launched_by_mpirun() -> bool {
        [
            "OMPI_COMM_WORLD_SIZE",
            "PMIX_RANK",
            "PMI_RANK",
            "PMI_SIZE",
            "MPI_LOCALNRANKS",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn barrier(&self) {
        self.counters.add(0);
        self.comm.barrier();
    }
    fn allgatherv_f64(&self, local: &[f64], counts: &[usize], out: &mut [f64]) {
        check_counts("allgatherv", local.len(), counts, out.len(), self.rank);
        self.counters.add(8 * local.len());
        let (c, d) = counts_displs(counts);
        let mut part = PartitionMut::new(out, &c[..], &d[..]);
        self.comm.all_gather_varcount_into(local, &mut part);
    }
    fn allgatherv_u64(&self, local: &[u64], counts: &[usize], out: &mut [u64]) {
        check_counts("allgatherv", local.len(), counts, out.len(), self.rank);
        self.counters.add(8 * local.len());
        let (c, d) = counts_displs(counts);
        let mut part = PartitionMut::new(out, &c[..], &d[..]);
        self.comm.all_gather_varcount_into(local, &mut part);
    }
    fn alltoallv_f64(&self, send: &[f64], sc: &[usize], recv: &mut [f64], rc: &[usize]) {
        assert!(sc.len() == self.size && rc.len() == self.size);
        assert!(sc.iter().sum::<usize>() == send.len() && rc.iter().sum::<usize>() == recv.len());
        self.counters
            .add(8 * (sc.iter().sum::<usize>() - sc[self.rank]));
        let (scc, sd) = counts_displs(sc);
        let (rcc, rd) = counts_displs(rc);
        let s = Partition::new(send, &scc[..], &sd[..]);
        let mut r = PartitionMut::new(recv, &rcc[..], &rd[..]);
        self.comm.all_to_all_varcount_into(&s, &mut r);
    }
    fn alltoallv_u64(&self, send: &[u64], sc: &[usize], recv: &mut [u64], rc: &[usize]) {
        assert!(sc.len() == self.size && rc.len() == self.size);
        assert!(sc.iter().sum::<usize>() == send.len() && rc.iter().sum::<usize>() == recv.len());
        self.counters
            .add(8 * (sc.iter().sum::<usize>() - sc[self.rank]));
        let (scc, sd) = counts_displs(sc);
        let (rcc, rd) = counts_displs(rc);
        let s = Partition::new(send, &scc[..], &sd[..]);
        let mut r = PartitionMut::new(recv, &rcc[..], &rd[..]);
        self.comm.all_to_all_varcount_into(&s, &mut r);
    }
    fn allreduce_max_f64(&self, buf: &mut [f64]) {
        // Through an all-gather (MPI_MAX's NaN behaviour is unspecified; these buffers are a
        // few values): NaN-propagating and the same on every rank.
        let m = buf.len();
        let mut all = vec![0.0; m * self.size];
        self.allgather_f64(buf, &mut all);
        for part in all.chunks_exact(m.max(1)).take(self.size) {
            for (b, x) in buf.iter_mut().zip(part) {
                if x.is_nan() || *x > *b {
                    *b = *x;
                }
            }
        }
    }
    fn allreduce_min_u64(&self, buf: &mut [u64]) {
        self.counters.add(8 * buf.len());
        let send = buf.to_vec();
        self.comm
            .all_reduce_into(&send[..], buf, mpi::collective::SystemOperation::min());
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) {
        self.counters
            .add(if self.rank == root { 8 * buf.len() } else { 0 });
        let root = self
            .comm
            .process_at_rank(Count::try_from(root).expect("root rank"));
        root.broadcast_into(buf);
    }
    fn broadcast_u64(&self, buf: &mut [u64], root: usize) {
        self.counters
            .add(if self.rank == root { 8 * buf.len() } else { 0 });
        let root = self
            .comm
            .process_at_rank(Count::try_from(root).expect("root rank"));
        root.broadcast_into(buf);
    }
    fn duplicate(&self) -> Arc<dyn Comm> {
        self.counters.add(0);
        let mut d = MpiComm::from_communicator(self.comm.duplicate());
        d.counters = self.counters.clone();
        Arc::new(d)
    }
    fn stats(&self) -> CommStats {
        self.counters.get()
    }
    fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }
}
