//! The bad-input audit of the libraries (docs/bad-input.md): one test per row of the table, each
//! asserting the typed error (or, for breakdown and CG non-convergence, the documented report)
//! of every entry point the row applies to. The CLI rows are in
//! `crates/apps/tests/cli_malformed.rs`; the fuzz targets (gradmat_apps::fuzz_checks) check the same
//! classes on arbitrary inputs.

use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointError, AdjointParams, ArnoldiCotangent, LanczosCotangent,
};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::cg::{self, CgParams};
use gradmat_krylov::lanczos::{
    check_self_adjoint, default_self_adjoint_tol, lanczos, LanczosParams,
};
use gradmat_krylov::KrylovError;
use gradmat_matfun::dense::{expm, MatrixFunction, SymmetricMatrixFunction};
use gradmat_matfun::{
    logdet, logdet_with_grad, quadform_arnoldi, quadform_lanczos, KrylovParams, MatfunError,
    SlqParams,
};
use gradmat_operators::csr::{CsrMatrix, SymCsrMatrix};
use gradmat_operators::dense::{DenseMatrix, SymmetricDense};
use gradmat_operators::matrix_market::{
    read_matrix_market_from, write_matrix_market, MatrixMarketError,
};
use gradmat_operators::{Operator, OperatorError, ParamVjp, SetParams};

/// A dense operator applied as given (NaN and asymmetry allowed) that claims self-adjointness:
/// the fuzz properties' `RawMatrix` (column-major entries, parameters = all `n²` entries).
use gradmat_operators::fuzz::raw::RawMatrix as Raw;

/// The 1-D Laplacian `tridiag(-1, 2, -1)` of size `n` (SPD), symmetric dense.
fn lap(n: usize) -> SymmetricDense<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i + i * n] = 2.0;
        if i + 1 < n {
            a[i + 1 + i * n] = -1.0;
            a[i + (i + 1) * n] = -1.0;
        }
    }
    SymmetricDense::from_col_major(n, a).unwrap()
}

fn mm(text: &str) -> Result<(), MatrixMarketError> {
    read_matrix_market_from::<f64, _>(text.as_bytes()).map(|_| ())
}

const HDR: &str = "%%MatrixMarket matrix coordinate real general\n";

