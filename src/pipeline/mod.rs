//! The lookahead (ScratchPipe) training pipeline: stages on their own threads, joined by bounded
//! channels, so host work for batches t+1 … t+W overlaps the device work of batch t.
//!
//! ```text
//!  loader ──► planner ──► stager ──────► device step ──────► write-back
//!  batches,   window of   gathers the    quantizes victims   downloads the
//!  row maps   W batches:  misses' packed into victim         victims, scatters
//!             hits,       rows, uploads  buffers, expands    them into the
//!             misses,     them to device the uploaded rows,  host store
//!             victims,    staging        trains              │ progress: the stager waits
//!             slots       ◄──────────────────────────────────┘ for a row's write-back
//!                ▲  rows unpin when a step is done               before it reads the row
//!                └───────────────────────────────────┘
//! ```
//! - The planner ([`planner`]) pins every row of the batches in its window and in flight, so the
//!   training step finds its rows resident: `train_hit_rate` is 1 — and it is *counted* by the
//!   device stage, which checks each row and fetches any missing one synchronously.
//! - A victim's write-back completes before a later fetch of that row reads the host store: each
//!   plan records the step of the evictions its fetches depend on, and the stager waits for the
//!   write-back stage to reach it.
//! - The device stage moves no embedding rows between host and device itself: the stager uploads
//!   the fetched rows into circulating device staging (`upload.rs`) and the write-back stage
//!   downloads the victims from circulating victim buffers. On a GPU with a copy engine (CUDA:
//!   a copy stream ordered per buffer by events) both transfers run while the device trains;
//!   the device stage reads back only the step's loss.
//!
//! **Modelled link.** Where host and device share memory (CPU backend, lavapipe) there is no
//! PCIe to hide; `--link-gbps X` charges each step's host↔device bytes at X GB/s, once per step
//! per stage, in [`Link::charge`] — the same code for every policy: on demand the device stage
//! pays for its synchronous transfers; with lookahead the stager pays for uploads and the
//! write-back stage for downloads, off the device's path.

pub mod planner;
mod priority;
mod stages;
mod upload;

use stages::{plan_stage, stage_stage, writeback_stage};
pub use upload::{DeviceRows, UploadBytes, UploadPool};

pub(crate) use priority::background;

use crate::data::DataError;
use crate::data::RowMap;
use crate::device::Device;
use crate::embedding::cache::lock_store;
use crate::embedding::hotness::report;
use crate::embedding::store::HostStore;
use crate::model::Dlrm;
use crate::telemetry::{Snapshot, StageTime};
use crate::train::{LoadJob, Prepared, Recorder, Run, StepRecord, TrainError, load};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use planner::{Attempt, Planner, TablePlan};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Plans and staged batches queued between stages.
const DEPTH: usize = 1;

/// A modelled host↔device link (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    gbps: Option<f64>,
}

impl Link {
    /// A link of `gbps` GB/s, or none (transfers cost nothing extra).
    pub fn new(gbps: Option<f64>) -> Self {
        Link { gbps }
    }

    /// Charges one step's `bytes` to the calling stage: sleeps `bytes / (gbps · 10⁹)` seconds.
    pub fn charge(&self, bytes: u64) {
        if let Some(g) = self.gbps
            && bytes > 0
        {
            std::thread::sleep(Duration::from_secs_f64(bytes as f64 / (g * 1e9)));
        }
    }
}

/// Test-only hooks for the lookahead pipeline.
#[derive(Clone, Debug, Default)]
pub struct TestHooks {
    /// `(seed, max µs)`: every stage sleeps a seeded random time up to `max µs` per batch.
    /// Results must not change.
    pub delays: Option<(u64, u64)>,
    /// `(step, table)`: the stager drops the first planned fetch of that table at that step, so
    /// the device stage meets a miss it must fetch itself.
    pub drop_prefetch: Option<(u64, usize)>,
}

impl TestHooks {
    fn delay(&self, stage: u64, step: u64) {
        if let Some((seed, max_us)) = self.delays {
            let h = crate::rng::splitmix64(seed ^ (stage << 48) ^ step);
            std::thread::sleep(Duration::from_micros(h % (max_us + 1)));
        }
    }
}

/// How far the write-back stage has got: every eviction of steps `..= done` is in the store.
struct Progress {
    done: Mutex<(u64, bool)>,
    cv: Condvar,
}

impl Progress {
    fn new() -> Self {
        Progress {
            done: Mutex::new((0, false)),
            cv: Condvar::new(),
        }
    }

    fn advance(&self, step: u64) {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        d.0 = d.0.max(step);
        self.cv.notify_all();
    }

    /// Stops every waiter (the run failed).
    fn abort(&self) {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        d.1 = true;
        self.cv.notify_all();
    }

    /// Waits until the write-backs of `step` and before have landed; false if aborted.
    fn wait_for(&self, step: u64) -> bool {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while d.0 < step && !d.1 {
            d = self.cv.wait(d).unwrap_or_else(|e| e.into_inner());
        }
        !d.1
    }
}

