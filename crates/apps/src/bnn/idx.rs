//! Reading and writing IDX files (the format of the original MNIST distribution), plain or
//! gzipped, and loading an MNIST-style image/label pair into a [`Dataset`].
//!
//! An IDX file is a big-endian header `0x00 0x00 <type> <ndim>`, then `ndim` big-endian `u32`
//! dimensions, then the data in row-major order. Only the unsigned-byte type (`0x08`) is
//! supported, which is what MNIST uses. A file is treated as gzipped when it starts with the gzip
//! magic bytes `1f 8b` (whatever its name).
//!
//! Every malformation is a typed [`IdxError`] naming the file: wrong magic, unsupported type,
//! truncated header or data, trailing bytes, images and labels that disagree in count, labels
//! out of range.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Number of classes of MNIST; labels must lie in `0..NUM_CLASSES`.
pub const NUM_CLASSES: usize = 10;

/// Errors of the IDX reader and of [`load_split`]. Each message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    /// The file could not be opened or read (including a corrupt gzip stream).
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with `00 00 08 <ndim>`.
    #[error("{path}: not an IDX file of unsigned bytes (magic bytes {magic:02x?}, expected [00, 00, 08, ndim])")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes (fewer if the file is shorter).
        magic: Vec<u8>,
    },
    /// The header or the data ended early.
    #[error("{path}: truncated IDX file: expected {expected} bytes of {part}, found {found}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Header or data.
        part: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Bytes after the data the header announces.
    #[error("{path}: {extra} unexpected bytes after the IDX data")]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Number of extra bytes.
        extra: usize,
    },
    /// The dimensions do not describe the expected kind of file, or two files disagree.
    #[error("{path}: {message}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A label outside `0..NUM_CLASSES`.
    #[error("{path}: label {label} at index {index} is out of range 0..{classes}")]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// The label.
        label: u8,
        /// Its position.
        index: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A data directory that does not exist or lacks a file.
    #[error("{path}: {message}")]
    Missing {
        /// The file or directory.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
}

/// An IDX array of unsigned bytes: its dimensions and its row-major data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Row-major data, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, plain or gzipped.
///
/// # Errors
/// [`IdxError::Io`], [`IdxError::BadMagic`], [`IdxError::Truncated`], [`IdxError::TrailingData`],
/// [`IdxError::Shape`] (dimension product overflows).
pub fn read_idx(path: &Path) -> Result<IdxArray, IdxError> {
    let io = |source| IdxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    idx_from_bytes(path, raw)
}

/// [`read_idx`] on the bytes of a file already read (plain or gzipped); `path` is only used in
/// messages.
///
/// # Errors
/// As [`read_idx`].
pub fn idx_from_bytes(path: &Path, raw: Vec<u8>) -> Result<IdxArray, IdxError> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| IdxError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        out
    } else {
        raw
    };
    parse_idx(path, &bytes)
}

