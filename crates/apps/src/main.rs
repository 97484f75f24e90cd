//! The `gradmat` command: exact gradients of functions of large sparse matrices.
//!
//! ```text
//! gradmat quadform --matrix A.mtx[.gz] --vector v.txt --function log|exp|sqrt|inv-sqrt|inv \
//!     --method lanczos|arnoldi --depth K [--reorthogonalize none|full] [--no-projection] \
//!     [--grad-dir DIR]
//! gradmat logdet --matrix A.mtx[.gz] --probes L --depth K --seed S [--probe rademacher|gaussian] \
//!     [--shift SIGMA] [--grad-dir DIR]
//! ```
//!
//! * `quadform` computes `vᵀf(A)v ≈ ‖v‖² e₀ᵀ f(T) e₀` from a depth-`K` Lanczos (symmetric
//!   matrices) or Arnoldi decomposition; reorthogonalisation is full unless
//!   `--reorthogonalize none`; `--no-projection` turns off the re-projection of the Arnoldi
//!   adjoint. With Arnoldi, `exp` works for any square matrix (the matfun Arnoldi path); the
//!   other functions are applied to the symmetric part of the Hessenberg matrix and need a
//!   symmetric `A`. Computed by `gradmat_matfun::krylov` (see `gradmat_apps::cli::compute`).
//! * `logdet` estimates `log det(A + σI)` by stochastic Lanczos quadrature
//!   (`gradmat_matfun::estimators`) with `L` probe vectors of matfun's seeded generator
//!   (Rademacher by default) and fully reorthogonalised Lanczos of depth `K`. The matrix must be
//!   symmetric (a `general` file is checked); `A + σI` must be positive definite.
//!
//! **Output:** one JSON object on stdout, `{"value": …, "depth": K_used, "matvecs": …,
//! "seconds_forward": …, "seconds_gradient": …}` (`logdet` adds `"std_error"`, null for one
//! probe). Floats print in shortest round-trip form (`1.2345e0`); `seconds_gradient` (the
//! backward pass alone) is null without `--grad-dir`; `depth` is the depth reached (smaller than
//! `K` after an exact breakdown; the largest over probes for `logdet`); `matvecs` counts the
//! forward products (summed over probes).
//!
//! **Gradients:** `--grad-dir DIR` (created if missing) receives `d_matrix.mtx`, a Matrix Market
//! file with the input's header kind and its entries in the same order, holding
//! `∂value/∂(stored entry)`: in a symmetric file an off-diagonal entry is one parameter standing
//! for both `A[i,j]` and `A[j,i]`; in a general file every entry is its own parameter (for a
//! general file under Lanczos, the partial derivative with the entries treated as independent);
//! duplicate entries each get the gradient of their summed entry. For `logdet --shift` only the
//! `A` part is written. `quadform` also writes `d_vector.txt`, `∂value/∂v` one value per line in
//! C's `%.17e` form.
//!
//! **Cluster:** built with `--features mpi` and started by `mpirun -np P`, `quadform`, `logdet`
//! and `gp` run distributed (see `gradmat_apps::cli::cluster` and the README's "Running on a
//! cluster"); rank 0 prints and writes, every rank exits with the same status.
//!
//! **Errors:** bad input (missing or malformed file, dimension mismatch, `K` outside `1..=N`,
//! a spectrum outside the function's domain, a non-symmetric matrix with Lanczos, unknown
//! options, …) prints one line `gradmat: <file>[:<line>]: <problem>` on stderr and exits with
//! status 2. `--help` prints the usage and exits with status 0.

#![forbid(unsafe_code)]

use gradmat_apps::cli::{main_with_args, one_line, EXIT_ERROR};

/// Under an MPI launcher: initialises MPI and records the world communicator (feature `mpi`).
#[cfg(feature = "mpi")]
fn start_mpi() -> Option<gradmat_operators::comm::mpi::MpiUniverse> {
    use gradmat_operators::comm::MpiComm;
    if !MpiComm::launched_by_mpirun() {
        return None;
    }
    // Ranks waiting in a collective yield the core (OpenMPI busy-polls otherwise, which on a
    // node with as many ranks as cores starves the threads of the rank that computes).
    if std::env::var_os("OMPI_MCA_mpi_yield_when_idle").is_none() {
        std::env::set_var("OMPI_MCA_mpi_yield_when_idle", "1");
    }
    match MpiComm::init() {
        Ok((universe, world)) => {
            gradmat_apps::cluster::set_world(world);
            Some(universe)
        }
        Err(e) => {
            eprintln!("gradmat: cannot start MPI: {}", one_line(&e));
            std::process::exit(EXIT_ERROR);
        }
    }
}

/// A `gradmat` built without MPI, started by mpirun with several ranks: every rank would run
/// the whole computation and write the same files. Refuse (rank 0 says why).
#[cfg(not(feature = "mpi"))]
fn refuse_under_mpirun() {
    if let Some((rank, size)) = gradmat_apps::cluster::launcher_rank_size() {
        if size > 1 {
            if rank == 0 {
                eprintln!(
                    "gradmat: started by mpirun with {size} ranks, but this gradmat was built \
                     without MPI support: build it with `cargo build --release --features mpi`"
                );
            }
            std::process::exit(EXIT_ERROR);
        }
    }
}

fn main() {
    #[cfg(feature = "mpi")]
    let universe = start_mpi();
    #[cfg(not(feature = "mpi"))]
    refuse_under_mpirun();
    // Last resort: a panic prints one line and exits with status 2 (no backtrace). Under
    // mpirun the other ranks may be waiting in a collective: the job is aborted.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        match gradmat_apps::cluster::world() {
            Some(c) if c.size() > 1 => {
                eprintln!(
                    "gradmat: internal error on rank {}: {}",
                    c.rank(),
                    one_line(&msg)
                );
                c.abort(EXIT_ERROR)
            }
            _ => {
                eprintln!("gradmat: internal error: {}", one_line(&msg));
                std::process::exit(EXIT_ERROR);
            }
        }
    }));
    let status = main_with_args(std::env::args_os());
    #[cfg(feature = "mpi")]
    drop(universe); // MPI_Finalize
    std::process::exit(status);
}
