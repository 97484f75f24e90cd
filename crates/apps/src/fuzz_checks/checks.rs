//! The check functions, one per fuzz target.

use crate::fuzz_checks::bytes::Bytes;
use crate::fuzz_checks::raw::RawMatrix;
use crate::fuzz_checks::Outcome;
use gradmat_adjoint::{
    arnoldi_vjp, lanczos_vjp, AdjointParams, ArnoldiCotangent, LanczosCotangent,
};
use gradmat_krylov::arnoldi::{arnoldi, ArnoldiParams, Reorthogonalize};
use gradmat_krylov::lanczos::{default_self_adjoint_tol, lanczos, LanczosParams};
use gradmat_matfun::dense::{
    expm, expm_frechet, expm_pullback, expm_scaled, MatrixFunction, SymmetricMatrixFunction,
};
use gradmat_operators::csr::{CsrMatrix, SymCsrMatrix};
use gradmat_operators::matrix_market::{
    read_matrix_market_from, write_matrix_market_to, MatrixMarketFile, Symmetry,
};
use gradmat_operators::{AdjointOperator, Operator};

/// A check function: decodes a fuzz input, runs the library, panics on a violated property.
pub type Check = fn(&[u8]) -> Outcome;

/// The fuzz targets, by name (the directories of `fuzz/corpus/` and the `[[bin]]`s of
/// `fuzz/Cargo.toml`), with their check functions.
pub const TARGETS: &[(&str, Check)] = &[
    ("matrix_market", check_matrix_market),
    ("csr_raw_parts", check_csr_raw_parts),
    ("lanczos", check_lanczos),
    ("arnoldi", check_arnoldi),
    ("dense_matfun", check_dense_matfun),
    ("csv", check_csv),
];

/// The GP's CSV reader on arbitrary bytes: no panic; a typed error, or a table whose shape
/// matches its values, all finite, with one name per column; a header is never a data row.
pub fn check_csv(data: &[u8]) -> Outcome {
    match crate::gp::csv::read_csv_from(data, std::path::Path::new("fuzz.csv")) {
        Ok(t) => {
            assert!(t.rows >= 1 && t.cols >= 1);
            assert_eq!(t.values.len(), t.rows * t.cols);
            assert_eq!(t.names.len(), t.cols);
            assert!(t.values.iter().all(|v| v.is_finite()));
            Outcome::Value
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("fuzz.csv"),
                "error does not name the file: {msg}"
            );
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            Outcome::Error(msg)
        }
    }
}

/// Largest declared dimension for which [`check_matrix_market`] converts a file to CSR. A
/// coordinate file may legitimately declare a 10⁹×10⁹ matrix with three entries; converting it
/// needs `O(N)` memory for the row pointers, which is the operator's real size, not a bug — the
/// fuzzer's memory limit would report it as one.
pub const MAX_CONVERT_DIM: usize = 1 << 12;

fn err(e: impl std::fmt::Display) -> Outcome {
    Outcome::Error(e.to_string())
}

/// Equal values (bit patterns, or both zero of either sign).
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0)
}

fn all_finite(x: &[f64]) -> bool {
    x.iter().all(|v| v.is_finite())
}

