//! Training runs: a loader thread prepares batches ahead while the device trains.
//!
//! ```text
//!  loader thread                          device stage (caller's thread)
//!  next_batch → build RowMaps ──bounded──► stage → forward → backward → update → Snapshot
//!        ▲                                                                       │
//!        └──────────────── recycled batch buffers (nothing allocated per step) ──┘
//! ```
//! Host work for the next batches (reading or generating samples, building the unique-row maps)
//! overlaps the device work of the current one. With a cache on demand (`lru`, `lfu`,
//! `host-only`) the device stage fetches each batch's misses itself; the `lookahead` policy adds
//! planner, stager and write-back stages between the loader and the device
//! ([`crate::pipeline`]). Evaluation runs every `eval_every` steps and at the end, on the whole
//! test split, reading through caches without changing them.

mod loader;
mod recorder;

pub(crate) use loader::{LoadJob, Prepared, load};
pub(crate) use recorder::{Recorder, StepRecord};

use crate::config::{ConfigError, RunConfig};
use crate::data::{Batch, DataError, Dataset};
use crate::device::{BackendKind, Device, DeviceError};
use crate::embedding::Policy;
use crate::embedding::hotness::report;
use crate::metrics::{auc, log_loss};
use crate::model::Dlrm;
pub use crate::pipeline::{Link, TestHooks};
use crate::precision::{Precision, Rounding};
use crate::telemetry::{MemoryStats, Snapshot, StageTime};
use crossbeam_channel::bounded;
use serde::Serialize;
use std::time::Instant;

/// Batches prepared ahead of the device.
pub(crate) const QUEUE_DEPTH: usize = 4;

/// Anything that stops a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A data problem.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A device problem.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The loader thread stopped without saying why (it panicked).
    #[error("the data loader thread stopped unexpectedly")]
    LoaderDied,
    /// A pipeline thread could not be started.
    #[error("cannot start a pipeline thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// One evaluation on the test split.
#[derive(Clone, Debug, Serialize)]
pub struct EvalPoint {
    /// Steps trained before it.
    pub step: u64,
    /// Exact AUC (`null` if the test split has one class only).
    pub test_auc: Option<f64>,
    /// Mean log loss.
    pub test_logloss: Option<f64>,
}

/// The outcome of a run (`--summary-json`).
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Backend that ran the kernels.
    pub backend: BackendKind,
    /// Its device name.
    pub device: String,
    /// `synthetic` or the data file.
    pub data: String,
    /// Training steps run.
    pub steps: u64,
    /// Training samples consumed.
    pub samples: u64,
    /// `samples` over the training split's size.
    pub epochs: f64,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f32,
    /// Seed.
    pub seed: u64,
    /// Training samples per second (training time only).
    pub samples_per_sec: f64,
    /// Seconds spent training (waiting for data included, evaluation excluded).
    pub train_seconds: f64,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
    /// Final test AUC.
    pub test_auc: Option<f64>,
    /// Final test log loss.
    pub test_logloss: Option<f64>,
    /// The generator's own test AUC (synthetic data; `null` for real data).
    pub teacher_auc: Option<f64>,
    /// Malformed data lines skipped (`--skip-bad-lines`).
    pub skipped_lines: u64,
    /// Samples in the test split.
    pub test_samples: usize,
    /// Mean training loss over the last steps (up to 100).
    pub final_train_loss: Option<f64>,
    /// Fraction of training time the device stage waited for data.
    pub device_idle_fraction: f64,
    /// Where embedding rows lived (`all-on-device`, `host-only`, `lru`, `lfu`, `lookahead`).
    pub policy: Policy,
    /// Batches the lookahead planner saw ahead (`null` for other policies).
    pub lookahead: Option<usize>,
    /// Host store precision (`null` for all-on-device).
    pub precision: Option<Precision>,
    /// Rounding of write-backs (`null` for all-on-device).
    pub rounding: Option<Rounding>,
    /// Cache slots over table rows, all tables together (`null` without a cache).
    pub cache_fraction: Option<f64>,
    /// Bytes the embeddings held: host stores, device rows or cache, optimizer state, directory.
    pub embedding_bytes: u64,
    /// The same tables fully in FP32.
    pub fp32_embedding_bytes: u64,
    /// `fp32_embedding_bytes / embedding_bytes`.
    pub memory_reduction: f64,
    /// Unique rows the cache held when a batch was planned (lookahead) or stepped (on demand).
    pub hit_rate: f64,
    /// Unique rows resident when the training step ran (1 for lookahead, counted).
    pub train_hit_rate: f64,
    /// Batches for which the lookahead planner shortened its window (`null` otherwise).
    pub window_shrinks: Option<u64>,
    /// The modelled host↔device link, GB/s (`null`: none simulated).
    pub link_gbps: Option<f64>,
    /// Embedding-row bytes moved host → device during training.
    pub bytes_h2d: u64,
    /// Embedding-row bytes moved device → host during training.
    pub bytes_d2h: u64,
    /// `(bytes_h2d + bytes_d2h) / samples`.
    pub bytes_per_sample: f64,
    /// Every evaluation, in order.
    pub evals: Vec<EvalPoint>,
}

