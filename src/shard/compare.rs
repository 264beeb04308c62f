//! Every planner on one workload and topology, through the simulator: what `rowflow shard plan`
//! reports (the flags themselves live in the binary, `src/cli/shard.rs`).

use super::baselines::make_plan_with;
use super::flexshard::Objective;
use super::plan::PlannerKind;
use super::profile::AccessProfile;
use super::sim::{PlanStats, SimOptions, simulate};
use super::topology::{TableSpec, Tier, Topology, memory_budget_bytes};
use super::{Plan, ShardError};
use crate::bounds::Min;
use crate::data::sequence::{LengthDistribution, SequenceGenerator, SequenceOptions};
use rayon::prelude::*;
use serde::Serialize;
use std::path::PathBuf;

/// The generator streams of profiling batches start here, far from the simulated steps'.
const PROFILE_STREAM: u64 = 1 << 48;

/// Options of `rowflow shard plan`. The defaults are the skewed sequence workload: 4 tables ×
/// 1,000,000 rows, D=64, Zipf α=1.05, mean length 100, 512 samples per device per step.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardPlanOptions {
    /// Hosts in the cluster.
    pub hosts: usize,
    /// Devices per host.
    pub devices_per_host: usize,
    /// One JSON line per planner instead of a table.
    pub json: bool,
    /// Per-device memory budget, as a multiple of an even share of all rows (≥ 1).
    pub memory_budget_factor: f64,
    /// Send one vector per distinct row per requester and step (every planner alike).
    pub dedup: bool,
    /// Write this planner's plan (see --save-planner) to a JSON file.
    pub save: Option<PathBuf>,
    /// The planner whose plan --save writes.
    pub save_planner: PlannerKind,
    /// What FlexShard minimises: all communication, or the all-to-alls only (the paper's
    /// traffic metric; the simulator still charges replica gradient sync).
    pub objective: Objective,
    /// Planners to compare.
    pub planners: Vec<PlannerKind>,
    /// Sequence tables.
    pub tables: usize,
    /// Rows per table.
    pub rows: u32,
    /// Embedding dimension (FP32 rows).
    pub dim: usize,
    /// Zipf exponent of row popularity (0: uniform, no skew).
    pub alpha: f64,
    /// The uniform workload: same as --alpha 0.
    pub uniform: bool,
    /// Mean sequence length.
    pub mean_length: f64,
    /// Distribution of sequence lengths.
    pub lengths: LengthDistribution,
    /// Samples each device draws per step.
    pub samples_per_device: usize,
    /// Steps simulated (figures are means per step).
    pub steps: usize,
    /// Steps of sample batches the access profile is estimated from (other batches than the
    /// simulated ones).
    pub profile_steps: usize,
    /// Seed of the workload.
    pub seed: u64,
    /// Intra-host bandwidth per device, GB/s.
    pub intra_host_gbps: f64,
    /// Intra-host latency per message, µs.
    pub intra_host_latency_us: f64,
    /// Inter-host bandwidth per device, GB/s.
    pub inter_host_gbps: f64,
    /// Inter-host latency per message, µs.
    pub inter_host_latency_us: f64,
    /// Device memory for embeddings, GiB (caps the budget; default: no cap).
    pub device_memory_gib: Option<f64>,
    /// Tables up to this many rows are profiled exactly; larger ones with a Count-Min sketch.
    pub exact_rows_limit: u32,
    /// Counters per row of a table's Count-Min sketch.
    pub sketch_width: usize,
    /// Heavy-hitter candidates kept per sketched table.
    pub heavy_rows: usize,
}

impl Default for ShardPlanOptions {
    fn default() -> Self {
        ShardPlanOptions {
            hosts: 8,
            devices_per_host: 8,
            json: false,
            memory_budget_factor: 1.5,
            dedup: false,
            save: None,
            save_planner: PlannerKind::FlexShard,
            objective: Objective::Total,
            planners: PlannerKind::ALL.to_vec(),
            tables: 4,
            rows: 1_000_000,
            dim: 64,
            alpha: 1.05,
            uniform: false,
            mean_length: 100.0,
            lengths: LengthDistribution::Uniform,
            samples_per_device: 512,
            steps: 4,
            profile_steps: 2,
            seed: 1,
            intra_host_gbps: 300.0,
            intra_host_latency_us: 2.0,
            inter_host_gbps: 25.0,
            inter_host_latency_us: 10.0,
            device_memory_gib: None,
            exact_rows_limit: 4_000_000,
            sketch_width: 1 << 20,
            heavy_rows: 1 << 18,
        }
    }
}

