//! A strict reader for numeric CSV files (optionally gzipped), with line and column numbers in
//! every error.
//!
//! Accepted: comma-separated numbers; an optional header line (detected when the first line has
//! a cell that is not a number); blank lines and lines starting with `#` are skipped; cells may
//! be surrounded by spaces or double quotes; `\r\n` line ends. Rejected with a [`CsvError`]: an
//! empty file, a row with a different number of cells from the first row, a cell that is not a
//! number, a NaN or infinite cell, invalid UTF-8, a gzip stream that is corrupt or truncated.

use flate2::read::MultiGzDecoder;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A numeric table read from CSV: `rows × cols` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names (from the header, or `column 1`, `column 2`, … without one).
    pub names: Vec<String>,
    /// Whether the file had a header line.
    pub has_header: bool,
    /// Number of data rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row-major values.
    pub values: Vec<f64>,
}

impl Table {
    /// Column `c` as a new vector.
    pub fn column(&self, c: usize) -> Vec<f64> {
        (0..self.rows)
            .map(|r| self.values[r * self.cols + c])
            .collect()
    }
}

/// A CSV reading error; `line` and `column` are 1-based.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file cannot be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Invalid UTF-8 or a corrupt gzip stream at a line.
    #[error("{path}:{line}: cannot read this line: {message}")]
    Read {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Cause.
        message: String,
    },
    /// No data rows.
    #[error("{path}: no data rows")]
    Empty {
        /// File.
        path: PathBuf,
    },
    /// A row with the wrong number of cells.
    #[error("{path}:{line}: {got} cells, but the first row has {expected}")]
    Ragged {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Cells in this row.
        got: usize,
        /// Cells in the first row.
        expected: usize,
    },
    /// A cell that is not a number.
    #[error("{path}:{line}: column {column}: {cell:?} is not a number")]
    NotANumber {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// The cell (at most 40 characters).
        cell: String,
    },
    /// A NaN or infinite cell.
    #[error("{path}:{line}: column {column}: {cell:?} is not a finite number")]
    NonFinite {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// The cell.
        cell: String,
    },
}

fn clean(cell: &str) -> &str {
    let t = cell.trim();
    t.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map(str::trim)
        .unwrap_or(t)
}

fn short(cell: &str) -> String {
    cell.chars().take(40).collect()
}

/// Reads a numeric CSV file; a name ending in `.gz` is decompressed.
///
/// # Errors
/// See [`CsvError`].
pub fn read_csv(path: &Path) -> Result<Table, CsvError> {
    let file = std::fs::File::open(path).map_err(|source| CsvError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    read_csv_from(BufReader::new(reader), path)
}

/// Reads numeric CSV from any buffered reader; `path` only names the source in errors.
///
/// # Errors
/// See [`CsvError`].
pub fn read_csv_from<R: BufRead>(reader: R, path: &Path) -> Result<Table, CsvError> {
    let p = || path.to_path_buf();
    let mut names: Option<Vec<String>> = None;
    let mut has_header = false;
    let mut cols = 0usize;
    let mut values = Vec::new();
    let mut rows = 0usize;
    let mut first = true;
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| CsvError::Read {
            path: p(),
            line: lineno,
            message: e.to_string(),
        })?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let line = if first {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(clean).collect();
        if first {
            first = false;
            cols = cells.len();
            let numeric = cells.iter().all(|c| c.parse::<f64>().is_ok());
            if !numeric {
                has_header = true;
                names = Some(cells.iter().map(|c| c.to_string()).collect());
                continue;
            }
        }
        if cells.len() != cols {
            return Err(CsvError::Ragged {
                path: p(),
                line: lineno,
                got: cells.len(),
                expected: cols,
            });
        }
        for (c, cell) in cells.iter().enumerate() {
            let v: f64 = cell.parse().map_err(|_| CsvError::NotANumber {
                path: p(),
                line: lineno,
                column: c + 1,
                cell: short(cell),
            })?;
            if !v.is_finite() {
                return Err(CsvError::NonFinite {
                    path: p(),
                    line: lineno,
                    column: c + 1,
                    cell: short(cell),
                });
            }
            values.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(CsvError::Empty { path: p() });
    }
    let names = names.unwrap_or_else(|| (1..=cols).map(|c| format!("column {c}")).collect());
    Ok(Table {
        names,
        has_header,
        rows,
        cols,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Table, CsvError> {
        read_csv_from(s.as_bytes(), Path::new("t.csv"))
    }

    #[test]
    fn header_quotes_comments_and_crlf() {
        let t = parse("\u{feff}\"a\", b ,c\r\n# note\r\n1,2,3\r\n\r\n4, \"5\" ,6e-1\r\n").unwrap();
        assert!(t.has_header);
        assert_eq!(t.names, ["a", "b", "c"]);
        assert_eq!((t.rows, t.cols), (2, 3));
        assert_eq!(t.values, [1.0, 2.0, 3.0, 4.0, 5.0, 0.6]);
        assert_eq!(t.column(1), [2.0, 5.0]);
        let t = parse("1,2\n3,4\n").unwrap();
        assert!(!t.has_header);
        assert_eq!(t.names, ["column 1", "column 2"]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("a,b\n1,2\n3,x\n").unwrap_err().to_string();
        assert_eq!(e, "t.csv:3: column 2: \"x\" is not a number");
        let e = parse("1,2\n3\n").unwrap_err().to_string();
        assert_eq!(e, "t.csv:2: 1 cells, but the first row has 2");
        let e = parse("1,2\n3,NaN\n").unwrap_err().to_string();
        assert_eq!(e, "t.csv:2: column 2: \"NaN\" is not a finite number");
        let e = parse("1,inf\n").unwrap_err().to_string();
        assert!(e.contains("t.csv:1: column 2"), "{e}");
        assert!(matches!(parse("a,b\n"), Err(CsvError::Empty { .. })));
        assert!(matches!(parse(""), Err(CsvError::Empty { .. })));
        assert!(matches!(parse("\n# x\n"), Err(CsvError::Empty { .. })));
        let e = parse("1,2\n3,\n").unwrap_err().to_string();
        assert!(e.contains("column 2: \"\" is not a number"), "{e}");
    }

    #[test]
    fn invalid_utf8_and_truncated_gzip() {
        let bytes: &[u8] = b"1,2\n\xff\xfe,3\n";
        let e = read_csv_from(bytes, Path::new("t.csv")).unwrap_err();
        assert!(matches!(e, CsvError::Read { line: 2, .. }), "{e}");
        let dir = std::env::temp_dir().join(format!("gradmat-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, "x,y\n1,2\n3,4\n".repeat(200).as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let ok = dir.join("ok.csv.gz");
        std::fs::write(&ok, &gz).unwrap();
        assert!(read_csv(&ok).is_err()); // the repeated header is a non-numeric row
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, "1,2\n3,4\n".repeat(2000).as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        std::fs::write(&ok, &gz).unwrap();
        assert_eq!(read_csv(&ok).unwrap().rows, 4000);
        let cut = dir.join("cut.csv.gz");
        std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
        assert!(read_csv(&cut).is_err());
        assert!(matches!(
            read_csv(&dir.join("missing.csv")),
            Err(CsvError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