/// A planned batch on its way to the device.
struct Plan {
    step: u64,
    prepared: Prepared,
    tables: Vec<TablePlan>,
    depends_on: u64,
    shrunk: bool,
    planner: StageTime,
}

/// One table's staged fetch: the packed rows and state gathered from the host store (the
/// planned fetches, less any the drop hook removed), and the batch's indices and unique-row map
/// renamed to cache slots.
pub struct StagedTable {
    /// The planner's decisions.
    pub plan: TablePlan,
    /// Rows gathered (a prefix-preserving subset of `plan.fetch_rows`).
    pub rows: Vec<u32>,
    /// Their slots.
    pub slots: Vec<u32>,
    /// Their packed words, row after row.
    pub packed: Vec<u32>,
    /// Their optimizer state (empty without one).
    pub state: Vec<f32>,
    /// The batch's lookups renamed to slots.
    pub indices: Vec<u32>,
    /// The batch's unique-row map renamed to slots.
    pub map: RowMap,
}

struct Staged<D: Device> {
    step: u64,
    prepared: Prepared,
    tables: Vec<StagedTable>,
    /// The fetched rows of every table, already uploaded (a set of the upload pool).
    uploads: Vec<DeviceRows<D>>,
    depends_on: u64,
    shrunk: bool,
    planner: StageTime,
    stager: StageTime,
}

/// Rows evicted at one step, packed on the device, for the write-back stage.
pub struct Evicted<D: Device> {
    /// Per table: rows, and host buffers of the right size for their packed words and optimizer
    /// state, which the write-back stage fills from `device`.
    pub tables: Vec<crate::embedding::cache::EvictedRows>,
    /// Per table: the device buffers the victims were quantized into (`packed`, `state`).
    pub device: Vec<DeviceRows<D>>,
}

impl<D: Device> Evicted<D> {
    fn bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|(_, w, s)| 4 * (w.len() + s.len()) as u64)
            .sum()
    }
}

