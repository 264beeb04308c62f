//! The device step — the one training loop of every policy — and the wiring of the stages
//! around it. The loop runs on the caller's thread; the host stages run on their own.

use super::faults::{DelayedStage, Faults};
use super::loader::{LoadJob, Prepared, load};
use super::planner::Planner;
use super::recorder::{Recorder, StepRecord};
use super::stage::{Clock, Ports, Stages};
use super::stager::{StagerJob, UploadBytes, upload_sets};
use super::writeback::{Progress, write_back};
use super::{Evaluate, PipelineError, Ready, Settings, window};
use crate::data::Dataset;
use crate::device::Device;
use crate::embedding::Residency;
use crate::embedding::hotness::report;
use crate::embedding::transfer::{DeviceRows, Evicted};
use crate::model::Dlrm;
use crate::telemetry::{MemoryStats, Snapshot, StageTime};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

/// Batches queued between the loader and the device step when nothing plans ahead.
const QUEUE_DEPTH: usize = 4;
/// Batches queued between the lookahead stages (the planner's window is the look ahead).
const DEPTH: usize = 1;

/// The device step's ends of the lookahead stages' channels, and the buffers it lends them.
struct Lookahead<D: Device> {
    /// Staging sets back to the stager once a step's kernels have read them.
    sets: Sender<Vec<DeviceRows<D>>>,
    /// Steps done (the planner unpins their rows).
    done: Sender<u64>,
    /// Each step's victims, to the write-back stage.
    evicted: Sender<(u64, Evicted<D>)>,
    /// Victim buffers back from the write-back stage.
    recycled: Receiver<Evicted<D>>,
    progress: Arc<Progress>,
    writeback_time: Arc<Mutex<StageTime>>,
    upload_bytes: UploadBytes,
    /// Victim buffer sets ready for reuse; a new set is made when none is free.
    free_victims: Vec<Vec<DeviceRows<D>>>,
    victim_bytes: u64,
}

impl<D: Device> Lookahead<D> {
    /// Takes back the buffers of rows already written back, and returns a set of victim buffers
    /// for this step.
    fn victims(
        &mut self,
        dev: &D,
        model: &mut Dlrm<D>,
    ) -> Result<Vec<DeviceRows<D>>, PipelineError> {
        while let Ok(done) = self.recycled.try_recv() {
            let Evicted { tables, device } = done;
            for (t, rows) in tables.into_iter().enumerate() {
                model.embeddings_mut().recycle(t, rows.words, rows.state);
            }
            self.free_victims.push(device);
        }
        Ok(match self.free_victims.pop() {
            Some(set) => set,
            None => {
                let set = DeviceRows::set(dev, model.embeddings().tables())?;
                self.victim_bytes += set.iter().map(DeviceRows::bytes).sum::<u64>();
                set
            }
        })
    }

    /// Device bytes of the transfer buffers the stages share.
    fn bytes(&self) -> u64 {
        self.upload_bytes.get() + self.victim_bytes
    }
}

/// The device step's ends of the channels.
struct DeviceSide<D: Device> {
    input: Receiver<Ready<D>>,
    /// Emptied batch buffers, back to the loader.
    free: Sender<Prepared>,
    lookahead: Option<Lookahead<D>>,
}

