//! The lookahead (ScratchPipe) training pipeline: stages on their own threads, joined by bounded
//! channels, so host work for batches t+1 … t+W overlaps the device work of batch t.
//!
//! ```text
//!  loader ──► planner ──► stager ──► device step ──► write-back
//!  batches,   window of   gathers    evict victims   scatters packed
//!  row maps   W batches:  packed     (quantize,      victims into
//!             hits,       rows of    download),      the host store
//!             misses,     the        fetch (upload,  │
//!             victims,    misses     dequantize),    │ progress: the stager waits for
//!             slots       ◄──────────train ──────────┘ a row's write-back before it
//!                ▲  rows unpin when a step is done     reads that row again
//!                └──────────────────────────────┘
//! ```
//! - The planner ([`planner`]) pins every row of the batches in its window and in flight, so the
//!   training step finds its rows resident: `train_hit_rate` is 1 — and it is *counted* by the
//!   device stage, which checks each row and fetches any missing one synchronously.
//! - A victim's write-back completes before a later fetch of that row reads the host store: each
//!   plan records the step of the evictions its fetches depend on, and the stager waits for the
//!   write-back stage to reach it.
//! - On GPU backends the device stage's transfers and kernels for a batch are queued in order on
//!   the device (wgpu's queue order); the host-side gathering and scattering run on the other
//!   threads.
//!
//! **Modelled link.** Where host and device share memory (CPU backend, lavapipe) there is no
//! PCIe to hide; `--link-gbps X` charges each step's host↔device bytes at X GB/s, once per step
//! per stage, in [`Link::charge`] — the same code for every policy: on demand the device stage
//! pays for its synchronous transfers; with lookahead the stager pays for uploads and the
//! write-back stage for downloads, off the device's path.

pub mod planner;
mod priority;
mod upload;

pub use upload::{DeviceRows, UploadBytes, UploadPool};

pub(crate) use priority::background;

use crate::data::DataError;
use crate::device::Device;
use crate::embedding::RowMap;
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
            let h = crate::data::synthetic::splitmix64(seed ^ (stage << 48) ^ step);
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

/// Rows evicted at one step, packed, for the write-back stage.
pub struct Evicted {
    /// Per table: rows, packed words, optimizer state.
    pub tables: Vec<crate::embedding::cache::EvictedRows>,
}

impl Evicted {
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
    let (evicted_tx, evicted_rx) = unbounded::<(u64, Evicted)>();
    let (recycle_tx, recycle_rx) = unbounded::<Evicted>();
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
        let writer = spawn("writeback").spawn_scoped(scope, move || {
            writeback_stage(
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
                    for (t, (_, words, state)) in done.tables.into_iter().enumerate() {
                        model.embeddings_mut().recycle(t, words, state);
                    }
                }
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
                    cfg.lr,
                    step,
                )?;
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
                memory.device_bytes += upload_bytes.get();
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
        outcome?;
        if joins.iter().all(|ok| *ok) {
            Ok(())
        } else {
            Err(TrainError::LoaderDied)
        }
    })
}

