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
use crate::embedding::RowMap;
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
    /// Every evaluation, in order.
    pub evals: Vec<EvalPoint>,
}

/// A batch with its unique-row maps, passed from the loader to the device stage and back.
struct Prepared {
    batch: Batch,
    maps: Vec<RowMap>,
    busy_s: f64,
    waiting_s: f64,
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
    let mut model = Dlrm::new(dev, &cfg.model, schema, capacity, cfg.seed)?;
    let memory = MemoryStats {
        host_store_bytes: None,
        device_cache_bytes: model.embeddings().device_bytes(dev),
        device_bytes: model.device_bytes(dev),
        fp32_equivalent_bytes: model.embeddings().fp32_bytes(),
    };
    let table_rows = schema.table_rows.clone();
    let stream = data.open_train()?;

    let (full_tx, full_rx) = bounded::<Result<Prepared, DataError>>(QUEUE_DEPTH);
    let (free_tx, free_rx) = bounded::<Prepared>(QUEUE_DEPTH + 2);
    for _ in 0..QUEUE_DEPTH + 2 {
        let p = Prepared {
            batch: Batch::new(schema.num_dense, table_rows.len()),
            maps: vec![RowMap::new(); table_rows.len()],
            busy_s: 0.0,
            waiting_s: 0.0,
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
    let mut eval_scratch = (Batch::new(schema.num_dense, table_rows.len()), Vec::new());

    let result = std::thread::scope(|scope| -> Result<(), TrainError> {
        let batch_size = cfg.batch_size;
        let loader = scope.spawn(move || load(stream, steps, batch_size, free_rx, full_tx));
        let outcome = (|| -> Result<(), TrainError> {
            for step in 1..=steps {
                let t_wait = Instant::now();
                let prepared = full_rx.recv().map_err(|_| TrainError::LoaderDied)??;
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

                let tables: Vec<TableStats> = prepared
                    .batch
                    .sparse
                    .iter()
                    .zip(&prepared.maps)
                    .enumerate()
                    .map(|(t, (bags, map))| TableStats {
                        table: Some(t),
                        lookups: bags.indices.len() as u64,
                        unique_rows: map.unique() as u64,
                        // Every row is resident: all unique rows hit, nothing travels.
                        hits: map.unique() as u64,
                        cache_rows: table_rows[t] as u64,
                        cache_occupancy: 1.0,
                        ..Default::default()
                    })
                    .collect();
                let mut total = TableStats::default();
                tables.iter().for_each(|t| total.accumulate(t));
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
                let _ = free_tx.send(prepared);

                let (mut test_auc, mut test_logloss) = (None, None);
                let due = cfg.eval_every > 0 && step % cfg.eval_every == 0;
                if due || step == steps {
                    let t_eval = Instant::now();
                    let (a, l) = evaluate(
                        dev,
                        &mut model,
                        test,
                        cfg.eval_batch_size,
                        &mut eval_scratch,
                    )?;
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
                    tables,
                    total,
                    cumulative: cumulative.clone(),
                    hotness: None,
                    stages,
                    device_idle_fraction: Some(if busy_s + waiting_s > 0.0 {
                        waiting_s / (busy_s + waiting_s)
                    } else {
                        0.0
                    }),
                    memory: memory.clone(),
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
        evals,
    })
}

/// The loader thread: fills recycled batches and their unique-row maps, `steps` times.
fn load(
    mut stream: Box<dyn SampleStream + '_>,
    steps: u64,
    batch_size: usize,
    free: Receiver<Prepared>,
    full: Sender<Result<Prepared, DataError>>,
) {
    let mut blocked_s = 0.0;
    for _ in 0..steps {
        let t_wait = Instant::now();
        let Ok(mut p) = free.recv() else { return };
        let waiting_s = blocked_s + t_wait.elapsed().as_secs_f64();
        let t_busy = Instant::now();
        if let Err(e) = stream.next_batch(batch_size, &mut p.batch) {
            let _ = full.send(Err(e));
            return;
        }
        for (map, bags) in p.maps.iter_mut().zip(&p.batch.sparse) {
            map.build(bags);
        }
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
