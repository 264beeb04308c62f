//! `rowflow bench repr`: MP-Rec's comparison of representations. For each dataset (the synthetic
//! default's tables, 8 × 100,000 rows, and the Criteo sample hashed into 100,000-row tables) and
//! each representation (`table`, `dhe`, `hybrid`): the test AUC and log loss after training
//! from the same seed, the trainable values' FP32 bytes, the forward FLOPs per sample, and the
//! inference latency of one batch (sizes 1, 16, 256, 4096) on each backend present.
//!
//! Training runs on the backend `--backend auto` picks. A software wgpu adapter (lavapipe) is
//! timed only when `--backends` names it: a DHE batch of 4096 takes it minutes. Latency is a whole `predict` of a batch
//! of test samples (upload, forward, the probabilities read back), the median of `reps` runs
//! after two warm-ups, with every table on the device: what serving one request of that size
//! costs the representation, whatever the training placement.

use super::data::shared_sample;
use crate::config::{RunConfig, TableRows, machine_cores};
use crate::data::{Batch, Dataset, SplitDataset};
use crate::device::{BackendChoice, BackendKind, Device, probe_backends, select_backend};
use crate::embedding::Placement;
use crate::model::{Dlrm, ModelError, Representation};
use crate::train::{TrainSummary, open_dataset, train};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `rowflow bench repr`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReprBenchOptions {
    /// One JSON line per (data, representation) instead of a table.
    pub json: bool,
    /// Representations compared.
    pub representations: Vec<Representation>,
    /// Batch sizes whose latency is measured.
    pub batch_sizes: Vec<usize>,
    /// Timed runs per latency (after two warm-ups).
    pub reps: usize,
    /// Backends whose latency is measured (empty: every backend present but a software GPU
    /// adapter, such as lavapipe, which proves correctness and not speed: name it to time it).
    pub backends: Vec<BackendKind>,
    /// Training samples of the synthetic runs (one epoch).
    pub synthetic_samples: u64,
    /// Test samples of the synthetic data.
    pub synthetic_test_samples: u64,
    /// A Criteo TSV file; `null`: the sample in `../shared/data` when present (else skipped).
    pub criteo: Option<PathBuf>,
    /// Rows per table for the Criteo file's hashing.
    pub criteo_table_rows: u32,
    /// Passes over the Criteo file's training split.
    pub criteo_epochs: u64,
    /// The run every configuration trains (sizes, seed, learning rate, the DHEs' `[model.dhe]`);
    /// each sets its data and representation.
    pub run: RunConfig,
}

impl Default for ReprBenchOptions {
    fn default() -> Self {
        ReprBenchOptions {
            json: false,
            representations: vec![
                Representation::Table,
                Representation::Dhe,
                Representation::Hybrid,
            ],
            batch_sizes: vec![1, 16, 256, 4096],
            reps: 5,
            backends: Vec::new(),
            synthetic_samples: 1_000_000,
            synthetic_test_samples: 100_000,
            criteo: None,
            criteo_table_rows: 100_000,
            criteo_epochs: 5,
            run: RunConfig {
                seed: 1,
                eval_every: 0,
                hotness_every: 0,
                ..RunConfig::default()
            },
        }
    }
}

/// One (data, representation): `{data, representation, test_auc, test_logloss,
/// parameter_bytes, flops_per_sample, latency_s: {backend: {batch_size: seconds}}}`.
#[derive(Clone, Debug, Serialize)]
pub struct ReprRow {
    /// `synthetic` or `criteo`.
    pub data: String,
    /// The representation.
    pub representation: Representation,
    /// Test AUC after training.
    pub test_auc: Option<f64>,
    /// Test log loss after training.
    pub test_logloss: Option<f64>,
    /// Every trainable value in FP32 (table rows, MLPs, DHE decoders), in bytes.
    pub parameter_bytes: u64,
    /// Forward FLOPs per sample of the test split.
    pub flops_per_sample: f64,
    /// Median seconds of one batch's inference, per backend and batch size.
    pub latency_s: BTreeMap<String, BTreeMap<String, f64>>,
    /// Training samples per second (on the training backend).
    pub train_samples_per_sec: f64,
    /// The backend that trained.
    pub train_backend: BackendKind,
}

/// The datasets compared: (name, run settings).
fn datasets(opts: &ReprBenchOptions) -> Vec<(String, RunConfig)> {
    let mut synthetic = opts.run.clone();
    synthetic.data = "synthetic".into();
    synthetic.synthetic.train_samples = opts.synthetic_samples;
    synthetic.synthetic.test_samples = opts.synthetic_test_samples;
    synthetic.epochs = 1;
    synthetic.steps = None;
    let mut out = vec![("synthetic".to_string(), synthetic)];
    if let Some(path) = opts.criteo.clone().or_else(shared_sample) {
        let mut criteo = opts.run.clone();
        criteo.data = path.to_string_lossy().into_owned();
        criteo.table_rows = TableRows::One(opts.criteo_table_rows);
        criteo.epochs = opts.criteo_epochs;
        criteo.steps = None;
        out.push(("criteo".into(), criteo));
    } else {
        eprintln!("no Criteo file (--criteo, or a sample in ../shared/data): synthetic only");
    }
    out
}

