//! `rowflow bench data`: samples per second of batch preparation alone — generation or parsing,
//! row maps, hotness — on 1 and N loader threads, for the synthetic default,
//! `assets/large.toml` and a Criteo file. No model, no device: what the loader can feed.

use crate::config::RunConfig;
use crate::pipeline::time_loader;
use crate::train::open_dataset;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `assets/large.toml`, built in so the benchmark runs from any directory.
const LARGE: &str = include_str!("../../assets/large.toml");

/// What `rowflow bench data` measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataBenchOptions {
    /// Batches prepared per measurement.
    pub steps: u64,
    /// Thread counts to measure (the default: 1 and one per core, at most 8).
    pub threads: Vec<usize>,
    /// A Criteo TSV file (plain or .gz); `null`: the sample in `../shared/data` when present.
    pub criteo: Option<PathBuf>,
    /// Rows per table for the Criteo file's hashing.
    pub criteo_table_rows: u32,
}

impl Default for DataBenchOptions {
    fn default() -> Self {
        let n = crate::config::default_loader_threads(crate::config::machine_cores());
        DataBenchOptions {
            steps: 200,
            threads: if n > 1 { vec![1, n] } else { vec![1] },
            criteo: None,
            criteo_table_rows: 100_000,
        }
    }
}

/// One measured row: `{dataset, threads, batch_size, steps, seconds, samples_per_sec}`.
#[derive(Clone, Debug, Serialize)]
pub struct DataBenchRow {
    /// `synthetic-default`, `large` or the Criteo file's path.
    pub dataset: String,
    /// Loader threads.
    pub threads: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Batches prepared.
    pub steps: u64,
    /// Wall seconds for all of them.
    pub seconds: f64,
    /// Samples prepared per second.
    pub samples_per_sec: f64,
}

/// The Criteo sample shipped beside the repository, if there is one.
pub(crate) fn shared_sample() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".txt") || name.ends_with(".txt.gz") || name.ends_with(".tsv")
        })
        .collect();
    files.sort();
    let first = files.into_iter().next()?;
    Some(std::fs::canonicalize(&first).unwrap_or(first))
}

/// The configurations measured, by name.
fn datasets(opts: &DataBenchOptions) -> Result<Vec<(String, RunConfig)>, anyhow::Error> {
    let mut out = vec![("synthetic-default".to_string(), RunConfig::default())];
    let large = RunConfig::from_toml(LARGE, Path::new("assets/large.toml"))?;
    out.push(("large".into(), large));
    match opts.criteo.clone().or_else(shared_sample) {
        Some(path) => {
            let cfg = RunConfig {
                data: path.display().to_string(),
                table_rows: crate::config::TableRows::One(opts.criteo_table_rows),
                ..RunConfig::default()
            };
            out.push((path.display().to_string(), cfg));
        }
        None => eprintln!("no Criteo file (--criteo PATH): measuring synthetic data only"),
    }
    Ok(out)
}

/// Runs the benchmark; prints a table, or JSON lines with `json`.
pub fn run_data_bench(
    opts: &DataBenchOptions,
    json: bool,
) -> Result<Vec<DataBenchRow>, anyhow::Error> {
    if opts.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    if opts.threads.is_empty() || opts.threads.iter().any(|&t| t == 0 || t > 256) {
        anyhow::bail!("--threads: each count must be 1 to 256");
    }
    let mut rows = Vec::new();
    for (name, cfg) in datasets(opts)? {
        let data = open_dataset(&cfg)?;
        for &threads in &opts.threads {
            let seconds = time_loader(
                data.as_ref(),
                cfg.batch_size,
                opts.steps,
                threads,
                cfg.hotness_every,
            )?;
            let samples = opts.steps as f64 * cfg.batch_size as f64;
            let row = DataBenchRow {
                dataset: name.clone(),
                threads,
                batch_size: cfg.batch_size,
                steps: opts.steps,
                seconds,
                samples_per_sec: samples / seconds,
            };
            if json {
                println!("{}", serde_json::to_string(&row)?);
            } else {
                println!(
                    "{:<28} {:>2} threads  batch {:>5}  {:>10.0} samples/s",
                    row.dataset, row.threads, row.batch_size, row.samples_per_sec
                );
            }
            rows.push(row);
        }
    }
    Ok(rows)
}
