//! `rowflow bench pipeline`: training throughput of every placement policy on one workload —
//! lookahead at each window W and cache size, the on-demand caches (LRU, LFU), host-only and
//! all-on-device — with and without a modelled host↔device link.
//!
//! The workload (default T=8 tables × E=5,000,000 rows, D=64, B=2048, L=20, Zipf α=1.05, INT8
//! store, SGD embeddings) is generated once and replayed to every configuration, so all train
//! on the same batches. Each configuration runs `--steps` steps; the first `--warmup` fill the
//! cache and are left out of the means.

use super::Workload;
use crate::bounds::Min;
use crate::config::{Fractions, RunConfig};
use crate::data::replay::Replay;
use crate::data::{Batch, Dataset};
use crate::device::{Device, Optimizer};
use crate::embedding::Policy;
use crate::precision::{Precision, Rounding};
use crate::telemetry::Snapshot;
use crate::train::{TrainSummary, train};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// Options of `rowflow bench pipeline`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineBenchOptions {
    /// One JSON line per configuration instead of a table.
    pub json: bool,
    /// The workload every configuration trains on (B samples per step).
    pub workload: Workload,
    /// Host store precision of the cached policies.
    pub precision: Precision,
    /// The configurations compared.
    pub sweep: PipelineSweep,
    /// Training steps per configuration.
    pub steps: u64,
    /// Steps left out of the means (the cache fills).
    pub warmup: u64,
}

/// The axes `bench pipeline` sweeps: per link setting, every policy × cache fraction ×
/// lookahead window.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSweep {
    /// Policies to compare.
    pub policies: Vec<Policy>,
    /// Cache sizes, as fractions of each table.
    pub fractions: Vec<f64>,
    /// Lookahead windows.
    pub windows: Vec<usize>,
    /// The modelled link each configuration also runs with (GB/s; 0 = only without).
    pub link_gbps: f64,
}

impl Default for PipelineBenchOptions {
    fn default() -> Self {
        PipelineBenchOptions {
            json: false,
            workload: Workload {
                tables: 8,
                rows: 5_000_000,
                dim: 64,
                batch_size: 2048,
                pooling: 20,
                alpha: 1.05,
                seed: 1,
            },
            precision: Precision::Int8,
            sweep: PipelineSweep {
                policies: vec![
                    Policy::Lookahead,
                    Policy::Lru,
                    Policy::Lfu,
                    Policy::HostOnly,
                    Policy::AllOnDevice,
                ],
                fractions: vec![0.01, 0.05, 0.1],
                windows: vec![1, 2, 4, 8, 16],
                link_gbps: 16.0,
            },
            steps: 40,
            warmup: 10,
        }
    }
}

/// One configuration's outcome: the run's summary (policy, cache, window, link, hit rates,
/// window shrinks, …), whose speed and idle fraction are measured after the warm-up steps, and
/// how the step's time splits over the stages.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineRow {
    /// The run, `samples_per_sec` and `device_idle_fraction` after warm-up.
    #[serde(flatten)]
    pub summary: TrainSummary,
    /// Mean seconds per step (the device stage's busy + waiting time).
    pub step_seconds_mean: f64,
    /// The stage with the largest mean busy time.
    pub busiest_stage: String,
    /// Its mean busy seconds per step.
    pub busiest_stage_seconds_mean: f64,
    /// Mean busy seconds per step of every stage (wall time: a stage that waits for a core while
    /// others run counts that time as busy).
    pub stage_busy_seconds_mean: BTreeMap<String, f64>,
}

fn check(args: &PipelineBenchOptions) -> Result<(), anyhow::Error> {
    anyhow::ensure!(
        args.steps > args.warmup,
        "--steps must exceed --warmup ({} <= {})",
        args.steps,
        args.warmup
    );
    args.workload.check()?;
    anyhow::ensure!(
        args.sweep.fractions.iter().all(|f| *f > 0.0 && *f <= 1.0),
        "--fractions must be in (0, 1]"
    );
    anyhow::ensure!(
        args.sweep.windows.iter().all(|w| (1..=1024).contains(w)),
        "--windows must be in 1..=1024"
    );
    anyhow::ensure!(
        Min::AtLeast(0.0).admits(args.sweep.link_gbps),
        "--link-gbps must be >= 0"
    );
    Ok(())
}

/// The workload, generated once (in parallel) and replayed.
fn workload(args: &PipelineBenchOptions) -> Result<Replay, anyhow::Error> {
    let (w, n) = (&args.workload, args.steps as usize);
    let data = w.dataset((n * w.batch_size) as u64, w.batch_size as u64)?;
    let batches: Vec<Batch> = (0..n)
        .into_par_iter()
        .map(|k| {
            let mut b = Batch::new(data.options().dense_features, w.tables);
            for i in 0..w.batch_size {
                data.sample_into((k * w.batch_size + i) as u64, &mut b);
            }
            b
        })
        .collect();
    let schema = data.schema().clone();
    Ok(Replay::new(
        "synthetic (replayed)",
        schema,
        batches,
        data.test().clone(),
    )?)
}

