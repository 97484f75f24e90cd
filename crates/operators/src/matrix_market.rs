//! Matrix Market reader and writer (coordinate and array formats, optional gzip).
//!
//! Supported: object `matrix`; formats `coordinate` and `array`; fields `real`, `integer` and
//! `pattern` (values 1); symmetries `general` and `symmetric`. `complex`, `skew-symmetric` and
//! `hermitian` are rejected with [`MatrixMarketError::Unsupported`]. Gzip input is detected by its
//! magic bytes (`1f 8b`), whatever the file name; output is gzipped when the path ends in `.gz`.
//!
//! A file is read into a [`MatrixMarketFile`], which keeps the header, the comments and the
//! entries **in file order**, so that writing it back reproduces the order of the entries, and
//! [`MatrixMarketFile::with_values`] produces a file with the same structure and new values (e.g.
//! a gradient with respect to every entry). Conversions: [`MatrixMarketFile::to_csr`] (full
//! matrix) and [`MatrixMarketFile::to_sym_csr`] (one parameter per file entry).
//!
//! Parsing never panics; every error is a [`MatrixMarketError`] carrying the 1-based line number.
//! Untrusted input is bounded: a line longer than [`MAX_LINE_LEN`] bytes is an error
//! ([`MatrixMarketError::LineTooLong`]), at most [`MAX_COMMENT_LINES`] comment lines (and
//! [`MAX_COMMENT_BYTES`] of comment text) are kept (further comments are read and dropped), and
//! the entry arrays grow with `try_reserve`, so memory exhaustion is
//! [`MatrixMarketError::OutOfMemory`] rather than an abort.
//!
//! Gzip support needs the `matrix-market` feature (on by default); without it, gzip input or a
//! `.gz` output path is [`MatrixMarketError::GzipUnsupported`].
//!
//! ```
//! use gradmat_operators::matrix_market::{read_matrix_market_from, write_matrix_market_to};
//! let text = "%%MatrixMarket matrix coordinate real symmetric\n3 3 4\n1 1 2\n2 1 -1\n2 2 2\n3 3 1\n";
//! let file = read_matrix_market_from::<f64, _>(text.as_bytes()).unwrap();
//! assert_eq!((file.nrows(), file.ncols(), file.nnz()), (3, 3, 4));
//! let a = file.to_sym_csr().unwrap();
//! assert_eq!(a.triplet_to_stored(), &[0, 1, 2, 3]);
//! let mut out = Vec::new();
//! write_matrix_market_to(&mut out, &file).unwrap();
//! let again = read_matrix_market_from::<f64, _>(&out[..]).unwrap();
//! assert_eq!(again, file);
//! ```

use crate::csr::{CsrMatrix, SymCsrMatrix};
use crate::{OperatorError, Scalar};
#[cfg(feature = "matrix-market")]
use flate2::{read::MultiGzDecoder, write::GzEncoder, Compression};
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Entries preallocated at most from an (untrusted) size line.
const MAX_PREALLOC: usize = 1 << 20;

/// Longest line the reader accepts, in bytes (without the line terminator): 1 MiB. A data line
/// holds at most three numbers, and a header or comment line has no reason to be longer.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// Comment lines kept in [`MatrixMarketFile::comments`]; further comment lines are read and
/// dropped.
pub const MAX_COMMENT_LINES: usize = 1 << 10;

/// Bytes of comment text kept in [`MatrixMarketFile::comments`] (in addition to the line count
/// bound); a comment line that would exceed it is dropped, as are all later ones.
pub const MAX_COMMENT_BYTES: usize = 1 << 20;

/// What went wrong reading or writing a Matrix Market file. Line numbers are 1-based.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MatrixMarketError {
    /// Opening, reading or writing a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading from or writing to a stream (no path) failed.
    #[error("I/O error at line {line}: {source}")]
    Stream {
        /// Line being read (0 when writing).
        line: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The input ended inside a compressed stream (truncated gzip file).
    #[error("truncated input at line {line}: {message}")]
    Truncated {
        /// Line being read.
        line: usize,
        /// Details.
        message: String,
    },
    /// The input is empty.
    #[error("empty input: no Matrix Market header")]
    Empty,
    /// The first line is not a valid `%%MatrixMarket matrix <format> <field> <symmetry>` header.
    #[error("line {line}: bad header: {message}")]
    BadHeader {
        /// Line number.
        line: usize,
        /// Details.
        message: String,
    },
    /// A valid header asking for something this reader does not support.
    #[error("line {line}: unsupported Matrix Market {what}")]
    Unsupported {
        /// Line number.
        line: usize,
        /// What (e.g. `symmetry "skew-symmetric"`).
        what: String,
    },
    /// The size line is missing or malformed.
    #[error("line {line}: bad size line: {message}")]
    BadSizeLine {
        /// Line number.
        line: usize,
        /// Details.
        message: String,
    },
    /// A data line with the wrong number of tokens.
    #[error("line {line}: expected {expected} tokens, found {found}")]
    WrongTokenCount {
        /// Line number.
        line: usize,
        /// Tokens expected.
        expected: usize,
        /// Tokens found.
        found: usize,
    },
    /// A token that is not a number of the expected kind.
    #[error("line {line}: cannot parse {token:?} as {expected}")]
    NotANumber {
        /// Line number.
        line: usize,
        /// The token.
        token: String,
        /// What was expected (`"an index"`, `"a real"`, `"an integer"`).
        expected: &'static str,
    },
    /// An index outside `1..=nrows` / `1..=ncols` (reported 1-based, as in the file).
    #[error("line {line}: index ({row}, {col}) out of range for a {nrows}×{ncols} matrix")]
    IndexOutOfRange {
        /// Line number.
        line: usize,
        /// Row index as in the file (1-based).
        row: usize,
        /// Column index as in the file (1-based).
        col: usize,
        /// Number of rows.
        nrows: usize,
        /// Number of columns.
        ncols: usize,
    },
    /// An entry that is well-formed but not allowed here: a symmetric coordinate file whose
    /// off-diagonal entries are not all in one triangle (reported at the first entry that
    /// switches triangle).
    #[error("line {line}: {message}")]
    InvalidEntry {
        /// Line number.
        line: usize,
        /// Details.
        message: String,
    },
    /// A value that is NaN or infinite (or overflows the scalar type).
    #[error("line {line}: non-finite value {token:?}")]
    NonFinite {
        /// Line number.
        line: usize,
        /// The token.
        token: String,
    },
    /// The data ended before the number of entries declared in the size line.
    #[error("line {line}: too few entries: expected {expected}, found {found}")]
    TooFewEntries {
        /// Last line read.
        line: usize,
        /// Entries declared.
        expected: usize,
        /// Entries found.
        found: usize,
    },
    /// A data line after the declared number of entries.
    #[error("line {line}: too many entries: expected {expected}")]
    TooManyEntries {
        /// Line number of the first extra entry.
        line: usize,
        /// Entries declared.
        expected: usize,
    },
    /// Declared sizes that overflow or are inconsistent (`nrows·ncols` overflows, more
    /// coordinate entries than matrix entries, non-square symmetric matrix).
    #[error("line {line}: invalid size: {message}")]
    InvalidSize {
        /// Line number.
        line: usize,
        /// Details.
        message: String,
    },
    /// An argument to a constructor or conversion is inconsistent (wrong number of values, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Building an operator from the entries failed.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A line longer than [`MAX_LINE_LEN`] bytes (e.g. a binary file, or a stream without line
    /// breaks such as `/dev/zero`).
    #[error("line {line}: line is too long (more than {limit} bytes)")]
    LineTooLong {
        /// Line number.
        line: usize,
        /// The limit, [`MAX_LINE_LEN`].
        limit: usize,
    },
    /// The entries do not fit in memory (`try_reserve` failed).
    #[error("line {line}: out of memory after {entries} entries")]
    OutOfMemory {
        /// Line number.
        line: usize,
        /// Entries read so far.
        entries: usize,
    },
    /// Gzip input or a `.gz` output path in a build without the `matrix-market` feature.
    #[error(
        "gzip-compressed Matrix Market files need the `matrix-market` feature of gradmat-operators"
    )]
    GzipUnsupported,
}

