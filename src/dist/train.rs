//! The distributed training loop: a rank's slice of each global batch through the exchange and
//! the dense layers, the dense gradients all-reduced; evaluation and checkpoints on rank 0.

use super::collective::{Collective, CollectiveExt};
use super::exchange::Exchange;
use super::finish::{evaluate, same_dense_weights, save};
use super::shard::ShardStore;
use super::step::{Run, slices};
use super::traffic::TrafficReport;
use super::watchdog::Fault;
use super::{DistError, fnv1a};
use crate::config::RunConfig;
use crate::data::Schema;
use crate::device::Device;
use crate::embedding::{Placement, Policy};
use crate::model::Dlrm;
use crate::rng::Stream;
use crate::shard::{Plan, PlannerKind, Router, TableSpec, Topology, make_plan};
use crate::train::{open_dataset, planned_steps};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// How a distributed run shards its tables.
#[derive(Clone, Debug)]
pub struct DistOptions {
    /// The baseline layout when no plan file is given (`row-wise` or `table-wise`).
    pub sharding: PlannerKind,
    /// A plan saved by `rowflow shard plan --save` (wins over `sharding`).
    pub shard_plan: Option<PathBuf>,
    /// Ranks per host (maps ranks to network tiers).
    pub devices_per_host: usize,
    /// A failure to inject (tests of the watchdog).
    pub fault: Option<Fault>,
}

/// What rank 0 reports of a distributed run.
#[derive(Clone, Debug, Serialize)]
pub struct DistSummary {
    /// Ranks.
    pub ranks: usize,
    /// The collective engine.
    pub engine: &'static str,
    /// The plan's planner.
    pub sharding: PlannerKind,
    /// Steps run.
    pub steps: u64,
    /// Global batch size.
    pub batch_size: usize,
    /// Mean loss of the last step's global batch.
    pub final_loss: f64,
    /// AUC on the test split at the end.
    pub test_auc: Option<f64>,
    /// Log loss on the test split at the end.
    pub test_logloss: Option<f64>,
    /// Seconds of the training loop.
    pub train_seconds: f64,
    /// Global samples per second over the loop.
    pub samples_per_sec: f64,
    /// Embedding bytes each rank holds.
    pub shard_bytes: Vec<u64>,
    /// Bytes every rank handed the engine.
    pub traffic: TrafficReport,
}

/// The plan of a run of `n` ranks over tables `specs`.
fn plan_for(opts: &DistOptions, n: usize, specs: &[TableSpec]) -> Result<Plan, DistError> {
    let g = opts.devices_per_host.max(1);
    if n % g != 0 {
        return Err(DistError::Config(format!(
            "{n} ranks do not fill hosts of --devices-per-host {g}: launch a multiple of {g}"
        )));
    }
    let plan = match &opts.shard_plan {
        Some(path) => Plan::load(path)?,
        None => {
            if !matches!(opts.sharding, PlannerKind::RowWise | PlannerKind::TableWise) {
                return Err(DistError::Config(format!(
                    "--sharding {} needs a plan: save one with `rowflow shard plan --save \
                     plan.json` and pass --shard-plan plan.json",
                    opts.sharding.name()
                )));
            }
            let topo = Topology::with_default_links(n / g, g)?;
            make_plan(opts.sharding, &topo, specs, u64::MAX / 4, None)?
        }
    };
    if plan.hosts * plan.devices_per_host != n || plan.devices_per_host != g {
        return Err(DistError::Config(format!(
            "the plan is for {} hosts × {} devices, but this run has {n} rank{} with \
             --devices-per-host {g}",
            plan.hosts,
            plan.devices_per_host,
            if n == 1 { "" } else { "s" }
        )));
    }
    for (t, (tp, s)) in plan.tables.iter().zip(specs).enumerate() {
        if tp.rows != s.rows || tp.dim != s.dim {
            return Err(DistError::Config(format!(
                "the plan's table {t} has {} rows of {} values; the model's has {} of {}",
                tp.rows, tp.dim, s.rows, s.dim
            )));
        }
    }
    if plan.tables.len() != specs.len() {
        return Err(DistError::Config(format!(
            "the plan has {} tables; the data has {}",
            plan.tables.len(),
            specs.len()
        )));
    }
    Ok(plan)
}

