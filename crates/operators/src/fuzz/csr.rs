//! The `csr_raw_parts` target: CSR construction from raw parts and from triplets, and the CSR
//! invariants the `matrix_market` target also checks.

use super::bytes::Bytes;
use super::{all_finite, err, same, Outcome};
use crate::csr::{CsrMatrix, SymCsrMatrix};
use crate::{AdjointOperator, Operator};

/// Checks the structural invariants of a CSR matrix: row pointers, sorted unique columns in
/// range, finite values, consistent triplet map.
pub(super) fn check_csr_invariants(a: &CsrMatrix<f64>, what: &str) {
    let (rp, ci, v) = (a.row_ptr(), a.col_idx(), a.values());
    assert_eq!(rp.len(), a.nrows() + 1, "{what}: row_ptr length");
    assert_eq!(rp[0], 0, "{what}: row_ptr[0]");
    assert_eq!(rp[a.nrows()], ci.len(), "{what}: row_ptr end");
    assert_eq!(ci.len(), v.len(), "{what}: col_idx/values lengths");
    for i in 0..a.nrows() {
        assert!(rp[i] <= rp[i + 1], "{what}: row_ptr decreases at {i}");
        for p in rp[i]..rp[i + 1] {
            assert!(ci[p] < a.ncols(), "{what}: column out of range");
            assert!(
                p == rp[i] || ci[p - 1] < ci[p],
                "{what}: columns not increasing"
            );
        }
    }
    assert!(all_finite(v), "{what}: non-finite stored value");
    assert!(
        a.triplet_to_stored().iter().all(|&p| p < v.len()),
        "{what}: triplet map out of range"
    );
}

/// Dense column-major `nrows×ncols` from a CSR matrix.
pub(super) fn csr_dense(a: &CsrMatrix<f64>) -> Vec<f64> {
    let (m, n) = (a.nrows(), a.ncols());
    let mut d = vec![0.0; m * n];
    for i in 0..m {
        for p in a.row_ptr()[i]..a.row_ptr()[i + 1] {
            d[i + a.col_idx()[p] * m] = a.values()[p];
        }
    }
    d
}

/// The absolute rounding a sum of `terms` products may carry where they underflow (each
/// product or sum of subnormals is exact only to the smallest subnormal, `2⁻¹⁰⁷⁴`).
fn underflow_floor(terms: usize) -> f64 {
    4.0 * (terms as f64 + 1.0) * f64::from_bits(1)
}

/// `y = A x` and `y = Aᵀ x` of an operator against a dense reference, to a relative tolerance
/// of the absolute products.
fn check_apply_against_dense<A: AdjointOperator<f64>>(
    op: &A,
    dense: &[f64],
    x: &[f64],
    what: &str,
) {
    let (m, n) = (op.nrows(), op.ncols());
    let mut y = vec![0.0; m];
    op.apply(&x[..n], &mut y);
    for i in 0..m {
        let (mut r, mut s) = (0.0, 0.0);
        for j in 0..n {
            r += dense[i + j * m] * x[j];
            s += (dense[i + j * m] * x[j]).abs();
        }
        // Overflow in the products (finite entries, finite x): the sums' infinities depend on
        // the order of summation (∞ − ∞ = NaN), so only the finite case has a property.
        assert!(
            !s.is_finite() || (y[i] - r).abs() <= 1e-12 * s + underflow_floor(n),
            "{what}: apply row {i}: {} vs {r}",
            y[i]
        );
    }
    let mut z = vec![0.0; n];
    op.apply_transpose(&x[..m], &mut z);
    for j in 0..n {
        let (mut r, mut s) = (0.0, 0.0);
        for i in 0..m {
            r += dense[i + j * m] * x[i];
            s += (dense[i + j * m] * x[i]).abs();
        }
        assert!(
            !s.is_finite() || (z[j] - r).abs() <= 1e-12 * s + underflow_floor(m),
            "{what}: transpose col {j}: {} vs {r}",
            z[j]
        );
    }
}

/// An independent validity check of raw CSR arrays (the documented contract of
/// [`CsrMatrix::from_raw_parts`]).
fn raw_parts_valid(nrows: usize, ncols: usize, rp: &[usize], ci: &[usize], v: &[f64]) -> bool {
    rp.len() == nrows + 1
        && rp[0] == 0
        && rp.windows(2).all(|w| w[0] <= w[1])
        && rp[nrows] == ci.len()
        && ci.len() == v.len()
        && (0..nrows)
            .all(|i| (rp[i]..rp[i + 1]).all(|p| ci[p] < ncols && (p == rp[i] || ci[p - 1] < ci[p])))
        && all_finite(v)
}