/// Storage format of a Matrix Market file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Sparse `i j [value]` lines.
    Coordinate,
    /// Dense column-major values (lower triangle only when symmetric).
    Array,
}

/// Value field of a Matrix Market file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Floating-point values.
    Real,
    /// Integer values (read into the scalar type).
    Integer,
    /// No values (every entry is 1); coordinate format only.
    Pattern,
}

/// Symmetry of a Matrix Market file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symmetry {
    /// All entries are given.
    General,
    /// Only one triangle (normally the lower) is given; `A[j, i] = A[i, j]`.
    Symmetric,
}

/// The header line of a Matrix Market file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Coordinate or array.
    pub format: Format,
    /// Real, integer or pattern.
    pub field: Field,
    /// General or symmetric.
    pub symmetry: Symmetry,
}

/// A Matrix Market file in memory: header, comments, size and the entries in file order.
///
/// Entries are `(rows[e], cols[e], values[e])`, 0-based, in the order of the file (for array
/// files the column-major order of the file, restricted to `i ≥ j` when symmetric). Pattern
/// files have values 1. Symmetric files keep the entries as given (one triangle).
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixMarketFile<T: Scalar> {
    header: Header,
    comments: Vec<String>,
    nrows: usize,
    ncols: usize,
    rows: Vec<usize>,
    cols: Vec<usize>,
    values: Vec<T>,
}

impl<T: Scalar> MatrixMarketFile<T> {
    /// A coordinate file from 0-based entries (checked: lengths, ranges, finite values; for
    /// `Symmetric`, square and all entries in one triangle). Pattern files must have values 1.
    pub fn new_coordinate(
        nrows: usize,
        ncols: usize,
        field: Field,
        symmetry: Symmetry,
        rows: Vec<usize>,
        cols: Vec<usize>,
        values: Vec<T>,
    ) -> Result<Self, MatrixMarketError> {
        let bad = |m: String| Err(MatrixMarketError::InvalidArgument(m));
        if cols.len() != rows.len() || values.len() != rows.len() {
            return bad(format!(
                "entry arrays have lengths {}, {}, {}",
                rows.len(),
                cols.len(),
                values.len()
            ));
        }
        if symmetry == Symmetry::Symmetric && nrows != ncols {
            return bad(format!(
                "symmetric matrix must be square, got {nrows}×{ncols}"
            ));
        }
        let (mut lo, mut up) = (false, false);
        for (e, (&r, &c)) in rows.iter().zip(&cols).enumerate() {
            if r >= nrows || c >= ncols {
                return bad(format!("entry {e}: ({r}, {c}) out of range"));
            }
            lo |= r > c;
            up |= r < c;
        }
        if symmetry == Symmetry::Symmetric && lo && up {
            return bad("symmetric entries must all lie in one triangle".into());
        }
        if let Some(e) = values.iter().position(|v| !v.is_finite()) {
            return bad(format!("entry {e}: non-finite value"));
        }
        if field == Field::Pattern && values.iter().any(|v| *v != T::ONE) {
            return bad("pattern files have values 1".into());
        }
        if field == Field::Integer && values.iter().any(|v| !is_integral(*v)) {
            return bad("integer field with non-integral values".into());
        }
        Ok(Self {
            header: Header {
                format: Format::Coordinate,
                field,
                symmetry,
            },
            comments: Vec::new(),
            nrows,
            ncols,
            rows,
            cols,
            values,
        })
    }