/// One planner's line of `rowflow shard plan --json`; figures are null when infeasible.
#[derive(Clone, Debug, Serialize)]
pub struct PlannerRow {
    /// The planner.
    pub planner: PlannerKind,
    /// Bytes between devices of one host per step (all-to-alls and gradient sync).
    pub intra_host_bytes: Option<f64>,
    /// Bytes between hosts per step (all-to-alls and gradient sync).
    pub inter_host_bytes: Option<f64>,
    /// Modelled communication seconds per step.
    pub comm_latency_s: Option<f64>,
    /// Bytes sent plus received per step by the busiest device.
    pub max_device_bytes: Option<f64>,
    /// Bytes sent plus received per step per device, on average.
    pub mean_device_bytes: Option<f64>,
    /// Busiest over mean device bytes.
    pub load_imbalance: Option<f64>,
    /// False when the planner's layout does not fit the budget.
    pub feasible: bool,
    /// Why it does not fit (null when it does).
    pub reason: Option<String>,
    /// Embedding bytes on the fullest device.
    pub max_memory_bytes: Option<u64>,
    /// The per-device budget.
    pub memory_budget_bytes: u64,
    /// The budget factor.
    pub memory_budget_factor: f64,
    /// Hosts.
    pub hosts: usize,
    /// Devices per host.
    pub devices_per_host: usize,
    /// Whether lookups were deduplicated.
    pub dedup: bool,
    /// Zipf exponent of the workload (0: uniform).
    pub alpha: f64,
    /// Steps simulated.
    pub steps: usize,
    /// Everything the simulator measured (null when infeasible).
    pub detail: Option<PlanStats>,
}

/// `rowflow shard plan`: [`plan_and_simulate`], then a table or JSON lines on stdout.
pub fn run_shard_plan(args: &ShardPlanOptions) -> Result<Vec<PlannerRow>, ShardError> {
    let rows = plan_and_simulate(args)?;
    print_rows(&rows, args.json);
    Ok(rows)
}

/// The topology, tables and sequence generator `args` describe (what `rowflow shard plan`
/// simulates and `rowflow shard exchange` runs).
pub fn workload(
    args: &ShardPlanOptions,
) -> Result<(Topology, Vec<TableSpec>, SequenceGenerator), ShardError> {
    let alpha = if args.uniform { 0.0 } else { args.alpha };
    let topo = Topology::new(
        args.hosts,
        args.devices_per_host,
        Tier {
            gbps: args.intra_host_gbps,
            latency_s: args.intra_host_latency_us * 1e-6,
        },
        Tier {
            gbps: args.inter_host_gbps,
            latency_s: args.inter_host_latency_us * 1e-6,
        },
        match args.device_memory_gib {
            Some(g) if !Min::Above(0.0).admits(g) => {
                return Err(ShardError::Topology(format!(
                    "--device-memory-gib {g} must be a number above 0"
                )));
            }
            Some(g) => Some((g * (1u64 << 30) as f64) as u64),
            None => None,
        },
    )?;
    if args.samples_per_device == 0 || args.steps == 0 || args.profile_steps == 0 {
        return Err(ShardError::Workload(
            "--samples-per-device, --steps and --profile-steps must each be at least 1".into(),
        ));
    }
    let tables = vec![
        TableSpec {
            rows: args.rows,
            dim: args.dim,
        };
        args.tables
    ];
    let generator = SequenceGenerator::new(
        &SequenceOptions {
            table_rows: vec![args.rows; args.tables],
            zipf_alpha: alpha,
            mean_length: args.mean_length,
            lengths: args.lengths,
        },
        args.seed,
    )
    .map_err(|e| ShardError::Workload(e.to_string()))?;
    Ok((topo, tables, generator))
}

/// The simulator's replay of `args`' steps (streams from 0, as `rowflow shard plan` runs it).
pub fn sim_options(args: &ShardPlanOptions) -> SimOptions {
    SimOptions {
        samples_per_device: args.samples_per_device,
        steps: args.steps,
        dedup: args.dedup,
        first_stream: 0,
    }
}

