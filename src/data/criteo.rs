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

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::sequence::MultiHotColumns;
use super::{Bags, Batch, DataError, Dataset, SampleStream, Schema};
use crate::rng::{GOLDEN_GAMMA, mix64};

/// Dense (integer) features per sample: `I1` .. `I13`.
pub const NUM_DENSE: usize = 13;
/// Sparse (categorical) features per sample, one embedding table each: `C1` .. `C26`.
pub const NUM_SPARSE: usize = 26;
/// Fields per line: the label, the dense and the sparse features.
const NUM_FIELDS: usize = 1 + NUM_DENSE + NUM_SPARSE;
/// Read buffer size, for the file and for the decompressed stream.
const BUF_SIZE: usize = 1 << 20;
/// Longest line accepted (a Criteo line has a few hundred bytes); protects memory against a file
/// that is not text.
const MAX_LINE: usize = 1 << 20;
/// Malformed lines whose messages are kept for [`CriteoDataset::skipped_examples`].
const MAX_EXAMPLES: usize = 5;
/// Characters of a bad field shown in an error message.
const MAX_SHOWN: usize = 40;

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

/// One parsed sample.
#[derive(Debug)]
struct Sample {
    label: f32,
    dense: [f32; NUM_DENSE],
    rows: [u32; NUM_SPARSE],
    /// The rows of multi-hot fields (empty for one-hot fields).
    lists: Vec<Vec<u32>>,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            label: 0.0,
            dense: [0.0; NUM_DENSE],
            rows: [0; NUM_SPARSE],
            lists: vec![Vec::new(); NUM_SPARSE],
        }
    }
}

impl Sample {
    /// Appends this sample to `out` (13 dense features, 26 tables).
    fn push_into(&self, out: &mut Batch) {
        out.labels.push(self.label);
        out.dense.extend_from_slice(&self.dense);
        for (c, (bags, &row)) in out.sparse.iter_mut().zip(&self.rows).enumerate() {
            if self.lists[c].is_empty() {
                bags.push(&[row]);
            } else {
                bags.push(&self.lists[c]);
            }
        }
    }
}

/// What is wrong with a line: the field (index into the 40) or the whole line, and why.
#[derive(Debug)]
struct LineError {
    field: Option<usize>,
    message: String,
}

/// The name of field `i` of a line: `label`, `I1` .. `I13`, `C1` .. `C26`.
fn field_name(i: usize) -> String {
    match i {
        0 => "label".to_string(),
        1..=NUM_DENSE => format!("I{i}"),
        _ => format!("C{}", i - NUM_DENSE),
    }
}