/// Checks the structural invariants of a CSR matrix: row pointers, sorted unique columns in
/// range, finite values, consistent triplet map.
fn check_csr_invariants(a: &CsrMatrix<f64>, what: &str) {
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
fn csr_dense(a: &CsrMatrix<f64>) -> Vec<f64> {
    let (m, n) = (a.nrows(), a.ncols());
    let mut d = vec![0.0; m * n];
    for i in 0..m {
        for p in a.row_ptr()[i]..a.row_ptr()[i + 1] {
            d[i + a.col_idx()[p] * m] = a.values()[p];
        }
    }
    d
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
        assert!(
            (y[i] - r).abs() <= 1e-12 * s,
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
            (z[j] - r).abs() <= 1e-12 * s,
            "{what}: transpose col {j}: {} vs {r}",
            z[j]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix Market
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// CSR from raw parts and from triplets
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Krylov decompositions and their adjoints
// ---------------------------------------------------------------------------------------------

/// Inputs on which the decompositions must succeed: finite, moderate, nonzero start vector,
/// depth in range.
fn well_posed(a: &RawMatrix, v: &[f64], k: usize) -> bool {
    let moderate = |x: f64| x == 0.0 || (1e-100..=1e100).contains(&x.abs());
    a.is_finite()
        && a.entries().iter().all(|x| moderate(*x))
        && v.iter().all(|x| x.is_finite() && moderate(*x))
        && v.iter().any(|x| *x != 0.0)
        && (1..=v.len()).contains(&k)
}

/// `max |A Q − Q M − r e_{K-1}ᵀ| / max|A|` with `M` the `K×K` small matrix (column-major),
/// computed on `A/max|A|` so that nothing overflows.
fn decomposition_residual(a: &RawMatrix, q: &[f64], m: &[f64], r: &[f64], k: usize) -> f64 {
    let n = a.nrows();
    let s = a.max_abs();
    if s == 0.0 {
        return r.iter().fold(0.0, |x, y| x.max(y.abs()));
    }
    let mut worst: f64 = 0.0;
    for j in 0..k {
        for i in 0..n {
            let aq: f64 = (0..n).map(|l| (a.get(i, l) / s) * q[l + j * n]).sum();
            let qm: f64 = (0..k).map(|l| q[i + l * n] * (m[l + j * k] / s)).sum();
            let rr = if j + 1 == k { r[i] / s } else { 0.0 };
            worst = worst.max((aq - qm - rr).abs());
        }
    }
    worst
}

/// A reported breakdown is a genuine one: at the last step, with a finite scale and a residual
/// within the default threshold `1000·√N·ε` of it; no breakdown ⇒ the full depth.
fn check_breakdown(info: &gradmat_krylov::Info, depth: usize, n: usize) {
    match info.breakdown {
        Some(b) => {
            assert_eq!(b.depth, depth, "breakdown depth");
            assert!(
                b.scale.is_finite(),
                "breakdown against an infinite scale: {b:?}"
            );
            let tol = 1000.0 * (n as f64).sqrt() * f64::EPSILON;
            assert!(
                b.norm <= tol * b.scale,
                "breakdown without a small residual: {b:?}"
            );
        }
        None => assert_eq!(depth, info.requested_depth, "depth without breakdown"),
    }
}

/// `max |QᵀQ − I|`.
fn orthogonality_loss(q: &[f64], n: usize, k: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for i in 0..k {
        for j in 0..k {
            let d: f64 = (0..n).map(|l| q[l + i * n] * q[l + j * n]).sum();
            let e = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((d - e).abs());
        }
    }
    worst
}

/// Lanczos (three-term or fully reorthogonalised, optionally with the self-adjointness check)
/// and its adjoint on an arbitrary small matrix (dimension ≤ 8, optionally symmetrised, any
/// entries including NaN and ±∞), start vector, depth `0..=N+1` and cotangents.
///
/// Properties: no panic; on well-posed input (finite moderate data, nonzero start vector,
/// `1 ≤ K ≤ N`, symmetric matrix) the run succeeds; a result has the reported shapes, finite
/// entries, unit basis vectors, `x₀ = c·v`, and satisfies `A Q = Q T + r e_{K-1}ᵀ` to rounding
/// (three-term: for any matrix; reorthogonalised: for a symmetric one, where also `QᵀQ = I`);
/// with the check requested, a non-symmetric matrix is rejected or its asymmetry is within the
/// tolerance; the adjoint returns finite `v̄` and `θ̄` or a typed error.
pub fn check_lanczos(data: &[u8]) -> Outcome {
    let mut b = Bytes::new(data);
    let n = b.range(1, 8);
    let mode = b.u8();
    let mut ent = b.f64s(n * n);
    if mode & 1 == 0 {
        for j in 0..n {
            for i in 0..j {
                ent[i + j * n] = ent[j + i * n];
            }
        }
    }
    let a = RawMatrix::new(n, ent);
    let v = b.f64s(n);
    let k = b.range(0, n + 1);
    let full = mode & 2 != 0;
    let mut params = LanczosParams::new(k);
    if full {
        params.reorthogonalize = Reorthogonalize::Full;
    }
    let check = mode & 4 != 0;
    if check {
        params.self_adjoint_check = Some(default_self_adjoint_tol::<f64>(n));
    }
    let symmetric = a.is_symmetric();
    let dec = match lanczos(&a, &v, &params) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                !(symmetric && well_posed(&a, &v, k)),
                "lanczos failed on well-posed input: {e}"
            );
            return err(e);
        }
    };
    let kk = dec.depth();
    assert!((1..=k).contains(&kk), "depth {kk} for K = {k}");
    assert_eq!(dec.dim(), n);
    assert_eq!(dec.diagonal().len(), kk);
    assert_eq!(dec.off_diagonal().len(), kk - 1);
    assert_eq!(dec.basis().len(), n * kk);
    assert_eq!(dec.residual().len(), n);
    assert!(all_finite(dec.diagonal()), "non-finite diagonal");
    assert!(all_finite(dec.off_diagonal()), "non-finite off-diagonal");
    assert!(all_finite(dec.basis()), "non-finite basis");
    assert!(all_finite(dec.residual()), "non-finite residual");
    let c = dec.inv_norm();
    assert!(c.is_finite() && c > 0.0, "1/‖v‖ = {c}");
    check_breakdown(dec.info(), kk, n);
    for j in 0..kk {
        let nrm: f64 = dec
            .basis_vector(j)
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt();
        assert!((nrm - 1.0).abs() < 1e-10, "basis vector {j} has norm {nrm}");
    }
    for i in 0..n {
        let want = v[i] * c;
        assert!(
            (dec.basis()[i] - want).abs() <= 1e-14 * (1.0 + want.abs()),
            "x0 != c·v"
        );
    }
    // With the check on, a non-symmetric matrix that passed has an asymmetry within the check's
    // tolerance; nothing more can be asserted, and the three-term identity is verified below.
    if !full || symmetric {
        let t = dec.small_matrix();
        let res = decomposition_residual(&a, dec.basis(), &t, dec.residual(), kk);
        assert!(
            res <= 1e-10 * (n as f64),
            "A Q − Q T − r eᵀ = {res:e} (relative)"
        );
    }
    if full && symmetric {
        let loss = orthogonality_loss(dec.basis(), n, kk);
        assert!(
            loss <= 1e-8,
            "full reorthogonalisation left ‖QᵀQ − I‖ = {loss:e}"
        );
    }
    // Adjoint with arbitrary cotangents.
    let abar = b.f64s(kk);
    let bbar = b.f64s(kk - 1);
    let cmode = b.u8();
    let qbar = b.f64s(if cmode & 1 != 0 { n * kk } else { 0 });
    let rbar = b.f64s(if cmode & 2 != 0 { n } else { 0 });
    let cbar = if cmode & 4 != 0 { b.f64() } else { 0.0 };
    let cot = LanczosCotangent {
        basis: (cmode & 1 != 0).then_some(&qbar[..]),
        diagonal: Some(&abar),
        off_diagonal: Some(&bbar),
        residual: (cmode & 2 != 0).then_some(&rbar[..]),
        inv_norm: cbar,
    };
    let mut grad = vec![0.0; n * n];
    match lanczos_vjp(&a, &dec, &cot, &AdjointParams::default(), &mut grad) {
        Ok(vbar) => {
            assert_eq!(vbar.len(), n);
            assert!(
                all_finite(&vbar),
                "lanczos_vjp returned non-finite v̄ {vbar:?}"
            );
            assert!(all_finite(&grad), "lanczos_vjp returned non-finite θ̄");
            Outcome::Value
        }
        Err(e) => err(e),
    }
}

