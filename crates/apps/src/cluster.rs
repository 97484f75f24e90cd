//! The process's place in a cluster run (`mpirun -np P gradmat …`).
//!
//! The `gradmat` binary built with the `mpi` feature initialises MPI when an MPI launcher
//! started it and records the world communicator here ([`set_world`]); the pipelines and
//! subcommands ask [`world`] whether they run distributed. Without the feature, or outside
//! `mpirun`, [`world`] is `None` and everything runs serially, unchanged.

use gradmat_operators::comm::Comm;
use std::sync::{Arc, OnceLock};

static WORLD: OnceLock<Arc<dyn Comm>> = OnceLock::new();

/// Records the world communicator of this process (once; later calls are ignored).
pub fn set_world(comm: Arc<dyn Comm>) {
    let _ = WORLD.set(comm);
}

/// The world communicator when running under `mpirun` (`None` serially, and in a binary
/// built without the `mpi` feature).
pub fn world() -> Option<&'static Arc<dyn Comm>> {
    WORLD.get()
}

/// Whether this process prints and writes the outputs: rank 0, or the only process.
pub fn is_root() -> bool {
    world().is_none_or(|c| c.rank() == 0)
}

/// The rank and size an MPI launcher announced in the environment (OpenMPI, MPICH/Hydra,
/// PMIx, Slurm), if any: for the message of a `gradmat` built without MPI started under
/// `mpirun`.
pub fn launcher_rank_size() -> Option<(usize, usize)> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok()?.parse::<usize>().ok())
    };
    let size = get(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"])?;
    let rank = get(&[
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
        "SLURM_PROCID",
    ])?;
    Some((rank, size))
}
