//! `RunConfig`: everything a training run needs, from a TOML file and command-line overrides,
//! validated into clear errors that name the key (and its flag) and the accepted range.
//!
//! `config` sits above the modules whose settings it names (data, device, embedding, model) and
//! below `train`, which turns a config into a run.

mod placement;
#[cfg(test)]
mod tests;
mod validate;
mod values;

pub use values::{Fractions, PerTable, TableRows};

use crate::data::synthetic::SyntheticOptions;
use crate::device::{BackendChoice, BackendKind};
use crate::embedding::Policy;
use crate::model::ModelConfig;
use crate::precision::{Precision, Rounding};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole training run's settings (a TOML file; flags override its keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// `auto`, `cpu`, `wgpu` or `cuda`.
    pub backend: BackendChoice,
    /// `synthetic` or the path of a Criteo TSV file (plain or gzip).
    pub data: String,
    /// Training steps; wins over `epochs` when set.
    pub steps: Option<u64>,
    /// Passes over the training split (a partial last batch of each is dropped).
    pub epochs: u64,
    /// Samples per training step.
    pub batch_size: usize,
    /// Samples per evaluation forward pass.
    pub eval_batch_size: usize,
    /// Learning rate of every optimizer.
    pub lr: f32,
    /// Seed of the data generator and of the model's initial weights.
    pub seed: u64,
    /// Evaluate on the test split every N steps (0: only at the end).
    pub eval_every: u64,
    /// Rows of each embedding table (Criteo: hashing buckets per categorical feature).
    pub table_rows: TableRows,
    /// Fraction of a data file's lines, at its end, held out as the test split.
    pub test_fraction: f64,
    /// Write one telemetry `Snapshot` per step to this JSON-lines file.
    pub telemetry: Option<PathBuf>,
    /// Write the run's summary as one JSON object to this file.
    pub summary_json: Option<PathBuf>,
    /// Skip and count malformed data lines instead of failing.
    pub skip_bad_lines: bool,
    /// Categorical fields of a Criteo file read as lists of values (multi-hot, sequence
    /// features), by name, `C1` .. `C26`; each value is hashed like a one-hot value and the
    /// field's bag holds them all. Empty: every field is one-hot.
    pub multi_hot: Vec<String>,
    /// The character between values inside a multi-hot field (not a tab).
    pub multi_hot_separator: char,
    /// Where embedding rows live: `all-on-device`, `host-only`, `lru`, `lfu`.
    pub policy: Policy,
    /// Precision of the host backing store (cached policies).
    pub precision: Precision,
    /// Rounding of rows written back to the store.
    pub rounding: Rounding,
    /// Cache size as a fraction of each table (default 0.05 for `lru`/`lfu`).
    pub cache_fraction: Option<Fractions>,
    /// Cache size in rows: one value is a global budget shared by the tables in proportion to
    /// their sizes; a list gives each table's.
    pub cache_rows: Option<TableRows>,
    /// Steps between row-hotness reports in the telemetry (0: never).
    pub hotness_every: u64,
    /// Batches the lookahead planner sees ahead (`--policy lookahead`).
    pub lookahead: usize,
    /// Threads preparing batches; `null`: chosen from the machine ([`RunConfig::thread_split`]).
    pub loader_threads: Option<usize>,
    /// Threads running the CPU backend's kernels (the CPU backend only); `null`: chosen with the
    /// loader's ([`RunConfig::thread_split`]).
    pub compute_threads: Option<usize>,
    /// Charge host↔device bytes to a modelled link of this many GB/s (machines without one:
    /// the CPU backend, lavapipe). `null`: no modelled link.
    pub link_gbps: Option<f64>,
    /// Save a checkpoint to this directory (after the last step, and every `save_every`).
    pub save: Option<PathBuf>,
    /// Steps between checkpoints (0: only after the last step); needs `save`.
    pub save_every: u64,
    /// Continue the run saved in this checkpoint directory (`steps` counts all steps).
    pub resume: Option<PathBuf>,
    /// Model sizes and optimizers.
    pub model: ModelConfig,
    /// The synthetic generator's settings.
    pub synthetic: SyntheticOptions,
}

/// How a run's threads are shared between preparing batches and the CPU backend's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSplit {
    /// Threads preparing batches (the loader's workers).
    pub loader: usize,
    /// Threads running the CPU backend's kernels, the training thread among them; `None` on a
    /// GPU backend, whose kernels run on the device.
    pub compute: Option<usize>,
}

/// This machine's cores (1 when it cannot say).
pub fn machine_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Loader threads for a GPU backend: one per core, at most 8 (batch preparation then keeps up
/// with the device; more threads only contend).
pub fn default_loader_threads(cores: usize) -> usize {
    cores.clamp(1, 8)
}

impl RunConfig {
    /// The threads of a run on `backend` over `cores` cores: the configured counts, else chosen.
    ///
    /// The loader gets one thread per core (at most 8). On the CPU backend the kernels get every
    /// core too, the training thread among them, and the two share the cores: the loader's
    /// threads sleep whenever the batch queue is full, the kernels' helpers whenever the
    /// training thread waits. Giving the kernels fewer threads than cores leaves more to the
    /// loader: on a 2-core machine `--compute-threads 1` ran the synthetic default 10–25% faster
    /// but with the device waiting for data 13–21% of the time, where all cores keep that under
    /// 5% (BENCHMARKS.md, "Splitting the cores").
    pub fn thread_split(&self, backend: BackendKind, cores: usize) -> ThreadSplit {
        let loader = self
            .loader_threads
            .unwrap_or_else(|| default_loader_threads(cores));
        match backend {
            BackendKind::Cpu => ThreadSplit {
                loader,
                compute: Some(self.compute_threads.unwrap_or(cores.max(1))),
            },
            BackendKind::Wgpu | BackendKind::Cuda => ThreadSplit {
                loader,
                compute: None,
            },
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            backend: BackendChoice::Auto,
            data: "synthetic".into(),
            steps: None,
            epochs: 1,
            batch_size: 256,
            eval_batch_size: 4096,
            lr: 0.05,
            seed: 1,
            eval_every: 1000,
            table_rows: TableRows::One(100_000),
            test_fraction: 0.2,
            telemetry: None,
            summary_json: None,
            skip_bad_lines: false,
            multi_hot: Vec::new(),
            multi_hot_separator: ',',
            policy: Policy::AllOnDevice,
            precision: Precision::Fp32,
            rounding: Rounding::Stochastic,
            cache_fraction: None,
            cache_rows: None,
            hotness_every: 100,
            lookahead: 8,
            loader_threads: None,
            compute_threads: None,
            link_gbps: None,
            save: None,
            save_every: 0,
            resume: None,
            model: ModelConfig::default(),
            synthetic: SyntheticOptions::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys or wrong types.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A value outside its range.
    #[error("invalid {key}{}: {message}", flag.map(|f| format!(" ({f})")).unwrap_or_default())]
    Invalid {
        /// The config key, dotted for sections (`model.dim`).
        key: &'static str,
        /// The command-line flag setting it, if any.
        flag: Option<&'static str>,
        /// The value and the accepted range.
        message: String,
    },
}
impl RunConfig {
    /// Reads a TOML config file (missing keys take their defaults).
    pub fn from_file(path: &Path) -> Result<RunConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<RunConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })
    }

    /// Whether the data is the embedded synthetic generator.
    pub fn is_synthetic(&self) -> bool {
        self.data == "synthetic"
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |p| before.len() - p - 1)
        + 1;
    (line, column)
}
