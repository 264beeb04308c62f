//! `rowflow bench memory`: memory saved by low-precision host stores under an FP32 cache, and
//! what it costs in AUC — the first seed paper's experiment.
//!
//! Every configuration trains the same model from the same seed on the same data: first FP32
//! all-on-device (the baseline, `cache_fraction: null`) for each dimension, then each store
//! precision × cache size × rounding with an LRU cache. Embeddings use SGD by default (the
//! paper's setting), so no optimizer state blurs the memory comparison.

use crate::config::{Fractions, RunConfig};
use crate::device::{Device, Optimizer};
use crate::embedding::Policy;
use crate::precision::{Precision, Rounding};
use crate::train::{TrainSummary, open_dataset, train};
use serde::Serialize;

/// Options of `rowflow bench memory`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryBenchOptions {
    /// `synthetic` or the path of a Criteo TSV file.
    pub data: String,
    /// One JSON line per configuration instead of a table.
    pub json: bool,
    /// Embedding dimensions to compare at.
    pub dims: Vec<usize>,
    /// Store precisions (each compared with FP32 all-on-device).
    pub precisions: Vec<Precision>,
    /// Cache sizes, as fractions of each table.
    pub fractions: Vec<f64>,
    /// Roundings.
    pub roundings: Vec<Rounding>,
    /// Also run FP16 and a 10% cache (stochastic rounding) at each dimension.
    pub extras: bool,
    /// Optimizer of the embeddings.
    pub optimizer: Optimizer,
    /// Learning rate of the embeddings.
    pub embedding_lr: f32,
    /// Samples per step.
    pub batch_size: usize,
    /// Passes over the training data.
    pub epochs: u64,
    /// Seed of the data and of the initial weights.
    pub seed: u64,
    /// Rows per table (default: the run's default, 100,000).
    pub table_rows: Option<u32>,
    /// Synthetic training samples (default 1,000,000).
    pub train_samples: Option<u64>,
    /// Synthetic test samples (default 100,000).
    pub test_samples: Option<u64>,
}

impl Default for MemoryBenchOptions {
    fn default() -> Self {
        MemoryBenchOptions {
            data: "synthetic".into(),
            json: false,
            dims: vec![128, 256],
            precisions: vec![Precision::Int8, Precision::Int4],
            fractions: vec![0.01, 0.05],
            roundings: vec![Rounding::Nearest, Rounding::Stochastic],
            extras: true,
            optimizer: Optimizer::Sgd,
            embedding_lr: 2.0,
            batch_size: 256,
            epochs: 1,
            seed: 1,
            table_rows: None,
            train_samples: None,
            test_samples: None,
        }
    }
}

impl MemoryBenchOptions {
    /// The run of one configuration: dimension `dim`, `policy` (`lru`, or `all-on-device` for
    /// the baseline), store `precision`, cache `fraction` and `rounding` (`None` for the
    /// baseline).
    pub fn run_config(
        &self,
        dim: usize,
        policy: Policy,
        precision: Precision,
        fraction: Option<f64>,
        rounding: Option<Rounding>,
    ) -> RunConfig {
        let mut cfg = RunConfig {
            data: self.data.clone(),
            batch_size: self.batch_size,
            epochs: self.epochs,
            seed: self.seed,
            eval_every: 0,
            hotness_every: 0,
            policy,
            precision,
            rounding: rounding.unwrap_or_default(),
            cache_fraction: fraction.map(Fractions::One),
            ..Default::default()
        };
        if let Some(r) = self.table_rows {
            cfg.table_rows = crate::config::TableRows::One(r);
        }
        if let Some(n) = self.train_samples {
            cfg.synthetic.train_samples = n;
        }
        if let Some(n) = self.test_samples {
            cfg.synthetic.test_samples = n;
        }
        cfg.model.dim = dim;
        cfg.model.embedding_optimizer = self.optimizer;
        cfg.model.embedding_lr = Some(self.embedding_lr);
        cfg
    }
}

