//! The Hilbert identity test of Krämer et al. (2024), Table 2.
//!
//! With full-depth Arnoldi (K = N, full reorthogonalisation), `A ↦ Q H Qᵀ` is the identity map,
//! so its Jacobian is the identity. Each row of the Jacobian is one VJP with cotangent
//! `M̄ = E_ij` on `QHQᵀ`, i.e. `Q̄ = M̄ Q Hᵀ + M̄ᵀ Q H`, `H̄ = Qᵀ M̄ Q`; the error
//! `ε = RMSE(∂ − I)` is printed for Hilbert matrices of size 1…8, without and with the
//! adjoint's re-projection step.
//!
//! Run: `cargo run --release -p gradmat-adjoint --example hilbert`

use gradmat_adjoint::{arnoldi_vjp, AdjointParams, ArnoldiCotangent};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_operators::dense::DenseMatrix;

/// `RMSE(∂(QHQᵀ)/∂A − I)` for the `n×n` Hilbert matrix.
pub fn hilbert_identity_rmse(n: usize, project: bool) -> f64 {
    let a = DenseMatrix::from_fn(n, n, |i, j| 1.0 / (i + j + 1) as f64).unwrap();
    let v: Vec<f64> = (0..n).map(|i| 1.0 + 0.1 * i as f64).collect();
    let params = ArnoldiParams {
        reorthogonalize: Reorthogonalize::Full,
        ..ArnoldiParams::new(n)
    };
    let dec = arnoldi(&a, &v, &params).unwrap();
    let k = dec.depth();
    let (q, h) = (dec.basis(), dec.hessenberg());
    let mut sq = 0.0;
    for jj in 0..n {
        for ii in 0..n {
            // M̄ = E_{ii,jj}: Q̄ = M̄ Q Hᵀ + M̄ᵀ Q H ; H̄ = Qᵀ M̄ Q.
            let mut qbar = vec![0.0; n * k];
            let mut hbar = vec![0.0; k * k];
            for c in 0..k {
                // (M̄ Q Hᵀ)[ii, c] = Σ_l Q[jj, l] H[c, l]
                let s1: f64 = (0..k).map(|l| q[jj + l * n] * h[c + l * k]).sum();
                qbar[ii + c * n] += s1;
                // (M̄ᵀ Q H)[jj, c] = Σ_l Q[ii, l] H[l, c]
                let s2: f64 = (0..k).map(|l| q[ii + l * n] * h[l + c * k]).sum();
                qbar[jj + c * n] += s2;
                for r in 0..k {
                    hbar[r + c * k] = q[ii + r * n] * q[jj + c * n];
                }
            }
            let mut grad = vec![0.0; n * n];
            arnoldi_vjp(
                &a,
                &dec,
                &ArnoldiCotangent {
                    basis: Some(&qbar),
                    hessenberg: Some(&hbar),
                    residual: None,
                    inv_norm: 0.0,
                },
                &AdjointParams {
                    project,
                    ..AdjointParams::default()
                },
                &mut grad,
            )
            .unwrap();
            for (p, g) in grad.iter().enumerate() {
                let target = if p == ii + jj * n { 1.0 } else { 0.0 };
                sq += (g - target) * (g - target);
            }
        }
    }
    (sq / (n * n * n * n) as f64).sqrt()
}

#[allow(dead_code)]
fn main() {
    println!("| n | without projection | with projection |");
    println!("|---|---|---|");
    for n in 1..=8 {
        println!(
            "| {n} | {:.2e} | {:.2e} |",
            hilbert_identity_rmse(n, false),
            hilbert_identity_rmse(n, true)
        );
    }
}