/// Trains `model` on `data` for `settings.steps` steps, calling `on_step` with each step's
/// snapshot, and returns the run's record: wires the stages the policy needs around the device
/// loop and runs them (see the module docs of [`super`]). `model` was built for the run's
/// placement policy; with `settings.lookahead` it must be `lookahead`. When `on_step` answers
/// `Break`, the run ends after that step ([`Recorder::steps`] says how many ran).
pub fn run<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    data: &dyn Dataset,
    settings: &Settings,
    evaluate: &mut Evaluate<'_, D>,
    on_step: &mut dyn FnMut(&Snapshot) -> ControlFlow<()>,
) -> Result<Recorder, PipelineError> {
    let faults = &settings.faults;
    let schema = data.schema();
    let tables = schema.table_rows.len();
    let stream = data.open_train()?;
    let (depth, pool) = match settings.lookahead {
        Some(window) => (DEPTH, window + 4 * DEPTH + 6),
        None => (QUEUE_DEPTH, QUEUE_DEPTH + 2),
    };
    let (loaded_tx, loaded_rx) = bounded::<Ready<D>>(depth);
    let (free_tx, free_rx) = bounded::<Prepared>(pool);
    for _ in 0..pool {
        // The channel has room for all of them.
        let _ = free_tx.send(Prepared::new(schema.num_dense, tables));
    }
    let mut recorder = Recorder::new(settings.batch_size, settings.link.gbps());
    let mut transfer_bytes = 0;
    std::thread::scope(|scope| -> Result<(), PipelineError> {
        let mut stages = Stages::new();
        let job = LoadJob {
            steps: settings.steps,
            batch_size: settings.batch_size,
            hotness_every: settings.hotness_every,
            table_rows: schema.table_rows.iter().map(|&r| r as u64).collect(),
        };
        let loader_ports = Ports::new("loader", free_rx, loaded_tx);
        stages.spawn(scope, "loader", move || load(stream, job, loader_ports))?;
        let side = match settings.lookahead {
            None => DeviceSide {
                input: loaded_rx,
                free: free_tx,
                lookahead: None,
            },
            Some(window) => {
                let emb = model.embeddings();
                let planner = Planner::new(&schema.table_rows, &emb.slots());
                let stores = emb.stores();
                let (plan_tx, plan_rx) = bounded(DEPTH);
                let (ready_tx, ready_rx) = bounded(DEPTH);
                // Staging sets: one with the stager, DEPTH in the channel, one in the device
                // step.
                let (sets, upload_bytes) = upload_sets(dev, DEPTH + 2, tables)?;
                let (set_tx, set_rx) = bounded(DEPTH + 2);
                for set in sets {
                    let _ = set_tx.send(set);
                }
                let (done_tx, done_rx) = unbounded();
                let (evicted_tx, evicted_rx) = unbounded();
                let (recycle_tx, recycle_rx) = unbounded();
                let progress = Arc::new(Progress::new());
                let writeback_time = Arc::new(Mutex::new(Clock::new("writeback").lap()));
                let steps = settings.steps;
                let ports = Ports::new("planner", loaded_rx, plan_tx);
                stages.spawn(scope, "planner", move || {
                    window::plan(planner, window, steps, ports, done_rx, faults)
                })?;
                let stager = StagerJob {
                    dev,
                    sets: set_rx,
                    stores: stores.clone(),
                    progress: progress.clone(),
                    upload_bytes: upload_bytes.clone(),
                    link: settings.link,
                };
                let ports = Ports::new("stager", plan_rx, ready_tx);
                stages.spawn(scope, "stager", move || {
                    super::stager::stage(stager, ports, faults)
                })?;
                let (wb_progress, wb_time) = (progress.clone(), writeback_time.clone());
                let ports = Ports::new("writeback", evicted_rx, recycle_tx);
                let link = settings.link;
                stages.spawn(scope, "writeback", move || {
                    write_back(dev, ports, &stores, &wb_progress, &wb_time, link, faults)
                })?;
                DeviceSide {
                    input: ready_rx,
                    free: free_tx,
                    lookahead: Some(Lookahead {
                        sets: set_tx,
                        done: done_tx,
                        evicted: evicted_tx,
                        recycled: recycle_rx,
                        progress,
                        writeback_time,
                        upload_bytes,
                        free_victims: Vec::new(),
                        victim_bytes: 0,
                    }),
                }
            }
        };
        // The device side's channels close when the loop returns, so the stages before it stop.
        let progress = side.lookahead.as_ref().map(|l| l.progress.clone());
        let outcome = device_loop(
            dev,
            model,
            side,
            settings,
            &mut recorder,
            evaluate,
            on_step,
            faults,
        );
        if let (Err(_), Some(p)) = (&outcome, &progress) {
            p.abort();
        }
        let joined = stages.join();
        match outcome {
            Ok(bytes) => {
                transfer_bytes = bytes;
                joined
            }
            Err(Stop::Failed(e)) => Err(e),
            // The device step ran dry: the stage that stopped says why; if none does, the stage
            // feeding the device step stopped without a word.
            Err(Stop::InputClosed) => joined.and(Err(PipelineError::StageDied {
                stage: match settings.lookahead {
                    Some(_) => "stager",
                    None => "loader",
                },
            })),
        }
    })?;
    recorder.transfer_bytes = transfer_bytes;
    Ok(recorder)
}

/// Why the device loop stopped before its last step.
enum Stop {
    /// Its input closed: a stage before it stopped.
    InputClosed,
    /// It failed itself.
    Failed(PipelineError),
}

impl<E: Into<PipelineError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.into())
    }
}