    /// A dense array file from column-major values (`nrows·ncols` of them), general symmetry.
    pub fn new_array(
        nrows: usize,
        ncols: usize,
        col_major: Vec<T>,
    ) -> Result<Self, MatrixMarketError> {
        let len = nrows.checked_mul(ncols).ok_or_else(|| {
            MatrixMarketError::InvalidArgument(format!("{nrows}×{ncols} overflows"))
        })?;
        if col_major.len() != len {
            return Err(MatrixMarketError::InvalidArgument(format!(
                "expected {len} values, got {}",
                col_major.len()
            )));
        }
        if col_major.iter().any(|v| !v.is_finite()) {
            return Err(MatrixMarketError::InvalidArgument(
                "non-finite value".into(),
            ));
        }
        let (rows, cols) = (0..len)
            .map(|p| (p % nrows.max(1), p / nrows.max(1)))
            .unzip();
        Ok(Self {
            header: Header {
                format: Format::Array,
                field: Field::Real,
                symmetry: Symmetry::General,
            },
            comments: Vec::new(),
            nrows,
            ncols,
            rows,
            cols,
            values: col_major,
        })
    }

    /// A symmetric array file from the lower triangle, column by column
    /// (`A[0,0], A[1,0], …, A[n-1,0], A[1,1], …`), `n(n+1)/2` values.
    pub fn new_symmetric_array(
        n: usize,
        lower_col_major: Vec<T>,
    ) -> Result<Self, MatrixMarketError> {
        let len = n
            .checked_add(1)
            .and_then(|n1| n.checked_mul(n1))
            .map(|v| v / 2)
            .ok_or_else(|| MatrixMarketError::InvalidArgument(format!("{n}×{n} overflows")))?;
        if lower_col_major.len() != len {
            return Err(MatrixMarketError::InvalidArgument(format!(
                "expected {len} values, got {}",
                lower_col_major.len()
            )));
        }
        if lower_col_major.iter().any(|v| !v.is_finite()) {
            return Err(MatrixMarketError::InvalidArgument(
                "non-finite value".into(),
            ));
        }
        let (mut rows, mut cols) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for j in 0..n {
            for i in j..n {
                rows.push(i);
                cols.push(j);
            }
        }
        Ok(Self {
            header: Header {
                format: Format::Array,
                field: Field::Real,
                symmetry: Symmetry::Symmetric,
            },
            comments: Vec::new(),
            nrows: n,
            ncols: n,
            rows,
            cols,
            values: lower_col_major,
        })
    }

    /// A general coordinate file with the stored entries of `a` in CSR order.
    pub fn from_csr(a: &CsrMatrix<T>) -> Self {
        use crate::Operator;
        let rp = a.row_ptr();
        let rows = (0..a.nrows())
            .flat_map(|i| std::iter::repeat_n(i, rp[i + 1] - rp[i]))
            .collect();
        Self {
            header: Header {
                format: Format::Coordinate,
                field: Field::Real,
                symmetry: Symmetry::General,
            },
            comments: Vec::new(),
            nrows: a.nrows(),
            ncols: a.ncols(),
            rows,
            cols: a.col_idx().to_vec(),
            values: a.values().to_vec(),
        }
    }

    /// A symmetric coordinate file with the stored lower triangle of `a` in CSR order (one entry
    /// per parameter).
    pub fn from_sym_csr(a: &SymCsrMatrix<T>) -> Self {
        let mut f = Self::from_csr(a.lower());
        f.header.symmetry = Symmetry::Symmetric;
        f
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }
    /// Comment lines between the header and the size line, without the leading `%`.
    pub fn comments(&self) -> &[String] {
        &self.comments
    }
    /// Replaces the comment lines (each written as `%` + line; line breaks are replaced by
    /// spaces).
    pub fn set_comments(&mut self, comments: Vec<String>) {
        self.comments = comments
            .into_iter()
            .map(|c| c.replace(['\n', '\r'], " "))
            .collect();
    }
    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }
    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }
    /// Number of entries in the file.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }
    /// 0-based row indices, in file order.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }
    /// 0-based column indices, in file order.
    pub fn cols(&self) -> &[usize] {
        &self.cols
    }
    /// Values, in file order.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The same file (header, comments, size, entry order) with new values, one per entry in file
    /// order. Integer and pattern fields become `real` (the new values need not be integers).
    /// Errors on a length mismatch or non-finite values.
    pub fn with_values(&self, new_values: &[T]) -> Result<Self, MatrixMarketError> {
        if new_values.len() != self.values.len() {
            return Err(MatrixMarketError::InvalidArgument(format!(
                "with_values: expected {} values, got {}",
                self.values.len(),
                new_values.len()
            )));
        }
        if let Some(e) = new_values.iter().position(|v| !v.is_finite()) {
            return Err(MatrixMarketError::InvalidArgument(format!(
                "with_values: value {e} is not finite"
            )));
        }
        let mut out = self.clone();
        out.values.copy_from_slice(new_values);
        out.header.field = Field::Real;
        Ok(out)
    }

    /// The full matrix as CSR. Symmetric files are expanded (each off-diagonal entry also gives
    /// its mirror); duplicates are summed. For general files the CSR triplet map
    /// ([`CsrMatrix::triplet_to_stored`]) is indexed by file entry; for symmetric files by the
    /// expanded list (file entries first, then the mirrors of off-diagonal entries in file order).
    pub fn to_csr(&self) -> Result<CsrMatrix<T>, MatrixMarketError> {
        match self.header.symmetry {
            Symmetry::General => Ok(CsrMatrix::from_triplets(
                self.nrows,
                self.ncols,
                &self.rows,
                &self.cols,
                &self.values,
            )?),
            Symmetry::Symmetric => {
                let (mut r, mut c, mut v) =
                    (self.rows.clone(), self.cols.clone(), self.values.clone());
                for e in 0..self.values.len() {
                    if self.rows[e] != self.cols[e] {
                        r.push(self.cols[e]);
                        c.push(self.rows[e]);
                        v.push(self.values[e]);
                    }
                }
                Ok(CsrMatrix::from_triplets(
                    self.nrows, self.ncols, &r, &c, &v,
                )?)
            }
        }
    }

    /// A [`SymCsrMatrix`] whose parameters correspond to the file entries through
    /// [`SymCsrMatrix::triplet_to_stored`] (indexed by file entry; duplicates share a parameter).
    ///
    /// Symmetric files: the given triangle (lower or upper). General files: must be exactly
    /// symmetric; mirror entries share a parameter ([`SymCsrMatrix::from_full_triplets`]).
    pub fn to_sym_csr(&self) -> Result<SymCsrMatrix<T>, MatrixMarketError> {
        if self.nrows != self.ncols {
            return Err(OperatorError::NotSquare {
                nrows: self.nrows,
                ncols: self.ncols,
            }
            .into());
        }
        let n = self.nrows;
        Ok(match self.header.symmetry {
            Symmetry::Symmetric => {
                SymCsrMatrix::from_triplets(n, &self.rows, &self.cols, &self.values)?
            }
            Symmetry::General => {
                SymCsrMatrix::from_full_triplets(n, &self.rows, &self.cols, &self.values)?
            }
        })
    }
}