/// Refuses settings a distributed run cannot honour, naming the flag.
fn check_settings(cfg: &RunConfig) -> Result<(), DistError> {
    let refuse = |m: &str| Err(DistError::Config(m.to_string()));
    if cfg.policy != Policy::AllOnDevice {
        return refuse(
            "--distributed keeps each rank's shard in its host memory; cached placements of a \
             shard (--policy) are not supported yet: drop --policy",
        );
    }
    if cfg.resume.is_some() {
        return refuse("--distributed cannot --resume yet: train single-process to resume");
    }
    Ok(())
}

/// The schema version of the distributed telemetry's lines.
pub const DIST_TELEMETRY_SCHEMA: u32 = 1;

/// One step of a distributed run, as rank 0 reports it (one `--telemetry` JSON line; its own
/// schema, `"kind": "distributed"`, not the single-process snapshot's).
#[derive(Clone, Debug, Serialize)]
pub struct DistStep {
    /// Always [`DIST_TELEMETRY_SCHEMA`].
    pub schema: u32,
    /// Always `distributed`.
    pub kind: &'static str,
    /// 1-based step number.
    pub step: u64,
    /// Global samples consumed so far.
    pub samples: u64,
    /// Seconds since training started (evaluations included).
    pub elapsed_s: f64,
    /// Seconds this step took on rank 0 (exchanges included).
    pub step_s: f64,
    /// Global samples per second so far (training time only).
    pub samples_per_sec: f64,
    /// Mean loss of this step's global batch.
    pub loss: f64,
    /// Test AUC when this step evaluated, else `null`.
    pub test_auc: Option<f64>,
    /// Test log loss when this step evaluated, else `null`.
    pub test_logloss: Option<f64>,
    /// Every rank's bytes so far (`null` without `--telemetry`, which gathers them each step).
    pub traffic: Option<TrafficReport>,
}

