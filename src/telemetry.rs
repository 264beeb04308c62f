//! `Snapshot`: one per training step, the single source for the progress bar, the
//! `--telemetry` JSON-lines file and rowflow-studio.
//!
//! Versioned (`"schema": 1`), one JSON object per line, cheap to produce (counts the host already
//! has; no device round trip for telemetry). Fields a run does not have are `null`: an
//! `AllOnDevice` run has no host store, no evictions and no hotness sketch; a run without a
//! modelled link has `link_gbps: null`.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The telemetry schema version written in every snapshot.
pub const SCHEMA_VERSION: u32 = 1;

/// Lookup and transfer counts of one table (or the total over tables) for one step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    /// Table index; `null` in totals.
    pub table: Option<usize>,
    /// Rows read by the batch's bags (with repetitions).
    pub lookups: u64,
    /// Distinct rows the batch reads.
    pub unique_rows: u64,
    /// Unique rows found on the device when the training step ran.
    pub hits: u64,
    /// Unique rows that had to be fetched for the training step.
    pub misses: u64,
    /// Misses seen by the lookahead planner (`null` without one).
    pub planner_misses: Option<u64>,
    /// Rows evicted from the device cache (`null` without a cache).
    pub evictions: Option<u64>,
    /// Embedding-row bytes moved host → device.
    pub bytes_h2d: u64,
    /// Embedding-row bytes moved device → host.
    pub bytes_d2h: u64,
    /// Rows the device holds for this table.
    pub cache_rows: u64,
    /// Fraction of `cache_rows` in use.
    pub cache_occupancy: f64,
}

impl TableStats {
    /// Adds another table's stats into `self` (a total over tables): counts and cache rows add
    /// up, occupancy becomes row-weighted.
    pub fn accumulate(&mut self, other: &TableStats) {
        let rows = self.cache_rows + other.cache_rows;
        if rows > 0 {
            self.cache_occupancy = (self.cache_occupancy * self.cache_rows as f64
                + other.cache_occupancy * other.cache_rows as f64)
                / rows as f64;
        }
        self.cache_rows = rows;
        self.add_counts(other);
    }

    /// Adds a later step's counts into `self` (a total over time); the cache fields take the
    /// later step's values.
    pub fn add_step(&mut self, later: &TableStats) {
        self.cache_rows = later.cache_rows;
        self.cache_occupancy = later.cache_occupancy;
        self.add_counts(later);
    }

    fn add_counts(&mut self, other: &TableStats) {
        self.lookups += other.lookups;
        self.unique_rows += other.unique_rows;
        self.hits += other.hits;
        self.misses += other.misses;
        self.planner_misses = add_opt(self.planner_misses, other.planner_misses);
        self.evictions = add_opt(self.evictions, other.evictions);
        self.bytes_h2d += other.bytes_h2d;
        self.bytes_d2h += other.bytes_d2h;
    }

    /// `hits / unique_rows` (1 when nothing was looked up).
    pub fn hit_rate(&self) -> f64 {
        if self.unique_rows == 0 {
            1.0
        } else {
            self.hits as f64 / self.unique_rows as f64
        }
    }
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// Busy and waiting time of one pipeline stage during one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    /// `loader`, `device`, …
    pub stage: String,
    /// Seconds spent working.
    pub busy_s: f64,
    /// Seconds spent waiting for input or for room downstream.
    pub waiting_s: f64,
}

/// Per-table row hotness: an access histogram on a log scale and the hottest rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hotness {
    /// Table index.
    pub table: usize,
    /// `histogram[k]` = rows accessed between 2^k and 2^(k+1) - 1 times.
    pub histogram: Vec<u64>,
    /// Hottest rows, hottest first.
    pub top: Vec<HotRow>,
    /// Rows in the table (0 in files written before it was recorded).
    #[serde(default)]
    pub rows: u64,
    /// Accesses so far per row-id range: `ID_BUCKETS` equal ranges of the table's ids, counted
    /// exactly (empty in files written before they were recorded).
    #[serde(default)]
    pub id_buckets: Vec<u64>,
    /// Rows of each id range on the device now (`null` when every row is).
    #[serde(default)]
    pub cached_buckets: Option<Vec<u64>>,
}

/// One hot row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HotRow {
    /// Row id.
    pub row: u32,
    /// Accesses counted (or estimated).
    pub count: u64,
    /// Whether it is on the device now.
    pub cached: bool,
}

/// Memory held, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// The host backing store (`null` when all rows live on the device).
    pub host_store_bytes: Option<u64>,
    /// Embedding rows and optimizer state on the device.
    pub device_cache_bytes: u64,
    /// Everything the model holds on the device.
    pub device_bytes: u64,
    /// The embedding tables fully in FP32, for comparison.
    pub fp32_equivalent_bytes: u64,
    /// The DHE decoders' weights and biases in FP32 (0 without DHE features).
    #[serde(default)]
    pub dhe_parameter_bytes: u64,
}

/// The state of a training run after one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`SCHEMA_VERSION`].
    pub schema: u32,
    /// 1-based step number.
    pub step: u64,
    /// Training samples consumed so far.
    pub samples: u64,
    /// Seconds since training started (evaluation included).
    pub elapsed_s: f64,
    /// Seconds this step's device work took.
    pub step_s: f64,
    /// Training samples per second so far (training time only).
    pub samples_per_sec: f64,
    /// Mean loss of this step's batch.
    pub loss: f64,
    /// Test AUC when this step evaluated, else `null`.
    pub test_auc: Option<f64>,
    /// Test log loss when this step evaluated, else `null`.
    pub test_logloss: Option<f64>,
    /// This step, per table.
    pub tables: Vec<TableStats>,
    /// This step, over all tables.
    pub total: TableStats,
    /// The run so far, over all tables.
    pub cumulative: TableStats,
    /// Per-table hotness (`null` until a sketch is kept).
    pub hotness: Option<Vec<Hotness>>,
    /// Pipeline stages.
    pub stages: Vec<StageTime>,
    /// Fraction of this step the device stage spent waiting for input.
    pub device_idle_fraction: Option<f64>,
    /// Memory held.
    pub memory: MemoryStats,
    /// The modelled host↔device link, when one is simulated.
    pub link_gbps: Option<f64>,
    /// Batches so far for which the lookahead planner shortened its window (`null` for other
    /// policies).
    pub window_shrinks: Option<u64>,
    /// Whether the host had recorded this whole step (launches, uploads, the start of its loss's
    /// read-back) before the device finished the previous one: host and device overlapped.
    /// Always false on the CPU, whose kernels finish before they return.
    #[serde(default)]
    pub overlapped: bool,
}

/// Writes snapshots as JSON lines.
pub struct TelemetryWriter {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl TelemetryWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(TelemetryWriter {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
        })
    }

    /// Appends one snapshot as one line.
    pub fn write(&mut self, snapshot: &Snapshot) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, snapshot)?;
        self.out.write_all(b"\n")
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a recorded run back (for replay); a bad line is reported as `PATH:LINE: …`.
pub fn read_jsonl(path: &Path) -> Result<Vec<Snapshot>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
