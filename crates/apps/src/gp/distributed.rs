//! The stochastic GP loss on a kernel matrix distributed by rows (`mpirun -np P gradmat gp`).
//!
//! Every rank holds the training inputs and the hyperparameters (replicated); the kernel
//! operator `K = k_θ(X, X) + σ²I` is a [`DistKernel`] whose rows (tiles of 128 points) are
//! split evenly over the ranks, and every `n`-vector of the computation — CG's iterate, the
//! probes, the Lanczos bases, the adjoint vectors, the preconditioner's factor — holds this
//! rank's rows only. The pivoted partial Cholesky factor (rank `R`, `O(n·R·(d + R))`) is
//! computed on every rank from its copy of the kernel, which then keeps its rows.
//!
//! The numbers are those of [`Gp::loss_stochastic`] up to rounding: the same probes (each
//! rank's rows of them), the same lock-step schedule; products and reductions add their terms
//! in a different order (tile contributions of other ranks, rank boundaries inside reduction
//! chunks), so loss and gradient agree with the serial run to ~1e-13 relative, and the loss is
//! the same bits on every rank. The stored-kernel mode (`--kernel-cache`) is not used: the
//! distributed kernel is always matrix-free.

use super::model::{solve_logdet_params, Gp, GpError, Hyper, LossGrad, Stochastic};
use gradmat_krylov::distributed::{serially, Distributed};
use gradmat_krylov::precond::{PartialCholesky, PartialCholeskyParams};
use gradmat_matfun::preconditioned::logdet_and_solve_with_grad;
use gradmat_operators::comm::{sum_in_rank_order, Comm};
use gradmat_operators::dist::{local_rows, DistKernel};
use gradmat_operators::kernel::DEFAULT_TILE;
use gradmat_operators::ParamVjp;
use std::sync::Arc;

impl Gp<'_> {
    /// [`Gp::loss_stochastic`] with the kernel distributed by rows over the ranks of `comm`
    /// (see the [module documentation](self)). `warm` holds this rank's rows of `α`.
    ///
    /// # Errors
    /// As [`Gp::loss_stochastic`], on every rank alike.
    pub fn loss_stochastic_distributed(
        &self,
        raw: &[f64],
        settings: &Stochastic,
        seed: u64,
        warm: &mut Option<Vec<f64>>,
        comm: &Arc<dyn Comm>,
    ) -> Result<LossGrad, GpError> {
        let h = Hyper::from_raw(raw)?;
        let n = self.n();
        let me = comm.rank();
        let kern = self.kernel_matrix(&h)?;
        let part = DistKernel::<f64>::tile_partition(n, comm.size(), DEFAULT_TILE);
        let nl = part.count(me);
        // The preconditioner's factor on this rank's copy of the kernel (no communication),
        // then this rank's rows of it.
        let factor = if settings.precond_rank > 0 {
            let pc = PartialCholesky::new(
                &kern,
                h.noise,
                &PartialCholeskyParams::new(settings.precond_rank.min(n)),
            )?;
            Some((pc.rank(), local_rows(&part, me, pc.factor(), pc.rank())))
        } else {
            None
        };
        let op = DistKernel::new(kern, part.clone(), comm.clone())?.with_noise(h.noise)?;
        let r: Vec<f64> = local_rows(&part, me, self.y, 1)
            .into_iter()
            .map(|y| y - h.mean)
            .collect();
        let params = solve_logdet_params(settings, seed, n);
        let scope = Distributed::new(comm.clone(), part);
        let res = scope.run(|| -> Result<_, GpError> {
            let pc = match factor {
                Some((rank, l)) => PartialCholesky::from_factor(nl, rank, l, h.noise)?,
                None => PartialCholesky::from_factor(nl, 0, Vec::new(), h.noise)?,
            };
            let mut gtheta = vec![0.0; op.num_params()];
            let warm_ok = warm.as_ref().filter(|w| w.len() == nl);
            let res = logdet_and_solve_with_grad(
                &op,
                &pc,
                &r,
                warm_ok.map(|w| w.as_slice()),
                &params,
                &mut gtheta,
            )?;
            Ok((res, gtheta))
        });
        let (res, gtheta) = res?;
        let local_sum: f64 = serially(|| res.solution.iter().sum::<f64>());
        let alpha_sum = sum_in_rank_order(&**comm, &[local_sum])[0];
        self.finish_loss(raw, settings, res, &gtheta, alpha_sum, warm)
    }
}
