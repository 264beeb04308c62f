//! The write-back stage: downloads each step's victims (quantized on the device by the step)
//! and scatters them into the host stores, in step order, then hands the buffers back to the
//! device stage. [`Progress`] tells the stager (and the device stage) how far it has got, so a
//! row evicted at step s is never fetched from the store before its write-back has landed.

use super::PipelineError;
use super::faults::{DelayedStage, Faults};
use super::link::Link;
use super::stage::Ports;
use crate::device::Device;
use crate::embedding::lock_store;
use crate::embedding::store::HostStore;
use crate::embedding::transfer::Evicted;
use crate::telemetry::StageTime;
use std::sync::{Arc, Condvar, Mutex};

/// How far the write-back stage has got: every eviction of steps `..= done` is in the store.
pub struct Progress {
    done: Mutex<(u64, bool)>,
    cv: Condvar,
}

impl Progress {
    /// Nothing written back yet.
    pub fn new() -> Self {
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
    pub fn abort(&self) {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        d.1 = true;
        self.cv.notify_all();
    }

    /// Waits until the write-backs of `step` and before have landed; false if aborted.
    pub fn wait_for(&self, step: u64) -> bool {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while d.0 < step && !d.1 {
            d = self.cv.wait(d).unwrap_or_else(|e| e.into_inner());
        }
        !d.1
    }
}

/// The write-back stage: `(step, victims)` in, the emptied buffers out (back to the device
/// stage). Its latest lap goes to `time`, where the device stage reads it for the telemetry.
/// A failed download stops the run (and every stage waiting on `progress`).
#[allow(clippy::too_many_arguments)]
pub fn write_back<D: Device>(
    dev: &D,
    mut ports: Ports<(u64, Evicted<D>), Evicted<D>>,
    stores: &[Arc<Mutex<HostStore>>],
    progress: &Progress,
    time: &Mutex<StageTime>,
    link: Link,
    faults: &Faults,
) -> Result<(), PipelineError> {
    while let Some((step, mut evicted)) = ports.recv() {
        faults.delay(DelayedStage::Writeback, step);
        // Downloads of victims happen off the device's path: the link time is this stage's.
        link.charge(evicted.bytes());
        if let Err(e) = evicted.download(dev) {
            progress.abort();
            return Err(e.into());
        }
        for (rows, store) in evicted.tables.iter().zip(stores) {
            if !rows.rows.is_empty() {
                lock_store(store).scatter(&rows.rows, &rows.words, &rows.state);
            }
        }
        progress.advance(step);
        let lap = ports.lap();
        // The device stage may have stopped; the buffers are then simply dropped.
        ports.send(evicted);
        *time.lock().unwrap_or_else(|e| e.into_inner()) = lap;
    }
    Ok(())
}
