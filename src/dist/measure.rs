//! `rowflow shard exchange`: a saved plan's exchange run for real on the sequence workload of
//! `rowflow shard plan`, one rank per device, and the bytes each rank handed the engine put
//! next to the simulator's prediction for the same plan and batches.
//!
//! Rank `d` of step `s` looks up the generator's batch of stream `s · N + d`, the simulator's
//! device `d` of step `s`. What compares exactly: the forward and backward all-to-alls (one
//! row per lookup each way, per tier). What the simulator leaves out, reported beside it: the
//! ids (12 bytes per lookup: table, row, bag length) and the replicated rows' keys. Replica
//! sync: the simulator charges a hierarchical ring all-reduce of the touched replicated rows
//! (`2(G−1)/G · B` intra-host and `2(H−1)/H · B/G` inter-host per device); a rank hands MPI
//! the same payload `B` (the union of touched rows), and MPI picks its own algorithm, so the
//! report gives the payload and the ring model's bytes for it.

use super::collective::Collective;
use super::exchange::Exchange;
use super::shard::ShardStore;
use super::traffic::{TierBytes, TrafficReport};
use super::{DistError, fnv1a};
use crate::model::ModelConfig;
use crate::shard::compare::{ShardPlanOptions, sim_options, workload};
use crate::shard::plan::Layout;
use crate::shard::{Plan, PlannerKind, Router, simulate};
use serde::Serialize;

/// Measured and predicted bytes per step of one tier.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TierComparison {
    /// Forward + backward all-to-all bytes the ranks sent, per step.
    pub measured_all_to_all: f64,
    /// The simulator's forward + backward all-to-all bytes, per step.
    pub predicted_all_to_all: f64,
    /// Id bytes the ranks sent, per step (the simulator does not model ids).
    pub measured_ids: f64,
    /// Replica keys the ranks sent (all-to-all), per step (not modelled).
    pub measured_sync_keys: f64,
    /// The ring all-reduce model's bytes for the measured replica payload, per step.
    pub ring_model_sync: f64,
    /// The simulator's replica sync bytes, per step.
    pub predicted_sync: f64,
}

/// What `rowflow shard exchange` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ExchangeReport {
    /// The plan's planner.
    pub planner: PlannerKind,
    /// Hosts × devices per host (= ranks).
    pub hosts: usize,
    /// Devices per host.
    pub devices_per_host: usize,
    /// Steps run.
    pub steps: usize,
    /// Samples each rank drew per step.
    pub samples_per_device: usize,
    /// Per tier (`intra_host`, `inter_host`).
    pub intra_host: TierComparison,
    /// Between hosts.
    pub inter_host: TierComparison,
    /// Replica gradient bytes each rank handed the engine's all-reduce, per step (`B`).
    pub sync_payload: f64,
    /// True when every all-to-all figure equals the simulator's.
    pub all_to_all_exact: bool,
    /// Every rank's counters.
    pub measured: TrafficReport,
}

/// Runs `args.steps` steps of the sequence workload through `plan`'s exchange on `coll` (one
/// rank per device of the plan) and compares with the simulator; the report on rank 0.
pub fn measure_exchange<C: Collective + ?Sized>(
    coll: &C,
    args: &ShardPlanOptions,
    plan: &Plan,
) -> Result<Option<ExchangeReport>, DistError> {
    let (me, n) = (coll.rank(), coll.size());
    let (topo, tables, generator) = workload(args)?;
    if topo.devices() != n {
        return Err(DistError::Config(format!(
            "--hosts {} × --devices-per-host {} is {} devices, but {n} rank{} run{}: launch \
             mpirun -np {}",
            topo.hosts,
            topo.devices_per_host,
            topo.devices(),
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" },
            topo.devices()
        )));
    }
    let hash = fnv1a(
        serde_json::to_string(&(args, plan))
            .unwrap_or_default()
            .as_bytes(),
    );
    let hashes = super::CollectiveExt::all_gather_u64(coll, hash)?;
    if hashes.iter().any(|&h| h != hash) {
        return Err(DistError::Config(
            "the ranks run other flags or plans: launch every rank with the same".into(),
        ));
    }
    let router = Router::new(plan).map_err(DistError::Config)?;
    let table_rows: Vec<u32> = tables.iter().map(|t| t.rows).collect();
    let model = ModelConfig {
        dim: args.dim,
        ..ModelConfig::default()
    };
    let mut store = ShardStore::new(&router, me, &table_rows, &model, 0)?;
    let mut exch = Exchange::new(coll, router, &table_rows, args.devices_per_host);
    let opts = sim_options(args);
    for s in 0..opts.steps {
        let stream = opts.first_stream + (s * n + me) as u64;
        let bags = generator.batch(stream, opts.samples_per_device);
        let vectors = exch.forward(&store, &bags)?;
        // The gradients' values do not change a byte: send the vectors back, at rate 0.
        exch.backward(
            &mut store,
            |t, j| &vectors[t][j * args.dim..][..args.dim],
            model.pooling,
            0.0,
        )?;
    }
    let Some(per_rank) = exch.traffic().gather(coll)? else {
        return Ok(None);
    };
    let report = TrafficReport::new(per_rank, args.devices_per_host, opts.steps as u64);
    let predicted = simulate(&[plan], &topo, &generator, &opts)?.remove(0);
    let k = 1.0 / opts.steps as f64;
    let tier = |p: &str| report.tiers.get(p).copied().unwrap_or(TierBytes::default());
    let (fwd, bwd, ids, keys) = (tier("forward"), tier("backward"), tier("ids"), tier("sync"));
    let payload = report.all_reduce.get("sync").copied().unwrap_or(0) as f64 * k / n as f64;
    let (g, h) = (topo.devices_per_host as f64, topo.hosts as f64);
    let ring = |p: f64, b: f64| 2.0 * (p - 1.0) / p * b;
    let host_replicas = plan.tables.iter().any(|t| match &t.layout {
        Layout::Rows(l) => !l.host_replicated_rows.is_empty(),
        _ => false,
    });
    // The ring model of global replicas (host replicas are synced over their holders only).
    let (ring_intra, ring_inter) = match host_replicas {
        false => (n as f64 * ring(g, payload), n as f64 * ring(h, payload / g)),
        true => (f64::NAN, f64::NAN),
    };
    let intra_host = TierComparison {
        measured_all_to_all: (fwd.intra_host + bwd.intra_host) as f64 * k,
        predicted_all_to_all: predicted.intra_host_all_to_all_bytes,
        measured_ids: ids.intra_host as f64 * k,
        measured_sync_keys: keys.intra_host as f64 * k,
        ring_model_sync: ring_intra,
        predicted_sync: predicted.intra_host_sync_bytes,
    };
    let inter_host = TierComparison {
        measured_all_to_all: (fwd.inter_host + bwd.inter_host) as f64 * k,
        predicted_all_to_all: predicted.inter_host_all_to_all_bytes,
        measured_ids: ids.inter_host as f64 * k,
        measured_sync_keys: keys.inter_host as f64 * k,
        ring_model_sync: ring_inter,
        predicted_sync: predicted.inter_host_sync_bytes,
    };
    let exact = |t: &TierComparison| t.measured_all_to_all == t.predicted_all_to_all;
    Ok(Some(ExchangeReport {
        planner: plan.planner,
        hosts: topo.hosts,
        devices_per_host: topo.devices_per_host,
        steps: opts.steps,
        samples_per_device: opts.samples_per_device,
        all_to_all_exact: exact(&intra_host) && exact(&inter_host),
        intra_host,
        inter_host,
        sync_payload: payload,
        measured: report,
    }))
}
