//! The device step: the one training loop of every policy.
//!
//! Each step is *launched* — its batch uploaded, its kernels recorded and submitted, its loss's
//! read-back started ([`Dlrm::launch_step`]) — and only then does the previous step *land*: its
//! loss is waited for, the staging its kernels read goes back to the stager, and its snapshot is
//! recorded and reported. So the host records step n+1 while the device still runs step n, and a
//! GPU never idles between steps waiting for the host. Each snapshot says whether that happened
//! (`overlapped`: the host had recorded the whole step before the device finished the one
//! before). A step that evaluates, the last step, and the step after a stop land at once.

use super::faults::{DelayedStage, Faults};
use super::recorder::{Recorder, StepRecord};
use super::side::DeviceSide;
use super::stage::Clock;
use super::stager::UploadSet;
use super::{Evaluate, PipelineError, Ready, Save, Settings};
use crate::device::Device;
use crate::embedding::Residency;
use crate::embedding::hotness::report;
use crate::embedding::transfer::DeviceRows;
use crate::model::{Dlrm, Launched, PendingLoss};
use crate::telemetry::{MemoryStats, Snapshot, StageTime};
use std::ops::ControlFlow;

/// Why the device loop stopped before its last step.
pub(super) enum Stop {
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

/// A launched step whose loss is still on its way back.
struct InFlight<D: Device> {
    /// Everything but the loss and the device stage's time.
    record: StepRecord,
    loss: PendingLoss,
    /// The staging its kernels read: back to the stager once the step has landed.
    uploads: Option<UploadSet<D>>,
}

/// What the loop reports to.
pub(super) struct Reporting<'r, 'e, D: Device> {
    pub recorder: &'r mut Recorder,
    pub evaluate: &'r mut Evaluate<'e, D>,
    pub save: &'r mut Save<'e, D>,
    pub on_step: &'r mut dyn FnMut(&Snapshot) -> ControlFlow<()>,
}

/// The device step: launches each batch as it arrives, lands the one before, reports, and
/// hands buffers back. Returns the device bytes of the transfer buffers it lent the lookahead
/// stages.
pub(super) fn device_loop<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    mut side: DeviceSide<D>,
    settings: &Settings,
    mut out: Reporting<'_, '_, D>,
    faults: &Faults,
) -> Result<u64, Stop> {
    let mut clock = Clock::new("device");
    let mut in_flight: Option<InFlight<D>> = None;
    let mut stopping = false;
    for step in settings.first_step..=settings.steps {
        clock.restart();
        let input = &side.input;
        let ready = clock.wait(|| input.recv()).map_err(|_| Stop::InputClosed)?;
        faults.delay(DelayedStage::Device, step);
        let mut flight = launch(dev, model, &mut side, settings, ready, step)?;
        if let Some(prev) = in_flight.take() {
            // The host has recorded all of this step: if the device is still on the previous
            // one, the two overlapped.
            flight.record.overlapped = !model.loss_ready(dev, &prev.loss)?;
            let record = land(dev, model, &side, prev)?;
            stopping |=
                clock.exclude(|| report_step(dev, model, &side, settings, &mut out, record))?;
        }
        // A step that evaluates needs its result now; so does the last, and one after a stop.
        let now =
            settings.evaluates(step) || settings.saves(step) || stopping || step == settings.steps;
        if now {
            let (mut record, lap) = (land(dev, model, &side, flight)?, clock.lap());
            record.set_device_time(lap);
            stopping |= report_step(dev, model, &side, settings, &mut out, record)?;
        } else {
            flight.record.set_device_time(clock.lap());
            in_flight = Some(flight);
        }
        if stopping {
            break;
        }
    }
    Ok(side.lookahead.as_ref().map_or(0, |l| l.bytes()))
}