/// Builds the topology, tables, profile and plans of `args`, simulates them and writes
/// `--save`; one row per planner, infeasible ones included.
pub fn plan_and_simulate(args: &ShardPlanOptions) -> Result<Vec<PlannerRow>, ShardError> {
    let (topo, tables, generator) = workload(args)?;
    let budget = memory_budget_bytes(&topo, &tables, args.memory_budget_factor)?;
    let profile = profile_workload(
        &generator,
        topo.devices(),
        &ProfileOptions {
            samples_per_device: args.samples_per_device,
            steps: args.profile_steps,
            exact_rows_limit: args.exact_rows_limit,
            sketch_width: args.sketch_width,
            heavy_rows: args.heavy_rows,
        },
    )?;
    let mut plans: Vec<(PlannerKind, Result<Plan, ShardError>)> = Vec::new();
    for &kind in &args.planners {
        let plan = make_plan_with(kind, &topo, &tables, budget, Some(&profile), args.objective);
        match plan {
            Err(e @ ShardError::Infeasible { .. }) => plans.push((kind, Err(e))),
            other => plans.push((kind, Ok(other?))),
        }
    }
    let feasible: Vec<&Plan> = plans.iter().filter_map(|p| p.1.as_ref().ok()).collect();
    let mut stats = simulate(&feasible, &topo, &generator, &sim_options(args))?.into_iter();
    let mut rows = Vec::new();
    for (kind, plan) in &plans {
        let s = plan.as_ref().ok().and_then(|_| stats.next());
        rows.push(PlannerRow {
            planner: *kind,
            intra_host_bytes: s.as_ref().map(|s| s.intra_host_bytes),
            inter_host_bytes: s.as_ref().map(|s| s.inter_host_bytes),
            comm_latency_s: s.as_ref().map(|s| s.comm_latency_s),
            max_device_bytes: s.as_ref().map(|s| s.max_device_bytes),
            mean_device_bytes: s.as_ref().map(|s| s.mean_device_bytes),
            load_imbalance: s.as_ref().and_then(|s| s.load_imbalance),
            feasible: s.is_some(),
            reason: plan.as_ref().err().map(|e| e.to_string()),
            max_memory_bytes: s.as_ref().map(|s| s.max_memory_bytes),
            memory_budget_bytes: budget,
            memory_budget_factor: args.memory_budget_factor,
            hosts: args.hosts,
            devices_per_host: args.devices_per_host,
            dedup: args.dedup,
            alpha: if args.uniform { 0.0 } else { args.alpha },
            steps: args.steps,
            detail: s,
        });
    }
    if let Some(path) = &args.save {
        match plans.iter().find(|p| p.0 == args.save_planner) {
            Some((_, Ok(plan))) => plan.save(path)?,
            Some((_, Err(e))) => {
                return Err(ShardError::Workload(format!(
                    "cannot save the {} plan: {e}",
                    args.save_planner.name()
                )));
            }
            None => {
                return Err(ShardError::Workload(format!(
                    "--save-planner {} is not among --planners",
                    args.save_planner.name()
                )));
            }
        }
    }
    Ok(rows)
}

/// How sample batches are profiled.
#[derive(Clone, Copy, Debug)]
pub struct ProfileOptions {
    /// Samples each device draws per profiled step.
    pub samples_per_device: usize,
    /// Steps profiled.
    pub steps: usize,
    /// Tables up to this many rows are counted exactly.
    pub exact_rows_limit: u32,
    /// Count-Min counters per sketch row (larger tables).
    pub sketch_width: usize,
    /// Heavy-hitter candidates per sketched table.
    pub heavy_rows: usize,
}

/// The access profile of `opts.steps` steps of `generator` batches on `devices` devices, drawn
/// from other generator streams than the simulated steps' (the planner sees past data).
pub fn profile_workload(
    generator: &SequenceGenerator,
    devices: usize,
    opts: &ProfileOptions,
) -> Result<AccessProfile, ShardError> {
    let mut profile = AccessProfile::new(
        &generator.options().table_rows,
        opts.exact_rows_limit,
        opts.sketch_width,
        opts.heavy_rows,
    );
    for step in 0..opts.steps {
        let first = PROFILE_STREAM + (step * devices) as u64;
        let batches: Vec<_> = (0..devices)
            .into_par_iter()
            .map(|d| generator.batch(first + d as u64, opts.samples_per_device))
            .collect();
        for batch in &batches {
            for (t, bags) in batch.iter().enumerate() {
                profile.record(t, &bags.indices)?;
            }
        }
        profile.finish_step();
    }
    Ok(profile)
}

fn print_rows(rows: &[PlannerRow], json: bool) {
    if json {
        for r in rows {
            match serde_json::to_string(r) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("cannot encode {}: {e}", r.planner.name()),
            }
        }
        return;
    }
    println!(
        "{:<15} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>10} {:>10}",
        "planner",
        "inter MB",
        "intra MB",
        "comm ms",
        "max dev MB",
        "mean MB",
        "imbalance",
        "max mem MB",
        "budget MB"
    );
    let mb = |v: f64| format!("{:.1}", v / 1e6);
    for r in rows {
        let Some(s) = &r.detail else {
            println!(
                "{:<15} infeasible: {}",
                r.planner.name(),
                r.reason.as_deref().unwrap_or("")
            );
            continue;
        };
        println!(
            "{:<15} {:>10} {:>10} {:>10.3} {:>10} {:>10} {:>9.2} {:>10} {:>10}",
            r.planner.name(),
            mb(s.inter_host_bytes),
            mb(s.intra_host_bytes),
            s.comm_latency_s * 1e3,
            mb(s.max_device_bytes),
            mb(s.mean_device_bytes),
            s.load_imbalance.unwrap_or(f64::NAN),
            mb(s.max_memory_bytes as f64),
            mb(r.memory_budget_bytes as f64)
        );
    }
}