/// One configuration: policy, cache fraction, window and simulated link (GB/s).
type Config = (Policy, Option<f64>, Option<usize>, Option<f64>);

/// The configurations: per link setting, every policy × cache × window.
fn plan(args: &PipelineBenchOptions) -> Vec<Config> {
    let links: Vec<Option<f64>> = if args.sweep.link_gbps > 0.0 {
        vec![None, Some(args.sweep.link_gbps)]
    } else {
        vec![None]
    };
    let mut out = Vec::new();
    for &link in &links {
        for &policy in &args.sweep.policies {
            match policy {
                Policy::AllOnDevice | Policy::HostOnly => out.push((policy, None, None, link)),
                Policy::Lru | Policy::Lfu => args
                    .sweep
                    .fractions
                    .iter()
                    .for_each(|&f| out.push((policy, Some(f), None, link))),
                Policy::Lookahead => {
                    for &f in &args.sweep.fractions {
                        args.sweep
                            .windows
                            .iter()
                            .for_each(|&w| out.push((policy, Some(f), Some(w), link)));
                    }
                }
            }
        }
    }
    out
}

/// Runs every configuration on `dev`, printing each as it completes.
pub fn run_pipeline_bench<D: Device>(
    dev: &D,
    args: &PipelineBenchOptions,
) -> Result<Vec<PipelineRow>, anyhow::Error> {
    check(args)?;
    let data = workload(args)?;
    if !args.json {
        println!(
            "{:<13} {:>6} {:>3} {:>6} {:>10} {:>7} {:>6} {:>7} {:>9} {:>9} {:>9}",
            "policy",
            "cache",
            "W",
            "link",
            "samples/s",
            "trainhit",
            "idle",
            "shrinks",
            "step ms",
            "busiest",
            "busy ms"
        );
    }
    let mut rows = Vec::new();
    for (policy, fraction, window, link) in plan(args) {
        let mut cfg = RunConfig {
            batch_size: args.workload.batch_size,
            steps: Some(args.steps),
            eval_every: 0,
            hotness_every: 0,
            seed: args.workload.seed,
            policy,
            precision: if policy == Policy::AllOnDevice {
                Precision::Fp32
            } else {
                args.precision
            },
            rounding: Rounding::Stochastic,
            cache_fraction: fraction.map(Fractions::One),
            lookahead: window.unwrap_or(1),
            link_gbps: link,
            ..Default::default()
        };
        cfg.model.dim = args.workload.dim;
        cfg.model.embedding_optimizer = Optimizer::Sgd;
        let mut snaps: Vec<Snapshot> = Vec::new();
        let summary = train(dev, &cfg, &data, &mut |s| {
            if s.step > args.warmup {
                snaps.push(s.clone());
            }
        })?;
        let n = snaps.len() as f64;
        let mut busy: BTreeMap<String, f64> = BTreeMap::new();
        let mut cycle = 0.0;
        for s in &snaps {
            for st in &s.stages {
                *busy.entry(st.stage.clone()).or_insert(0.0) += st.busy_s;
                if st.stage == "device" {
                    cycle += st.busy_s + st.waiting_s;
                }
            }
        }
        let (busiest, busiest_s) = busy
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (k.clone(), *v / n))
            .unwrap_or_default();
        let idle: f64 = snaps
            .iter()
            .map(|s| s.device_idle_fraction.unwrap_or(0.0))
            .sum::<f64>()
            / n;
        let row = PipelineRow {
            summary: TrainSummary {
                samples_per_sec: n * args.workload.batch_size as f64 / cycle.max(1e-12),
                device_idle_fraction: idle,
                ..summary
            },
            step_seconds_mean: cycle / n,
            busiest_stage: busiest,
            busiest_stage_seconds_mean: busiest_s,
            stage_busy_seconds_mean: busy.iter().map(|(k, v)| (k.clone(), v / n)).collect(),
        };
        print_row(&row, args.json)?;
        rows.push(row);
    }
    Ok(rows)
}

fn print_row(r: &PipelineRow, json: bool) -> Result<(), anyhow::Error> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let s = &r.summary;
    let link = s.link_gbps.map_or("-".into(), |g| format!("{g}G"));
    println!(
        "{:<13} {:>6} {:>3} {:>6} {:>10.0} {:>8.4} {:>6.3} {:>7} {:>9.2} {:>9} {:>9.2}{}",
        s.policy.name(),
        s.cache_fraction
            .map_or("-".into(), |c| format!("{:.0}%", 100.0 * c)),
        s.lookahead.map_or("-".into(), |w| w.to_string()),
        link,
        s.samples_per_sec,
        s.train_hit_rate,
        s.device_idle_fraction,
        s.window_shrinks.map_or("-".into(), |w| w.to_string()),
        r.step_seconds_mean * 1e3,
        r.busiest_stage,
        r.busiest_stage_seconds_mean * 1e3,
        s.link_gbps
            .map_or(String::new(), |g| format!("  (simulated link {g} GB/s)")),
    );
    Ok(())
}
