//! Turning a numeric table into a GP regression problem: target selection, a seeded subsample
//! and 80/20 train/test split, standardised inputs and a centred, scaled target (statistics of
//! the training split only).

use super::csv::Table;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Fewest rows accepted (after subsampling): enough for a split with 8 training and 2 test
/// points.
pub const MIN_ROWS: usize = 10;

/// A data error (wrong target, too few rows, constant column).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// `--target` names no column.
    #[error("--target {spec:?} is neither a column name nor a column number 1..={cols} (columns: {names})")]
    UnknownTarget {
        /// The request.
        spec: String,
        /// Number of columns.
        cols: usize,
        /// The names, comma-separated.
        names: String,
    },
    /// Only one column: no inputs.
    #[error(
        "the data has only one column; a GP needs at least one input column besides the target"
    )]
    NoInputs,
    /// Too few rows.
    #[error("{rows} data rows; at least {min} are needed for a train/test split")]
    TooFewRows {
        /// Rows available.
        rows: usize,
        /// The minimum.
        min: usize,
    },
    /// The spread of a column exceeds the largest floating-point number (values of both signs
    /// near `1.8e308`): it cannot be standardised.
    #[error(
        "column {column} ({name}): the spread of its values overflows (largest magnitude \
         {max:e}); rescale the column"
    )]
    Overflow {
        /// 1-based column number in the file.
        column: usize,
        /// Its name.
        name: String,
        /// The largest magnitude.
        max: f64,
    },
    /// A column is constant on the training split (it cannot be standardised).
    #[error(
        "column {column} ({name}) is constant on the training split (value {value}); remove it"
    )]
    ConstantColumn {
        /// 1-based column number in the file.
        column: usize,
        /// Its name.
        name: String,
        /// The value.
        value: f64,
    },
}

/// A standardised GP regression problem.
#[derive(Debug, Clone)]
pub struct GpData {
    /// Names of the input columns.
    pub input_names: Vec<String>,
    /// Name of the target column.
    pub target_name: String,
    /// Input dimension `d`.
    pub d: usize,
    /// Rows used (after subsampling).
    pub n_used: usize,
    /// Rows in the file.
    pub n_file: usize,
    /// Training inputs, row-major `n_train × d`, standardised.
    pub x_train: Vec<f64>,
    /// Training targets, centred and scaled.
    pub y_train: Vec<f64>,
    /// Test inputs, standardised with the training statistics.
    pub x_test: Vec<f64>,
    /// Test targets, scaled with the training statistics.
    pub y_test: Vec<f64>,
    /// Mean of the training targets (original units).
    pub y_mean: f64,
    /// Standard deviation of the training targets (original units).
    pub y_std: f64,
    /// Input columns dropped as constant (with `drop_constant`).
    pub dropped: Vec<String>,
}

impl GpData {
    /// Number of training points.
    pub fn n_train(&self) -> usize {
        self.y_train.len()
    }
    /// Number of test points.
    pub fn n_test(&self) -> usize {
        self.y_test.len()
    }
}

/// Resolves `--target`: `None` is the last column; a header name wins over a number; a number
/// is 1-based.
pub fn resolve_target(table: &Table, spec: Option<&str>) -> Result<usize, DataError> {
    let Some(spec) = spec else {
        return Ok(table.cols - 1);
    };
    if let Some(c) = table.names.iter().position(|n| n == spec) {
        return Ok(c);
    }
    match spec.trim().parse::<usize>() {
        Ok(i) if (1..=table.cols).contains(&i) => Ok(i - 1),
        _ => Err(DataError::UnknownTarget {
            spec: spec.to_string(),
            cols: table.cols,
            names: table.names.join(", "),
        }),
    }
}

/// `2^e` for `-1020 ≤ e ≤ 1020`, exactly.
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e.clamp(-1020, 1020) + 1023) as u64) << 52)
}

/// Mean and (population) standard deviation, overflow-free: the values are divided by the
/// power of two `s` nearest below their largest magnitude first (exactly: the sums and squares
/// are those of the plain formula scaled by `s` and `s²`, bit for bit where the plain formula
/// does not overflow), so that columns of values near `1e301`, whose squares overflow, are
/// standardised instead of being silently zeroed. The standard deviation is infinite only when
/// the spread itself exceeds the largest `f64`.
fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count() as f64;
    let max = v.clone().fold(0.0_f64, |m, x| m.max(x.abs()));
    let s = if max > 0.0 && max.is_finite() {
        pow2(max.log2().floor() as i32)
    } else {
        1.0
    };
    let m = v.clone().map(|x| x / s).sum::<f64>() / n;
    let var = v.map(|x| (x / s - m) * (x / s - m)).sum::<f64>() / n;
    (m * s, var.sqrt() * s)
}