/// The planner thread: keeps the window, plans each batch, releases rows as steps finish.
#[allow(clippy::too_many_arguments)]
fn plan_stage(
    mut planner: Planner,
    window: usize,
    steps: u64,
    loaded: Receiver<Result<Prepared, DataError>>,
    done: Receiver<u64>,
    out: Sender<Result<Plan, TrainError>>,
    hooks: &TestHooks,
) {
    background();
    let mut queue: VecDeque<Prepared> = VecDeque::new();
    // `queue[..pinned]` are in the window (their rows pinned); the rest wait outside it.
    let (mut pinned, mut grow_one) = (0usize, false);
    let mut received = 0u64;
    // The unique rows of each planned, not yet trained batch (to unpin when it is done), and
    // spare vectors to reuse for them.
    let mut in_flight: VecDeque<Vec<Vec<u32>>> = VecDeque::new();
    let mut spare: Vec<Vec<Vec<u32>>> = Vec::new();
    let finish = |planner: &mut Planner,
                  in_flight: &mut VecDeque<Vec<Vec<u32>>>,
                  spare: &mut Vec<Vec<Vec<u32>>>| {
        if let Some(rows) = in_flight.pop_front() {
            planner.unpin_rows(&rows);
            spare.push(rows);
        }
    };
    for step in 1..=steps {
        let t_wait = Instant::now();
        let mut busy = 0.0;
        // Fill the window: the batch to plan and the W after it.
        while queue.len() <= window && received < steps {
            match loaded.recv() {
                Ok(Ok(p)) => {
                    let t0 = Instant::now();
                    if let Err(e) = planner.check(&p.maps) {
                        let _ = out.send(Err(TrainError::Device(e.into())));
                        return;
                    }
                    queue.push_back(p);
                    received += 1;
                    busy += t0.elapsed().as_secs_f64();
                }
                Ok(Err(e)) => {
                    let _ = out.send(Err(e.into()));
                    return;
                }
                Err(_) => return,
            }
        }
        // Let batches into the window (pin their rows): all of them, or after a plan that had
        // to leave some out, one more per step — pinning a window that does not fit only for
        // the next plan to unpin it again would cost two passes over each left-out batch.
        let t0 = Instant::now();
        let target = if grow_one {
            (pinned + 1).min(queue.len())
        } else {
            queue.len()
        };
        while pinned < target {
            planner.pin(&queue[pinned].maps);
            pinned += 1;
        }
        busy += t0.elapsed().as_secs_f64();
        hooks.delay(1, step);
        let Some(batch) = queue.pop_front() else {
            return;
        };
        // The batch to plan was pinned above (the target is at least one batch).
        pinned -= 1;
        let plan = loop {
            // Steps that finished since: their rows unpin.
            while done.try_recv().is_ok() {
                finish(&mut planner, &mut in_flight, &mut spare);
            }
            let t0 = Instant::now();
            let far: Vec<&[RowMap]> = queue
                .iter()
                .take(pinned)
                .map(|p| p.maps.as_slice())
                .collect();
            let attempt = planner.plan(step, &batch.maps, &far, !in_flight.is_empty());
            busy += t0.elapsed().as_secs_f64();
            match attempt {
                Ok(Attempt::Done(tables, left_out, depends_on)) => {
                    pinned -= left_out;
                    grow_one = left_out > 0;
                    // Planned with a shorter window than the batches at hand: counted.
                    break (tables, pinned < queue.len(), depends_on);
                }
                Ok(Attempt::Wait) => match done.recv() {
                    Ok(_) => finish(&mut planner, &mut in_flight, &mut spare),
                    Err(_) => return,
                },
                Err(e) => {
                    let _ = out.send(Err(TrainError::Device(e.into())));
                    return;
                }
            }
        };
        let mut rows = spare.pop().unwrap_or_default();
        rows.resize_with(batch.maps.len(), Vec::new);
        for (r, m) in rows.iter_mut().zip(&batch.maps) {
            r.clear();
            r.extend_from_slice(&m.unique_rows);
        }
        in_flight.push_back(rows);
        let waiting = (t_wait.elapsed().as_secs_f64() - busy).max(0.0);
        let (tables, shrunk, depends_on) = plan;
        let plan = Plan {
            step,
            prepared: batch,
            tables,
            depends_on,
            shrunk,
            planner: StageTime {
                stage: "planner".into(),
                busy_s: busy,
                waiting_s: waiting,
            },
        };
        if out.send(Ok(plan)).is_err() {
            return;
        }
    }
}

