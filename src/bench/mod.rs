//! Benchmarks behind `rowflow bench`: each prints a table, or one JSON line per row with
//! `--json`. Timings are medians of repeated runs; compare rows measured in the same run.

pub mod kernels;
mod kernels_dense;
pub mod memory;
pub mod pipeline;

use crate::device::BackendKind;
use serde::Serialize;

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
