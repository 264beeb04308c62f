//! One line of a Criteo file into one [`Sample`]: the 40 fields, the dense transform
//! (`ln(1 + x)`) and the hashing of categorical values into table rows, exactly as the parent
//! module's *Features* section specifies.

use crate::data::sequence::MultiHotColumns;
use crate::data::{Batch, DataError};
use crate::rng::{GOLDEN_GAMMA, mix64};

/// Dense (integer) features per sample: `I1` .. `I13`.
pub const NUM_DENSE: usize = 13;
/// Sparse (categorical) features per sample, one embedding table each: `C1` .. `C26`.
pub const NUM_SPARSE: usize = 26;
/// Fields per line: the label, the dense and the sparse features.
const NUM_FIELDS: usize = 1 + NUM_DENSE + NUM_SPARSE;
/// Characters of a bad field shown in an error message.
const MAX_SHOWN: usize = 40;

/// One parsed sample.
#[derive(Debug)]
pub(super) struct Sample {
    /// 0 or 1.
    pub(super) label: f32,
    /// `ln(1 + max(x, 0))` of `I1` .. `I13`.
    pub(super) dense: [f32; NUM_DENSE],
    /// The row of each one-hot field `C1` .. `C26` (0: missing).
    pub(super) rows: [u32; NUM_SPARSE],
    /// The rows of multi-hot fields (empty for one-hot fields).
    pub(super) lists: Vec<Vec<u32>>,
    /// The raw value behind each row of `rows` ([`MISSING_ID`] for a missing value).
    pub(super) raw: [u64; NUM_SPARSE],
    /// The raw values behind each row of `lists`.
    pub(super) raw_lists: Vec<Vec<u64>>,
}

/// The raw id of a missing categorical value (what a DHE hashes for it; a table reads row 0).
pub const MISSING_ID: u64 = u64::MAX;

impl Default for Sample {
    fn default() -> Self {
        Sample {
            label: 0.0,
            dense: [0.0; NUM_DENSE],
            rows: [0; NUM_SPARSE],
            lists: vec![Vec::new(); NUM_SPARSE],
            raw: [MISSING_ID; NUM_SPARSE],
            raw_lists: vec![Vec::new(); NUM_SPARSE],
        }
    }
}

impl Sample {
    /// Appends this sample to `out` (13 dense features, 26 tables).
    pub(super) fn push_into(&self, out: &mut Batch) {
        out.labels.push(self.label);
        out.dense.extend_from_slice(&self.dense);
        for (c, (bags, &row)) in out.sparse.iter_mut().zip(&self.rows).enumerate() {
            if self.lists[c].is_empty() {
                bags.push_raw(&[row], &[self.raw[c]]);
            } else {
                bags.push_raw(&self.lists[c], &self.raw_lists[c]);
            }
        }
    }
}

/// What is wrong with a line: the field (index into the 40) or the whole line, and why.
#[derive(Debug)]
pub(super) struct LineError {
    /// Index into the 40 fields, or `None` for the whole line.
    pub(super) field: Option<usize>,
    /// What was expected, what was found.
    pub(super) message: String,
}

/// The name of field `i` of a line: `label`, `I1` .. `I13`, `C1` .. `C26`.
pub(super) fn field_name(i: usize) -> String {
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
pub(super) struct Parser {
    salts: [u64; NUM_SPARSE],
    /// `table_rows[c] - 1`: the rows available to non-missing values.
    buckets: [u64; NUM_SPARSE],
    /// Fields read as several values, and the byte between them.
    multi_hot: [bool; NUM_SPARSE],
    separator: u8,
}

impl Parser {
    pub(super) fn new(
        table_rows: &[u32],
        multi_hot: &MultiHotColumns,
    ) -> Result<Parser, DataError> {
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
    pub(super) fn row(&self, c: usize, v: u64) -> u32 {
        // The remainder is below `table_rows[c] - 1`, so the row fits in a u32.
        (1 + mix64(v ^ self.salts[c]) % self.buckets[c]) as u32
    }

    /// Parses a line (without its terminator) into `out`.
    pub(super) fn parse(&self, line: &[u8], out: &mut Sample) -> Result<(), LineError> {
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
                        out.raw_lists[c].clear();
                        for v in text.split(|&b| b == self.separator) {
                            match parse_hex(v) {
                                Some(v) => {
                                    out.lists[c].push(self.row(c, v));
                                    out.raw_lists[c].push(v);
                                }
                                None if text.is_empty() => {
                                    out.lists[c].push(0);
                                    out.raw_lists[c].push(MISSING_ID);
                                }
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
                    (out.rows[c], out.raw[c]) = if text.is_empty() {
                        (0, MISSING_ID)
                    } else {
                        match parse_hex(text) {
                            Some(v) => (self.row(c, v), v),
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