/// The stager thread: waits for the write-backs a plan depends on, gathers the packed rows of
/// its fetches and renames the batch to cache slots.
#[allow(clippy::too_many_arguments)]
fn stage_stage<D: Device>(
    dev: &D,
    plans: Receiver<Result<Plan, TrainError>>,
    sets: Receiver<Vec<DeviceRows<D>>>,
    out: Sender<Result<Staged<D>, TrainError>>,
    stores: &[Arc<Mutex<HostStore>>],
    progress: &Progress,
    upload_bytes: &UploadBytes,
    hooks: &TestHooks,
    link: Link,
) {
    background();
    loop {
        let t_wait = Instant::now();
        let plan = match plans.recv() {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let _ = out.send(Err(e));
                return;
            }
            Err(_) => return,
        };
        let mut waiting = t_wait.elapsed().as_secs_f64();
        let t_dep = Instant::now();
        if !progress.wait_for(plan.depends_on) {
            return;
        }
        waiting += t_dep.elapsed().as_secs_f64();
        let t_busy = Instant::now();
        hooks.delay(2, plan.step);
        let mut tables = Vec::with_capacity(plan.tables.len());
        let mut bytes = 0u64;
        for (t, p) in plan.tables.into_iter().enumerate() {
            let (mut rows, mut slots) = (p.fetch_rows.clone(), p.fetch_slots.clone());
            if hooks.drop_prefetch == Some((plan.step, t)) && !rows.is_empty() {
                rows.remove(0);
                slots.remove(0);
            }
            let (mut packed, mut state) = (Vec::new(), Vec::new());
            lock_store(&stores[t]).gather(&rows, &mut packed, &mut state);
            bytes += 4 * (packed.len() + state.len() + slots.len()) as u64;
            let map = &plan.prepared.maps[t];
            let mut indices = Vec::new();
            map.rename_lookups(&p.slot_of, &mut indices);
            let mut renamed = RowMap::new();
            map.rename_into(&p.slot_of, &mut renamed);
            tables.push(StagedTable {
                plan: p,
                rows,
                slots,
                packed,
                state,
                indices,
                map: renamed,
            });
        }
        // Uploads happen here, ahead of the device: on a GPU they run on its copy engine while
        // the device stage trains an earlier batch; the modelled link is this stage's time.
        let t_set = Instant::now();
        let Ok(mut uploads) = sets.recv() else {
            return;
        };
        let set_wait = t_set.elapsed().as_secs_f64();
        waiting += set_wait;
        if let Err(e) = upload::upload_set(dev, &mut uploads, &tables, upload_bytes) {
            let _ = out.send(Err(e.into()));
            return;
        }
        link.charge(bytes);
        let staged = Staged {
            step: plan.step,
            prepared: plan.prepared,
            tables,
            uploads,
            depends_on: plan.depends_on,
            shrunk: plan.shrunk,
            planner: plan.planner,
            stager: StageTime {
                stage: "stager".into(),
                busy_s: (t_busy.elapsed().as_secs_f64() - set_wait).max(0.0),
                waiting_s: waiting,
            },
        };
        if out.send(Ok(staged)).is_err() {
            return;
        }
    }
}

/// The write-back thread: scatters evicted rows into the host stores, in step order.
#[allow(clippy::too_many_arguments)]
fn writeback_stage(
    evicted: Receiver<(u64, Evicted)>,
    recycle: Sender<Evicted>,
    stores: &[Arc<Mutex<HostStore>>],
    progress: &Progress,
    time: &Mutex<StageTime>,
    hooks: &TestHooks,
    link: Link,
) {
    background();
    loop {
        let t_wait = Instant::now();
        let Ok((step, rows)) = evicted.recv() else {
            return;
        };
        let waiting_s = t_wait.elapsed().as_secs_f64();
        let t_busy = Instant::now();
        hooks.delay(4, step);
        // Downloads of victims happen off the device's path: the link time is this stage's.
        link.charge(rows.bytes());
        for (t, (ids, words, state)) in rows.tables.iter().enumerate() {
            if !ids.is_empty() {
                lock_store(&stores[t]).scatter(ids, words, state);
            }
        }
        progress.advance(step);
        let _ = recycle.send(rows);
        *time.lock().unwrap_or_else(|e| e.into_inner()) = StageTime {
            stage: "writeback".into(),
            busy_s: t_busy.elapsed().as_secs_f64(),
            waiting_s,
        };
    }
}
