//! `rowflow shard plan`: flags for the sharding planners and the traffic simulator. Defaults come
//! from the library's [`ShardPlanOptions`].

use super::{choice, overlay};
use anyhow::Result;
use clap::{Args, Subcommand};
use rowflow::data::sequence::LengthDistribution;
use rowflow::shard::compare::{ShardPlanOptions, run_shard_plan};
use rowflow::shard::{Objective, PlannerKind};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ShardCommand {
    /// Every planner's bytes per tier, modelled latency, load and memory on one workload.
    Plan(ShardPlanArgs),
    /// Runs a saved plan's exchange for real (`mpirun -np HOSTS×DEVICES`, feature `mpi`) on the
    /// same workload and puts the bytes sent next to the simulator's prediction.
    Exchange(ShardExchangeArgs),
}

/// Runs the shard subcommand.
pub fn run(which: ShardCommand) -> Result<()> {
    match which {
        ShardCommand::Plan(a) => {
            run_shard_plan(&overlay(&ShardPlanOptions::default(), &a)?)?;
        }
        ShardCommand::Exchange(a) => exchange(a)?,
    };
    Ok(())
}

/// `rowflow shard exchange`: the workload flags of `shard plan` (same defaults) and a plan.
#[derive(Args, Serialize)]
pub struct ShardExchangeArgs {
    /// The plan to run, saved by `rowflow shard plan --save plan.json` with the same flags.
    #[arg(long, value_name = "plan.json")]
    #[serde(skip)]
    plan: PathBuf,
    /// Seconds a rank waits in one collective before ending the job.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    #[serde(skip)]
    comm_timeout_s: f64,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Hosts in the cluster.
    #[arg(long, default_value_t = d().hosts)]
    hosts: usize,
    /// Devices per host.
    #[arg(long, default_value_t = d().devices_per_host)]
    devices_per_host: usize,
    /// Sequence tables.
    #[arg(long, default_value_t = d().tables)]
    tables: usize,
    /// Rows per table.
    #[arg(long, default_value_t = d().rows)]
    rows: u32,
    /// Embedding dimension (FP32 rows).
    #[arg(long, default_value_t = d().dim)]
    dim: usize,
    /// Zipf exponent of row popularity (0: uniform, no skew).
    #[arg(long, default_value_t = d().alpha)]
    alpha: f64,
    /// The uniform workload: same as --alpha 0.
    #[arg(long)]
    uniform: bool,
    /// Mean sequence length.
    #[arg(long, default_value_t = d().mean_length)]
    mean_length: f64,
    /// Distribution of sequence lengths.
    #[arg(long, value_parser = choice::<LengthDistribution>(), default_value_t = d().lengths)]
    lengths: LengthDistribution,
    /// Samples each device draws per step.
    #[arg(long, default_value_t = d().samples_per_device)]
    samples_per_device: usize,
    /// Steps run (figures are means per step).
    #[arg(long, default_value_t = d().steps)]
    steps: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = d().seed)]
    seed: u64,
}

fn exchange(a: ShardExchangeArgs) -> Result<()> {
    let opts = overlay(&ShardPlanOptions::default(), &a)?;
    if !(a.comm_timeout_s.is_finite() && a.comm_timeout_s >= 1.0) {
        anyhow::bail!("--comm-timeout-s {} must be at least 1", a.comm_timeout_s);
    }
    let plan = rowflow::shard::Plan::load(&a.plan)?;
    let timeout = std::time::Duration::from_secs_f64(a.comm_timeout_s);
    let coll = super::distributed::engine("mpi", timeout, opts.devices_per_host)?;
    let report = match rowflow::dist::measure::measure_exchange(coll.as_ref(), &opts, &plan) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "error: rank {}: {}",
                coll.rank(),
                rowflow::report::describe(&e)
            );
            coll.abort(1)
        }
    };
    let Some(r) = report else { return Ok(()) };
    if opts.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "{} plan on {} hosts × {} devices, {} steps of {} samples per device: bytes per step",
        r.planner.name(),
        r.hosts,
        r.devices_per_host,
        r.steps,
        r.samples_per_device
    );
    println!(
        "{:>10} {:>14} {:>14} {:>12} {:>12} {:>14} {:>14}",
        "tier",
        "a2a measured",
        "a2a predicted",
        "ids",
        "sync keys",
        "sync ring(B)",
        "sync predicted"
    );
    for (name, t) in [("intra-host", &r.intra_host), ("inter-host", &r.inter_host)] {
        println!(
            "{name:>10} {:>14.0} {:>14.0} {:>12.0} {:>12.0} {:>14.0} {:>14.0}",
            t.measured_all_to_all,
            t.predicted_all_to_all,
            t.measured_ids,
            t.measured_sync_keys,
            t.ring_model_sync,
            t.predicted_sync
        );
    }
    println!(
        "all-to-alls {} the simulator's; replica payload B = {:.0} bytes per rank per step",
        if r.all_to_all_exact {
            "equal"
        } else {
            "DIFFER from"
        },
        r.sync_payload
    );
    if !r.all_to_all_exact {
        anyhow::bail!("the measured all-to-all bytes differ from the simulator's prediction");
    }
    Ok(())
}

