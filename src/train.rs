//! The training loop: a loader thread prepares batches ahead while the device trains.
//!
//! ```text
//!  loader thread                          device stage (caller's thread)
//!  next_batch → build RowMaps ──bounded──► stage → forward → backward → update → Snapshot
//!        ▲                                                                       │
//!        └──────────────── recycled batch buffers (nothing allocated per step) ──┘
//! ```
//! Host work for the next batches (reading or generating samples, building the unique-row maps)
//! overlaps the device work of the current one. Evaluation runs every `eval_every` steps and at
//! the end, on the whole test split.

use crate::config::{ConfigError, RunConfig};
use crate::data::{Batch, DataError, Dataset, SampleStream};
use crate::device::{BackendKind, Device, DeviceError};
use crate::embedding::hotness::{HotnessCounts, HotnessTracker, report};
use crate::embedding::{Policy, Precision, Rounding, RowMap};
use crate::metrics::{auc, log_loss};
use crate::model::Dlrm;
use crate::telemetry::{MemoryStats, SCHEMA_VERSION, Snapshot, StageTime, TableStats};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;
use std::time::Instant;

/// Batches prepared ahead of the device.
const QUEUE_DEPTH: usize = 4;
/// Steps averaged into `final_train_loss`.
const LOSS_WINDOW: usize = 100;

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
    /// Where embedding rows lived (`all-on-device`, `host-only`, `lru`, `lfu`).
    pub policy: Policy,
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
    /// Training lookups' unique rows found on the device, over all steps.
    pub hit_rate: f64,
    /// Embedding-row bytes moved host → device during training.
    pub bytes_h2d: u64,
    /// Embedding-row bytes moved device → host during training.
    pub bytes_d2h: u64,
    /// `(bytes_h2d + bytes_d2h) / samples`.
    pub bytes_per_sample: f64,
    /// Every evaluation, in order.
    pub evals: Vec<EvalPoint>,
}

/// A batch with its unique-row maps, passed from the loader to the device stage and back.
struct Prepared {
    batch: Batch,
    maps: Vec<RowMap>,
    busy_s: f64,
    waiting_s: f64,
    /// Row hotness so far, on the steps that report it.
    hotness: Option<HotnessCounts>,
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
    cfg.validate()?;
    let steps = planned_steps(cfg, data.train_samples())?;
    let test = data.test();
    let capacity = cfg
        .batch_size
        .max(cfg.eval_batch_size.min(test.len()).max(1));
    let schema = data.schema();
    let placement = cfg.placement(&schema.table_rows)?;
    let cache_fraction = placement.policy.is_cached().then(|| {
        let rows: u64 = schema.table_rows.iter().map(|&r| r as u64).sum();
        placement.cache_rows.iter().map(|&c| c as u64).sum::<u64>() as f64 / rows.max(1) as f64
    });
    let cache_fraction = if placement.policy == Policy::HostOnly {
        None
    } else {
        cache_fraction
    };
    let cached_run = placement.policy.is_cached();
    let mut model = Dlrm::new(dev, &cfg.model, schema, placement, capacity, cfg.seed)?;
    let tables = schema.table_rows.len();
    let stream = data.open_train()?;

    let (full_tx, full_rx) = bounded::<Result<Prepared, DataError>>(QUEUE_DEPTH);
    let (free_tx, free_rx) = bounded::<Prepared>(QUEUE_DEPTH + 2);
    for _ in 0..QUEUE_DEPTH + 2 {
        let p = Prepared {
            batch: Batch::new(schema.num_dense, tables),
            maps: vec![RowMap::new(); tables],
            busy_s: 0.0,
            waiting_s: 0.0,
            hotness: None,
        };
        // The channel has room for all of them.
        let _ = free_tx.send(p);
    }

    let started = Instant::now();
    let mut eval_seconds = 0.0;
    let mut evals = Vec::new();
    let mut cumulative = TableStats::default();
    let mut losses = std::collections::VecDeque::with_capacity(LOSS_WINDOW);
    let (mut busy_total, mut wait_total) = (0.0f64, 0.0f64);
    let mut eval_scratch = (Batch::new(schema.num_dense, tables), Vec::new());