/// Parses the bytes of an (uncompressed) IDX file; `path` is only used in messages.
///
/// # Errors
/// As [`read_idx`].
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray, IdxError> {
    let p = || path.to_path_buf();
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] == 0 {
        return Err(IdxError::BadMagic {
            path: p(),
            magic: bytes[..bytes.len().min(4)].to_vec(),
        });
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(IdxError::Truncated {
            path: p(),
            part: "header",
            expected: header,
            found: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(*d))
        .ok_or_else(|| IdxError::Shape {
            path: p(),
            message: format!("dimensions {dims:?} are too large"),
        })?;
    let found = bytes.len() - header;
    if found < count {
        return Err(IdxError::Truncated {
            path: p(),
            part: "data",
            expected: count,
            found,
        });
    }
    if found > count {
        return Err(IdxError::TrailingData {
            path: p(),
            extra: found - count,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Writes an IDX file of unsigned bytes; gzipped when `gzip` is true.
///
/// # Errors
/// [`IdxError::Shape`] when `data.len()` is not the product of `dims`, a dimension exceeds
/// `u32`, or there are 0 or more than 255 dimensions; [`IdxError::Io`] on write failures.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8], gzip: bool) -> Result<(), IdxError> {
    let shape = |message: String| IdxError::Shape {
        path: path.to_path_buf(),
        message,
    };
    if dims.is_empty() || dims.len() > 255 {
        return Err(shape(format!(
            "an IDX file needs 1 to 255 dimensions, got {}",
            dims.len()
        )));
    }
    let count = dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    if count != Some(data.len()) {
        return Err(shape(format!(
            "{} data bytes do not match the dimensions {dims:?}",
            data.len()
        )));
    }
    let mut bytes = vec![0u8, 0, 0x08, dims.len() as u8];
    for d in dims {
        let d = u32::try_from(*d).map_err(|_| shape(format!("dimension {d} exceeds u32")))?;
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let io = |source| IdxError::Io {
        path: path.to_path_buf(),
        source,
    };
    if gzip {
        let file = std::fs::File::create(path).map_err(io)?;
        let mut enc = GzEncoder::new(file, flate2::Compression::fast());
        enc.write_all(&bytes).map_err(io)?;
        enc.finish().map_err(io)?;
        Ok(())
    } else {
        std::fs::write(path, bytes).map_err(io)
    }
}

/// A labelled image data set: `n` images of `dim = rows·cols` pixels scaled to `[0, 1]`
/// (row-major `n×dim`, as the MLP expects), and their labels in `0..NUM_CLASSES`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixels `/255`, row-major `n×dim`.
    pub images: Vec<f64>,
    /// Labels in `0..NUM_CLASSES`.
    pub labels: Vec<usize>,
    /// Pixels per image.
    pub dim: usize,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The examples at `idx` (in that order) as a new data set.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            images.extend_from_slice(&self.images[i * self.dim..(i + 1) * self.dim]);
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            dim: self.dim,
        }
    }

    /// The first `n` examples (all if `n ≥ len`).
    pub fn head(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&idx)
    }
}

/// Builds a [`Dataset`] from an image file (3-D: `n × rows × cols`) and a label file (1-D: `n`).
///
/// # Errors
/// Those of [`read_idx`]; [`IdxError::Shape`] for wrong numbers of dimensions, zero-sized images
/// or different counts; [`IdxError::LabelOutOfRange`].
pub fn load_pair(images: &Path, labels: &Path) -> Result<Dataset, IdxError> {
    let img = read_idx(images)?;
    let lab = read_idx(labels)?;
    if img.dims.len() != 3 {
        return Err(IdxError::Shape {
            path: images.to_path_buf(),
            message: format!(
                "an image file must have 3 dimensions (count, rows, columns), found {:?}",
                img.dims
            ),
        });
    }
    if img.dims[1] == 0 || img.dims[2] == 0 {
        return Err(IdxError::Shape {
            path: images.to_path_buf(),
            message: format!("images of size {}×{} are empty", img.dims[1], img.dims[2]),
        });
    }
    if lab.dims.len() != 1 {
        return Err(IdxError::Shape {
            path: labels.to_path_buf(),
            message: format!("a label file must have 1 dimension, found {:?}", lab.dims),
        });
    }
    if img.dims[0] != lab.dims[0] {
        return Err(IdxError::Shape {
            path: labels.to_path_buf(),
            message: format!(
                "{} labels do not match the {} images of {}",
                lab.dims[0],
                img.dims[0],
                images.display()
            ),
        });
    }
    if let Some(index) = lab.data.iter().position(|&l| l as usize >= NUM_CLASSES) {
        return Err(IdxError::LabelOutOfRange {
            path: labels.to_path_buf(),
            label: lab.data[index],
            index,
            classes: NUM_CLASSES,
        });
    }
    Ok(Dataset {
        images: img.data.iter().map(|&b| f64::from(b) / 255.0).collect(),
        labels: lab.data.iter().map(|&l| l as usize).collect(),
        dim: img.dims[1] * img.dims[2],
    })
}

/// Finds `<prefix>-images-idx3-ubyte[.gz]` in `dir`.
fn find_file(dir: &Path, stem: &str) -> Result<PathBuf, IdxError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(IdxError::Missing {
        path: dir.join(format!("{stem}.gz")),
        message: format!("no such file (nor {stem} without .gz)"),
    })
}

/// Loads split `prefix` (`"train"` or `"t10k"`) of an MNIST-style directory:
/// `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]`.
///
/// # Errors
/// [`IdxError::Missing`] for a missing directory or file, and those of [`load_pair`].
pub fn load_split(dir: &Path, prefix: &str) -> Result<Dataset, IdxError> {
    if !dir.is_dir() {
        return Err(IdxError::Missing {
            path: dir.to_path_buf(),
            message: "data directory not found (set --data or GRADMAT_MNIST_DIR)".into(),
        });
    }
    let images = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    load_pair(&images, &labels)
}