fn d() -> ShardPlanOptions {
    ShardPlanOptions::default()
}

/// `rowflow shard plan`. The defaults are the skewed sequence workload: 4 tables × 1,000,000
/// rows, D=64, Zipf α=1.05, mean length 100, 512 samples per device per step.
#[derive(Args, Serialize)]
pub struct ShardPlanArgs {
    /// Hosts in the cluster.
    #[arg(long, default_value_t = d().hosts)]
    hosts: usize,
    /// Devices per host.
    #[arg(long, default_value_t = d().devices_per_host)]
    devices_per_host: usize,
    /// One JSON line per planner instead of a table.
    #[arg(long)]
    json: bool,
    /// Per-device memory budget, as a multiple of an even share of all rows (≥ 1).
    #[arg(long, default_value_t = d().memory_budget_factor)]
    memory_budget_factor: f64,
    /// Send one vector per distinct row per requester and step (every planner alike).
    #[arg(long)]
    dedup: bool,
    /// Write this planner's plan (see --save-planner) to a JSON file.
    #[arg(long, value_name = "FILE.json")]
    save: Option<PathBuf>,
    /// The planner whose plan --save writes.
    #[arg(long, value_parser = choice::<PlannerKind>(), default_value_t = d().save_planner)]
    save_planner: PlannerKind,
    /// What FlexShard minimises: all communication, or the all-to-alls only (the paper's
    /// traffic metric; the simulator still charges replica gradient sync).
    #[arg(long, value_parser = choice::<Objective>(), default_value_t = d().objective)]
    objective: Objective,
    /// Planners to compare.
    #[arg(long, value_parser = choice::<PlannerKind>(), value_delimiter = ',',
          default_values_t = d().planners)]
    planners: Vec<PlannerKind>,
    /// Sequence tables.
    #[arg(long, default_value_t = d().tables)]
    tables: usize,
    /// Rows per table.
    #[arg(long, default_value_t = d().rows)]
    rows: u32,
    /// Embedding dimension (FP32 rows).
    #[arg(long, default_value_t = d().dim)]
    dim: usize,
    /// Zipf exponent of row popularity (0: uniform, no skew).
    #[arg(long, default_value_t = d().alpha)]
    alpha: f64,
    /// The uniform workload: same as --alpha 0.
    #[arg(long)]
    uniform: bool,
    /// Mean sequence length.
    #[arg(long, default_value_t = d().mean_length)]
    mean_length: f64,
    /// Distribution of sequence lengths.
    #[arg(long, value_parser = choice::<LengthDistribution>(), default_value_t = d().lengths)]
    lengths: LengthDistribution,
    /// Samples each device draws per step.
    #[arg(long, default_value_t = d().samples_per_device)]
    samples_per_device: usize,
    /// Steps simulated (figures are means per step).
    #[arg(long, default_value_t = d().steps)]
    steps: usize,
    /// Steps of sample batches the access profile is estimated from (other batches than the
    /// simulated ones).
    #[arg(long, default_value_t = d().profile_steps)]
    profile_steps: usize,
    /// Seed of the workload.
    #[arg(long, default_value_t = d().seed)]
    seed: u64,
    /// Intra-host bandwidth per device, GB/s.
    #[arg(long, default_value_t = d().intra_host_gbps)]
    intra_host_gbps: f64,
    /// Intra-host latency per message, µs.
    #[arg(long, default_value_t = d().intra_host_latency_us)]
    intra_host_latency_us: f64,
    /// Inter-host bandwidth per device, GB/s.
    #[arg(long, default_value_t = d().inter_host_gbps)]
    inter_host_gbps: f64,
    /// Inter-host latency per message, µs.
    #[arg(long, default_value_t = d().inter_host_latency_us)]
    inter_host_latency_us: f64,
    /// Device memory for embeddings, GiB (caps the budget; default: no cap).
    #[arg(long)]
    device_memory_gib: Option<f64>,
    /// Tables up to this many rows are profiled exactly; larger ones with a Count-Min sketch.
    #[arg(long, default_value_t = d().exact_rows_limit)]
    exact_rows_limit: u32,
    /// Counters per row of a table's Count-Min sketch.
    #[arg(long, default_value_t = d().sketch_width)]
    sketch_width: usize,
    /// Heavy-hitter candidates kept per sketched table.
    #[arg(long, default_value_t = d().heavy_rows)]
    heavy_rows: usize,
}