/// `text` for an error message: lossily decoded, cut to 40 characters, quoted and escaped.
fn shown(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(MAX_SHOWN).collect();
    if chars.next().is_some() {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

/// Turns field bytes into a sample; holds the per-table hashing constants.
#[derive(Debug)]
struct Parser {
    salts: [u64; NUM_SPARSE],
    /// `table_rows[c] - 1`: the rows available to non-missing values.
    buckets: [u64; NUM_SPARSE],
    /// Fields read as several values, and the byte between them.
    multi_hot: [bool; NUM_SPARSE],
    separator: u8,
}

impl Parser {
    fn new(table_rows: &[u32], multi_hot: &MultiHotColumns) -> Result<Parser, DataError> {
        multi_hot.validate(NUM_SPARSE)?;
        if table_rows.len() != NUM_SPARSE {
            return Err(DataError::Invalid(format!(
                "`table_rows` needs {NUM_SPARSE} values for Criteo's C1..C26, got {}",
                table_rows.len()
            )));
        }
        let mut parser = Parser {
            salts: [0; NUM_SPARSE],
            buckets: [0; NUM_SPARSE],
            multi_hot: [false; NUM_SPARSE],
            separator: multi_hot.separator,
        };
        for &c in &multi_hot.columns {
            parser.multi_hot[c] = true;
        }
        for (c, &rows) in table_rows.iter().enumerate() {
            if rows < 2 {
                return Err(DataError::Invalid(format!(
                    "`table_rows` for C{} is {rows}; each table needs at least 2 rows \
                     (row 0 stands for a missing value)",
                    c + 1
                )));
            }
            parser.salts[c] = (c as u64 + 1).wrapping_mul(GOLDEN_GAMMA);
            parser.buckets[c] = u64::from(rows) - 1;
        }
        Ok(parser)
    }

    /// The row of hex value `v` in table `c`, in `1 .. table_rows[c]`.
    fn row(&self, c: usize, v: u64) -> u32 {
        // The remainder is below `table_rows[c] - 1`, so the row fits in a u32.
        (1 + mix64(v ^ self.salts[c]) % self.buckets[c]) as u32
    }

    /// Parses a line (without its terminator) into `out`.
    fn parse(&self, line: &[u8], out: &mut Sample) -> Result<(), LineError> {
        let fields = line.iter().filter(|&&b| b == b'\t').count() + 1;
        if fields != NUM_FIELDS {
            return Err(LineError {
                field: None,
                message: format!(
                    "expected {NUM_FIELDS} tab-separated fields (label, I1..I13, C1..C26), \
                     found {fields}"
                ),
            });
        }
        let bad = |i: usize, expected: &str, text: &[u8]| LineError {
            field: Some(i),
            message: format!("expected {expected}, found {}", shown(text)),
        };
        // The count check above makes `i` range over 0 .. NUM_FIELDS exactly.
        for (i, text) in line.split(|&b| b == b'\t').enumerate() {
            match i {
                0 => {
                    out.label = match text {
                        b"0" => 0.0,
                        b"1" => 1.0,
                        _ => return Err(bad(i, "0 or 1", text)),
                    }
                }
                1..=NUM_DENSE => {
                    let x = match parse_int(text) {
                        Ok(x) => x,
                        Err(IntError::Overflow) => {
                            return Err(bad(i, "an integer that fits in 64 bits", text));
                        }
                        Err(IntError::Invalid) => return Err(bad(i, "an integer", text)),
                    };
                    out.dense[i - 1] = (x.max(0) as f64).ln_1p() as f32;
                }
                _ => {
                    let c = i - 1 - NUM_DENSE;
                    if self.multi_hot[c] {
                        // A sequence: every value hashed as a one-hot value would be; an empty
                        // field is the missing row alone, as for a one-hot field.
                        out.lists[c].clear();
                        for v in text.split(|&b| b == self.separator) {
                            match parse_hex(v) {
                                Some(v) => out.lists[c].push(self.row(c, v)),
                                None if text.is_empty() => out.lists[c].push(0),
                                None => {
                                    return Err(bad(
                                        i,
                                        "values of 1 to 16 hex digits between separators",
                                        text,
                                    ));
                                }
                            }
                        }
                        continue;
                    }
                    out.rows[c] = if text.is_empty() {
                        0
                    } else {
                        match parse_hex(text) {
                            Some(v) => self.row(c, v),
                            None => return Err(bad(i, "1 to 16 hex digits", text)),
                        }
                    };
                }
            }
        }
        Ok(())
    }
}

/// Why a dense field is not an integer.
enum IntError {
    Invalid,
    Overflow,
}

/// A decimal integer with an optional sign; empty (missing) reads as 0.
fn parse_int(text: &[u8]) -> Result<i64, IntError> {
    let (negative, digits) = match text {
        [] => return Ok(0),
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(IntError::Invalid);
    }
    let mut x: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(IntError::Invalid);
        }
        // Accumulate negatively so that i64::MIN parses too.
        let d = i64::from(b - b'0');
        x = x
            .checked_mul(10)
            .and_then(|x| x.checked_sub(d))
            .ok_or(IntError::Overflow)?;
    }
    if negative {
        Ok(x)
    } else {
        x.checked_neg().ok_or(IntError::Overflow)
    }
}