/// Steps a run takes: `--steps`, else `epochs` × full batches per epoch.
pub fn planned_steps(cfg: &RunConfig, train_samples: u64) -> Result<u64, DataError> {
    let b = cfg.batch_size as u64;
    if b == 0 || b > train_samples {
        return Err(DataError::Invalid(format!(
            "the batch size {b} exceeds the {train_samples} training samples; lower --batch-size"
        )));
    }
    Ok(cfg.steps.unwrap_or(cfg.epochs * (train_samples / b)))
}

/// Trains the model described by `cfg` on `data` with device `dev`, calling `on_step` with each
/// step's snapshot.
pub fn train<D: Device>(
    dev: &D,
    cfg: &RunConfig,
    data: &dyn Dataset,
    on_step: &mut dyn FnMut(&Snapshot),
) -> Result<TrainSummary, TrainError> {
    train_with(dev, cfg, data, &TestHooks::default(), on_step)
}

/// [`train`] with test-only hooks (delays, dropped prefetches) for the lookahead pipeline.
pub fn train_with<D: Device>(
    dev: &D,
    cfg: &RunConfig,
    data: &dyn Dataset,
    hooks: &TestHooks,
    on_step: &mut dyn FnMut(&Snapshot),
) -> Result<TrainSummary, TrainError> {
    train_model(dev, cfg, data, hooks, on_step).map(|(summary, _)| summary)
}

/// [`train_with`], also returning the trained model (its host stores hold every write-back).
pub fn train_model<D: Device>(
    dev: &D,
    cfg: &RunConfig,
    data: &dyn Dataset,
    hooks: &TestHooks,
    on_step: &mut dyn FnMut(&Snapshot),
) -> Result<(TrainSummary, Dlrm<D>), TrainError> {
    cfg.validate()?;
    let steps = planned_steps(cfg, data.train_samples())?;
    let test = data.test();
    let capacity = cfg
        .batch_size
        .max(cfg.eval_batch_size.min(test.len()).max(1));
    let schema = data.schema();
    let placement = cfg.placement(&schema.table_rows)?;
    let cache_fraction = match placement.policy {
        Policy::AllOnDevice | Policy::HostOnly => None,
        _ => {
            let rows: u64 = schema.table_rows.iter().map(|&r| r as u64).sum();
            Some(
                placement.cache_rows.iter().map(|&c| c as u64).sum::<u64>() as f64
                    / rows.max(1) as f64,
            )
        }
    };
    let policy = placement.policy;
    let mut model = Dlrm::new(dev, &cfg.model, schema, placement, capacity, cfg.seed)?;
    let mut recorder = Recorder::new(cfg.batch_size, cfg.link_gbps);
    let link = Link::new(cfg.link_gbps);
    let run = Run {
        cfg,
        data,
        steps,
        link: &link,
        hooks,
    };
    if policy == Policy::Lookahead {
        crate::pipeline::run_lookahead(dev, &run, &mut model, &mut recorder, on_step)?;
    } else {
        run_on_demand(dev, &run, &mut model, &mut recorder, on_step)?;
    }

    let samples = steps * cfg.batch_size as u64;
    let emb = model.embeddings();
    let (embedding_bytes, fp32_embedding_bytes) = (emb.embedding_bytes(dev), emb.fp32_bytes());
    let placement = emb.placement();
    let cached = placement.policy.is_cached();
    let mut summary = TrainSummary {
        backend: dev.info().backend,
        device: dev.info().name.clone(),
        data: data.name(),
        steps,
        samples,
        epochs: samples as f64 / data.train_samples() as f64,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        seed: cfg.seed,
        samples_per_sec: 0.0,
        train_seconds: 0.0,
        eval_seconds: 0.0,
        test_auc: None,
        test_logloss: None,
        teacher_auc: data.teacher_auc(),
        skipped_lines: data.skipped_lines(),
        test_samples: test.len(),
        final_train_loss: None,
        device_idle_fraction: 0.0,
        policy: placement.policy,
        lookahead: (placement.policy == Policy::Lookahead).then_some(cfg.lookahead),
        precision: cached.then_some(placement.precision),
        rounding: cached.then_some(placement.rounding),
        cache_fraction,
        embedding_bytes,
        fp32_embedding_bytes,
        memory_reduction: fp32_embedding_bytes as f64 / embedding_bytes.max(1) as f64,
        hit_rate: 0.0,
        train_hit_rate: 0.0,
        window_shrinks: None,
        link_gbps: None,
        bytes_h2d: 0,
        bytes_d2h: 0,
        bytes_per_sample: 0.0,
        evals: Vec::new(),
    };
    recorder.complete(&mut summary);
    Ok((summary, model))
}