/// Launches one step: makes its rows resident (as the policy says), records its kernels, starts
/// reading its loss back, and notes what the host knows of it already.
fn launch<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    side: &mut DeviceSide<D>,
    settings: &Settings,
    ready: Ready<D>,
    step: u64,
) -> Result<InFlight<D>, Stop> {
    let Ready {
        mut prepared,
        placed,
        ..
    } = ready;
    let (batch, maps) = (&prepared.batch, &prepared.maps);
    let (loss, uploads, shrunk) = match (placed, side.lookahead.as_mut()) {
        (None, _) => {
            let out = model.launch_step(dev, batch, maps, Residency::OnDemand, settings.lr)?;
            // Fetches and write-backs were synchronous: the modelled link's time is the
            // device step's.
            let stats = model.embeddings().stats();
            settings
                .link
                .charge(stats.iter().map(|t| t.bytes_h2d + t.bytes_d2h).sum());
            (out.loss, None, None)
        }
        (Some(placed), Some(l)) => {
            let victims = l.victims(dev, model)?;
            let victims_before: u64 = victims.iter().map(DeviceRows::bytes).sum();
            // The stager already waited for these write-backs; a synchronous fetch of a dropped
            // prefetch reads the store too, so the device makes sure as well.
            if !l.progress.wait_for(placed.schedule.depends_on) {
                return Err(Stop::InputClosed);
            }
            let residency = Residency::Planned {
                fetched: &placed.fetched,
                uploads: &placed.uploads,
                victims,
                step,
            };
            let Launched { loss, evicted } =
                model.launch_step(dev, batch, maps, residency, settings.lr)?;
            let evicted = evicted.ok_or(PipelineError::Inconsistent {
                step,
                message: "a planned step returned no evicted rows",
            })?;
            // Buffers only grow.
            l.victim_bytes +=
                evicted.device.iter().map(DeviceRows::bytes).sum::<u64>() - victims_before;
            // The write-back's download is ordered after the step's kernels; the planner may
            // reuse the step's slots in later steps, whose kernels come after this one's.
            let _ = l.evicted.send((step, evicted));
            let _ = l.done.send(step);
            (loss, Some(placed.uploads), Some(placed.schedule.shrunk))
        }
        (Some(_), None) => {
            return Err(Stop::Failed(PipelineError::Inconsistent {
                step,
                message: "a batch was placed ahead without a lookahead pipeline",
            }));
        }
    };
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
    // The device's lap is filled in when the step is timed (`StepRecord::set_device_time`).
    stages.push(StageTime {
        stage: "device".into(),
        busy_s: 0.0,
        waiting_s: 0.0,
    });
    if let Some(l) = &side.lookahead {
        memory.device_bytes += l.bytes();
        stages.push(l.writeback_time());
    }
    let _ = side.free.send(prepared);
    Ok(InFlight {
        record: StepRecord {
            step,
            loss: f64::NAN,
            tables,
            stages,
            hotness,
            memory,
            busy_s: 0.0,
            waiting_s: 0.0,
            eval: None,
            window_shrunk: shrunk,
            overlapped: false,
        },
        loss,
        uploads,
    })
}

/// Waits for a launched step's loss; its staging goes back to the stager, since every kernel
/// that read it has finished.
fn land<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    side: &DeviceSide<D>,
    flight: InFlight<D>,
) -> Result<StepRecord, Stop> {
    let mut record = flight.record;
    record.loss = model.finish_loss(dev, flight.loss)?;
    if let (Some(uploads), Some(l)) = (flight.uploads, &side.lookahead) {
        let _ = l.sets.send(uploads);
    }
    Ok(record)
}

/// Evaluates if the step asks for it, records the step and reports its snapshot. Returns
/// whether the caller asked to stop.
fn report_step<D: Device>(
    dev: &D,
    model: &mut Dlrm<D>,
    side: &DeviceSide<D>,
    settings: &Settings,
    out: &mut Reporting<'_, '_, D>,
    mut record: StepRecord,
) -> Result<bool, Stop> {
    if settings.evaluates(record.step) {
        // Evaluation reads the store for rows not cached: every write-back so far must have
        // landed.
        if let Some(l) = &side.lookahead
            && !l.progress.wait_for(record.step)
        {
            return Err(Stop::InputClosed);
        }
        record.eval = Some((out.evaluate)(dev, model)?);
    }
    if settings.saves(record.step) {
        // A checkpoint holds the stores: every write-back so far must have landed.
        if let Some(l) = &side.lookahead
            && !l.progress.wait_for(record.step)
        {
            return Err(Stop::InputClosed);
        }
        (out.save)(dev, model, record.step)?;
    }
    let snapshot = out.recorder.record(record);
    // Stopped by the caller after a whole step: the stages before the device step see their
    // queues close and stop; the write-back drains what was evicted.
    Ok((out.on_step)(&snapshot).is_break())
}

/// Memory the model holds now.
fn memory<D: Device>(dev: &D, model: &Dlrm<D>) -> MemoryStats {
    let emb = model.embeddings();
    MemoryStats {
        host_store_bytes: emb.host_store_bytes(),
        device_cache_bytes: emb.device_bytes(dev),
        device_bytes: model.device_bytes(dev),
        fp32_equivalent_bytes: emb.fp32_bytes(),
        dhe_parameter_bytes: 4 * model.hashed().parameters(),
    }
}
