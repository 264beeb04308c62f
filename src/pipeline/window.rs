//! The planner stage: keeps the window of the next W batches pinned, plans each batch with the
//! [`Planner`], and unpins a batch's rows when the device stage reports its step done.

use super::faults::{DelayedStage, Faults};
use super::planner::{Attempt, Planner};
use super::stage::{Laps, Ports};
use super::{PipelineError, Planned, Ready, Schedule};
use crate::data::RowMap;
use crate::device::Device;
use crate::telemetry::StageTime;
use crossbeam_channel::Receiver;
use std::collections::VecDeque;

/// The unique rows of each planned, not yet trained batch (to unpin when it is done), with spare
/// vectors to reuse for them.
#[derive(Default)]
struct InFlight {
    batches: VecDeque<Vec<Vec<u32>>>,
    spare: Vec<Vec<Vec<u32>>>,
}

impl InFlight {
    /// The oldest batch in flight finished: its rows unpin.
    fn finish(&mut self, planner: &mut Planner) {
        if let Some(rows) = self.batches.pop_front() {
            planner.unpin_rows(&rows);
            self.spare.push(rows);
        }
    }

    /// A batch with these unique-row maps was planned: it is in flight until its step is done.
    fn start(&mut self, maps: &[RowMap]) {
        let mut rows = self.spare.pop().unwrap_or_default();
        rows.resize_with(maps.len(), Vec::new);
        for (r, m) in rows.iter_mut().zip(maps) {
            r.clear();
            r.extend_from_slice(&m.unique_rows);
        }
        self.batches.push_back(rows);
    }
}

impl<D: Device> Laps for Planned<D> {
    fn laps(&mut self) -> &mut Vec<StageTime> {
        self.ready.laps()
    }
}

/// The planner stage: the batches of steps `first ..= steps` in, their plans out. `done`
/// carries the steps the device stage finished.
pub fn plan<D: Device>(
    mut planner: Planner,
    window: usize,
    (first, steps): (u64, u64),
    mut ports: Ports<Ready<D>, Planned<D>>,
    done: Receiver<u64>,
    faults: &Faults,
) -> Result<(), PipelineError> {
    let mut queue: VecDeque<Ready<D>> = VecDeque::new();
    // `queue[..pinned]` are in the window (their rows pinned); the rest wait outside it.
    let (mut pinned, mut grow_one) = (0usize, false);
    let mut received = first - 1;
    let mut in_flight = InFlight::default();
    for step in first..=steps {
        // Fill the window: the batch to plan and the W after it.
        while queue.len() <= window && received < steps {
            let Some(ready) = ports.recv() else {
                return Ok(());
            };
            let p = &ready.prepared;
            planner.check(&p.batch.sparse, &p.maps)?;
            queue.push_back(ready);
            received += 1;
        }
        // Let batches into the window (pin their rows): all of them, or after a plan that had
        // to leave some out, one more per step — pinning a window that does not fit only for
        // the next plan to unpin it again would cost two passes over each left-out batch.
        let target = if grow_one {
            (pinned + 1).min(queue.len())
        } else {
            queue.len()
        };
        while pinned < target {
            planner.pin(&queue[pinned].prepared.maps);
            pinned += 1;
        }
        faults.delay(DelayedStage::Planner, step);
        let Some(batch) = queue.pop_front() else {
            return Ok(());
        };
        // The batch to plan was pinned above (the target is at least one batch).
        pinned -= 1;
        let (plans, shrunk, depends_on) = loop {
            // Steps that finished since: their rows unpin.
            while done.try_recv().is_ok() {
                in_flight.finish(&mut planner);
            }
            let far: Vec<&[RowMap]> = queue
                .iter()
                .take(pinned)
                .map(|r| r.prepared.maps.as_slice())
                .collect();
            let maps = &batch.prepared.maps;
            match planner.plan(step, maps, &far, !in_flight.batches.is_empty())? {
                Attempt::Done(plans, left_out, depends_on) => {
                    pinned -= left_out;
                    grow_one = left_out > 0;
                    // Planned with a shorter window than the batches at hand: counted.
                    break (plans, pinned < queue.len(), depends_on);
                }
                Attempt::Wait => match ports.wait(|| done.recv()) {
                    Ok(_) => in_flight.finish(&mut planner),
                    Err(_) => return Ok(()),
                },
            }
        };
        in_flight.start(&batch.prepared.maps);
        let planned = Planned {
            ready: batch,
            plans,
            schedule: Schedule { depends_on, shrunk },
        };
        if !ports.finish(planned) {
            return Ok(());
        }
    }
    Ok(())
}