/// [`CsrMatrix::from_raw_parts`] and [`CsrMatrix::from_triplets`] on arbitrary arrays, and the
/// symmetric constructors on what they produce.
///
/// Properties: `from_raw_parts` succeeds exactly when the arrays satisfy its documented
/// contract (checked independently), and the result applies (and transposes) like the dense
/// matrix of its entries; `from_triplets` succeeds exactly when the indices are in range and
/// the values and duplicate sums finite, and equals the dense accumulation; the symmetric
/// constructors (`from_lower_csr`, `from_full_csr`) either fail with a typed error or give a
/// symmetric matrix agreeing with the input.
pub fn check_csr_raw_parts(data: &[u8]) -> Outcome {
    let mut b = Bytes::new(data);
    let nrows = b.range(0, 6);
    let ncols = b.range(0, 6);
    let mode = b.u8();
    let rp_len = if mode & 1 == 0 {
        nrows + 1
    } else {
        b.range(0, nrows + 2)
    };
    let mut rp: Vec<usize> = (0..rp_len).map(|_| b.range(0, 6)).collect();
    if mode & 2 == 0 && !rp.is_empty() {
        // Cumulative counts: monotone pointers starting at 0 (the common, valid shape).
        rp[0] = 0;
        for i in 1..rp.len() {
            rp[i] = rp[i - 1] + rp[i] % 4;
        }
    }
    let nnz = if mode & 4 == 0 {
        rp.last().copied().unwrap_or(0)
    } else {
        b.range(0, 12)
    };
    let ci: Vec<usize> = if mode & 8 == 0 {
        // Sorted columns within each row, most of the time.
        let mut c: Vec<usize> = (0..nnz).map(|_| b.range(0, 6)).collect();
        for i in 0..rp.len().saturating_sub(1) {
            let (s, e) = (rp[i].min(nnz), rp[i + 1].min(nnz));
            if s < e {
                c[s..e].sort_unstable();
            }
        }
        c
    } else {
        (0..nnz).map(|_| b.range(0, 7)).collect()
    };
    let nv = if mode & 16 == 0 { nnz } else { b.range(0, 12) };
    let v = b.f64s(nv);
    let x = b
        .f64s(6)
        .iter()
        .map(|t| if t.is_finite() { *t } else { 1.0 })
        .collect::<Vec<_>>();
    let valid = raw_parts_valid(nrows, ncols, &rp, &ci, &v);
    let outcome = match CsrMatrix::from_raw_parts(nrows, ncols, rp.clone(), ci.clone(), v.clone()) {
        Ok(a) => {
            assert!(
                valid,
                "from_raw_parts accepted invalid arrays {rp:?} {ci:?} {v:?}"
            );
            check_csr_invariants(&a, "from_raw_parts");
            assert_eq!(a.row_ptr(), &rp[..]);
            assert_eq!(a.col_idx(), &ci[..]);
            let dense = csr_dense(&a);
            check_apply_against_dense(&a, &dense, &x, "from_raw_parts");
            // Symmetric constructors on the result.
            if let Ok(s) = SymCsrMatrix::from_lower_csr(a.clone()) {
                assert_eq!(nrows, ncols);
                check_csr_invariants(s.full(), "from_lower_csr");
                let d = csr_dense(s.full());
                for i in 0..nrows {
                    for j in 0..=i {
                        assert!(same(d[i + j * nrows], dense[i + j * nrows]), "lower part");
                        assert!(same(d[j + i * nrows], dense[i + j * nrows]), "mirror");
                    }
                }
                check_apply_against_dense(&s, &d, &x, "from_lower_csr");
            }
            match SymCsrMatrix::from_full_csr(&a) {
                Ok(s) => {
                    let d = csr_dense(s.full());
                    assert!(
                        d.iter().zip(&dense).all(|(p, q)| same(*p, *q)),
                        "from_full_csr changed the matrix"
                    );
                }
                Err(_) => {
                    let symmetric = nrows == ncols
                        && (0..nrows).all(|i| {
                            (0..nrows).all(|j| {
                                dense[i + j * nrows].to_bits() == dense[j + i * nrows].to_bits()
                            })
                        });
                    // Explicitly stored zeros make the pattern asymmetric even when the values
                    // are symmetric; only a symmetric pattern must be accepted.
                    let pattern_sym = symmetric
                        && (0..nrows).all(|i| {
                            (a.row_ptr()[i]..a.row_ptr()[i + 1]).all(|p| {
                                // `get` returns 0 for an entry that is not stored: look at
                                // the stored pattern of row j (the first fuzz finding was this
                                // checker bug).
                                let j = a.col_idx()[p];
                                let rj = &a.col_idx()[a.row_ptr()[j]..a.row_ptr()[j + 1]];
                                rj.contains(&i)
                            })
                        });
                    assert!(!pattern_sym, "from_full_csr rejected a symmetric matrix");
                }
            }
            Outcome::Value
        }
        Err(e) => {
            assert!(!valid, "from_raw_parts rejected valid arrays: {e}");
            err(e)
        }
    };
    // Triplets from the rest of the input.
    let t = b.range(0, 10);
    let tr: Vec<usize> = (0..t).map(|_| b.range(0, 6)).collect();
    let tc: Vec<usize> = (0..t).map(|_| b.range(0, 6)).collect();
    let tv = b.f64s(t);
    let in_range = tr.iter().zip(&tc).all(|(&r, &c)| r < nrows && c < ncols);
    let mut dense = vec![0.0; nrows * ncols];
    if in_range {
        for e in 0..t {
            dense[tr[e] + tc[e] * nrows] += tv[e];
        }
    }
    let ok_expected = in_range && all_finite(&tv) && all_finite(&dense);
    match CsrMatrix::from_triplets(nrows, ncols, &tr, &tc, &tv) {
        Ok(a) => {
            assert!(ok_expected, "from_triplets accepted bad triplets");
            check_csr_invariants(&a, "from_triplets");
            assert_eq!(a.triplet_to_stored().len(), t);
            let d = csr_dense(&a);
            assert!(
                d.iter().zip(&dense).all(|(p, q)| same(*p, *q)),
                "from_triplets differs"
            );
            check_apply_against_dense(&a, &d, &x, "from_triplets");
        }
        Err(e) => assert!(!ok_expected, "from_triplets rejected valid triplets: {e}"),
    }
    if nrows == ncols {
        // One-triangle symmetric triplets: typed error or a symmetric matrix.
        if let Ok(s) = SymCsrMatrix::from_triplets(nrows, &tr, &tc, &tv) {
            check_csr_invariants(s.full(), "SymCsrMatrix::from_triplets");
            let d = csr_dense(s.full());
            for i in 0..nrows {
                for j in 0..nrows {
                    assert_eq!(d[i + j * nrows].to_bits(), d[j + i * nrows].to_bits());
                }
            }
        }
    }
    outcome
}
