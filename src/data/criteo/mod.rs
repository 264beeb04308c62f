//! The Criteo click logs (Kaggle Display Advertising Challenge and Terabyte) as a [`Dataset`].
//!
//! # Format
//!
//! One sample per line, 40 tab-separated fields:
//!
//! - `label`: `0` or `1`;
//! - `I1` .. `I13`: integers (possibly negative), or empty when missing;
//! - `C1` .. `C26`: categorical values as hex strings (typically 8 hex digits, any case; at most
//!   16), or empty when missing.
//!
//! Lines end in LF or CRLF; the last line may lack its terminator. Lines that are empty or hold
//! only whitespace are skipped silently, but they still count in line numbers (which are 1-based
//! and count every physical line, so `PATH:LINE` in an error points at the right line). Every other
//! line must be a valid sample: the first one that is not is reported as
//! `PATH:LINE: field NAME: what was expected, what was found`, unless `skip_bad_lines` is set, in
//! which case malformed lines are skipped and counted. The file may be plain text or gzip (one or
//! more members); gzip is recognised by its magic bytes `1f 8b`, not by the file name.
//!
//! # Features
//!
//! - Dense: a missing or negative `x` becomes 0, then each value is `ln(1 + x)` (computed in
//!   `f64`, stored as `f32`).
//! - Sparse: each of the 26 categorical fields is one table with `table_rows[c]` rows and every
//!   sample looks up exactly one row per table. Row 0 is reserved for "missing" (an empty field).
//!   A value `v` (the hex string read as a `u64`) in field `c` (0-based: `C1` is `c = 0`) goes to
//!   row `1 + mix64(v ^ salt_c) % (table_rows[c] - 1)`, where
//!   `salt_c = (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)` and `mix64` is the splitmix64
//!   finalizer: `x ^= x >> 30; x *= 0xBF58_476D_1CE4_E5B9; x ^= x >> 27;
//!   x *= 0x94D0_49BB_1331_11EB; x ^= x >> 31` (wrapping multiplications). The salt makes equal
//!   values in different fields collide independently.
//!
//! # Splits
//!
//! [`CriteoDataset::open`] reads the whole file once to validate it and count the valid samples
//! `n`. The last `n_test = round(n × test_fraction)` valid samples (clamped to `1 ..= n - 1`) are
//! the test split, loaded into memory by a second pass; the first `n - n_test` are the training
//! split, streamed from the file on every epoch by [`Dataset::open_train`].

mod lines;
mod parse;

use std::io;
use std::path::{Path, PathBuf};

pub use self::parse::{MISSING_ID, NUM_DENSE, NUM_SPARSE};

use self::lines::Lines;
use self::parse::{Parser, Sample};
use super::sequence::MultiHotColumns;
use super::{Bags, Batch, DataError, Dataset, SampleStream, Schema};

/// Malformed lines whose messages are kept for [`CriteoDataset::skipped_examples`].
const MAX_EXAMPLES: usize = 5;

/// Where and how to read a Criteo file.
#[derive(Clone, Debug)]
pub struct CriteoOptions {
    /// The TSV file, plain or gzip.
    pub path: PathBuf,
    /// Rows of each of the 26 embedding tables (`C1` .. `C26`), each at least 2 (row 0 is
    /// "missing").
    pub table_rows: Vec<u32>,
    /// Share of the valid samples (the last ones in the file) held out for testing, in (0, 1).
    pub test_fraction: f64,
    /// Skip and count malformed lines instead of failing on the first one.
    pub skip_bad_lines: bool,
    /// Categorical fields read as sequences of several values (none by default): each value is
    /// hashed like a one-hot value and the field's bag holds them all, in order
    /// ([`crate::data::sequence`]).
    pub multi_hot: MultiHotColumns,
}

/// A Criteo file: the training split streamed from disk, the test split in memory.
#[derive(Debug)]
pub struct CriteoDataset {
    path: PathBuf,
    schema: Schema,
    parser: Parser,
    skip_bad_lines: bool,
    n_train: u64,
    test: Batch,
    skipped: u64,
    skipped_examples: Vec<String>,
}