/// One configuration's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryRow {
    /// `synthetic` or the data file.
    pub data: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Store precision (`fp32` for the baseline).
    pub precision: Precision,
    /// Cache size as a fraction of each table (`null` for the all-on-device baseline).
    pub cache_fraction: Option<f64>,
    /// Rounding (`null` for the baseline).
    pub rounding: Option<Rounding>,
    /// FP32 bytes over the bytes allocated.
    pub memory_reduction: f64,
    /// Test AUC.
    pub test_auc: Option<f64>,
    /// Test AUC minus the FP32 baseline's at the same dimension.
    pub delta_auc: Option<f64>,
    /// Test log loss.
    pub test_logloss: Option<f64>,
    /// Unique rows found in the cache, over training.
    pub hit_rate: f64,
    /// Embedding bytes moved per training sample, both ways.
    pub bytes_per_sample: f64,
    /// Seconds of training.
    pub train_seconds: f64,
}

/// One configuration: dimension, policy, store precision, cache fraction, rounding.
type Config = (usize, Policy, Precision, Option<f64>, Option<Rounding>);

/// The configurations of a run: per dimension, the baseline first.
fn plan(args: &MemoryBenchOptions) -> Vec<Config> {
    let mut out = Vec::new();
    for &dim in &args.dims {
        out.push((dim, Policy::AllOnDevice, Precision::Fp32, None, None));
        for &p in &args.precisions {
            for &f in &args.fractions {
                for &r in &args.roundings {
                    out.push((dim, Policy::Lru, p, Some(f), Some(r)));
                }
            }
        }
        if args.extras {
            out.push((
                dim,
                Policy::Lru,
                Precision::Fp16,
                Some(0.05),
                Some(Rounding::Stochastic),
            ));
            out.push((
                dim,
                Policy::Lru,
                Precision::Int8,
                Some(0.10),
                Some(Rounding::Stochastic),
            ));
        }
    }
    out
}

/// Runs every configuration on `dev`, printing each as it completes.
pub fn run_memory_bench<D: Device>(
    dev: &D,
    args: &MemoryBenchOptions,
) -> Result<Vec<MemoryRow>, anyhow::Error> {
    let mut rows: Vec<MemoryRow> = Vec::new();
    if !args.json {
        println!(
            "{:<10} {:>4} {:>6} {:>6} {:>10} {:>9} {:>8} {:>8} {:>8} {:>7} {:>10}",
            "data",
            "dim",
            "store",
            "cache",
            "rounding",
            "mem ×",
            "AUC",
            "ΔAUC",
            "logloss",
            "hits",
            "B/sample"
        );
    }
    let data_name = if args.data == "synthetic" {
        "synthetic".to_string()
    } else {
        args.data.clone()
    };
    for (dim, policy, precision, fraction, rounding) in plan(args) {
        let cfg = args.run_config(dim, policy, precision, fraction, rounding);
        let data = open_dataset(&cfg)?;
        let s: TrainSummary = train(dev, &cfg, data.as_ref(), &mut |_| {})?;
        let baseline = if policy == Policy::AllOnDevice {
            s.test_auc
        } else {
            rows.iter()
                .find(|r| r.dim == dim && r.cache_fraction.is_none())
                .and_then(|r| r.test_auc)
        };
        let row = MemoryRow {
            data: data_name.clone(),
            dim,
            precision,
            cache_fraction: fraction,
            rounding,
            memory_reduction: s.memory_reduction,
            test_auc: s.test_auc,
            delta_auc: match (s.test_auc, baseline) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            },
            test_logloss: s.test_logloss,
            hit_rate: s.hit_rate,
            bytes_per_sample: s.bytes_per_sample,
            train_seconds: s.train_seconds,
        };
        print_row(&row, args.json)?;
        rows.push(row);
    }
    Ok(rows)
}

fn print_row(r: &MemoryRow, json: bool) -> Result<(), anyhow::Error> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    println!(
        "{:<10} {:>4} {:>6} {:>6} {:>10} {:>9.2} {:>8} {:>8} {:>8} {:>7.3} {:>10.0}",
        if r.data.len() > 10 {
            &r.data[r.data.len() - 10..]
        } else {
            &r.data
        },
        r.dim,
        r.precision.name(),
        r.cache_fraction
            .map_or("-".into(), |c| format!("{:.0}%", 100.0 * c)),
        r.rounding
            .map_or("-".into(), |x| format!("{x:?}").to_lowercase()),
        r.memory_reduction,
        f(r.test_auc, 4),
        f(r.delta_auc, 4),
        f(r.test_logloss, 4),
        r.hit_rate,
        r.bytes_per_sample
    );
    Ok(())
}