    let result = std::thread::scope(|scope| -> Result<(), TrainError> {
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
                let busy_s = t_busy.elapsed().as_secs_f64();
                busy_total += busy_s;
                wait_total += waiting_s;
                if losses.len() == LOSS_WINDOW {
                    losses.pop_front();
                }
                losses.push_back(loss);

                let emb = model.embeddings();
                let table_stats = emb.stats().to_vec();
                let mut total = TableStats::default();
                table_stats.iter().for_each(|t| total.accumulate(t));
                cumulative.add_step(&total);
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
                let hotness = prepared
                    .hotness
                    .take()
                    .map(|c| report(c, |t, row| emb.is_resident(t, row)));
                let memory = MemoryStats {
                    host_store_bytes: emb.host_store_bytes(),
                    device_cache_bytes: emb.device_bytes(dev),
                    device_bytes: model.device_bytes(dev),
                    fp32_equivalent_bytes: emb.fp32_bytes(),
                };
                let _ = free_tx.send(prepared);

                let (mut test_auc, mut test_logloss) = (None, None);
                let due = cfg.eval_every > 0 && step % cfg.eval_every == 0;
                if due || step == steps {
                    let t_eval = Instant::now();
                    // A cache must hold one batch's rows: evaluate cached runs in training-sized
                    // batches, which are known to fit.
                    let eval_batch = if cached_run {
                        cfg.batch_size
                    } else {
                        cfg.eval_batch_size
                    };
                    let (a, l) = evaluate(dev, &mut model, test, eval_batch, &mut eval_scratch)?;
                    eval_seconds += t_eval.elapsed().as_secs_f64();
                    (test_auc, test_logloss) = (a, l);
                    evals.push(EvalPoint {
                        step,
                        test_auc: a,
                        test_logloss: l,
                    });
                }
                let samples = step * cfg.batch_size as u64;
                let train_s = busy_total + wait_total;
                on_step(&Snapshot {
                    schema: SCHEMA_VERSION,
                    step,
                    samples,
                    elapsed_s: started.elapsed().as_secs_f64(),
                    step_s: busy_s,
                    samples_per_sec: if train_s > 0.0 {
                        samples as f64 / train_s
                    } else {
                        0.0
                    },
                    loss,
                    test_auc,
                    test_logloss,
                    tables: table_stats,
                    total,
                    cumulative: cumulative.clone(),
                    hotness,
                    stages,
                    device_idle_fraction: Some(if busy_s + waiting_s > 0.0 {
                        waiting_s / (busy_s + waiting_s)
                    } else {
                        0.0
                    }),
                    memory,
                    link_gbps: None,
                });
            }
            Ok(())
        })();
        // On error, dropping the receiver makes the loader's next send fail, so it stops.
        drop(full_rx);
        drop(free_tx);
        let joined = loader.join();
        outcome?;
        joined.map_err(|_| TrainError::LoaderDied)
    });
    result?;

    let train_seconds = busy_total + wait_total;
    let samples = steps * cfg.batch_size as u64;
    let last = evals.last().cloned();
    let emb = model.embeddings();
    let (embedding_bytes, fp32_embedding_bytes) = (emb.embedding_bytes(dev), emb.fp32_bytes());
    let placement = emb.placement();
    let cached = placement.policy.is_cached();
    Ok(TrainSummary {
        backend: dev.info().backend,
        device: dev.info().name.clone(),
        data: data.name(),
        steps,
        samples,
        epochs: samples as f64 / data.train_samples() as f64,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        seed: cfg.seed,
        samples_per_sec: if train_seconds > 0.0 {
            samples as f64 / train_seconds
        } else {
            0.0
        },
        train_seconds,
        eval_seconds,
        test_auc: last.as_ref().and_then(|e| e.test_auc),
        test_logloss: last.as_ref().and_then(|e| e.test_logloss),
        teacher_auc: data.teacher_auc(),
        skipped_lines: data.skipped_lines(),
        test_samples: test.len(),
        final_train_loss: (!losses.is_empty())
            .then(|| losses.iter().sum::<f64>() / losses.len() as f64),
        device_idle_fraction: if train_seconds > 0.0 {
            wait_total / train_seconds
        } else {
            0.0
        },
        policy: placement.policy,
        precision: cached.then_some(placement.precision),
        rounding: cached.then_some(placement.rounding),
        cache_fraction,
        embedding_bytes,
        fp32_embedding_bytes,
        memory_reduction: fp32_embedding_bytes as f64 / embedding_bytes.max(1) as f64,
        hit_rate: cumulative.hit_rate(),
        bytes_h2d: cumulative.bytes_h2d,
        bytes_d2h: cumulative.bytes_d2h,
        bytes_per_sample: (cumulative.bytes_h2d + cumulative.bytes_d2h) as f64
            / samples.max(1) as f64,
        evals,
    })
}

/// What the loader thread produces.
struct LoadJob {
    steps: u64,
    batch_size: usize,
    hotness_every: u64,
    tables: usize,
}

/// The loader thread: fills recycled batches and their unique-row maps, `steps` times, and
/// keeps the row-hotness counts.
fn load(
    mut stream: Box<dyn SampleStream + '_>,
    job: LoadJob,
    free: Receiver<Prepared>,
    full: Sender<Result<Prepared, DataError>>,
) {
    let mut blocked_s = 0.0;
    let mut hotness = (job.hotness_every > 0).then(|| HotnessTracker::new(job.tables));
    for step in 1..=job.steps {
        let t_wait = Instant::now();
        let Ok(mut p) = free.recv() else { return };
        let waiting_s = blocked_s + t_wait.elapsed().as_secs_f64();
        let t_busy = Instant::now();
        if let Err(e) = stream.next_batch(job.batch_size, &mut p.batch) {
            let _ = full.send(Err(e));
            return;
        }
        for (t, (map, bags)) in p.maps.iter_mut().zip(&p.batch.sparse).enumerate() {
            map.build(bags);
            if let Some(h) = &mut hotness {
                h.observe(t, map);
            }
        }
        p.hotness = match &hotness {
            Some(h) if step % job.hotness_every == 0 || step == job.steps => Some(h.counts()),
            _ => None,
        };
        p.busy_s = t_busy.elapsed().as_secs_f64();
        p.waiting_s = waiting_s;
        let t_send = Instant::now();
        if full.send(Ok(p)).is_err() {
            return;
        }
        blocked_s = t_send.elapsed().as_secs_f64();
    }
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
        })?;
        Ok(Box::new(ds))
    }
}
