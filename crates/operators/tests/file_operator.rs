//! `CheckedSymmetricCsr` (with `check_symmetric` and its typed errors) and the one Matrix
//! Market → operator conversion, `MatrixMarketFile::into_operator(kind)`: which storage each
//! file and request gives, the map from file entries to parameters (against dense references:
//! products, and gradients written back per entry), and the errors naming the first
//! asymmetric pair.

use gradmat_operators::csr::{
    check_symmetric, Asymmetry, CheckedSymmetricCsr, CsrMatrix, SymmetryError,
};
use gradmat_operators::matrix_market::{
    read_matrix_market_from, FileOperator, IntoOperatorError, MatrixMarketFile, OperatorKind,
    Symmetry,
};
use gradmat_operators::testing::{random_vector, Conformance};
use gradmat_operators::{AdjointOperator, Operator, ParamVjp, Scalar, SelfAdjoint};

fn read(text: &str) -> MatrixMarketFile<f64> {
    read_matrix_market_from(text.as_bytes()).unwrap()
}

/// A symmetric 4×4 matrix as a general file (both triangles, one duplicate on the diagonal).
const GENERAL_SYM: &str = "%%MatrixMarket matrix coordinate real general
4 4 11
1 1 4
2 1 -1
1 2 -1
2 2 3
3 2 0.5
2 3 0.5
3 3 2
4 4 1
4 4 1.5
4 1 0.25
1 4 0.25
";

/// The lower triangle of the same matrix as a symmetric file (the duplicate kept).
const SYMMETRIC: &str = "%%MatrixMarket matrix coordinate real symmetric
4 4 7
1 1 4
2 1 -1
2 2 3
3 2 0.5
3 3 2
4 4 1
4 4 1.5
";

const NONSYM: &str = "%%MatrixMarket matrix coordinate real general
3 3 6
1 1 2
1 2 1
2 1 1
2 2 2
3 2 1
2 3 1.5
";

/// Dense column-major matrix of a file (symmetric files mirrored, duplicates summed).
fn dense(f: &MatrixMarketFile<f64>) -> Vec<f64> {
    let n = f.nrows();
    let mut a = vec![0.0; n * f.ncols()];
    for t in 0..f.nnz() {
        let (i, j, v) = (f.rows()[t], f.cols()[t], f.values()[t]);
        a[i + j * n] += v;
        if f.header().symmetry == Symmetry::Symmetric && i != j {
            a[j + i * n] += v;
        }
    }
    a
}

fn dense_apply(a: &[f64], n: usize, x: &[f64]) -> Vec<f64> {
    (0..n)
        .map(|i| (0..n).map(|j| a[i + j * n] * x[j]).sum())
        .collect()
}

fn close(a: &[f64], b: &[f64]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-14 * y.abs().max(1.0), "{x} vs {y}");
    }
}

#[test]
fn check_symmetric_accepts_symmetric_and_names_the_first_asymmetric_pair() {
    let ok = CsrMatrix::from_triplets(2, 2, &[0, 0, 1, 1], &[0, 1, 0, 1], &[2.0, 1.0, 1.0, 3.0])
        .unwrap();
    assert_eq!(check_symmetric(&ok), Ok(()));
    // Within 4ε (a decimal round trip), accepted; beyond, refused.
    let v = 0.1_f64;
    let near =
        CsrMatrix::from_triplets(2, 2, &[0, 1], &[1, 0], &[v, v * (1.0 + 2.0 * f64::EPSILON)])
            .unwrap();
    assert_eq!(check_symmetric(&near), Ok(()));
    let far = CsrMatrix::from_triplets(2, 2, &[0, 1], &[1, 0], &[v, v * (1.0 + 1e-12)]).unwrap();
    assert!(matches!(
        check_symmetric(&far),
        Err(SymmetryError::Asymmetric(Asymmetry { row: 0, col: 1, .. }))
    ));
    // A stored entry without its mirror is compared with 0; the first pair in CSR order.
    let b = CsrMatrix::from_triplets(3, 3, &[2, 1, 0], &[0, 2, 0], &[5.0, 7.0, 1.0]).unwrap();
    let e = check_symmetric(&b).unwrap_err();
    assert_eq!(
        e,
        SymmetryError::Asymmetric(Asymmetry {
            row: 1,
            col: 2,
            value: 7.0,
            mirror: 0.0
        })
    );
    // Messages are 1-based, as in the files.
    assert_eq!(
        e.to_string(),
        "the matrix is not symmetric (A[2,3] = 7e0 but A[3,2] = 0e0)"
    );
    let rect = CsrMatrix::<f64>::from_triplets(2, 3, &[0], &[0], &[1.0]).unwrap();
    assert_eq!(
        check_symmetric(&rect),
        Err(SymmetryError::NotSquare { nrows: 2, ncols: 3 })
    );
    // f32: the same rules with f32's ε.
    let f = CsrMatrix::<f32>::from_triplets(2, 2, &[0, 1], &[1, 0], &[1.0, 1.5]).unwrap();
    assert_eq!(
        check_symmetric(&f),
        Err(SymmetryError::Asymmetric(Asymmetry {
            row: 0,
            col: 1,
            value: 1.0,
            mirror: 1.5
        }))
    );
}