/// Trains with the lookahead policy: spawns loader, planner, stager and write-back threads; the
/// device stage runs on the caller's thread.
pub(crate) fn run_lookahead<D: Device>(
    dev: &D,
    run: &Run<'_>,
    model: &mut Dlrm<D>,
    recorder: &mut Recorder,
    on_step: &mut dyn FnMut(&Snapshot),
) -> Result<(), TrainError> {
    let (cfg, steps, window) = (run.cfg, run.steps, run.cfg.lookahead);
    let schema = run.data.schema();
    let tables = schema.table_rows.len();
    let stores: Vec<Arc<Mutex<HostStore>>> = model.embeddings().stores();
    let slots = model.embeddings().slots();
    let table_rows = schema.table_rows.clone();
    let stream = run.data.open_train()?;
    let pool = window + 4 * DEPTH + 6;
    let (loaded_tx, loaded_rx) = bounded::<Result<Prepared, DataError>>(DEPTH);
    let (free_tx, free_rx) = bounded::<Prepared>(pool);
    for _ in 0..pool {
        let _ = free_tx.send(Prepared::new(schema.num_dense, tables));
    }
    let (plan_tx, plan_rx) = bounded::<Result<Plan, TrainError>>(DEPTH);
    let (staged_tx, staged_rx) = bounded::<Result<Staged<D>, TrainError>>(DEPTH);
    // Device staging for fetched rows: one set with the stager, DEPTH in the channel, one in the
    // device step.
    let (upload_sets, upload_bytes) = UploadPool::new(dev, DEPTH + 2, tables)?.into_sets();
    let (set_tx, set_rx) = bounded::<Vec<DeviceRows<D>>>(DEPTH + 2);
    for set in upload_sets {
        // The channel has room for all of them.
        let _ = set_tx.send(set);
    }
    let (done_tx, done_rx) = unbounded::<u64>();
    let (evicted_tx, evicted_rx) = unbounded::<(u64, Evicted<D>)>();
    let (recycle_tx, recycle_rx) = unbounded::<Evicted<D>>();
    // Victim buffers come back from the write-back stage; a new set is made when none is free.
    let mut free_victims: Vec<Vec<DeviceRows<D>>> = Vec::new();
    let mut victim_bytes = 0u64;
    let writeback_error: Mutex<Option<crate::device::DeviceError>> = Mutex::new(None);
    let progress = Arc::new(Progress::new());
    let writeback_time = Arc::new(Mutex::new(StageTime {
        stage: "writeback".into(),
        busy_s: 0.0,
        waiting_s: 0.0,
    }));
    let mut eval_scratch = (
        crate::data::Batch::new(schema.num_dense, tables),
        Vec::new(),
    );
    let hooks = run.hooks;
    let link = *run.link;

    std::thread::scope(|scope| -> Result<(), TrainError> {
        let job = LoadJob {
            steps,
            batch_size: cfg.batch_size,
            hotness_every: cfg.hotness_every,
            tables,
        };
        let spawn = |name: &str| std::thread::Builder::new().name(name.to_string());
        let loader =
            spawn("loader").spawn_scoped(scope, move || load(stream, job, free_rx, loaded_tx))?;
        let planner = spawn("planner").spawn_scoped(scope, move || {
            plan_stage(
                Planner::new(&table_rows, &slots),
                window,
                steps,
                loaded_rx,
                done_rx,
                plan_tx,
                hooks,
            )
        })?;
        let (stager_progress, stager_stores) = (progress.clone(), stores.clone());
        let stager_bytes = upload_bytes.clone();
        let stager = spawn("stager").spawn_scoped(scope, move || {
            stage_stage(
                dev,
                plan_rx,
                set_rx,
                staged_tx,
                &stager_stores,
                &stager_progress,
                &stager_bytes,
                hooks,
                link,
            )
        })?;
        let (wb_progress, wb_time) = (progress.clone(), writeback_time.clone());
        let wb_error = &writeback_error;
        let writer = spawn("writeback").spawn_scoped(scope, move || {
            writeback_stage(
                dev,
                wb_error,
                evicted_rx,
                recycle_tx,
                &stores,
                &wb_progress,
                &wb_time,
                hooks,
                link,
            )
        })?;

        let outcome = (|| -> Result<(), TrainError> {
            for step in 1..=steps {
                let t_wait = Instant::now();
                let staged = staged_rx.recv().map_err(|_| TrainError::LoaderDied)??;
                let waiting_s = t_wait.elapsed().as_secs_f64();
                let t_busy = Instant::now();
                hooks.delay(3, step);
                // Buffers of rows already written back come home for the next evictions.
                while let Ok(done) = recycle_rx.try_recv() {
                    let Evicted {
                        tables: rows,
                        device,
                    } = done;
                    for (t, (_, words, state)) in rows.into_iter().enumerate() {
                        model.embeddings_mut().recycle(t, words, state);
                    }
                    free_victims.push(device);
                }
                let victims = match free_victims.pop() {
                    Some(set) => set,
                    None => {
                        let set = (0..tables)
                            .map(|_| DeviceRows::new(dev))
                            .collect::<Result<Vec<_>, _>>()?;
                        victim_bytes += set.iter().map(DeviceRows::bytes).sum::<u64>();
                        set
                    }
                };
                let victims_before: u64 = victims.iter().map(DeviceRows::bytes).sum();
                // The stager already waited for these write-backs; a synchronous fetch of a
                // dropped prefetch reads the store too, so the device makes sure as well.
                if !progress.wait_for(staged.depends_on) {
                    return Err(TrainError::LoaderDied);
                }
                let Staged {
                    step: s,
                    mut prepared,
                    tables: staged_tables,
                    uploads,
                    shrunk,
                    planner,
                    stager,
                    ..
                } = staged;
                debug_assert_eq!(s, step);
                let (loss, evicted) = model.train_step_planned(
                    dev,
                    &prepared.batch,
                    &prepared.maps,
                    &staged_tables,
                    &uploads,
                    victims,
                    cfg.lr,
                    step,
                )?;
                // Buffers only grow.
                victim_bytes +=
                    evicted.device.iter().map(DeviceRows::bytes).sum::<u64>() - victims_before;
                // The loss was read back, so every kernel that read these rows has finished:
                // the stager may refill them.
                let _ = set_tx.send(uploads);
                let busy_s = t_busy.elapsed().as_secs_f64();
                let _ = evicted_tx.send((step, evicted));
                let emb = model.embeddings();
                let table_stats = emb.stats().to_vec();
                let hotness = prepared
                    .hotness
                    .take()
                    .map(|c| report(c, |t, row| emb.is_resident(t, row)));
                let mut memory = run.memory(dev, model);
                memory.device_bytes += upload_bytes.get() + victim_bytes;
                let _ = done_tx.send(step);
                let mut stages = vec![
                    StageTime {
                        stage: "loader".into(),
                        busy_s: prepared.busy_s,
                        waiting_s: prepared.waiting_s,
                    },
                    planner,
                    stager,
                    StageTime {
                        stage: "device".into(),
                        busy_s,
                        waiting_s,
                    },
                ];
                stages.push(
                    writeback_time
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                );
                let _ = free_tx.send(prepared);
                let eval = if run.evaluates(step) {
                    // Evaluation reads the store for rows not cached: every write-back so far
                    // must have landed.
                    if !progress.wait_for(step) {
                        return Err(TrainError::LoaderDied);
                    }
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
                    window_shrunk: Some(shrunk),
                });
                on_step(&snapshot);
            }
            Ok(())
        })();
        if outcome.is_err() {
            progress.abort();
        }
        drop(staged_rx);
        drop(free_tx);
        drop(done_tx);
        drop(evicted_tx);
        let joins = [
            loader.join().is_ok(),
            planner.join().is_ok(),
            stager.join().is_ok(),
            writer.join().is_ok(),
        ];
        // A failed download in the write-back stage stops the run; say why.
        if let Some(e) = writeback_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(e.into());
        }
        outcome?;
        if joins.iter().all(|ok| *ok) {
            Ok(())
        } else {
            Err(TrainError::LoaderDied)
        }
    })
}