#[test]
fn wrong_dimensions() {
    let a = lap(4);
    // Start vector of the wrong length.
    assert!(matches!(
        lanczos(&a, &[1.0; 3], &LanczosParams::new(2)),
        Err(KrylovError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        })
    ));
    assert!(matches!(
        arnoldi(&a, &[1.0; 5], &ArnoldiParams::new(2)),
        Err(KrylovError::DimensionMismatch {
            expected: 4,
            got: 5,
            ..
        })
    ));
    // Non-square operator.
    let rect = DenseMatrix::from_col_major(2, 3, vec![1.0; 6]).unwrap();
    assert!(matches!(
        arnoldi(&rect, &[1.0; 3], &ArnoldiParams::new(1)),
        Err(KrylovError::NotSquare { nrows: 2, ncols: 3 })
    ));
    // Cotangent and gradient buffers of the wrong length.
    let dec = lanczos(&a, &[1.0, 0.5, -1.0, 2.0], &LanczosParams::new(3)).unwrap();
    let bad = [1.0; 2];
    let cot = LanczosCotangent {
        diagonal: Some(&bad),
        ..Default::default()
    };
    let mut g = vec![0.0; a.num_params()];
    assert!(matches!(
        lanczos_vjp(&a, &dec, &cot, &AdjointParams::default(), &mut g),
        Err(AdjointError::DimensionMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    let mut g_short = vec![0.0; 1];
    assert!(matches!(
        lanczos_vjp(
            &a,
            &dec,
            &LanczosCotangent::default(),
            &AdjointParams::default(),
            &mut g_short
        ),
        Err(AdjointError::DimensionMismatch { .. })
    ));
    // Operator of another size than the decomposition.
    let mut g5 = vec![0.0; lap(5).num_params()];
    assert!(matches!(
        lanczos_vjp(
            &lap(5),
            &dec,
            &LanczosCotangent::default(),
            &AdjointParams::default(),
            &mut g5
        ),
        Err(AdjointError::OperatorMismatch { dim: 4, .. })
    ));
    // Dense matrix functions: slice length, empty matrix.
    assert!(matches!(
        expm(3, &[1.0; 8]),
        Err(MatfunError::DimensionMismatch {
            expected: 9,
            got: 8,
            ..
        })
    ));
    assert!(matches!(
        SymmetricMatrixFunction::<f64>::new(MatrixFunction::Log, 0, &[]),
        Err(MatfunError::EmptyMatrix { .. })
    ));
    // Operators: triplet and raw-part lengths, dense data length.
    assert!(matches!(
        CsrMatrix::<f64>::from_triplets(2, 2, &[0, 1], &[0], &[1.0, 1.0]),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        CsrMatrix::<f64>::from_raw_parts(2, 2, vec![0, 1], vec![0], vec![1.0]),
        Err(OperatorError::DimensionMismatch { .. })
    ));
    assert!(DenseMatrix::<f64>::from_col_major(2, 2, vec![1.0; 3]).is_err());
    // Matrix Market: index outside the declared size.
    assert!(matches!(
        mm(&format!("{HDR}2 2 1\n3 1 1\n")),
        Err(MatrixMarketError::IndexOutOfRange { line: 3, .. })
    ));
}

#[test]
fn nan_or_inf_in_data_or_operators() {
    let a = lap(3);
    // In the start vector.
    assert_eq!(
        lanczos(&a, &[1.0, f64::NAN, 0.0], &LanczosParams::new(2)).unwrap_err(),
        KrylovError::NonFiniteStartVector { index: 1 }
    );
    assert_eq!(
        arnoldi(&a, &[f64::INFINITY, 0.0, 0.0], &ArnoldiParams::new(2)).unwrap_err(),
        KrylovError::NonFiniteStartVector { index: 0 }
    );
    // Produced by the operator (an entry NaN / ∞, or overflow of finite entries).
    for bad in [f64::NAN, f64::INFINITY] {
        let op = Raw::new(2, vec![1.0, 0.0, 0.0, bad]);
        assert!(matches!(
            lanczos(&op, &[1.0, 1.0], &LanczosParams::new(2)),
            Err(KrylovError::NonFinite { step: 0, .. })
        ));
        assert!(matches!(
            arnoldi(&op, &[1.0, 1.0], &ArnoldiParams::new(2)),
            Err(KrylovError::NonFinite { step: 0, .. })
        ));
    }
    let huge = Raw::new(2, vec![1e308, 1e308, 1e308, 1e308]);
    assert!(matches!(
        lanczos(&huge, &[1.0, 1.0], &LanczosParams::new(2)),
        Err(KrylovError::NonFinite { .. })
    ));
    // In a cotangent.
    let dec = lanczos(&a, &[1.0, 0.5, -1.0], &LanczosParams::new(2)).unwrap();
    let nan = [f64::NAN, 0.0];
    let cot = LanczosCotangent {
        diagonal: Some(&nan),
        ..Default::default()
    };
    let mut g = vec![0.0; a.num_params()];
    assert!(matches!(
        lanczos_vjp(&a, &dec, &cot, &AdjointParams::default(), &mut g),
        Err(AdjointError::NonFinite { .. })
    ));
    let adec = arnoldi(&a, &[1.0, 0.5, -1.0], &ArnoldiParams::new(2)).unwrap();
    let hbar = [f64::INFINITY, 0.0, 0.0, 0.0];
    let acot = ArnoldiCotangent {
        hessenberg: Some(&hbar),
        ..Default::default()
    };
    assert!(matches!(
        arnoldi_vjp(&a, &adec, &acot, &AdjointParams::default(), &mut g),
        Err(AdjointError::NonFinite { .. })
    ));
    // In operator data at construction.
    assert!(matches!(
        CsrMatrix::from_triplets(2, 2, &[0], &[0], &[f64::NAN]),
        Err(OperatorError::NonFinite { .. })
    ));
    assert!(matches!(
        CsrMatrix::from_triplets(1, 1, &[0, 0], &[0, 0], &[1.7e308, 1.7e308]),
        Err(OperatorError::NonFinite { .. })
    ));
    assert!(DenseMatrix::from_col_major(1, 1, vec![f64::INFINITY]).is_err());
    let mut s = lap(2);
    assert!(s.set_params(&[1.0, f64::NAN, 1.0]).is_err());
    // In dense matrix-function input and parameters.
    assert!(matches!(
        expm(2, &[1.0, f64::NAN, 0.0, 1.0]),
        Err(MatfunError::NonFiniteInput { row: 1, col: 0, .. })
    ));
    assert!(matches!(
        SymmetricMatrixFunction::<f64>::new(MatrixFunction::ScaledExp(f64::NAN), 1, &[1.0]),
        Err(MatfunError::NonFiniteParameter { .. })
    ));
    // Overflow of a result is an error, not ∞.
    assert!(matches!(
        expm(1, &[1000.0]),
        Err(MatfunError::NonFiniteResult { .. }) | Err(MatfunError::NonFiniteValue { .. })
    ));
    assert!(matches!(
        SymmetricMatrixFunction::<f64>::new(MatrixFunction::Exp, 1, &[1000.0]),
        Err(MatfunError::NonFiniteValue { .. })
    ));
    // In a Matrix Market file.
    assert!(matches!(
        mm(&format!("{HDR}2 2 1\n1 1 nan\n")),
        Err(MatrixMarketError::NonFinite { line: 3, .. })
    ));
    assert!(matches!(
        mm(&format!("{HDR}2 2 1\n1 1 1e400\n")),
        Err(MatrixMarketError::NonFinite { line: 3, .. })
    ));
}

#[test]
fn zero_start_vector() {
    let a = lap(3);
    assert_eq!(
        lanczos(&a, &[0.0; 3], &LanczosParams::new(2)).unwrap_err(),
        KrylovError::ZeroStartVector
    );
    assert_eq!(
        arnoldi(&a, &[0.0, -0.0, 0.0], &ArnoldiParams::new(2)).unwrap_err(),
        KrylovError::ZeroStartVector
    );
    assert!(matches!(
        quadform_lanczos(&a, &[0.0; 3], &MatrixFunction::Log, &KrylovParams::new(2)),
        Err(MatfunError::Krylov(KrylovError::ZeroStartVector))
    ));
}

#[test]
fn depth_zero_or_above_dimension() {
    let a = lap(3);
    for k in [0, 4] {
        assert_eq!(
            lanczos(&a, &[1.0; 3], &LanczosParams::new(k)).unwrap_err(),
            KrylovError::DepthOutOfRange { depth: k, max: 3 }
        );
        assert_eq!(
            arnoldi(&a, &[1.0; 3], &ArnoldiParams::new(k)).unwrap_err(),
            KrylovError::DepthOutOfRange { depth: k, max: 3 }
        );
    }
    // The matrix-function layer: K = 0 is an error, K > N is clamped to N (exact there).
    let v = [1.0, 0.5, -1.0];
    assert!(matches!(
        quadform_lanczos(&a, &v, &MatrixFunction::Log, &KrylovParams::new(0)),
        Err(MatfunError::InvalidParameter(_))
    ));
    let q = quadform_lanczos(&a, &v, &MatrixFunction::Log, &KrylovParams::new(10)).unwrap();
    assert_eq!(q.depth(), 3);
    assert!(matches!(
        logdet(
            &a,
            &SlqParams {
                depth: 0,
                ..SlqParams::default()
            }
        ),
        Err(MatfunError::InvalidParameter(_)) | Err(MatfunError::Probe { .. })
    ));
    assert!(matches!(
        logdet(
            &a,
            &SlqParams {
                num_probes: 0,
                ..SlqParams::default()
            }
        ),
        Err(MatfunError::InvalidParameter(_))
    ));
}

#[test]
fn breakdown_is_reported_not_an_error() {
    // v in a 2-dimensional invariant subspace of the Laplacian (symmetric under reversal
    // spans only the even eigenvectors: for N = 4, two of them).
    let a = lap(4);
    let v = [1.0, 0.0, 0.0, 1.0];
    for reorth in [Reorthogonalize::None, Reorthogonalize::Full] {
        let dec = lanczos(
            &a,
            &v,
            &LanczosParams {
                reorthogonalize: reorth,
                ..LanczosParams::new(4)
            },
        )
        .unwrap();
        assert_eq!(dec.depth(), 2, "{reorth:?}");
        let b = dec.info().breakdown.expect("breakdown reported");
        assert_eq!(b.depth, 2);
        assert!(b.norm <= 1e-12 * b.scale);
        // The adjoint of the exact smaller decomposition is finite.
        let abar = [1.0, -1.0];
        let cot = LanczosCotangent {
            diagonal: Some(&abar),
            ..Default::default()
        };
        let mut g = vec![0.0; a.num_params()];
        let vbar = lanczos_vjp(&a, &dec, &cot, &AdjointParams::default(), &mut g).unwrap();
        assert!(vbar.iter().chain(&g).all(|x| x.is_finite()));
        // And f(A)v at the breakdown depth is exact: vᵀA⁻¹v from the 2×2 T.
        let q = quadform_lanczos(&a, &v, &MatrixFunction::Inv, &KrylovParams::new(4)).unwrap();
        assert_eq!(q.depth(), 2);
        // A⁻¹ of tridiag(-1,2,-1), N = 4: (A⁻¹)_{ij} = min(i,j)(5 − max(i,j))/5 (1-based).
        let ainv = |i: f64, j: f64| i.min(j) * (5.0 - i.max(j)) / 5.0;
        let exact = ainv(1.0, 1.0) + 2.0 * ainv(1.0, 4.0) + ainv(4.0, 4.0);
        assert!(
            (q.value() - exact).abs() < 1e-12,
            "{} vs {exact}",
            q.value()
        );
    }
    let dec = arnoldi(&a, &v, &ArnoldiParams::new(4)).unwrap();
    assert_eq!(dec.depth(), 2);
    assert!(dec.info().breakdown.is_some());
}

#[test]
fn non_symmetric_matrix_given_to_lanczos() {
    let op = Raw::new(3, vec![1.0, 0.0, 0.0, 5.0, 1.0, 0.0, 0.0, 5.0, 1.0]);
    let tol = default_self_adjoint_tol::<f64>(3);
    // Detected on request, before any Lanczos step.
    assert!(matches!(
        check_self_adjoint(&op, tol),
        Err(KrylovError::NotSelfAdjoint { .. })
    ));
    for reorth in [Reorthogonalize::None, Reorthogonalize::Full] {
        let p = LanczosParams {
            reorthogonalize: reorth,
            self_adjoint_check: Some(tol),
            ..LanczosParams::new(3)
        };
        let e = lanczos(&op, &[1.0, 1.0, 1.0], &p).unwrap_err();
        assert!(
            matches!(e, KrylovError::NotSelfAdjoint { relative_asymmetry, .. } if relative_asymmetry > 0.1)
        );
    }
    // A symmetric operator passes the check (CSR, large enough for the parallel SpMV).
    let lap2 = SymCsrMatrix::<f64>::laplacian_2d(200).unwrap();
    check_self_adjoint(&lap2, default_self_adjoint_tol::<f64>(lap2.nrows())).unwrap();
    let v: Vec<f64> = (0..lap2.nrows()).map(|i| (i % 7) as f64 - 3.0).collect();
    let p = LanczosParams {
        self_adjoint_check: Some(default_self_adjoint_tol::<f64>(v.len())),
        ..LanczosParams::new(5)
    };
    assert_eq!(lanczos(&lap2, &v, &p).unwrap().depth(), 5);
    assert!(matches!(
        check_self_adjoint(&lap2, f64::NAN),
        Err(KrylovError::InvalidParameter(_))
    ));
    // The library's symmetric constructors refuse asymmetric data.
    assert!(SymmetricDense::from_col_major(2, vec![1.0, 2.0, 3.0, 1.0]).is_err());
    let full = CsrMatrix::from_triplets(2, 2, &[0, 1], &[1, 0], &[1.0, 2.0]).unwrap();
    assert!(SymCsrMatrix::from_full_csr(&full).is_err());
    assert!(matches!(
        SymmetricMatrixFunction::<f64>::new(MatrixFunction::Exp, 2, &[1.0, 2.0, 3.0, 1.0]),
        Err(MatfunError::NotSymmetric { .. })
    ));
    // Arnoldi is the method for a non-symmetric matrix.
    let q = quadform_arnoldi(
        &op,
        &[1.0, 1.0, 1.0],
        &MatrixFunction::Exp,
        &KrylovParams::new(3),
    );
    assert!(q.unwrap().value().is_finite());
}

#[test]
fn non_positive_spectrum_for_log_and_inverse_sqrt() {
    // Indefinite: eigenvalues 3 and −1; negative definite: −I; singular: diag(0, 1) (an
    // exactly zero eigenvalue for the dense path; the Krylov path only sees Ritz values, which
    // sit within rounding of 0 for a singular matrix, so it is tested on the other two).
    let indef = SymmetricDense::from_col_major(2, vec![1.0, 2.0, 2.0, 1.0]).unwrap();
    let neg = SymmetricDense::from_col_major(2, vec![-1.0, 0.0, 0.0, -1.0]).unwrap();
    let sing = [0.0, 0.0, 0.0, 1.0];
    for f in [
        MatrixFunction::Log,
        MatrixFunction::InvSqrt,
        MatrixFunction::Inv,
    ] {
        for a in [&indef, &neg] {
            let e = quadform_lanczos(a, &[1.0, 0.3], &f, &KrylovParams::new(2)).unwrap_err();
            assert!(
                matches!(e, MatfunError::RitzValueOutsideDomain { .. }),
                "{f:?}: {e}"
            );
            let dense = a.as_dense().as_slice().to_vec();
            let e = SymmetricMatrixFunction::<f64>::new(f.clone(), 2, &dense).unwrap_err();
            assert!(
                matches!(e, MatfunError::EigenvalueOutsideDomain { .. }),
                "{f:?}: {e}"
            );
        }
        let e = SymmetricMatrixFunction::<f64>::new(f.clone(), 2, &sing).unwrap_err();
        assert!(
            matches!(e, MatfunError::EigenvalueOutsideDomain { .. }),
            "{f:?}: {e}"
        );
    }
    // SLQ log-det: the probe's error says which probe.
    let e = logdet(
        &indef,
        &SlqParams {
            num_probes: 3,
            depth: 2,
            ..SlqParams::default()
        },
    )
    .unwrap_err();
    match e {
        MatfunError::Probe { source, .. } => {
            assert!(matches!(
                *source,
                MatfunError::RitzValueOutsideDomain { .. }
            ))
        }
        other => panic!("expected a probe error, got {other}"),
    }
    let mut g = vec![0.0; indef.num_params()];
    assert!(logdet_with_grad(
        &indef,
        &SlqParams {
            depth: 2,
            ..SlqParams::default()
        },
        &mut g
    )
    .is_err());
    // sqrt: defined at 0 but not differentiable there.
    let e = SymmetricMatrixFunction::<f64>::new(MatrixFunction::Sqrt, 2, &sing)
        .and_then(|s| s.pullback_quadratic_form(1.0));
    assert!(matches!(
        e,
        Err(MatfunError::NotDifferentiable { .. })
            | Err(MatfunError::EigenvalueOutsideDomain { .. })
    ));
}

#[test]
fn malformed_or_truncated_files() {
    type Expect = fn(&MatrixMarketError) -> bool;
    let cases: &[(&str, Expect)] = &[
        (
            "%%MatrixMarket vector coordinate real general\n1 1 1\n1 1 1\n",
            |e| matches!(e, MatrixMarketError::Unsupported { line: 1, .. }),
        ),
        ("%%MatrixMarket matrix\n1 1 1\n1 1 1\n", |e| {
            matches!(e, MatrixMarketError::BadHeader { line: 1, .. })
        }),
        ("1 1 1\n1 1 1\n", |e| {
            matches!(e, MatrixMarketError::BadHeader { line: 1, .. })
        }),
        (
            "%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n",
            |e| matches!(e, MatrixMarketError::Unsupported { .. }),
        ),
        (
            "%%MatrixMarket matrix coordinate real general\n2 x 1\n",
            |e| matches!(e, MatrixMarketError::BadSizeLine { line: 2, .. }),
        ),
        (
            "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1\n",
            |e| matches!(e, MatrixMarketError::WrongTokenCount { line: 3, .. }),
        ),
        (
            "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 1.0.0\n",
            |e| matches!(e, MatrixMarketError::NotANumber { line: 3, .. }),
        ),
        (
            "%%MatrixMarket matrix coordinate real general\n2 2 1\n0 1 1\n",
            |e| matches!(e, MatrixMarketError::IndexOutOfRange { line: 3, .. }),
        ),
        (
            "%%MatrixMarket matrix coordinate real general\n3 3 3\n1 1 1\n2 2 1\n",
            |e| {
                matches!(
                    e,
                    MatrixMarketError::TooFewEntries {
                        expected: 3,
                        found: 2,
                        ..
                    }
                )
            },
        ),
        (
            "%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1\n1 1 2\n",
            |e| matches!(e, MatrixMarketError::TooManyEntries { line: 4, .. }),
        ),
        (
            "%%MatrixMarket matrix coordinate real symmetric\n2 2 2\n1 2 1\n2 1 1\n",
            |e| matches!(e, MatrixMarketError::InvalidEntry { .. }),
        ),
        (
            "%%MatrixMarket matrix coordinate real symmetric\n2 3 1\n1 1 1\n",
            |e| matches!(e, MatrixMarketError::InvalidSize { .. }),
        ),
        (
            "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n",
            |e| matches!(e, MatrixMarketError::TooFewEntries { .. }),
        ),
    ];
    for (text, ok) in cases {
        let e = read_matrix_market_from::<f64, _>(text.as_bytes()).unwrap_err();
        assert!(ok(&e), "{text:?} gave {e:?}");
    }
    // A truncated gzip stream (written by the crate's own gzip writer, then cut).
    let gz = {
        let text = "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n2 2 1\n";
        let file = read_matrix_market_from::<f64, _>(text.as_bytes()).unwrap();
        let path =
            std::env::temp_dir().join(format!("gradmat-bad-input-{}.mtx.gz", std::process::id()));
        write_matrix_market(&path, &file).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        bytes
    };
    let e = read_matrix_market_from::<f64, _>(&gz[..gz.len() - 12]).unwrap_err();
    assert!(
        matches!(
            e,
            MatrixMarketError::Truncated { .. } | MatrixMarketError::Stream { .. }
        ),
        "{e:?}"
    );
    // Raw CSR arrays that are not valid CSR.
    assert!(matches!(
        CsrMatrix::<f64>::from_raw_parts(2, 2, vec![0, 2, 1], vec![0], vec![1.0]),
        Err(OperatorError::InvalidStructure(_))
    ));
    assert!(matches!(
        CsrMatrix::<f64>::from_raw_parts(1, 2, vec![0, 2], vec![1, 0], vec![1.0, 1.0]),
        Err(OperatorError::InvalidStructure(_))
    ));
}

#[test]
fn empty_files() {
    assert!(matches!(mm(""), Err(MatrixMarketError::Empty)));
    assert!(matches!(
        mm("%%MatrixMarket matrix coordinate real general\n"),
        Err(MatrixMarketError::BadSizeLine { .. })
    ));
    assert!(matches!(
        mm("%%MatrixMarket matrix coordinate real general\n% only comments\n\n"),
        Err(MatrixMarketError::BadSizeLine { .. })
    ));
    // An empty (0×0) matrix reads, and the Krylov layer refuses it.
    let f = read_matrix_market_from::<f64, _>(
        "%%MatrixMarket matrix coordinate real general\n0 0 0\n".as_bytes(),
    )
    .unwrap();
    let a = f.to_sym_csr().unwrap();
    assert!(matches!(
        lanczos(&a, &[], &LanczosParams::new(1)),
        Err(KrylovError::DepthOutOfRange { depth: 1, max: 0 })
    ));
    assert!(matches!(
        quadform_lanczos(&a, &[], &MatrixFunction::Log, &KrylovParams::new(1)),
        Err(MatfunError::EmptyMatrix { .. })
    ));
}

#[test]
fn huge_headers() {
    // Array files: nrows·ncols must fit in usize (the values are all listed).
    assert!(matches!(
        mm("%%MatrixMarket matrix array real general\n18446744073709551615 2\n1\n"),
        Err(MatrixMarketError::InvalidSize { line: 2, .. })
    ));
    // More coordinate entries declared than the matrix has (compared in u128): rejected.
    assert!(matches!(
        mm(&format!("{HDR}2 2 5\n1 1 1\n")),
        Err(MatrixMarketError::InvalidSize { line: 2, .. })
    ));
    assert!(matches!(
        mm(&format!(
            "{HDR}4294967295 4294967295 18446744073709551615\n1 1 1\n"
        )),
        Err(MatrixMarketError::InvalidSize { line: 2, .. })
    ));
    // A huge declared entry count is not preallocated: the short file is reported at its end,
    // instantly and without allocating (this one declares 1.8·10¹⁹ entries).
    let t = std::time::Instant::now();
    assert!(matches!(
        mm(&format!(
            "{HDR}4294967295 4294967295 18446744065119617025\n1 1 1\n"
        )),
        Err(MatrixMarketError::TooFewEntries { found: 1, .. })
    ));
    assert!(matches!(
        mm("%%MatrixMarket matrix array real general\n4000000000 4000000000\n1\n"),
        Err(MatrixMarketError::TooFewEntries { found: 1, .. })
    ));
    assert!(t.elapsed().as_secs_f64() < 5.0);
    // A coordinate file may declare 2³²×2³² (the product is only compared with the count).
    assert!(mm(&format!("{HDR}4294967296 4294967296 1\n1 1 1\n")).is_ok());
    // A huge but valid declared dimension reads (three entries); converting it needs O(N)
    // memory for the row pointers, and an impossible allocation is a typed error, not an abort.
    let f = read_matrix_market_from::<f64, _>(
        format!("{HDR}4294967295 4294967295 1\n1 1 1\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(f.nrows(), 4_294_967_295);
    assert!(matches!(
        CsrMatrix::<f64>::from_triplets(usize::MAX / 4, 1, &[0], &[0], &[1.0]),
        Err(OperatorError::InvalidArgument(_))
    ));
    assert!(matches!(
        CsrMatrix::<f64>::from_triplets(usize::MAX, 1, &[0], &[0], &[1.0]),
        Err(OperatorError::InvalidArgument(_))
    ));
}

#[test]
fn cg_non_convergence() {
    // An ill-conditioned SPD matrix and a budget of 2 iterations for N = 50.
    let n = 50;
    let a = lap(n);
    let b: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
    let p = CgParams {
        rtol: Some(1e-12),
        max_iters: Some(2),
        ..CgParams::default()
    };
    // Default: reported, not an error.
    let sol = cg::solve(&a, &b, 1, &p).unwrap();
    assert!(!sol.info().all_converged());
    assert!(sol.info().residual_norms[0] > 1e-6 * sol.info().rhs_norms[0]);
    // On request: a typed error naming the right-hand side.
    let e = cg::solve(
        &a,
        &b,
        1,
        &CgParams {
            error_on_nonconvergence: true,
            ..p.clone()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, KrylovError::InvalidParameter(m) if m.contains("did not converge")),
        "{e}"
    );
    // An indefinite matrix is caught by the curvature test.
    let indef = SymmetricDense::from_col_major(2, vec![1.0, 2.0, 2.0, 1.0]).unwrap();
    let e = cg::solve(&indef, &[1.0, -1.0], 1, &CgParams::default()).unwrap_err();
    assert!(matches!(e, KrylovError::NonPositiveCurvature { .. }), "{e}");
}

/// Regression (found writing the `lanczos` fuzz property; input in
/// `fuzz/regressions/lanczos/`): finite entries above ~1e154 overflowed the plain
/// sum of squares of `A x_k`, the breakdown scale became ∞, and three-term Lanczos stopped at
/// step 0 claiming an invariant subspace. Now the norms fall back to scaled ones: the run
/// reaches the full depth, or the breakdown it reports is genuine (finite scale).
#[test]
fn huge_finite_entries_are_not_a_breakdown() {
    // ‖A e₀‖² overflows; the new vector has relative size 1e-10 ≫ the breakdown threshold.
    let op = Raw::new(2, vec![1e160, 1e150, 1e150, 0.0]);
    let dec = lanczos(&op, &[1.0, 0.0], &LanczosParams::new(2)).unwrap();
    assert_eq!(
        dec.depth(),
        2,
        "false breakdown: {:?}",
        dec.info().breakdown
    );
    assert_eq!(dec.off_diagonal()[0].to_bits(), 1e150_f64.to_bits());
    // ‖A e₀‖² and ‖w‖² overflow: this was a NonFinite error for a finite, exact problem.
    let op = Raw::new(2, vec![1e160, 1e160, 1e160, -1e160]);
    let dec = lanczos(&op, &[1.0, 0.0], &LanczosParams::new(2)).unwrap();
    assert_eq!(dec.depth(), 2);
    assert_eq!(dec.diagonal()[0].to_bits(), 1e160_f64.to_bits());
    assert_eq!(dec.diagonal()[1].to_bits(), (-1e160_f64).to_bits());
    assert_eq!(dec.off_diagonal()[0].to_bits(), 1e160_f64.to_bits());
    // Entries whose products overflow f64 are still a typed error.
    let op = Raw::new(2, vec![1e308, 1e308, 1e308, 1e308]);
    assert!(matches!(
        lanczos(&op, &[1.0, 1.0], &LanczosParams::new(2)),
        Err(KrylovError::NonFinite { .. })
    ));
}

/// Regression (found by the `lanczos` and `arnoldi` fuzz targets; inputs in
/// `fuzz/regressions/`): finite but huge cotangents overflowed in the backward sweep and the
/// adjoints returned `v̄ = [-inf, …]` as a success. Now: `AdjointError::NonFinite`.
#[test]
fn overflowing_cotangents_are_an_error() {
    let a = lap(3);
    let v = [1.0, 0.5, -1.0];
    let dec = lanczos(&a, &v, &LanczosParams::new(2)).unwrap();
    let big = [f64::MAX, -f64::MAX];
    let cot = LanczosCotangent {
        diagonal: Some(&big),
        inv_norm: f64::MAX,
        ..Default::default()
    };
    let mut g = vec![0.0; a.num_params()];
    assert!(matches!(
        lanczos_vjp(&a, &dec, &cot, &AdjointParams::default(), &mut g),
        Err(AdjointError::NonFinite { .. })
    ));
    let adec = arnoldi(&a, &v, &ArnoldiParams::new(2)).unwrap();
    let hbar = [f64::MAX, f64::MAX, -f64::MAX, f64::MAX];
    let acot = ArnoldiCotangent {
        hessenberg: Some(&hbar),
        inv_norm: f64::MAX,
        ..Default::default()
    };
    let mut g = vec![0.0; a.num_params()];
    assert!(matches!(
        arnoldi_vjp(&a, &adec, &acot, &AdjointParams::default(), &mut g),
        Err(AdjointError::NonFinite { .. })
    ));
}

/// Singular input (issue 14, part 2): a Ritz value that is zero in exact arithmetic comes out of
/// the Krylov iteration as a rounding error of either sign; a positive one below
/// `10·K·ε·max|θ|` must be refused like a negative one, for every start vector and both
/// reorthogonalisation options — never a confident finite number (`[[1,1],[1,1]]` gave
/// `vᵀA⁻¹v = 3.6e14` and a rank-5 `BBᵀ` gave finite values for some seeds).
#[test]
fn singular_input_is_refused_for_every_seed() {
    let ones = SymmetricDense::from_col_major(2, vec![1.0, 1.0, 1.0, 1.0]).unwrap();
    // A rank-5 6×6 BBᵀ.
    let b: Vec<f64> = gradmat_operators::testing::random_vector(30, 10_000);
    let mut bbt = vec![0.0; 36];
    for j in 0..6 {
        for i in 0..6 {
            bbt[i + j * 6] = (0..5).map(|l| b[i + l * 6] * b[j + l * 6]).sum();
        }
    }
    let rank5 = SymmetricDense::from_col_major(6, bbt).unwrap();
    for (a, n) in [(&ones, 2usize), (&rank5, 6)] {
        for seed in 0..200u64 {
            let v: Vec<f64> = gradmat_operators::testing::random_vector(n, seed);
            for r in [Reorthogonalize::Full, Reorthogonalize::None] {
                for f in [
                    MatrixFunction::Log,
                    MatrixFunction::Inv,
                    MatrixFunction::InvSqrt,
                ] {
                    let kp = KrylovParams {
                        reorthogonalize: r,
                        ..KrylovParams::new(n)
                    };
                    match quadform_lanczos(a, &v, &f, &kp) {
                        Err(MatfunError::NumericallySingular { .. })
                        | Err(MatfunError::RitzValueOutsideDomain { .. }) => {}
                        Ok(q) => panic!(
                            "n={n} seed {seed} {r:?} {}: accepted with value {:e}, Ritz values {:?}",
                            f.name(),
                            q.value(),
                            q.ritz_values()
                        ),
                        Err(e) => panic!("n={n} seed {seed} {r:?} {}: {e}", f.name()),
                    }
                }
            }
        }
    }
    // The same through SLQ (per-probe and lock-step) and the Arnoldi path.
    for lockstep in [false, true] {
        let e = logdet(
            &rank5,
            &SlqParams {
                num_probes: 4,
                depth: 6,
                lockstep,
                ..SlqParams::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&e, MatfunError::Probe { source, .. }
                if matches!(**source, MatfunError::NumericallySingular { .. }
                    | MatfunError::RitzValueOutsideDomain { .. })),
            "{e}"
        );
    }
    let dense = DenseMatrix::from_col_major(2, 2, vec![1.0, 1.0, 1.0, 1.0]).unwrap();
    let e = quadform_arnoldi(
        &dense,
        &[1.0, 0.2],
        &MatrixFunction::Inv,
        &KrylovParams::new(2),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            MatfunError::NumericallySingular { .. } | MatfunError::RitzValueOutsideDomain { .. }
        ),
        "{e}"
    );
}