/// What every training loop needs to know about the run.
pub(crate) struct Run<'a> {
    pub cfg: &'a RunConfig,
    pub data: &'a dyn Dataset,
    pub steps: u64,
    pub link: &'a Link,
    pub hooks: &'a TestHooks,
}

impl Run<'_> {
    /// Whether step `step` evaluates on the test split.
    pub fn evaluates(&self, step: u64) -> bool {
        (self.cfg.eval_every > 0 && step % self.cfg.eval_every == 0) || step == self.steps
    }

    /// Evaluates `model` on the test split: `(AUC, log loss, seconds)`. A cache must hold one
    /// batch's rows, so cached runs evaluate in training-sized batches, which are known to fit.
    pub fn evaluate<D: Device>(
        &self,
        dev: &D,
        model: &mut Dlrm<D>,
        scratch: &mut (Batch, Vec<f32>),
    ) -> Result<(Option<f64>, Option<f64>, f64), DeviceError> {
        let t0 = Instant::now();
        let cached = model.embeddings().placement().policy.is_cached();
        let size = if cached {
            self.cfg.batch_size
        } else {
            self.cfg.eval_batch_size
        };
        let (a, l) = evaluate(dev, model, self.data.test(), size, scratch)?;
        Ok((a, l, t0.elapsed().as_secs_f64()))
    }

    /// Memory held now.
    pub fn memory<D: Device>(&self, dev: &D, model: &Dlrm<D>) -> MemoryStats {
        let emb = model.embeddings();
        MemoryStats {
            host_store_bytes: emb.host_store_bytes(),
            device_cache_bytes: emb.device_bytes(dev),
            device_bytes: model.device_bytes(dev),
            fp32_equivalent_bytes: emb.fp32_bytes(),
        }
    }
}

