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

fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count() as f64;
    let m = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
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
    let inputs: Vec<usize> = (0..cols).filter(|&c| c != target).collect();
    let d = inputs.len();
    let val = |r: usize, c: usize| table.values[r * cols + c];
    let mut stats = Vec::with_capacity(d);
    for &c in &inputs {
        let (m, s) = mean_std(train.iter().map(|&r| val(r, c)));
        if s <= 1e-12 * m.abs().max(1.0) {
            return Err(DataError::ConstantColumn {
                column: c + 1,
                name: table.names[c].clone(),
                value: m,
            });
        }
        stats.push((m, s));
    }
    let (y_mean, y_std) = mean_std(train.iter().map(|&r| val(r, target)));
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