/// Runs the benchmark, printing each row as it is measured; returns the rows.
pub fn run_repr_bench(opts: &ReprBenchOptions) -> Result<Vec<ReprRow>, anyhow::Error> {
    if opts.batch_sizes.is_empty() || opts.batch_sizes.contains(&0) || opts.reps == 0 {
        anyhow::bail!("--batch-sizes must list sizes of at least 1, and --reps be at least 1");
    }
    let backends: Vec<BackendKind> = match opts.backends.is_empty() {
        true => probe_backends()
            .into_iter()
            .filter(|r| r.available && r.auto_eligible)
            .map(|r| r.backend)
            .collect(),
        false => opts.backends.clone(),
    };
    // One device trains every configuration (the CPU backend's own thread pool, with this
    // thread in it, can be made once per thread).
    let trainer = select_backend(BackendChoice::Auto)?.backend;
    crate::on_device!(trainer, cpu_threads: Some(machine_cores()), |dev| run_on(
        dev, opts, &backends
    ))
}

/// [`run_repr_bench`] training on `dev`.
fn run_on<T: Device>(
    dev: &T,
    opts: &ReprBenchOptions,
    backends: &[BackendKind],
) -> Result<Vec<ReprRow>, anyhow::Error> {
    let trainer = dev.info().backend;
    if !opts.json {
        println!(
            "{:<10} {:<8} {:>8} {:>8} {:>10} {:>12}  latency per batch (ms)",
            "data", "repr", "AUC", "logloss", "params MB", "FLOP/sample"
        );
    }
    let mut rows = Vec::new();
    for (name, base) in datasets(opts) {
        let data = open_dataset(&base)?;
        for &representation in &opts.representations {
            let mut cfg = base.clone();
            cfg.model.representation = representation;
            cfg.validate()?;
            let summary: TrainSummary = train(dev, &cfg, data.as_ref(), &mut |_| {})?;
            let mut latency_s = BTreeMap::new();
            for &b in backends {
                let (sizes, reps) = (&opts.batch_sizes, opts.reps);
                let per_size = match b == trainer {
                    true => latencies(dev, &cfg, data.as_ref(), sizes, reps)?,
                    false => crate::on_device!(b, |other| latencies(
                        other,
                        &cfg,
                        data.as_ref(),
                        sizes,
                        reps
                    )?),
                };
                latency_s.insert(b.to_string(), per_size);
            }
            let row = ReprRow {
                data: name.clone(),
                representation,
                test_auc: summary.test_auc,
                test_logloss: summary.test_logloss,
                parameter_bytes: summary.parameter_bytes,
                flops_per_sample: summary.flops_per_sample,
                latency_s,
                train_samples_per_sec: summary.samples_per_sec,
                train_backend: summary.backend,
            };
            print_row(&row, opts.json)?;
            rows.push(row);
        }
    }
    Ok(rows)
}

fn print_row(r: &ReprRow, json: bool) -> Result<(), anyhow::Error> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.4}"));
    let lat: Vec<String> = r
        .latency_s
        .iter()
        .map(|(b, m)| {
            let sizes: Vec<String> = m
                .iter()
                .map(|(s, t)| format!("{s}:{:.3}", t * 1e3))
                .collect();
            format!("{b} {}", sizes.join(" "))
        })
        .collect();
    println!(
        "{:<10} {:<8} {:>8} {:>8} {:>10.2} {:>12.0}  {}",
        r.data,
        r.representation.name(),
        f(r.test_auc),
        f(r.test_logloss),
        r.parameter_bytes as f64 / 1e6,
        r.flops_per_sample,
        lat.join("; ")
    );
    Ok(())
}

/// Median seconds of one `predict` of each batch size (test samples, repeated when the split is
/// smaller), with every table on `dev`.
fn latencies<D: Device>(
    dev: &D,
    cfg: &RunConfig,
    data: &dyn Dataset,
    sizes: &[usize],
    reps: usize,
) -> Result<BTreeMap<String, f64>, anyhow::Error> {
    let schema = data.schema();
    let layout = cfg.model.layout(schema.table_rows.len())?;
    let split = SplitDataset::new(data, layout.split.clone())?;
    let test = split.test();
    let largest = sizes.iter().copied().max().unwrap_or(1);
    let all = Placement::all_on_device();
    let mut model = Dlrm::new(dev, &cfg.model, schema, all, largest, cfg.seed)?;
    let mut out = BTreeMap::new();
    let mut probs = Vec::with_capacity(largest);
    for &size in sizes {
        let mut batch = Batch::new(schema.num_dense, layout.split.tables.len());
        for i in 0..size {
            batch.push_from(test, i % test.len());
        }
        let seconds = super::time_with(
            dev,
            reps,
            |_| Ok::<(), ModelError>(()),
            |_| {
                probs.clear();
                model.predict(dev, &batch, &mut probs)
            },
        )?;
        out.insert(size.to_string(), seconds);
    }
    Ok(out)
}