/// Arnoldi (with or without reorthogonalisation) and its adjoint (with or without
/// re-projection) on an arbitrary small matrix, start vector, depth and cotangents.
///
/// Properties: no panic; on well-posed input the run succeeds; a result has the reported
/// shapes, finite entries, unit basis vectors, an upper Hessenberg `H`, and satisfies
/// `A Q = Q H + r e_{K-1}ᵀ` to rounding (and `QᵀQ = I` when reorthogonalised); the adjoint
/// returns finite `v̄` and `θ̄` or a typed error.
pub fn check_arnoldi(data: &[u8]) -> Outcome {
    let mut b = Bytes::new(data);
    let n = b.range(1, 8);
    let mode = b.u8();
    let a = RawMatrix::new(n, b.f64s(n * n));
    let v = b.f64s(n);
    let k = b.range(0, n + 1);
    let full = mode & 2 != 0;
    let mut params = ArnoldiParams::new(k);
    if full {
        params.reorthogonalize = Reorthogonalize::Full;
    }
    let dec = match arnoldi(&a, &v, &params) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                !well_posed(&a, &v, k),
                "arnoldi failed on well-posed input: {e}"
            );
            return err(e);
        }
    };
    let kk = dec.depth();
    assert!((1..=k).contains(&kk), "depth {kk} for K = {k}");
    check_breakdown(dec.info(), kk, n);
    assert_eq!(dec.basis().len(), n * kk);
    assert_eq!(dec.hessenberg().len(), kk * kk);
    assert!(all_finite(dec.basis()), "non-finite basis");
    assert!(all_finite(dec.hessenberg()), "non-finite H");
    assert!(all_finite(dec.residual()), "non-finite residual");
    for j in 0..kk {
        for i in j + 2..kk {
            assert!(dec.h(i, j) == 0.0, "H not Hessenberg at ({i}, {j})");
        }
        let nrm: f64 = dec
            .basis_vector(j)
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt();
        assert!((nrm - 1.0).abs() < 1e-10, "basis vector {j} has norm {nrm}");
    }
    let res = decomposition_residual(&a, dec.basis(), dec.hessenberg(), dec.residual(), kk);
    assert!(
        res <= 1e-10 * (n as f64),
        "A Q − Q H − r eᵀ = {res:e} (relative)"
    );
    if full {
        let loss = orthogonality_loss(dec.basis(), n, kk);
        assert!(
            loss <= 1e-8,
            "full reorthogonalisation left ‖QᵀQ − I‖ = {loss:e}"
        );
    }
    let cmode = b.u8();
    let hbar = b.f64s(kk * kk);
    let qbar = b.f64s(if cmode & 1 != 0 { n * kk } else { 0 });
    let rbar = b.f64s(if cmode & 2 != 0 { n } else { 0 });
    let cbar = if cmode & 4 != 0 { b.f64() } else { 0.0 };
    let cot = ArnoldiCotangent {
        basis: (cmode & 1 != 0).then_some(&qbar[..]),
        hessenberg: Some(&hbar),
        residual: (cmode & 2 != 0).then_some(&rbar[..]),
        inv_norm: cbar,
    };
    let params = AdjointParams::default().project(cmode & 8 == 0);
    let mut grad = vec![0.0; n * n];
    match arnoldi_vjp(&a, &dec, &cot, &params, &mut grad) {
        Ok(vbar) => {
            assert_eq!(vbar.len(), n);
            assert!(
                all_finite(&vbar),
                "arnoldi_vjp returned non-finite v̄ {vbar:?}"
            );
            assert!(all_finite(&grad), "arnoldi_vjp returned non-finite θ̄");
            Outcome::Value
        }
        Err(e) => err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Dense matrix functions
// ---------------------------------------------------------------------------------------------

/// The dense matrix functions on arbitrary small matrices (dimension 0..=6, any entries):
/// the symmetric path for every built-in function with its reverse rules, and the Padé `exp`
/// with its Fréchet derivative, pullback and scaled form.
///
/// Properties: no panic; every `Ok` result is finite; `f(A)` from the symmetric path is
/// symmetric; for a symmetric matrix of moderate norm the Padé `exp` agrees with the
/// eigendecomposition's.
pub fn check_dense_matfun(data: &[u8]) -> Outcome {
    let mut b = Bytes::new(data);
    let n = b.range(0, 6);
    let mode = b.u8();
    let fsel = b.u8();
    let param = b.f64();
    let f = match fsel % 8 {
        0 => MatrixFunction::Exp,
        1 => MatrixFunction::ScaledExp(param),
        2 => MatrixFunction::Log,
        3 => MatrixFunction::Sqrt,
        4 => MatrixFunction::InvSqrt,
        5 => MatrixFunction::Inv,
        6 => MatrixFunction::PowI((param as i32).clamp(-40, 40)),
        _ => MatrixFunction::Pow(param),
    };
    let len = if mode & 8 == 0 { n * n } else { b.range(0, 40) };
    let mut a = b.f64s(len);
    if mode & 1 == 0 && len == n * n {
        for j in 0..n {
            for i in 0..j {
                a[i + j * n] = a[j + i * n];
            }
        }
    }
    let mbar = b.f64s(n * n);
    let rho = b.f64();
    let mut values = 0;
    let mut last_err = None;
    match SymmetricMatrixFunction::<f64>::new(f, n, &a) {
        Ok(m) => {
            values += 1;
            let val = m.value();
            assert!(all_finite(&val), "f(A) not finite: {val:?}");
            let scale = val.iter().fold(0.0f64, |s, x| s.max(x.abs()));
            for i in 0..n {
                for j in 0..n {
                    assert!(
                        (val[i + j * n] - val[j + i * n]).abs() <= 1e-12 * scale,
                        "f(A) not symmetric"
                    );
                }
            }
            assert!(m.quadratic_form().is_finite(), "e0ᵀf(A)e0 not finite");
            assert!(all_finite(&m.apply_e0()), "f(A)e0 not finite");
            if let Ok(g) = m.pullback(&mbar) {
                assert!(all_finite(&g), "pullback not finite");
            }
            if let Ok(g) = m.pullback_quadratic_form(rho) {
                assert!(all_finite(&g), "quadratic-form pullback not finite");
            }
            if let Ok(y) = m.apply(&mbar[..n]) {
                assert!(all_finite(&y), "f(A)v not finite");
            }
        }
        Err(e) => last_err = Some(e.to_string()),
    }
    match expm(n, &a) {
        Ok(e) => {
            values += 1;
            assert!(all_finite(&e), "expm not finite");
            let moderate = a.iter().all(|x| x.abs() <= 4.0);
            if moderate && a.len() == n * n && n > 0 && mode & 1 == 0 {
                let s = SymmetricMatrixFunction::<f64>::new(MatrixFunction::Exp, n, &a)
                    .expect("exp of a moderate symmetric matrix");
                let sv = s.value();
                let nrm = sv.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                for (p, q) in e.iter().zip(&sv) {
                    assert!(
                        (p - q).abs() <= 1e-10 * nrm,
                        "Padé exp {p} vs eigen exp {q}"
                    );
                }
            }
        }
        Err(e) => last_err = Some(e.to_string()),
    }
    if let Ok(l) = expm_frechet(n, &a, &mbar) {
        assert!(all_finite(&l), "Fréchet derivative not finite");
    }
    if let Ok(l) = expm_pullback(n, &a, &mbar) {
        assert!(all_finite(&l), "exp pullback not finite");
    }
    if let Ok(l) = expm_scaled(n, &a, param) {
        assert!(all_finite(&l), "exp(tA) not finite");
    }
    match (values, last_err) {
        (0, Some(e)) => Outcome::Error(e),
        _ => Outcome::Value,
    }
}