fn conforms<A>(op: &A, self_adjoint: bool)
where
    A: AdjointOperator<f64> + ParamVjp<f64> + ?Sized,
{
    let c = Conformance::new(op);
    c.check_adjoint_operator::<f64>().unwrap();
    if self_adjoint {
        c.check_self_adjoint::<f64>().unwrap();
    }
    c.check_vjp::<f64>().unwrap();
}

#[test]
fn checked_symmetric_csr_is_its_matrix_with_a_self_adjoint_promise() {
    fn needs_self_adjoint<T: Scalar, A: SelfAdjoint<T>>(_: &A) {}
    let f = read(GENERAL_SYM);
    let a = f.to_csr().unwrap();
    let s = CheckedSymmetricCsr::new(a.clone()).unwrap();
    needs_self_adjoint::<f64, _>(&s);
    conforms(&s, true);
    let x = random_vector::<f64>(4, 3);
    let (mut y1, mut y2, mut y3) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 4]);
    s.apply(&x, &mut y1);
    a.apply(&x, &mut y2);
    s.apply_transpose(&x, &mut y3);
    assert_eq!(y1, y2);
    close(&y3, &y1);
    close(&y1, &dense_apply(&dense(&f), 4, &x));
    // Parameters and VJPs are the CSR matrix's (one per stored entry).
    assert_eq!(s.num_params(), a.num_params());
    let u = random_vector::<f64>(4, 5);
    let (mut g1, mut g2) = (vec![0.0; a.nnz()], vec![0.0; a.nnz()]);
    s.vjp_params(&u, &x, &mut g1);
    a.vjp_params(&u, &x, &mut g2);
    assert_eq!(g1, g2);
    assert_eq!(s.into_inner().values(), a.values());
    assert_eq!(
        CheckedSymmetricCsr::new(read(NONSYM).to_csr().unwrap()).unwrap_err(),
        SymmetryError::Asymmetric(Asymmetry {
            row: 1,
            col: 2,
            value: 1.5,
            mirror: 1.0
        })
    );
}

/// Writes `∂⟨u, A x⟩/∂(entry)` through the map: for each file entry `t` the gradient of its
/// parameter; checked against the dense derivative along the entry's perturbation.
fn check_entry_gradient(f: &MatrixMarketFile<f64>, kind: OperatorKind) {
    let n = f.nrows();
    let m = f.clone().into_operator(kind).unwrap();
    let (u, x) = (random_vector::<f64>(n, 11), random_vector::<f64>(n, 12));
    let mut g = vec![0.0; m.operator.num_params()];
    m.operator.vjp_params(&u, &x, &mut g);
    let per_entry = m.entry_values(&g).unwrap();
    assert_eq!(per_entry.header().symmetry, f.header().symmetry);
    assert_eq!(per_entry.rows(), f.rows());
    assert_eq!(per_entry.cols(), f.cols());
    for t in 0..f.nnz() {
        let (i, j) = (f.rows()[t], f.cols()[t]);
        // A parameter stands for every file entry that feeds it (duplicates), and in symmetric
        // storage for both mirror positions.
        let mirrored = m.operator.storage() == "symmetric" && i != j;
        let want = u[i] * x[j] + if mirrored { u[j] * x[i] } else { 0.0 };
        let got = per_entry.values()[t];
        assert!(
            (got - want).abs() < 1e-14,
            "{kind:?} entry {t}: {got} vs {want}"
        );
    }
    // The operator multiplies like the file's dense matrix.
    let mut y = vec![0.0; n];
    m.operator.apply(&x, &mut y);
    close(&y, &dense_apply(&dense(f), n, &x));
    assert!(m.entry_values(&g[1..]).is_err());
}

