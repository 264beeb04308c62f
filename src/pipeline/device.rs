//! The wiring of the stages around the device step (the loop itself: [`super::steps`]). The
//! loop runs on the caller's thread; the host stages run on their own.

use super::loader::{LoadJob, Prepared, load};
use super::planner::Planner;
use super::recorder::Recorder;
use super::side::{DeviceSide, Lookahead};
use super::stage::{Clock, Ports, Stages};
use super::stager::{StagerJob, upload_sets};
use super::steps::{Reporting, Stop, device_loop};
use super::writeback::{Progress, write_back};
use super::{Evaluate, PipelineError, Ready, Save, Settings, window};
use crate::data::Dataset;
use crate::device::Device;
use crate::model::Dlrm;
use crate::telemetry::Snapshot;
use crossbeam_channel::{bounded, unbounded};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

/// Batches queued between the loader and the device step when nothing plans ahead.
const QUEUE_DEPTH: usize = 4;
/// Batches queued between the lookahead stages (the planner's window is the look ahead).
const DEPTH: usize = 1;

/// Trains `model` on `data` for `settings.steps` steps, calling `on_step` with each step's
/// snapshot, and returns the run's record: wires the stages the policy needs around the device
/// loop and runs them (see the module docs of [`super`]). `model` was built for the run's
/// placement policy; with `settings.lookahead` it must be `lookahead`. When `on_step` answers
/// `Break`, the run ends after that step or the one launched after it, which is already on
/// the device ([`Recorder::steps`] says how many ran).
pub fn run<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    data: &dyn Dataset,
    settings: &Settings,
    evaluate: &mut Evaluate<'_, D>,
    save: &mut Save<'_, D>,
    on_step: &mut dyn FnMut(&Snapshot) -> ControlFlow<()>,
) -> Result<Recorder, PipelineError> {
    let faults = &settings.faults;
    let schema = data.schema();
    let tables = schema.table_rows.len();
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
            first_step: settings.first_step,
            batch_size: settings.batch_size,
            hotness_every: settings.hotness_every,
            table_rows: schema.table_rows.iter().map(|&r| r as u64).collect(),
            threads: settings.loader_threads,
        };
        let loader_ports = Ports::new("loader", free_rx, loaded_tx);
        stages.spawn(scope, "loader", move || load(data, job, loader_ports))?;
        let side = match settings.lookahead {
            None => DeviceSide {
                input: loaded_rx,
                free: free_tx,
                lookahead: None,
            },
            Some(window) => {
                let emb = model.embeddings();
                let mut planner = Planner::new(&schema.table_rows, &emb.slots());
                if settings.first_step > 1 {
                    // Resumed: the caches hold the checkpoint's rows.
                    let resident: Vec<_> =
                        (0..tables).map(|t| emb.resident_by_last_use(t)).collect();
                    planner.restore(&resident);
                }
                let stores = emb.stores();
                let (plan_tx, plan_rx) = bounded(DEPTH);
                let (ready_tx, ready_rx) = bounded(DEPTH);
                // Staging sets: one with the stager, DEPTH in the channel, two in the device
                // step (the step being launched and the one landing).
                let (sets, upload_bytes) = upload_sets(dev, DEPTH + 3, tables)?;
                let (set_tx, set_rx) = bounded(DEPTH + 3);
                for set in sets {
                    let _ = set_tx.send(set);
                }
                let (done_tx, done_rx) = unbounded();
                let (evicted_tx, evicted_rx) = unbounded();
                let (recycle_tx, recycle_rx) = unbounded();
                let progress = Arc::new(Progress::new());
                let writeback_time = Arc::new(Mutex::new(Clock::new("writeback").lap()));
                let steps = (settings.first_step, settings.steps);
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
        let out = Reporting {
            recorder: &mut recorder,
            evaluate,
            save,
            on_step,
        };
        let outcome = device_loop(dev, model, side, settings, out, faults);
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
