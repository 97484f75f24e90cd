//! The `matrix_market` target: the Matrix Market reader on arbitrary bytes.

use super::csr::{check_csr_invariants, csr_dense};
use super::{all_finite, err, same, Outcome};
use crate::matrix_market::{
    read_matrix_market_from, write_matrix_market_to, MatrixMarketFile, Symmetry,
};

/// Largest declared dimension for which [`check_matrix_market`] converts a file to CSR. A
/// coordinate file may legitimately declare a 10⁹×10⁹ matrix with three entries; converting it
/// needs `O(N)` memory for the row pointers, which is the operator's real size, not a bug — the
/// fuzzer's memory limit would report it as one.
pub const MAX_CONVERT_DIM: usize = 1 << 12;

/// The Matrix Market reader on arbitrary bytes (plain or gzip).
///
/// Properties: no panic; a file that reads has entries in range, finite values, a square shape
/// when symmetric; it writes and reads back to the same file (header, size, entries bit for
/// bit, comments); reading as `f32` does not panic. When the declared dimension is at most
/// [`MAX_CONVERT_DIM`]: [`MatrixMarketFile::to_csr`] gives valid CSR equal to the entries
/// accumulated densely in file order (mirrored when symmetric, duplicates summed) or a typed
/// error, and [`MatrixMarketFile::to_sym_csr`] gives a symmetric matrix with the same entries
/// or a typed error.
pub fn check_matrix_market(data: &[u8]) -> Outcome {
    let _ = read_matrix_market_from::<f32, _>(data);
    let file = match read_matrix_market_from::<f64, _>(data) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    let (m, n, nnz) = (file.nrows(), file.ncols(), file.nnz());
    assert_eq!(file.rows().len(), nnz);
    assert_eq!(file.cols().len(), nnz);
    assert_eq!(file.values().len(), nnz);
    assert!(file.rows().iter().all(|&r| r < m), "row out of range");
    assert!(file.cols().iter().all(|&c| c < n), "column out of range");
    assert!(all_finite(file.values()), "non-finite value accepted");
    let sym = file.header().symmetry == Symmetry::Symmetric;
    if sym {
        assert_eq!(m, n, "symmetric file that is not square");
    }
    // Round trip.
    let mut out = Vec::new();
    write_matrix_market_to(&mut out, &file).expect("writing a file that was read");
    let again: MatrixMarketFile<f64> =
        read_matrix_market_from(&out[..]).expect("reading back a written file");
    assert_eq!(again.header(), file.header(), "round trip: header");
    assert_eq!((again.nrows(), again.ncols()), (m, n), "round trip: size");
    assert_eq!(again.rows(), file.rows(), "round trip: rows");
    assert_eq!(again.cols(), file.cols(), "round trip: cols");
    assert!(
        again
            .values()
            .iter()
            .zip(file.values())
            .all(|(a, b)| same(*a, *b)),
        "round trip: values"
    );
    assert_eq!(again.comments(), file.comments(), "round trip: comments");
    if m.max(n) > MAX_CONVERT_DIM || m.saturating_mul(n) > 1 << 16 {
        return Outcome::Value;
    }
    // Dense accumulation in file order (mirrors after: a symmetric file has one triangle, so
    // each position receives either direct entries or mirrors, in file order either way).
    let mut dense = vec![0.0; m * n];
    for e in 0..nnz {
        let (r, c, v) = (file.rows()[e], file.cols()[e], file.values()[e]);
        dense[r + c * m] += v;
    }
    if sym {
        for e in 0..nnz {
            let (r, c, v) = (file.rows()[e], file.cols()[e], file.values()[e]);
            if r != c {
                dense[c + r * m] += v;
            }
        }
    }
    let dense_finite = all_finite(&dense);
    match file.to_csr() {
        Ok(a) => {
            check_csr_invariants(&a, "to_csr");
            assert!(dense_finite, "to_csr accepted sums that overflow");
            let d = csr_dense(&a);
            assert!(
                d.iter().zip(&dense).all(|(x, y)| same(*x, *y)),
                "to_csr differs from the entries"
            );
        }
        Err(e) => assert!(!dense_finite, "to_csr failed on a valid file: {e}"),
    }
    match file.to_sym_csr() {
        Ok(s) => {
            assert_eq!(m, n, "to_sym_csr of a non-square file");
            check_csr_invariants(s.full(), "to_sym_csr full");
            check_csr_invariants(s.lower(), "to_sym_csr lower");
            let d = csr_dense(s.full());
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(
                        d[i + j * n].to_bits(),
                        d[j + i * n].to_bits(),
                        "not symmetric"
                    );
                }
            }
            if sym {
                assert!(
                    d.iter().zip(&dense).all(|(x, y)| same(*x, *y)),
                    "to_sym_csr differs from the entries"
                );
            }
        }
        Err(e) => {
            if sym && m == n && dense_finite {
                panic!("to_sym_csr failed on a valid symmetric file: {e}");
            }
        }
    }
    Outcome::Value
}