/// The device step: trains each batch as it arrives, reports, and hands buffers back. Returns
/// the device bytes of the transfer buffers it lent the lookahead stages.
#[allow(clippy::too_many_arguments)]
fn device_loop<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    mut side: DeviceSide<D>,
    settings: &Settings,
    recorder: &mut Recorder,
    evaluate: &mut Evaluate<'_, D>,
    on_step: &mut dyn FnMut(&Snapshot) -> ControlFlow<()>,
    faults: &Faults,
) -> Result<u64, Stop> {
    let mut clock = Clock::new("device");
    for step in 1..=settings.steps {
        clock.restart();
        let input = &side.input;
        let ready = clock.wait(|| input.recv()).map_err(|_| Stop::InputClosed)?;
        faults.delay(DelayedStage::Device, step);
        let Ready {
            mut prepared,
            placed,
            ..
        } = ready;
        let (batch, maps) = (&prepared.batch, &prepared.maps);
        let mut shrunk = None;
        let loss = match (placed, side.lookahead.as_mut()) {
            (None, _) => {
                let out = model.train_step(dev, batch, maps, Residency::OnDemand, settings.lr)?;
                // Fetches and write-backs were synchronous: the modelled link's time is the
                // device step's.
                let stats = model.embeddings().stats();
                settings
                    .link
                    .charge(stats.iter().map(|t| t.bytes_h2d + t.bytes_d2h).sum());
                out.loss
            }
            (Some(placed), Some(l)) => {
                let victims = l.victims(dev, model)?;
                let victims_before: u64 = victims.iter().map(DeviceRows::bytes).sum();
                // The stager already waited for these write-backs; a synchronous fetch of a
                // dropped prefetch reads the store too, so the device makes sure as well.
                let progress = &l.progress;
                if !clock.wait(|| progress.wait_for(placed.schedule.depends_on)) {
                    return Err(Stop::InputClosed);
                }
                let residency = Residency::Planned {
                    fetched: &placed.fetched,
                    uploads: &placed.uploads,
                    victims,
                    step,
                };
                let out = model.train_step(dev, batch, maps, residency, settings.lr)?;
                let evicted = out.evicted.ok_or(PipelineError::Inconsistent {
                    step,
                    message: "a planned step returned no evicted rows",
                })?;
                // Buffers only grow.
                l.victim_bytes +=
                    evicted.device.iter().map(DeviceRows::bytes).sum::<u64>() - victims_before;
                // The loss was read back, so every kernel that read the staged rows has
                // finished: the stager may refill them.
                let _ = l.sets.send(placed.uploads);
                let _ = l.evicted.send((step, evicted));
                shrunk = Some(placed.schedule.shrunk);
                out.loss
            }
            (Some(_), None) => {
                return Err(Stop::Failed(PipelineError::Inconsistent {
                    step,
                    message: "a batch was placed ahead without a lookahead pipeline",
                }));
            }
        };
        let device_time = clock.lap();
        let emb = model.embeddings();
        let tables = emb.stats().to_vec();
        let hotness = prepared.hotness.take().map(|c| {
            report(
                c,
                |t, row| emb.is_resident(t, row),
                |t| emb.resident_rows(t),
            )
        });
        let mut memory = memory(dev, model);
        let mut stages = std::mem::take(&mut prepared.times);
        stages.push(device_time.clone());
        if let Some(l) = &side.lookahead {
            memory.device_bytes += l.bytes();
            let _ = l.done.send(step);
            stages.push(
                l.writeback_time
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            );
        }
        let _ = side.free.send(prepared);
        let eval = if settings.evaluates(step) {
            // Evaluation reads the store for rows not cached: every write-back so far must have
            // landed.
            if let Some(l) = &side.lookahead
                && !l.progress.wait_for(step)
            {
                return Err(Stop::InputClosed);
            }
            Some(evaluate(dev, model)?)
        } else {
            None
        };
        let snapshot = recorder.record(StepRecord {
            step,
            loss,
            tables,
            stages,
            hotness,
            memory,
            busy_s: device_time.busy_s,
            waiting_s: device_time.waiting_s,
            eval,
            window_shrunk: shrunk,
        });
        if on_step(&snapshot).is_break() {
            // Stopped by the caller after a whole step: the stages before the device step see
            // their queues close and stop; the write-back drains what was evicted.
            break;
        }
    }
    Ok(side.lookahead.as_ref().map_or(0, Lookahead::bytes))
}

/// Memory the model holds now.
fn memory<D: Device>(dev: &D, model: &Dlrm<D>) -> MemoryStats {
    let emb = model.embeddings();
    MemoryStats {
        host_store_bytes: emb.host_store_bytes(),
        device_cache_bytes: emb.device_bytes(dev),
        device_bytes: model.device_bytes(dev),
        fp32_equivalent_bytes: emb.fp32_bytes(),
    }
}