/// Builds the problem: picks `target`, draws `subsample` rows (all when `None` or larger than
/// the table) and splits them 80/20 — both from `seed` — and standardises.
///
/// # Errors
/// See [`DataError`].
pub fn prepare(
    table: &Table,
    target: usize,
    subsample: Option<usize>,
    seed: u64,
) -> Result<GpData, DataError> {
    prepare_with(table, target, subsample, seed, false)
}

/// [`prepare`], optionally dropping input columns that are constant on the training split
/// (instead of reporting them as an error); the dropped columns are listed in
/// [`GpData::dropped`].
///
/// # Errors
/// See [`DataError`].
pub fn prepare_with(
    table: &Table,
    target: usize,
    subsample: Option<usize>,
    seed: u64,
    drop_constant: bool,
) -> Result<GpData, DataError> {
    if table.cols < 2 {
        return Err(DataError::NoInputs);
    }
    let mut idx: Vec<usize> = (0..table.rows).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    idx.shuffle(&mut rng);
    if let Some(m) = subsample {
        idx.truncate(m);
    }
    let n = idx.len();
    if n < MIN_ROWS {
        return Err(DataError::TooFewRows {
            rows: n,
            min: MIN_ROWS,
        });
    }
    let n_train = (n * 4).div_ceil(5);
    let (train, test) = idx.split_at(n_train);
    let cols = table.cols;
    let val = |r: usize, c: usize| table.values[r * cols + c];
    let mut inputs = Vec::new();
    let mut dropped = Vec::new();
    let mut stats = Vec::new();
    let overflow = |c: usize| DataError::Overflow {
        column: c + 1,
        name: table.names[c].clone(),
        max: train
            .iter()
            .map(|&r| val(r, c).abs())
            .fold(0.0_f64, f64::max),
    };
    for c in (0..cols).filter(|&c| c != target) {
        let (m, s) = mean_std(train.iter().map(|&r| val(r, c)));
        // A spread beyond the largest f64 (x − mean overflows for some used row) is refused.
        if !s.is_finite() || !m.is_finite() || idx.iter().any(|&r| !(val(r, c) - m).is_finite()) {
            return Err(overflow(c));
        }
        if s <= 1e-12 * m.abs().max(1.0) {
            if drop_constant {
                dropped.push(table.names[c].clone());
                continue;
            }
            return Err(DataError::ConstantColumn {
                column: c + 1,
                name: table.names[c].clone(),
                value: m,
            });
        }
        inputs.push(c);
        stats.push((m, s));
    }
    if inputs.is_empty() {
        return Err(DataError::NoInputs);
    }
    let d = inputs.len();
    let (y_mean, y_std) = mean_std(train.iter().map(|&r| val(r, target)));
    if !y_std.is_finite()
        || !y_mean.is_finite()
        || idx.iter().any(|&r| !(val(r, target) - y_mean).is_finite())
    {
        return Err(overflow(target));
    }
    if y_std <= 1e-12 * y_mean.abs().max(1.0) {
        return Err(DataError::ConstantColumn {
            column: target + 1,
            name: table.names[target].clone(),
            value: y_mean,
        });
    }
    let xs = |rows: &[usize]| -> Vec<f64> {
        rows.iter()
            .flat_map(|&r| {
                inputs
                    .iter()
                    .zip(&stats)
                    .map(move |(&c, &(m, s))| (val(r, c) - m) / s)
            })
            .collect()
    };
    let ys = |rows: &[usize]| -> Vec<f64> {
        rows.iter()
            .map(|&r| (val(r, target) - y_mean) / y_std)
            .collect()
    };
    Ok(GpData {
        input_names: inputs.iter().map(|&c| table.names[c].clone()).collect(),
        target_name: table.names[target].clone(),
        d,
        n_used: n,
        n_file: table.rows,
        x_train: xs(train),
        y_train: ys(train),
        x_test: xs(test),
        y_test: ys(test),
        y_mean,
        y_std,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: usize) -> Table {
        let mut values = Vec::new();
        for r in 0..rows {
            values.extend([r as f64, (r * r % 7) as f64, 2.0 * r as f64 + 1.0]);
        }
        Table {
            names: vec!["a".into(), "b".into(), "y".into()],
            has_header: true,
            rows,
            cols: 3,
            values,
        }
    }

    #[test]
    fn split_standardise_and_target() {
        let t = table(50);
        assert_eq!(resolve_target(&t, None).unwrap(), 2);
        assert_eq!(resolve_target(&t, Some("a")).unwrap(), 0);
        assert_eq!(resolve_target(&t, Some("2")).unwrap(), 1);
        assert!(resolve_target(&t, Some("4")).is_err());
        assert!(resolve_target(&t, Some("zz")).is_err());
        let g = prepare(&t, 2, None, 1).unwrap();
        assert_eq!((g.n_train(), g.n_test(), g.d), (40, 10, 2));
        let (m, s) = mean_std(g.y_train.iter().copied());
        assert!(m.abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        // Targets map back to the file's values: y = 2a + 1 on every split.
        for i in 0..g.n_test() {
            let y = g.y_test[i] * g.y_std + g.y_mean;
            assert!((y.round() - y).abs() < 1e-9 && y as usize % 2 == 1);
        }
        // Seeded: same seed, same split; another seed, another split.
        let g2 = prepare(&t, 2, None, 1).unwrap();
        assert_eq!(g.y_test, g2.y_test);
        assert_ne!(g.y_test, prepare(&t, 2, None, 2).unwrap().y_test);
        assert_eq!(prepare(&t, 2, Some(20), 1).unwrap().n_used, 20);
    }

    /// A column of values near 1e301 (whose squares overflow) is standardised like the same
    /// column at ordinary magnitude — before, its variance overflowed and the column was
    /// silently zeroed.
    #[test]
    fn huge_values_are_standardised_not_zeroed() {
        let t = table(40);
        let mut huge = t.clone();
        for r in 0..40 {
            huge.values[r * 3] *= 1e300;
        }
        let (g, h) = (
            prepare(&t, 2, None, 3).unwrap(),
            prepare(&huge, 2, None, 3).unwrap(),
        );
        for (a, b) in g.x_train.iter().zip(&h.x_train) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        let col: Vec<f64> = h.x_train.iter().step_by(2).copied().collect();
        let (m, s) = mean_std(col.iter().copied());
        assert!(m.abs() < 1e-12 && (s - 1.0).abs() < 1e-12, "{m} {s}");
        // Ordinary values: the same numbers as the plain formula, bit for bit.
        let v = [0.1, 2.5, -3.75, 1e-3, 7.0];
        let n = v.len() as f64;
        let pm = v.iter().sum::<f64>() / n;
        let ps = (v.iter().map(|x| (x - pm) * (x - pm)).sum::<f64>() / n).sqrt();
        let (m, s) = mean_std(v.iter().copied());
        assert_eq!((m.to_bits(), s.to_bits()), (pm.to_bits(), ps.to_bits()));
        // A spread beyond the largest f64: refused, naming the column.
        let mut over = t.clone();
        for r in 0..40 {
            over.values[r * 3] = if r % 2 == 0 { 1.7e308 } else { -1.7e308 };
        }
        let e = prepare(&over, 2, None, 3).unwrap_err();
        assert!(matches!(e, DataError::Overflow { column: 1, .. }), "{e}");
        assert!(e.to_string().contains("column 1 (a)"), "{e}");
    }

    #[test]
    fn bad_tables() {
        assert!(matches!(
            prepare(&table(9), 2, None, 0),
            Err(DataError::TooFewRows { rows: 9, .. })
        ));
        assert!(matches!(
            prepare(&table(50), 2, Some(5), 0),
            Err(DataError::TooFewRows { .. })
        ));
        let mut t = table(30);
        for r in 0..30 {
            t.values[r * 3 + 1] = 4.0;
        }
        let e = prepare(&t, 2, None, 0).unwrap_err().to_string();
        assert!(e.contains("column 2 (b) is constant"), "{e}");
        let one = Table {
            names: vec!["y".into()],
            has_header: true,
            rows: 20,
            cols: 1,
            values: vec![1.0; 20],
        };
        assert!(matches!(
            prepare(&one, 0, None, 0),
            Err(DataError::NoInputs)
        ));
    }
}
