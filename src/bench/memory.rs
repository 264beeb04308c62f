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

/// Options of `rowflow bench memory`: the axes it sweeps, and the run every configuration
/// trains.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryBenchOptions {
    /// One JSON line per configuration instead of a table.
    pub json: bool,
    /// The configurations compared.
    pub sweep: MemorySweep,
    /// The run every configuration trains (data, sizes, seed, the embeddings' optimizer and
    /// learning rate); each configuration sets the dimension, policy, store and cache.
    pub run: RunConfig,
}

/// The axes `bench memory` sweeps: per dimension, every store precision × cache fraction ×
/// rounding (after the FP32 all-on-device baseline).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySweep {
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
}

impl Default for MemoryBenchOptions {
    fn default() -> Self {
        let mut run = RunConfig {
            batch_size: 256,
            epochs: 1,
            seed: 1,
            eval_every: 0,
            hotness_every: 0,
            ..Default::default()
        };
        run.model.embedding_optimizer = Optimizer::Sgd;
        run.model.embedding_lr = Some(2.0);
        MemoryBenchOptions {
            json: false,
            sweep: MemorySweep {
                dims: vec![128, 256],
                precisions: vec![Precision::Int8, Precision::Int4],
                fractions: vec![0.01, 0.05],
                roundings: vec![Rounding::Nearest, Rounding::Stochastic],
                extras: true,
            },
            run,
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
            policy,
            precision,
            rounding: rounding.unwrap_or_default(),
            cache_fraction: fraction.map(Fractions::One),
            cache_rows: None,
            ..self.run.clone()
        };
        cfg.model.dim = dim;
        cfg
    }
}

/// One configuration's outcome: its dimension, its AUC against the FP32 baseline's, and the
/// run's summary (store precision, cache, rounding, memory reduction, AUC, hit rate, bytes per
/// sample, …).
#[derive(Clone, Debug, Serialize)]
pub struct MemoryRow {
    /// Embedding dimension.
    pub dim: usize,
    /// Test AUC minus the FP32 baseline's at the same dimension.
    pub delta_auc: Option<f64>,
    /// The run.
    #[serde(flatten)]
    pub summary: TrainSummary,
}

/// One configuration: dimension, policy, store precision, cache fraction, rounding.
type Config = (usize, Policy, Precision, Option<f64>, Option<Rounding>);

/// The configurations of a run: per dimension, the baseline first.
fn plan(args: &MemoryBenchOptions) -> Vec<Config> {
    let mut out = Vec::new();
    for &dim in &args.sweep.dims {
        out.push((dim, Policy::AllOnDevice, Precision::Fp32, None, None));
        for &p in &args.sweep.precisions {
            for &f in &args.sweep.fractions {
                for &r in &args.sweep.roundings {
                    out.push((dim, Policy::Lru, p, Some(f), Some(r)));
                }
            }
        }
        if args.sweep.extras {
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
    for (dim, policy, precision, fraction, rounding) in plan(args) {
        let cfg = args.run_config(dim, policy, precision, fraction, rounding);
        let data = open_dataset(&cfg)?;
        let s: TrainSummary = train(dev, &cfg, data.as_ref(), &mut |_| {})?;
        let baseline = if policy == Policy::AllOnDevice {
            s.test_auc
        } else {
            rows.iter()
                .find(|r| r.dim == dim && r.summary.cache_fraction.is_none())
                .and_then(|r| r.summary.test_auc)
        };
        let row = MemoryRow {
            dim,
            delta_auc: s.test_auc.zip(baseline).map(|(a, b)| a - b),
            // The precision compared: FP32 for the all-on-device baseline, whose rows have no
            // store.
            summary: TrainSummary {
                precision: Some(precision),
                ..s
            },
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
    let (s, data) = (&r.summary, &r.summary.data);
    println!(
        "{:<10} {:>4} {:>6} {:>6} {:>10} {:>9.2} {:>8} {:>8} {:>8} {:>7.3} {:>10.0}",
        if data.len() > 10 {
            &data[data.len() - 10..]
        } else {
            data
        },
        r.dim,
        s.precision.map_or("-", Precision::name),
        s.cache_fraction
            .map_or("-".into(), |c| format!("{:.0}%", 100.0 * c)),
        s.rounding.map_or("-", Rounding::name),
        s.memory_reduction,
        f(s.test_auc, 4),
        f(r.delta_auc, 4),
        f(s.test_logloss, 4),
        s.hit_rate,
        s.bytes_per_sample
    );
    Ok(())
}