impl CriteoDataset {
    /// Validates `options`, reads the whole file once to check every line and count the valid
    /// samples, then reads it again to load the test split (the last valid samples).
    ///
    /// Errors: [`DataError::Invalid`] for bad options, [`DataError::Io`] when the file cannot be
    /// read, [`DataError::Malformed`] for the first malformed line (unless `skip_bad_lines`), and
    /// [`DataError::NoSamples`] when there are fewer than 2 valid samples.
    pub fn open(options: CriteoOptions) -> Result<CriteoDataset, DataError> {
        let CriteoOptions {
            path,
            table_rows,
            test_fraction,
            skip_bad_lines,
            multi_hot,
        } = options;
        let parser = Parser::new(&table_rows, &multi_hot)?;
        let fraction_ok = test_fraction > 0.0 && test_fraction < 1.0;
        if !fraction_ok {
            return Err(DataError::Invalid(format!(
                "`test_fraction` must be between 0 and 1 (exclusive), got {test_fraction}"
            )));
        }

        // Pass 1: validate and count.
        let mut lines = Lines::open(&path)?;
        let mut sample = Sample::default();
        let (mut n_valid, mut skipped) = (0u64, 0u64);
        let mut skipped_examples = Vec::new();
        let mut on_skip = |e: DataError| {
            skipped += 1;
            if skipped_examples.len() < MAX_EXAMPLES {
                skipped_examples.push(e.to_string());
            }
        };
        while lines.next_valid(&parser, &mut sample, skip_bad_lines, &mut on_skip)? {
            n_valid += 1;
        }
        let no_samples = |message: String| DataError::NoSamples {
            path: path.clone(),
            message,
        };
        if n_valid == 0 && skipped == 0 {
            return Err(no_samples(match (lines.line, lines.gzip) {
                (0, false) => "no samples: the file is empty".to_string(),
                (0, true) => "no samples: the file decompresses to nothing".to_string(),
                (n, _) => format!("no samples: all {n} lines are blank"),
            }));
        }
        if n_valid == 0 {
            let which = if lines.line == skipped {
                ""
            } else {
                "non-blank "
            };
            return Err(no_samples(format!(
                "no valid samples: all {skipped} {which}lines were malformed (the first: {})",
                skipped_examples.first().map(String::as_str).unwrap_or("")
            )));
        }
        if n_valid < 2 {
            let after = match skipped {
                0 => String::new(),
                n => format!(" (after skipping {n} malformed lines)"),
            };
            return Err(no_samples(format!(
                "only 1 valid sample{after}; at least 2 are needed (1 to train on, 1 to test on)"
            )));
        }
        let n_test = ((n_valid as f64 * test_fraction).round() as u64).clamp(1, n_valid - 1);
        let n_train = n_valid - n_test;

        // Pass 2: load the test split.
        let mut lines = Lines::open(&path)?;
        let mut test = Batch::new(NUM_DENSE, NUM_SPARSE);
        let mut seen = 0u64;
        while seen < n_valid {
            let ok = if seen < n_train && !skip_bad_lines {
                // Pass 1 found every non-blank line valid: skip the training part unparsed.
                lines.next_nonblank()?
            } else {
                lines.next_valid(&parser, &mut sample, skip_bad_lines, |_| {})?
            };
            if !ok {
                return Err(ended_early(&path, seen, n_valid, "samples"));
            }
            if seen >= n_train {
                sample.push_into(&mut test);
            }
            seen += 1;
        }

        let schema = Schema {
            num_dense: NUM_DENSE,
            table_rows,
        };
        Ok(CriteoDataset {
            path,
            schema,
            parser,
            skip_bad_lines,
            n_train,
            test,
            skipped,
            skipped_examples,
        })
    }

    /// The messages (`PATH:LINE: ...`) of the first few malformed lines skipped (at most 5).
    pub fn skipped_examples(&self) -> &[String] {
        &self.skipped_examples
    }
}

impl Dataset for CriteoDataset {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn train_samples(&self) -> u64 {
        self.n_train
    }
    fn open_train(&self) -> Result<Box<dyn SampleStream + '_>, DataError> {
        let lines = Lines::open(&self.path)?;
        Ok(Box::new(CriteoStream {
            ds: self,
            lines,
            taken: 0,
            sample: Sample::default(),
        }))
    }
    fn test(&self) -> &Batch {
        &self.test
    }
    fn teacher_auc(&self) -> Option<f64> {
        None
    }
    fn skipped_lines(&self) -> u64 {
        self.skipped
    }
    fn skipped_examples(&self) -> &[String] {
        &self.skipped_examples
    }
}

/// The training split read from the file, one epoch after another.
struct CriteoStream<'a> {
    ds: &'a CriteoDataset,
    lines: Lines,
    /// Valid samples returned in this epoch.
    taken: u64,
    sample: Sample,
}

impl SampleStream for CriteoStream<'_> {
    fn next_batch(&mut self, batch_size: usize, out: &mut Batch) -> Result<(), DataError> {
        let ds = self.ds;
        if batch_size == 0 {
            return Err(DataError::Invalid(
                "the batch size must be at least 1".to_string(),
            ));
        }
        if batch_size as u64 > ds.n_train {
            return Err(DataError::Invalid(format!(
                "the batch size {batch_size} exceeds the {} training samples of {}; \
                 lower `--batch-size`",
                ds.n_train,
                ds.path.display()
            )));
        }
        if ds.n_train - self.taken < batch_size as u64 {
            // Too few samples left for a full batch: drop them and start the next epoch.
            self.lines = Lines::open(&ds.path)?;
            self.taken = 0;
        }
        out.clear();
        out.num_dense = NUM_DENSE;
        out.sparse.resize_with(NUM_SPARSE, Bags::new);
        for _ in 0..batch_size {
            let ok =
                self.lines
                    .next_valid(&ds.parser, &mut self.sample, ds.skip_bad_lines, |_| {})?;
            if !ok {
                return Err(ended_early(
                    &ds.path,
                    self.taken,
                    ds.n_train,
                    "training samples",
                ));
            }
            self.sample.push_into(out);
            self.taken += 1;
        }
        Ok(())
    }
}

/// The error for a file that holds fewer samples than the first pass counted.
fn ended_early(path: &Path, seen: u64, expected: u64, what: &str) -> DataError {
    DataError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the file ended after {seen} of {expected} {what}; \
                 was it changed after it was opened?"
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