#[test]
fn into_operator_gives_the_storage_each_request_needs() {
    let gen = read(GENERAL_SYM);
    let sym = read(SYMMETRIC);
    let nonsym = read(NONSYM);
    let storage = |f: &MatrixMarketFile<f64>, k| f.clone().into_operator(k).unwrap();
    let s = storage(&sym, OperatorKind::SelfAdjoint);
    assert!(matches!(s.operator, FileOperator::Symmetric(_)));
    // Duplicates share a parameter.
    assert_eq!(s.entry_to_param[5], s.entry_to_param[6]);
    assert_eq!(s.operator.num_params(), 6);
    assert!(matches!(
        storage(&sym, OperatorKind::General).operator,
        FileOperator::Symmetric(_)
    ));
    let c = storage(&gen, OperatorKind::SelfAdjoint);
    assert!(matches!(c.operator, FileOperator::CheckedSymmetric(_)));
    assert_eq!(c.operator.storage(), "checked-symmetric general");
    assert_eq!(c.entry_to_param.len(), 11);
    assert_eq!(c.operator.num_params(), 10);
    assert_eq!(c.file, gen);
    let g = storage(&nonsym, OperatorKind::General);
    assert!(matches!(g.operator, FileOperator::General(_)));
    assert!(g.operator.as_self_adjoint().is_none());
    for (f, k) in [
        (&sym, OperatorKind::SelfAdjoint),
        (&sym, OperatorKind::General),
        (&gen, OperatorKind::SelfAdjoint),
        (&gen, OperatorKind::General),
        (&nonsym, OperatorKind::General),
    ] {
        check_entry_gradient(f, k);
        let m = f.clone().into_operator(k).unwrap();
        let symmetric = m.operator.as_self_adjoint().is_some();
        conforms(&m.operator, symmetric);
        if k == OperatorKind::SelfAdjoint {
            let sa = m.operator.as_self_adjoint().expect("self-adjoint storage");
            conforms(&sa, true);
        }
    }
}

#[test]
fn into_operator_errors_are_typed() {
    match read(NONSYM).into_operator(OperatorKind::SelfAdjoint) {
        Err(IntoOperatorError::NotSymmetric(p)) => {
            assert_eq!((p.row, p.col, p.value, p.mirror), (1, 2, 1.5, 1.0));
        }
        other => panic!("{other:?}"),
    }
    let e = read(NONSYM)
        .into_operator(OperatorKind::SelfAdjoint)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the matrix is not symmetric (A[2,3] = 1.5e0 but A[3,2] = 1e0)"
    );
    let rect = read("%%MatrixMarket matrix coordinate real general\n2 3 1\n1 3 1\n");
    assert!(matches!(
        rect.clone().into_operator(OperatorKind::SelfAdjoint),
        Err(IntoOperatorError::NotSquare { nrows: 2, ncols: 3 })
    ));
    // A general operator may be rectangular.
    let g = rect.into_operator(OperatorKind::General).unwrap();
    assert_eq!((g.operator.nrows(), g.operator.ncols()), (2, 3));
    // Duplicates whose sum overflows: the storage cannot be built.
    let over =
        read("%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 1e308\n1 1 1e308\n2 2 1\n");
    assert!(matches!(
        over.into_operator(OperatorKind::General),
        Err(IntoOperatorError::Build(_))
    ));
}