fn is_integral<T: Scalar>(v: T) -> bool {
    let f = v.to_f64();
    f.is_finite() && f.trunc().to_bits() == f.to_bits() && f.abs() < 9.0e15
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Reads a Matrix Market file (gzip detected by magic bytes; see the module documentation for
/// the bounds on untrusted input).
pub fn read_matrix_market<T: Scalar>(
    path: impl AsRef<Path>,
) -> Result<MatrixMarketFile<T>, MatrixMarketError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| MatrixMarketError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_matrix_market_from(BufReader::new(file)).map_err(|e| match e {
        MatrixMarketError::Stream { source, .. } => MatrixMarketError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// Reads a Matrix Market file from any buffered reader (e.g. `&[u8]`); gzip is detected by the
/// magic bytes. Never panics.
pub fn read_matrix_market_from<T: Scalar, R: BufRead>(
    mut reader: R,
) -> Result<MatrixMarketFile<T>, MatrixMarketError> {
    use std::io::Read;
    let mut head = Vec::with_capacity(2);
    (&mut reader)
        .take(2)
        .read_to_end(&mut head)
        .map_err(|source| MatrixMarketError::Stream { line: 0, source })?;
    let is_gzip = head == [0x1f, 0x8b];
    let chained = io::Cursor::new(head).chain(reader);
    if is_gzip {
        #[cfg(feature = "matrix-market")]
        return parse(BufReader::new(MultiGzDecoder::new(chained)), true);
        #[cfg(not(feature = "matrix-market"))]
        return Err(MatrixMarketError::GzipUnsupported);
    } else {
        parse(BufReader::new(chained), false)
    }
}

/// Line-oriented reader tracking line numbers; strips `\r\n`; refuses lines longer than
/// [`MAX_LINE_LEN`] bytes (it never buffers more than that).
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    line: usize,
    gz: bool,
}

impl<R: BufRead> Lines<R> {
    /// The next line's number and text (without terminator), or `None` at end of input.
    fn next_line(&mut self) -> Result<Option<(usize, Cow<'_, str>)>, MatrixMarketError> {
        self.buf.clear();
        let line = self.line + 1;
        // At most two bytes more than the limit: enough to tell a long line from a line of
        // exactly MAX_LINE_LEN bytes followed by `\r\n`.
        let limit = MAX_LINE_LEN + 2;
        let mut bounded = io::Read::take(&mut self.reader, limit as u64);
        let n = match bounded.read_until(b'\n', &mut self.buf) {
            Ok(n) => n,
            Err(e) => {
                return Err(
                    if self.gz
                        && matches!(
                            e.kind(),
                            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput
                        )
                    {
                        MatrixMarketError::Truncated {
                            line,
                            message: format!("gzip stream: {e}"),
                        }
                    } else if self.gz && e.kind() == io::ErrorKind::InvalidData {
                        MatrixMarketError::Truncated {
                            line,
                            message: format!("corrupt gzip stream: {e}"),
                        }
                    } else {
                        MatrixMarketError::Stream { line, source: e }
                    },
                );
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let cut = n == limit && self.buf.last() != Some(&b'\n');
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        if cut || self.buf.len() > MAX_LINE_LEN {
            return Err(MatrixMarketError::LineTooLong {
                line,
                limit: MAX_LINE_LEN,
            });
        }
        self.line = line;
        Ok(Some((line, String::from_utf8_lossy(&self.buf))))
    }
}

fn parse_header(line: &str, ln: usize) -> Result<Header, MatrixMarketError> {
    let bad = |message: String| MatrixMarketError::BadHeader { line: ln, message };
    let toks: Vec<String> = line
        .split_ascii_whitespace()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    if toks.first().map(String::as_str) != Some("%%matrixmarket") {
        return Err(bad(format!(
            "expected \"%%MatrixMarket matrix <format> <field> <symmetry>\", found {:?}",
            truncate(line)
        )));
    }
    if toks.len() != 5 {
        return Err(bad(format!("expected 5 tokens, found {}", toks.len())));
    }
    if toks[1] != "matrix" {
        return Err(MatrixMarketError::Unsupported {
            line: ln,
            what: format!("object {:?}", toks[1]),
        });
    }
    let format = match toks[2].as_str() {
        "coordinate" => Format::Coordinate,
        "array" => Format::Array,
        other => return Err(bad(format!("unknown format {other:?}"))),
    };
    let field = match toks[3].as_str() {
        "real" | "double" => Field::Real,
        "integer" => Field::Integer,
        "pattern" => Field::Pattern,
        "complex" => {
            return Err(MatrixMarketError::Unsupported {
                line: ln,
                what: "field \"complex\"".into(),
            })
        }
        other => return Err(bad(format!("unknown field {other:?}"))),
    };
    let symmetry = match toks[4].as_str() {
        "general" => Symmetry::General,
        "symmetric" => Symmetry::Symmetric,
        s @ ("skew-symmetric" | "hermitian") => {
            return Err(MatrixMarketError::Unsupported {
                line: ln,
                what: format!("symmetry {s:?}"),
            })
        }
        other => return Err(bad(format!("unknown symmetry {other:?}"))),
    };
    if format == Format::Array && field == Field::Pattern {
        return Err(bad(
            "the pattern field is only valid with the coordinate format".into(),
        ));
    }
    Ok(Header {
        format,
        field,
        symmetry,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn parse_index(tok: &str, ln: usize) -> Result<usize, MatrixMarketError> {
    tok.parse::<usize>()
        .map_err(|_| MatrixMarketError::NotANumber {
            line: ln,
            token: truncate(tok),
            expected: "an index",
        })
}

fn parse_value<T: Scalar>(tok: &str, field: Field, ln: usize) -> Result<T, MatrixMarketError> {
    let v = match field {
        Field::Pattern => return Ok(T::ONE),
        Field::Integer => {
            tok.parse::<i64>()
                .map(|i| i as f64)
                .map_err(|_| MatrixMarketError::NotANumber {
                    line: ln,
                    token: truncate(tok),
                    expected: "an integer",
                })?
        }
        Field::Real => match tok.parse::<f64>() {
            Ok(v) => v,
            // Fortran exponents (1.0D+03).
            Err(_) if tok.contains(['d', 'D']) => tok
                .replace(['d', 'D'], "e")
                .parse::<f64>()
                .map_err(|_| MatrixMarketError::NotANumber {
                    line: ln,
                    token: truncate(tok),
                    expected: "a real",
                })?,
            Err(_) => {
                return Err(MatrixMarketError::NotANumber {
                    line: ln,
                    token: truncate(tok),
                    expected: "a real",
                })
            }
        },
    };
    let t = T::from_f64(v);
    if !t.is_finite() {
        return Err(MatrixMarketError::NonFinite {
            line: ln,
            token: truncate(tok),
        });
    }
    Ok(t)
}

fn parse<T: Scalar, R: BufRead>(
    reader: R,
    gz: bool,
) -> Result<MatrixMarketFile<T>, MatrixMarketError> {
    let mut lines = Lines {
        reader,
        buf: Vec::new(),
        line: 0,
        gz,
    };
    let header = match lines.next_line()? {
        Some((ln, first)) => parse_header(&first, ln)?,
        None => return Err(MatrixMarketError::Empty),
    };
    // Comments (a bounded number kept), then the size line.
    let mut comments = Vec::new();
    let mut comment_bytes = 0usize;
    let mut keep_comments = true;
    let (size_line, size_ln) = loop {
        match lines.next_line()? {
            None => {
                return Err(MatrixMarketError::BadSizeLine {
                    line: lines.line + 1,
                    message: "missing (end of input)".into(),
                })
            }
            Some((_, l)) if l.starts_with('%') => {
                let text = &l[1..];
                keep_comments &= comments.len() < MAX_COMMENT_LINES
                    && comment_bytes + text.len() <= MAX_COMMENT_BYTES;
                if keep_comments {
                    comment_bytes += text.len();
                    comments.push(text.to_string());
                }
            }
            Some((_, l)) if l.trim().is_empty() => {}
            Some((ln, l)) => break (l.into_owned(), ln),
        }
    };
    let toks: Vec<&str> = size_line.split_ascii_whitespace().collect();
    let expected = match header.format {
        Format::Coordinate => 3,
        Format::Array => 2,
    };
    let bad_size = |message: String| MatrixMarketError::BadSizeLine {
        line: size_ln,
        message,
    };
    if toks.len() != expected {
        return Err(bad_size(format!(
            "expected {expected} integers, found {} tokens",
            toks.len()
        )));
    }
    let mut nums = [0usize; 3];
    for (k, t) in toks.iter().enumerate() {
        nums[k] = t
            .parse::<usize>()
            .map_err(|_| bad_size(format!("cannot parse {:?} as a size", truncate(t))))?;
    }
    let (nrows, ncols) = (nums[0], nums[1]);
    let invalid = |message: String| MatrixMarketError::InvalidSize {
        line: size_ln,
        message,
    };
    if header.symmetry == Symmetry::Symmetric && nrows != ncols {
        return Err(invalid(format!(
            "symmetric matrix must be square, got {nrows}×{ncols}"
        )));
    }
    let total = (nrows as u128) * (ncols as u128);
    let nentries = match header.format {
        Format::Coordinate => {
            let nnz = nums[2];
            if nnz as u128 > total {
                return Err(invalid(format!(
                    "{nnz} entries declared for a {nrows}×{ncols} matrix"
                )));
            }
            nnz
        }
        Format::Array => {
            let full = nrows
                .checked_mul(ncols)
                .ok_or_else(|| invalid(format!("{nrows}×{ncols} overflows")))?;
            match header.symmetry {
                Symmetry::General => full,
                // n(n+1)/2 ≤ n², which fits.
                Symmetry::Symmetric if nrows % 2 == 0 => nrows / 2 * (nrows + 1),
                Symmetry::Symmetric => nrows * nrows.div_ceil(2),
            }
        }
    };
    let cap = nentries.min(MAX_PREALLOC);
    let mut rows = Vec::with_capacity(cap);
    let mut cols = Vec::with_capacity(cap);
    let mut values: Vec<T> = Vec::with_capacity(cap);
    let ntok = match (header.format, header.field) {
        (Format::Array, _) => 1,
        (Format::Coordinate, Field::Pattern) => 2,
        (Format::Coordinate, _) => 3,
    };
    // Array position: (i, j) of the next value.
    let (mut ai, mut aj) = (0usize, 0usize);
    // Triangle of the first off-diagonal entry of a symmetric coordinate file (true = lower).
    let mut tri: Option<bool> = None;
    while let Some((ln, l)) = lines.next_line()? {
        if l.starts_with('%') || l.trim().is_empty() {
            continue;
        }
        if values.len() == nentries {
            return Err(MatrixMarketError::TooManyEntries {
                line: ln,
                expected: nentries,
            });
        }
        if values.len() == values.capacity() {
            // Grow the three arrays fallibly (amortised doubling): entries beyond the memory
            // limit are an error, not an abort (the declared count is bounded by the matrix
            // size only).
            let entries = values.len();
            let oom = |_| MatrixMarketError::OutOfMemory { line: ln, entries };
            rows.try_reserve(1).map_err(oom)?;
            cols.try_reserve(1).map_err(oom)?;
            values.try_reserve(1).map_err(oom)?;
        }
        let toks: Vec<&str> = l.split_ascii_whitespace().collect();
        if toks.len() != ntok {
            return Err(MatrixMarketError::WrongTokenCount {
                line: ln,
                expected: ntok,
                found: toks.len(),
            });
        }
        match header.format {
            Format::Coordinate => {
                let r = parse_index(toks[0], ln)?;
                let c = parse_index(toks[1], ln)?;
                if r == 0 || c == 0 || r > nrows || c > ncols {
                    return Err(MatrixMarketError::IndexOutOfRange {
                        line: ln,
                        row: r,
                        col: c,
                        nrows,
                        ncols,
                    });
                }
                let v = if ntok == 3 {
                    parse_value(toks[2], header.field, ln)?
                } else {
                    T::ONE
                };
                if header.symmetry == Symmetry::Symmetric && r != c {
                    let lower = r > c;
                    match tri {
                        None => tri = Some(lower),
                        Some(t) if t != lower => {
                            return Err(MatrixMarketError::InvalidEntry {
                                line: ln,
                                message: format!(
                                    "symmetric file mixes lower- and upper-triangle entries \
                                     (({r}, {c}) after entries in the other triangle)"
                                ),
                            })
                        }
                        Some(_) => {}
                    }
                }
                rows.push(r - 1);
                cols.push(c - 1);
                values.push(v);
            }
            Format::Array => {
                let v = parse_value(toks[0], header.field, ln)?;
                rows.push(ai);
                cols.push(aj);
                values.push(v);
                ai += 1;
                if ai == nrows {
                    aj += 1;
                    ai = match header.symmetry {
                        Symmetry::General => 0,
                        Symmetry::Symmetric => aj,
                    };
                }
            }
        }
    }
    if values.len() < nentries {
        return Err(MatrixMarketError::TooFewEntries {
            line: lines.line,
            expected: nentries,
            found: values.len(),
        });
    }
    Ok(MatrixMarketFile {
        header,
        comments,
        nrows,
        ncols,
        rows,
        cols,
        values,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Writes a file to `path`, gzip-compressed when the path ends in `.gz` (that needs the
/// `matrix-market` feature: [`MatrixMarketError::GzipUnsupported`] without it).
pub fn write_matrix_market<T: Scalar>(
    path: impl AsRef<Path>,
    file: &MatrixMarketFile<T>,
) -> Result<(), MatrixMarketError> {
    let path = path.as_ref();
    let io_err = |source| MatrixMarketError::Io {
        path: path.to_path_buf(),
        source,
    };
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if gz && !cfg!(feature = "matrix-market") {
        return Err(MatrixMarketError::GzipUnsupported);
    }
    let f = File::create(path).map_err(io_err)?;
    #[cfg(feature = "matrix-market")]
    if gz {
        let mut enc = GzEncoder::new(BufWriter::new(f), Compression::default());
        return write_body(&mut enc, file)
            .and_then(|()| enc.finish())
            .and_then(|mut w| w.flush())
            .map_err(io_err);
    }
    let mut w = BufWriter::new(f);
    write_body(&mut w, file)
        .and_then(|()| w.flush())
        .map_err(io_err)
}

/// Writes a file to any writer (uncompressed).
pub fn write_matrix_market_to<T: Scalar, W: Write>(
    writer: W,
    file: &MatrixMarketFile<T>,
) -> Result<(), MatrixMarketError> {
    let mut w = BufWriter::new(writer);
    write_body(&mut w, file)
        .and_then(|()| w.flush())
        .map_err(|source| MatrixMarketError::Stream { line: 0, source })
}

fn write_body<T: Scalar, W: Write>(w: &mut W, f: &MatrixMarketFile<T>) -> io::Result<()> {
    let h = f.header;
    let format = match h.format {
        Format::Coordinate => "coordinate",
        Format::Array => "array",
    };
    let field = match h.field {
        Field::Real => "real",
        Field::Integer => "integer",
        Field::Pattern => "pattern",
    };
    let symmetry = match h.symmetry {
        Symmetry::General => "general",
        Symmetry::Symmetric => "symmetric",
    };
    writeln!(w, "%%MatrixMarket matrix {format} {field} {symmetry}")?;
    for c in &f.comments {
        writeln!(w, "%{c}")?;
    }
    // Full precision: 17 digits after the point for f64 ({:.17e}), 9 for f32.
    let prec = if std::mem::size_of::<T>() == 4 { 9 } else { 17 };
    match h.format {
        Format::Coordinate => {
            writeln!(w, "{} {} {}", f.nrows, f.ncols, f.values.len())?;
            for e in 0..f.values.len() {
                let (r, c) = (f.rows[e] + 1, f.cols[e] + 1);
                match h.field {
                    Field::Pattern => writeln!(w, "{r} {c}")?,
                    Field::Integer => writeln!(w, "{r} {c} {}", f.values[e].to_f64() as i64)?,
                    Field::Real => writeln!(w, "{r} {c} {:.*e}", prec, f.values[e])?,
                }
            }
        }
        Format::Array => {
            writeln!(w, "{} {}", f.nrows, f.ncols)?;
            for v in &f.values {
                match h.field {
                    Field::Integer => writeln!(w, "{}", v.to_f64() as i64)?,
                    _ => writeln!(w, "{:.*e}", prec, v)?,
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// From a file to an operator
// ---------------------------------------------------------------------------------------------

use crate::csr::{Asymmetry, CheckedSymmetricCsr, SymmetryError};
use crate::{AdjointOperator, ColumnAccess, Operator, ParamVjp, SelfAdjoint};

/// What the caller of [`MatrixMarketFile::into_operator`] needs from the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperatorKind {
    /// A self-adjoint operator (Lanczos, stochastic Lanczos quadrature): a `symmetric` file in
    /// symmetric storage; a `general` file only if it is symmetric
    /// ([`crate::csr::check_symmetric`]), in checked-symmetric general storage.
    SelfAdjoint,
    /// Any operator with a transpose (Arnoldi): a `symmetric` file in symmetric storage, a
    /// `general` file as a general CSR matrix (not checked).
    General,
}

/// The operator built from a Matrix Market file ([`MatrixMarketFile::into_operator`]).
///
/// Parameters are those of the storage: one per stored lower-triangle entry for
/// [`FileOperator::Symmetric`] (an off-diagonal parameter stands for both `A[i, j]` and
/// `A[j, i]`), one per stored entry otherwise.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FileOperator<T: Scalar> {
    /// Symmetric storage (a `symmetric` file).
    Symmetric(SymCsrMatrix<T>),
    /// General storage checked to be symmetric (a `general` file asked for as self-adjoint).
    CheckedSymmetric(CheckedSymmetricCsr<T>),
    /// General storage (a `general` file asked for as a general operator).
    General(CsrMatrix<T>),
}

/// Calls `$body` with `$a` bound to the operator inside a [`FileOperator`].
macro_rules! file_operator_dispatch {
    ($op:expr, $a:ident => $body:expr) => {
        match $op {
            FileOperator::Symmetric($a) => $body,
            FileOperator::CheckedSymmetric($a) => $body,
            FileOperator::General($a) => $body,
        }
    };
}

impl<T: Scalar> FileOperator<T> {
    /// The operator as a [`SelfAdjoint`] one: `Some` for symmetric and checked-symmetric
    /// storage (what [`OperatorKind::SelfAdjoint`] always gives), `None` for general storage.
    pub fn as_self_adjoint(&self) -> Option<SelfAdjointFileOperator<'_, T>> {
        match self {
            FileOperator::General(_) => None,
            _ => Some(SelfAdjointFileOperator(self)),
        }
    }
    /// The storage's name: `"symmetric"`, `"checked-symmetric general"` or `"general"`.
    pub fn storage(&self) -> &'static str {
        match self {
            FileOperator::Symmetric(_) => "symmetric",
            FileOperator::CheckedSymmetric(_) => "checked-symmetric general",
            FileOperator::General(_) => "general",
        }
    }
}

impl<T: Scalar> Operator<T> for FileOperator<T> {
    fn nrows(&self) -> usize {
        file_operator_dispatch!(self, a => a.nrows())
    }
    fn ncols(&self) -> usize {
        file_operator_dispatch!(self, a => a.ncols())
    }
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        file_operator_dispatch!(self, a => a.apply(x, y))
    }
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        file_operator_dispatch!(self, a => a.apply_block(x, y, k))
    }
}

impl<T: Scalar> AdjointOperator<T> for FileOperator<T> {
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        file_operator_dispatch!(self, a => a.apply_transpose(x, y))
    }
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        file_operator_dispatch!(self, a => a.apply_transpose_block(x, y, k))
    }
}

impl<T: Scalar> ParamVjp<T> for FileOperator<T> {
    fn num_params(&self) -> usize {
        file_operator_dispatch!(self, a => a.num_params())
    }
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        file_operator_dispatch!(self, a => a.vjp_params(u, x, grad))
    }
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        file_operator_dispatch!(self, a => a.vjp_params_block(u, x, k, grad))
    }
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        file_operator_dispatch!(self, a => a.apply_and_vjp_params(x, y, u, grad))
    }
    fn vjp_block_size(&self) -> usize {
        file_operator_dispatch!(self, a => a.vjp_block_size())
    }
}

impl<T: Scalar> ColumnAccess<T> for FileOperator<T> {
    fn diagonal(&self, out: &mut [T]) {
        file_operator_dispatch!(self, a => a.diagonal(out))
    }
    fn column(&self, j: usize, out: &mut [T]) {
        file_operator_dispatch!(self, a => a.column(j, out))
    }
}

/// A [`FileOperator`] with symmetric or checked-symmetric storage, as a [`SelfAdjoint`]
/// operator ([`FileOperator::as_self_adjoint`]). Products, transposes and parameters are the
/// wrapped operator's.
#[derive(Debug, Clone, Copy)]
pub struct SelfAdjointFileOperator<'a, T: Scalar>(&'a FileOperator<T>);

impl<T: Scalar> Operator<T> for SelfAdjointFileOperator<'_, T> {
    fn nrows(&self) -> usize {
        self.0.nrows()
    }
    fn ncols(&self) -> usize {
        self.0.ncols()
    }
    #[track_caller]
    fn apply(&self, x: &[T], y: &mut [T]) {
        self.0.apply(x, y)
    }
    #[track_caller]
    fn apply_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_block(x, y, k)
    }
}

impl<T: Scalar> AdjointOperator<T> for SelfAdjointFileOperator<'_, T> {
    #[track_caller]
    fn apply_transpose(&self, x: &[T], y: &mut [T]) {
        self.0.apply_transpose(x, y)
    }
    #[track_caller]
    fn apply_transpose_block(&self, x: &[T], y: &mut [T], k: usize) {
        self.0.apply_transpose_block(x, y, k)
    }
}

/// Constructed only for symmetric and checked-symmetric storage.
impl<T: Scalar> SelfAdjoint<T> for SelfAdjointFileOperator<'_, T> {}

impl<T: Scalar> ParamVjp<T> for SelfAdjointFileOperator<'_, T> {
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    #[track_caller]
    fn vjp_params(&self, u: &[T], x: &[T], grad: &mut [T]) {
        self.0.vjp_params(u, x, grad)
    }
    #[track_caller]
    fn vjp_params_block(&self, u: &[T], x: &[T], k: usize, grad: &mut [T]) {
        self.0.vjp_params_block(u, x, k, grad)
    }
    #[track_caller]
    fn apply_and_vjp_params(&self, x: &[T], y: &mut [T], u: &[T], grad: &mut [T]) {
        self.0.apply_and_vjp_params(x, y, u, grad)
    }
    fn vjp_block_size(&self) -> usize {
        self.0.vjp_block_size()
    }
}

/// Why [`MatrixMarketFile::into_operator`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IntoOperatorError {
    /// A self-adjoint operator was asked for and the matrix is not square.
    #[error("the matrix is {nrows}×{ncols}; a square matrix is required")]
    NotSquare {
        /// Rows.
        nrows: usize,
        /// Columns.
        ncols: usize,
    },
    /// A self-adjoint operator was asked for and a `general` file is not symmetric; the first
    /// differing pair of entries (CSR order) is named.
    #[error("the matrix is not symmetric ({0})")]
    NotSymmetric(Asymmetry),
    /// Building the storage failed (a sum of duplicates that overflows, an impossible
    /// allocation, …).
    #[error(transparent)]
    Build(#[from] MatrixMarketError),
}

impl From<SymmetryError> for IntoOperatorError {
    fn from(e: SymmetryError) -> Self {
        match e {
            SymmetryError::NotSquare { nrows, ncols } => Self::NotSquare { nrows, ncols },
            SymmetryError::Asymmetric(a) => Self::NotSymmetric(a),
        }
    }
}

/// A file, its operator and the map from file entries to the operator's parameters
/// ([`MatrixMarketFile::into_operator`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MatrixMarketOperator<T: Scalar> {
    /// The operator.
    pub operator: FileOperator<T>,
    /// `entry_to_param[t]` is the parameter that file entry `t` feeds (duplicates share one;
    /// in a `symmetric` file an off-diagonal entry's parameter stands for both mirror entries).
    pub entry_to_param: Vec<usize>,
    /// The file (header, comments and entries in file order), for writing results per entry.
    pub file: MatrixMarketFile<T>,
}