/// 1 to 16 hex digits (either case) as a u64.
fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |v, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(v << 4 | u64::from(d))
    })
}

/// What one physical line held.
enum LineKind {
    Eof,
    Blank,
    Sample,
    Bad(DataError),
}

/// The lines of a plain or gzip file, with their numbers.
struct Lines {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    /// Physical lines read so far (the 1-based number of the last one).
    line: u64,
    gzip: bool,
}

impl Lines {
    /// Opens `path`, decompressing it when it starts with the gzip magic bytes.
    fn open(path: &Path) -> Result<Lines, DataError> {
        let io_err = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let mut magic = [0u8; 2];
        let mut n = 0;
        while n < magic.len() {
            match file.read(&mut magic[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let gzip = n == 2 && magic == [0x1f, 0x8b];
        let raw = BufReader::with_capacity(BUF_SIZE, Cursor::new(magic[..n].to_vec()).chain(file));
        let reader: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(BUF_SIZE, MultiGzDecoder::new(raw)))
        } else {
            Box::new(raw)
        };
        Ok(Lines {
            path: path.to_path_buf(),
            reader,
            buf: Vec::new(),
            line: 0,
            gzip,
        })
    }

    /// Reads the next physical line into `buf`, without its LF or CRLF. `Ok(None)` at the end
    /// of the file, `Ok(Some(false))` for a line over [`MAX_LINE`] (consumed and dropped).
    fn read_line(&mut self) -> Result<Option<bool>, DataError> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let n = self
            .reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut self.buf);
        if n.map_err(|e| self.io_error(e))? == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            loop {
                self.buf.clear();
                let n = self
                    .reader
                    .by_ref()
                    .take(limit)
                    .read_until(b'\n', &mut self.buf);
                if n.map_err(|e| self.io_error(e))? == 0 || self.buf.last() == Some(&b'\n') {
                    return Ok(Some(false));
                }
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(true))
    }

    fn io_error(&self, source: io::Error) -> DataError {
        DataError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads and classifies the next physical line, parsing a sample into `out`.
    fn read(&mut self, parser: &Parser, out: &mut Sample) -> Result<LineKind, DataError> {
        let error = match self.read_line()? {
            None => return Ok(LineKind::Eof),
            Some(false) => LineError {
                field: None,
                message: format!(
                    "expected a line of at most {MAX_LINE} bytes, found a longer one \
                     (is this a Criteo TSV file?)"
                ),
            },
            Some(true) if self.buf.iter().all(u8::is_ascii_whitespace) => {
                return Ok(LineKind::Blank);
            }
            Some(true) => match parser.parse(&self.buf, out) {
                Ok(()) => return Ok(LineKind::Sample),
                Err(e) => e,
            },
        };
        Ok(LineKind::Bad(DataError::Malformed {
            path: self.path.clone(),
            line: self.line,
            field: error.field.map(field_name),
            message: error.message,
        }))
    }

    /// Reads up to the next valid sample: `Ok(true)` with it in `out`, `Ok(false)` at the end of
    /// the file. Blank lines are skipped; malformed lines are handed to `on_skip` when `skip`,
    /// else returned as the error.
    fn next_valid(
        &mut self,
        parser: &Parser,
        out: &mut Sample,
        skip: bool,
        mut on_skip: impl FnMut(DataError),
    ) -> Result<bool, DataError> {
        loop {
            match self.read(parser, out)? {
                LineKind::Eof => return Ok(false),
                LineKind::Blank => {}
                LineKind::Sample => return Ok(true),
                LineKind::Bad(e) if skip => on_skip(e),
                LineKind::Bad(e) => return Err(e),
            }
        }
    }

    /// Skips to the next non-blank line without parsing it: `Ok(false)` at the end of the file.
    fn next_nonblank(&mut self) -> Result<bool, DataError> {
        while self.read_line()?.is_some() {
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
#[path = "criteo_tests.rs"]
mod tests;