/// The on-demand loop (every policy but lookahead): a loader thread prepares batches while the
/// device stage makes each batch's rows resident (fetching misses synchronously) and trains.
fn run_on_demand<D: Device>(
    dev: &D,
    run: &Run<'_>,
    model: &mut Dlrm<D>,
    recorder: &mut Recorder,
    on_step: &mut dyn FnMut(&Snapshot),
) -> Result<(), TrainError> {
    let (cfg, steps) = (run.cfg, run.steps);
    let schema = run.data.schema();
    let tables = schema.table_rows.len();
    let stream = run.data.open_train()?;
    let (full_tx, full_rx) = bounded::<Result<Prepared, DataError>>(QUEUE_DEPTH);
    let (free_tx, free_rx) = bounded::<Prepared>(QUEUE_DEPTH + 2);
    for _ in 0..QUEUE_DEPTH + 2 {
        // The channel has room for all of them.
        let _ = free_tx.send(Prepared::new(schema.num_dense, tables));
    }
    let mut eval_scratch = (Batch::new(schema.num_dense, tables), Vec::new());
    std::thread::scope(|scope| -> Result<(), TrainError> {
        let job = LoadJob {
            steps,
            batch_size: cfg.batch_size,
            hotness_every: cfg.hotness_every,
            tables,
        };
        let loader = scope.spawn(move || load(stream, job, free_rx, full_tx));
        let outcome = (|| -> Result<(), TrainError> {
            for step in 1..=steps {
                let t_wait = Instant::now();
                let mut prepared = full_rx.recv().map_err(|_| TrainError::LoaderDied)??;
                let waiting_s = t_wait.elapsed().as_secs_f64();
                let t_busy = Instant::now();
                let loss = model.train_step(dev, &prepared.batch, &prepared.maps, cfg.lr)?;
                let table_stats = model.embeddings().stats().to_vec();
                // Fetches and write-backs are synchronous here: the modelled link's time is the
                // device stage's.
                run.link
                    .charge(table_stats.iter().map(|t| t.bytes_h2d + t.bytes_d2h).sum());
                let busy_s = t_busy.elapsed().as_secs_f64();
                let emb = model.embeddings();
                let hotness = prepared
                    .hotness
                    .take()
                    .map(|c| report(c, |t, row| emb.is_resident(t, row)));
                let stages = vec![
                    StageTime {
                        stage: "loader".into(),
                        busy_s: prepared.busy_s,
                        waiting_s: prepared.waiting_s,
                    },
                    StageTime {
                        stage: "device".into(),
                        busy_s,
                        waiting_s,
                    },
                ];
                let memory = run.memory(dev, model);
                let _ = free_tx.send(prepared);
                let eval = if run.evaluates(step) {
                    Some(run.evaluate(dev, model, &mut eval_scratch)?)
                } else {
                    None
                };
                let snapshot = recorder.record(StepRecord {
                    step,
                    loss,
                    tables: table_stats,
                    stages,
                    hotness,
                    memory,
                    busy_s,
                    waiting_s,
                    eval,
                    window_shrunk: None,
                });
                on_step(&snapshot);
            }
            Ok(())
        })();
        // On error, dropping the receiver makes the loader's next send fail, so it stops.
        drop(full_rx);
        drop(free_tx);
        let joined = loader.join();
        outcome?;
        joined.map_err(|_| TrainError::LoaderDied)
    })
}

/// AUC and log loss of the model on the whole test split, in batches of `batch_size`.
pub fn evaluate<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    test: &Batch,
    batch_size: usize,
    scratch: &mut (Batch, Vec<f32>),
) -> Result<(Option<f64>, Option<f64>), DeviceError> {
    let (chunk, probs) = scratch;
    probs.clear();
    let step = batch_size.min(model.capacity()).max(1);
    let mut start = 0;
    while start < test.len() {
        let len = step.min(test.len() - start);
        test.copy_range_into(start, len, chunk);
        model.predict(dev, chunk, probs)?;
        start += len;
    }
    let a = auc(probs.as_slice(), &test.labels);
    let l = log_loss(probs.as_slice(), &test.labels);
    Ok((a.is_finite().then_some(a), l.is_finite().then_some(l)))
}

/// Opens the dataset `cfg` names: the synthetic generator or a Criteo file.
pub fn open_dataset(cfg: &RunConfig) -> Result<Box<dyn Dataset>, TrainError> {
    cfg.validate()?;
    if cfg.is_synthetic() {
        let rows = cfg.table_rows.expand(cfg.synthetic.tables)?;
        let ds = crate::data::synthetic::SyntheticDataset::new(&cfg.synthetic, &rows, cfg.seed)?;
        Ok(Box::new(ds))
    } else {
        let rows = cfg.table_rows.expand(crate::data::criteo::NUM_SPARSE)?;
        let ds = crate::data::criteo::CriteoDataset::open(crate::data::criteo::CriteoOptions {
            path: cfg.data.clone().into(),
            table_rows: rows,
            test_fraction: cfg.test_fraction,
            skip_bad_lines: cfg.skip_bad_lines,
            multi_hot: cfg.multi_hot_columns()?,
        })?;
        Ok(Box::new(ds))
    }
}