impl<T: Scalar> MatrixMarketOperator<T> {
    /// The file with entry `t`'s value replaced by `per_param[entry_to_param[t]]` (same header
    /// kind, comments, size and entry order; integer and pattern fields become `real`): e.g. the
    /// gradient of a value with respect to every stored entry, from the gradient in the
    /// operator's parameters.
    ///
    /// # Errors
    /// [`MatrixMarketError::InvalidArgument`] if `per_param` does not have one value per
    /// parameter or a value it selects is not finite.
    pub fn entry_values(&self, per_param: &[T]) -> Result<MatrixMarketFile<T>, MatrixMarketError> {
        let np = self.operator.num_params();
        if per_param.len() != np {
            return Err(MatrixMarketError::InvalidArgument(format!(
                "entry_values: expected {np} parameter values, got {}",
                per_param.len()
            )));
        }
        let values: Vec<T> = self.entry_to_param.iter().map(|&p| per_param[p]).collect();
        self.file.with_values(&values)
    }
}

impl<T: Scalar> MatrixMarketFile<T> {
    /// The operator of this file for a caller that needs `kind`, with the map from file entries
    /// to the operator's parameters (what a per-entry gradient file needs) — the one conversion
    /// the `gradmat` command uses:
    ///
    /// | file | [`OperatorKind::SelfAdjoint`] | [`OperatorKind::General`] |
    /// |---|---|---|
    /// | `symmetric` | [`FileOperator::Symmetric`] | [`FileOperator::Symmetric`] |
    /// | `general` | [`FileOperator::CheckedSymmetric`] (checked) | [`FileOperator::General`] |
    ///
    /// ```
    /// use gradmat_operators::matrix_market::{
    ///     read_matrix_market_from, FileOperator, IntoOperatorError, OperatorKind,
    /// };
    /// let text = "%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 2\n1 2 1\n2 2 3\n";
    /// let file = read_matrix_market_from::<f64, _>(text.as_bytes()).unwrap();
    /// let general = file.clone().into_operator(OperatorKind::General).unwrap();
    /// assert!(matches!(general.operator, FileOperator::General(_)));
    /// assert_eq!(general.entry_to_param, [0, 1, 2]);
    /// match file.into_operator(OperatorKind::SelfAdjoint) {
    ///     Err(IntoOperatorError::NotSymmetric(p)) => assert_eq!((p.row, p.col), (0, 1)),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    ///
    /// # Errors
    /// [`IntoOperatorError::NotSquare`] and [`IntoOperatorError::NotSymmetric`] (self-adjoint
    /// requests), [`IntoOperatorError::Build`] (the storage could not be built).
    pub fn into_operator(
        self,
        kind: OperatorKind,
    ) -> Result<MatrixMarketOperator<T>, IntoOperatorError> {
        let (operator, entry_to_param) = match (self.header.symmetry, kind) {
            (Symmetry::Symmetric, _) => {
                let s = self.to_sym_csr()?;
                let map = s.triplet_to_stored().to_vec();
                (FileOperator::Symmetric(s), map)
            }
            (Symmetry::General, OperatorKind::SelfAdjoint) => {
                if self.nrows != self.ncols {
                    return Err(IntoOperatorError::NotSquare {
                        nrows: self.nrows,
                        ncols: self.ncols,
                    });
                }
                let a = self.to_csr()?;
                let map = a.triplet_to_stored().to_vec();
                (
                    FileOperator::CheckedSymmetric(CheckedSymmetricCsr::new(a)?),
                    map,
                )
            }
            (Symmetry::General, OperatorKind::General) => {
                let a = self.to_csr()?;
                let map = a.triplet_to_stored().to_vec();
                (FileOperator::General(a), map)
            }
        };
        Ok(MatrixMarketOperator {
            operator,
            entry_to_param,
            file: self,
        })
    }
}
