//! The convergence indicator of the Krylov quadratic forms and of SLQ: `last_step_change` is
//! exactly the value at depth `K` minus the value of a separate run at depth `K − 1` (same
//! vector or probes), `exact` is set at full depth and at an invariant subspace, and the change
//! shrinks as the quadrature converges.

use gradmat_matfun::dense::MatrixFunction;
use gradmat_matfun::estimators::{logdet, SlqParams};
use gradmat_matfun::krylov::{quadform_arnoldi, quadform_lanczos, KrylovParams};
use gradmat_matfun::Reorthogonalize;
use gradmat_operators::dense::{DenseMatrix, SymmetricDense};
use gradmat_operators::testing::{matrix_with_spectrum, random_vector};

fn spd(n: usize) -> SymmetricDense<f64> {
    let spectrum: Vec<f64> = (0..n).map(|i| 0.5 + 1.5 * i as f64).collect();
    SymmetricDense::from_col_major(n, matrix_with_spectrum(&spectrum, 7)).unwrap()
}

/// `a ≈ b` to `1e-12` of `scale` (the size of the values whose difference they are).
fn close(a: f64, b: f64, scale: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-12 * scale.abs().max(1.0),
        "{what}: {a:e} vs {b:e}"
    );
}

#[test]
fn lanczos_change_is_the_value_of_one_step_less() {
    let n = 12;
    let a = spd(n);
    let v = random_vector::<f64>(n, 3);
    for reorth in [Reorthogonalize::Full, Reorthogonalize::None] {
        for f in [
            MatrixFunction::Log,
            MatrixFunction::Inv,
            MatrixFunction::Exp,
        ] {
            let p = |k| KrylovParams {
                reorthogonalize: reorth,
                ..KrylovParams::new(k)
            };
            let mut changes = Vec::new();
            for k in 2..n {
                let qk = quadform_lanczos(&a, &v, &f, &p(k)).unwrap();
                let qk1 = quadform_lanczos(&a, &v, &f, &p(k - 1)).unwrap();
                let c = qk.convergence();
                assert!(!c.exact, "{f:?} K = {k}");
                let d = c.last_step_change.expect("depth ≥ 2");
                let what = format!("{f:?} {reorth:?} K = {k}");
                close(d, qk.value() - qk1.value(), qk.value(), &what);
                changes.push(d.abs());
            }
            // The quadrature converges: the last change is far below the first.
            let (first, last) = (changes[0], changes[changes.len() - 1]);
            assert!(
                last < 1e-3 * first,
                "{f:?} {reorth:?}: {first:e} → {last:e}"
            );
            let one = quadform_lanczos(&a, &v, &f, &p(1)).unwrap().convergence();
            assert_eq!(one.last_step_change, None);
            assert!(
                quadform_lanczos(&a, &v, &f, &p(n))
                    .unwrap()
                    .convergence()
                    .exact
            );
        }
    }
    // Breakdown: an eigenvector is an invariant subspace at depth 1, whatever K asked for.
    let d = SymmetricDense::from_col_major(3, vec![2.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 5.0])
        .unwrap();
    let q = quadform_lanczos(
        &d,
        &[0.0, 1.0, 0.0],
        &MatrixFunction::Log,
        &KrylovParams::new(3),
    )
    .unwrap();
    assert_eq!(q.depth(), 1);
    assert!(q.convergence().exact);
}

#[test]
fn arnoldi_change_is_the_value_of_one_step_less() {
    let n = 10;
    let v = random_vector::<f64>(n, 5);
    // exp of a non-symmetric matrix, and log of a symmetric one through Arnoldi.
    let g: Vec<f64> = random_vector::<f64>(n * n, 9)
        .iter()
        .map(|x| 0.3 * x)
        .collect();
    let general = DenseMatrix::from_col_major(n, n, g).unwrap();
    let sym = spd(n);
    for k in 2..n {
        let p = KrylovParams::new;
        let (e, e1) = (
            quadform_arnoldi(&general, &v, &MatrixFunction::Exp, &p(k)).unwrap(),
            quadform_arnoldi(&general, &v, &MatrixFunction::Exp, &p(k - 1)).unwrap(),
        );
        let c = e.convergence();
        assert!(!c.exact);
        close(
            c.last_step_change.unwrap(),
            e.value() - e1.value(),
            e.value(),
            "exp",
        );
        let (s, s1) = (
            quadform_arnoldi(&sym, &v, &MatrixFunction::Log, &p(k)).unwrap(),
            quadform_arnoldi(&sym, &v, &MatrixFunction::Log, &p(k - 1)).unwrap(),
        );
        close(
            s.convergence().last_step_change.unwrap(),
            s.value() - s1.value(),
            s.value(),
            "log",
        );
    }
    let full = quadform_arnoldi(&general, &v, &MatrixFunction::Exp, &KrylovParams::new(n));
    assert!(full.unwrap().convergence().exact);
}

#[test]
fn slq_change_is_the_estimate_of_one_step_less() {
    let n = 30;
    let a = spd(n);
    for lockstep in [false, true] {
        let p = |k| SlqParams {
            num_probes: 6,
            depth: k,
            seed: 4,
            lockstep,
            ..SlqParams::default()
        };
        for k in [2, 5, 9] {
            let (e, e1) = (logdet(&a, &p(k)).unwrap(), logdet(&a, &p(k - 1)).unwrap());
            assert!(!e.exact);
            close(
                e.last_step_change.unwrap(),
                e.value - e1.value,
                e.value,
                &format!("lockstep {lockstep} K = {k}"),
            );
        }
        assert_eq!(logdet(&a, &p(1)).unwrap().last_step_change, None);
        assert!(logdet(&a, &p(n)).unwrap().exact);
    }
}
