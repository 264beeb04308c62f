//! Tests of the Criteo reader, by topic; the sample lines and helpers they share are here.

mod dataset;
mod lines;
mod parse;

use super::parse::{LineError, Parser, Sample};
use super::*;
use std::io::Write;
use tempfile::TempDir;

/// The 40 fields of valid sample `i`: label `i % 2`, `I1 = i` (identifies the sample), `I2`
/// missing, `I3 = -3`, other dense values distinct, `C26` missing, other hex values distinct.
fn fields(i: usize) -> Vec<String> {
    let mut f = vec![
        (i % 2).to_string(),
        i.to_string(),
        String::new(),
        "-3".to_string(),
    ];
    f.extend((4..=NUM_DENSE).map(|k| (i * 7 + k).to_string()));
    f.extend((0..NUM_SPARSE - 1).map(|c| format!("{:08x}", i * 1000 + c * 37 + 0xabc0)));
    f.push(String::new());
    f
}

fn line(i: usize) -> String {
    fields(i).join("\t")
}

/// Sample `i` with field `field` (0 = label, 1..=13 = I, 14.. = C) replaced by `value`.
fn line_with(i: usize, field: usize, value: &str) -> String {
    let mut f = fields(i);
    f[field] = value.to_string();
    f.join("\t")
}

/// Samples `0 .. n`, one per LF-terminated line.
fn text(n: usize) -> String {
    (0..n).map(|i| line(i) + "\n").collect()
}

fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn options(path: &Path) -> CriteoOptions {
    CriteoOptions {
        path: path.to_path_buf(),
        table_rows: vec![1000; NUM_SPARSE],
        test_fraction: 0.25,
        skip_bad_lines: false,
        multi_hot: Default::default(),
    }
}

fn open(path: &Path) -> CriteoDataset {
    CriteoDataset::open(options(path)).unwrap()
}

fn open_err(options: CriteoOptions) -> DataError {
    CriteoDataset::open(options).unwrap_err()
}

/// The sample ids (`I1`) of a batch.
fn ids(batch: &Batch) -> Vec<usize> {
    (0..batch.len())
        .map(|s| f64::from(batch.dense[s * NUM_DENSE]).exp_m1().round() as usize)
        .collect()
}

/// `count` batches of `batch_size` from a fresh training stream.
fn batches(ds: &CriteoDataset, batch_size: usize, count: usize) -> Vec<Batch> {
    let mut stream = ds.open_train().unwrap();
    (0..count)
        .map(|_| {
            let mut out = Batch::new(0, 0);
            stream.next_batch(batch_size, &mut out).unwrap();
            out
        })
        .collect()
}

fn parse(parser: &Parser, line: &str) -> Result<Sample, LineError> {
    let mut s = Sample::default();
    parser.parse(line.as_bytes(), &mut s).map(|()| s)
}