/// Trains `cfg` as one rank of `coll`, the dense layers on `dev`; `on_step` runs on rank 0
/// after each step. Returns the summary on rank 0 (`None` elsewhere).
pub fn train_distributed<D: Device, C: Collective + ?Sized>(
    dev: &D,
    coll: &C,
    cfg: &RunConfig,
    opts: &DistOptions,
    on_step: &mut dyn FnMut(&DistStep),
) -> Result<Option<DistSummary>, DistError> {
    let (me, n) = (coll.rank(), coll.size());
    cfg.validate().map_err(crate::train::TrainError::from)?;
    check_settings(cfg)?;
    let data = open_dataset(cfg)?;
    let schema = data.schema().clone();
    let tables = schema.table_rows.len();
    let layout = cfg.model.layout(tables)?;
    if !layout.tables_only() {
        return Err(DistError::Config(
            "--distributed shards tables; DHE features (--representation dhe|hybrid|select) \
             are not supported yet"
                .into(),
        ));
    }
    let dim = cfg.model.dim;
    let specs: Vec<TableSpec> = schema
        .table_rows
        .iter()
        .map(|&rows| TableSpec { rows, dim })
        .collect();
    let plan = plan_for(opts, n, &specs)?;
    Fault::strike(opts.fault, me, 0);
    // Every rank must run the same settings and plan: compare a hash of both.
    let mut text = serde_json::to_string(cfg).unwrap_or_default();
    text += &serde_json::to_string(&plan).unwrap_or_default();
    let hashes = coll.all_gather_u64(fnv1a(text.as_bytes()))?;
    let odd: Vec<usize> = (0..n).filter(|&r| hashes[r] != hashes[0]).collect();
    if !odd.is_empty() {
        return Err(DistError::Config(format!(
            "ranks {odd:?} run other settings or another plan than rank 0: launch every rank \
             with the same flags, config and plan file"
        )));
    }
    let router = Router::new(&plan).map_err(DistError::Config)?;
    let pooling = cfg.model.pooling;
    let store = ShardStore::new(
        &router,
        me,
        &schema.table_rows,
        &cfg.model,
        Stream::EmbeddingInit.key(cfg.seed),
    )?;
    let steps = planned_steps(cfg, data.train_samples())?;
    let b = cfg.batch_size;
    let capacity = b.div_ceil(n).max(cfg.eval_batch_size.div_ceil(n)).max(1);
    // The dense layers only: the model's own tables are one row each and never used.
    let tiny = Schema {
        num_dense: schema.num_dense,
        table_rows: vec![1; tables],
    };
    let model = Dlrm::new(
        dev,
        &cfg.model,
        &tiny,
        Placement::all_on_device(),
        capacity,
        cfg.seed,
    )?;
    let (v, tv) = (model.vectors(), layout.table_vectors.clone());
    let exch = Exchange::new(coll, router, &schema.table_rows, opts.devices_per_host);
    let stream = data.open_train()?;
    let mut run = Run {
        coll,
        model,
        store,
        exch,
        pooling,
        tables_vec: (v, tv),
        emb_lr: cfg.model.embedding_lr.unwrap_or(cfg.lr),
        lr: cfg.lr,
        grads: Vec::new(),
    };
    let mut final_loss = f64::NAN;
    let (mut test_auc, mut test_logloss) = (None, None);
    let (t0, mut eval_s) = (Instant::now(), 0.0);
    let mut trained = run.exch.traffic().clone();
    std::thread::scope(|scope| -> Result<(), DistError> {
        let batches = slices(scope, stream, steps, b, (me, n), (schema.num_dense, tables));
        for step in 1..=steps {
            Fault::strike(opts.fault, me, step);
            let t = Instant::now();
            let (local, global_len) = batches
                .recv()
                .map_err(|_| DistError::Engine("the batch loader thread ended early".into()))??;
            final_loss = run.step(dev, &local, global_len)?;
            let step_s = t.elapsed().as_secs_f64();
            trained = run.exch.traffic().clone();
            let mut record = DistStep {
                schema: DIST_TELEMETRY_SCHEMA,
                kind: "distributed",
                step,
                samples: step * b as u64,
                elapsed_s: t0.elapsed().as_secs_f64(),
                step_s,
                samples_per_sec: (step * b as u64) as f64 / (t0.elapsed().as_secs_f64() - eval_s),
                loss: final_loss,
                test_auc: None,
                test_logloss: None,
                traffic: None,
            };
            if step == steps || (cfg.eval_every > 0 && step % cfg.eval_every == 0) {
                let te = Instant::now();
                // The traffic report covers training: the evaluation's exchanges are not counted.
                let (ta, tl) = evaluate(dev, &mut run, data.test(), cfg)?;
                run.exch.restore_traffic(trained.clone());
                (test_auc, test_logloss) = (ta, tl);
                (record.test_auc, record.test_logloss) = (ta, tl);
                eval_s += te.elapsed().as_secs_f64();
            }
            if cfg.telemetry.is_some() {
                record.traffic = trained
                    .gather(coll)?
                    .map(|p| TrafficReport::new(p, opts.devices_per_host, step));
            }
            if me == 0 {
                on_step(&record);
            }
            if let (Some(dir), e) = (&cfg.save, cfg.save_every)
                && e > 0
                && step % e == 0
                && step < steps
            {
                save(dev, &run, cfg, &schema.table_rows, dir, step)?;
            }
        }
        Ok(())
    })?;
    let train_seconds = t0.elapsed().as_secs_f64() - eval_s;
    same_dense_weights(dev, coll, &run.model)?;
    if let Some(dir) = &cfg.save {
        save(dev, &run, cfg, &schema.table_rows, dir, steps)?;
    }
    let shard_bytes = coll.all_gather_u64(run.store.bytes())?;
    let per_rank = trained.gather(coll)?;
    Ok(per_rank.map(|per_rank| DistSummary {
        ranks: n,
        engine: coll.engine(),
        sharding: plan.planner,
        steps,
        batch_size: b,
        final_loss,
        test_auc,
        test_logloss,
        train_seconds,
        samples_per_sec: (steps as f64 * b as f64) / train_seconds.max(1e-9),
        shard_bytes,
        traffic: TrafficReport::new(per_rank, opts.devices_per_host, steps),
    }))
}
