//! Benchmarks behind `rowflow bench`: each prints a table, or one JSON line per row with
//! `--json`. Timings are medians of repeated runs; compare rows measured in the same run.

pub mod data;
pub mod kernels;
mod kernels_dense;
pub mod memory;
pub mod pipeline;
pub mod repr;

use crate::bounds::Min;
use crate::data::DataError;
use crate::data::synthetic::{SyntheticDataset, SyntheticOptions};
use crate::device::{BackendKind, Device, DeviceError};
use serde::Serialize;
use std::time::Instant;

/// The synthetic workload a benchmark runs: `tables` tables (T) of `rows` rows (E) with
/// `dim`-wide rows (D), batches of `batch_size` samples (B) whose bags read `pooling` rows (L)
/// drawn Zipf(`alpha`), from `seed`. The hot set does not drift, so every configuration of a
/// benchmark meets the same skew.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Embedding tables (T).
    pub tables: usize,
    /// Rows per table (E).
    pub rows: u32,
    /// Embedding dimension (D).
    pub dim: usize,
    /// Samples per batch (B).
    pub batch_size: usize,
    /// Rows per bag (L).
    pub pooling: usize,
    /// Zipf exponent of row popularity.
    pub alpha: f64,
    /// Seed of the data and of the weights.
    pub seed: u64,
}

impl Workload {
    /// Checks the sizes, with messages naming the flag.
    pub fn check(&self) -> Result<(), anyhow::Error> {
        let bad = |flag: &str, range: &str| {
            Err(anyhow::anyhow!("{flag} is out of range: expected {range}"))
        };
        if self.tables == 0 || self.tables > 1024 {
            return bad("--tables", "1 to 1024");
        }
        if self.rows == 0 {
            return bad("--rows", "at least 1");
        }
        if self.dim == 0 || self.dim > 4096 {
            return bad("--dim", "1 to 4096");
        }
        if self.batch_size == 0 || self.batch_size > 1 << 20 {
            return bad("--batch-size", "1 to 1048576");
        }
        if self.pooling == 0 || self.pooling > 4096 {
            return bad("--pooling", "1 to 4096");
        }
        if !Min::AtLeast(0.0).admits(self.alpha) {
            return bad("--alpha", "a finite number >= 0");
        }
        Ok(())
    }

    /// The generator of this workload, with `train_samples` and `test_samples` samples.
    pub fn dataset(
        &self,
        train_samples: u64,
        test_samples: u64,
    ) -> Result<SyntheticDataset, DataError> {
        let opts = SyntheticOptions {
            tables: self.tables,
            pooling_factor: self.pooling,
            zipf_alpha: self.alpha,
            train_samples,
            test_samples,
            drift_samples_per_rank: 0,
            ..Default::default()
        };
        SyntheticDataset::new(&opts, &vec![self.rows; self.tables], self.seed)
    }
}

/// One measured row: `{kernel, backend, seconds, bytes, gbps}`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// Kernel (or composite operation) name.
    pub kernel: String,
    /// Backend measured.
    pub backend: BackendKind,
    /// Median seconds of one run.
    pub seconds: f64,
    /// Logical bytes moved by one run.
    pub bytes: u64,
    /// `bytes / seconds`, in 10^9 bytes per second.
    pub gbps: f64,
}

impl BenchRow {
    /// A row from a time and a byte count.
    pub fn new(kernel: &str, backend: BackendKind, seconds: f64, bytes: f64) -> Self {
        BenchRow {
            kernel: kernel.to_string(),
            backend,
            seconds,
            bytes: bytes as u64,
            gbps: if seconds > 0.0 {
                bytes / seconds / 1e9
            } else {
                0.0
            },
        }
    }
}

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Runs `f` twice to warm up, then `reps` times; returns the median seconds.
pub(crate) fn time<D: Device>(
    dev: &D,
    reps: usize,
    f: impl FnMut(usize) -> Result<(), DeviceError>,
) -> Result<f64, DeviceError> {
    time_with(dev, reps, |_| Ok(()), f)
}

/// Runs `prepare(i)` then `f(i)` for runs `i = 0 .. reps + 2`, timing `f` up to a
/// synchronize; the first two runs warm up. Returns the median seconds of the others.
pub(crate) fn time_with<D: Device, E: From<DeviceError>>(
    dev: &D,
    reps: usize,
    mut prepare: impl FnMut(usize) -> Result<(), E>,
    mut f: impl FnMut(usize) -> Result<(), E>,
) -> Result<f64, E> {
    let mut times = Vec::with_capacity(reps);
    for i in 0..reps + 2 {
        prepare(i)?;
        dev.synchronize()?;
        let t = Instant::now();
        f(i)?;
        dev.synchronize()?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(median(&mut times))
}

/// Prints rows as an aligned table, or as JSON lines.
pub fn print_rows(rows: &[BenchRow], json: bool) {
    if json {
        for r in rows {
            match serde_json::to_string(r) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("cannot encode {}: {e}", r.kernel),
            }
        }
        return;
    }
    println!(
        "{:<24} {:>8} {:>12} {:>12} {:>9}",
        "kernel", "backend", "ms", "MB", "GB/s"
    );
    for r in rows {
        println!(
            "{:<24} {:>8} {:>12.3} {:>12.1} {:>9.2}",
            r.kernel,
            r.backend.to_string(),
            r.seconds * 1e3,
            r.bytes as f64 / 1e6,
            r.gbps
        );
    }
}
