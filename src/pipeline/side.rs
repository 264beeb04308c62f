//! What the device step holds of the other stages: its ends of their channels and the buffers
//! it lends them. Wired by [`super::device`], used by the loop in [`super::steps`].

use super::loader::Prepared;
use super::stager::UploadBytes;
use super::writeback::Progress;
use super::{PipelineError, Ready};
use crate::device::Device;
use crate::embedding::transfer::{DeviceRows, Evicted};
use crate::model::Dlrm;
use crate::telemetry::StageTime;
use crossbeam_channel::{Receiver, Sender};
use std::sync::{Arc, Mutex};

/// The device step's ends of the lookahead stages' channels, and the buffers it lends them.
pub(super) struct Lookahead<D: Device> {
    /// Staging sets back to the stager once a step's kernels have read them.
    pub sets: Sender<Vec<DeviceRows<D>>>,
    /// Steps launched (the planner unpins their rows).
    pub done: Sender<u64>,
    /// Each step's victims, to the write-back stage.
    pub evicted: Sender<(u64, Evicted<D>)>,
    /// Victim buffers back from the write-back stage.
    pub recycled: Receiver<Evicted<D>>,
    /// How far the write-back stage has got.
    pub progress: Arc<Progress>,
    /// The write-back stage's latest lap, shared with it.
    pub writeback_time: Arc<Mutex<StageTime>>,
    /// The staging sets' byte count.
    pub upload_bytes: UploadBytes,
    /// Victim buffer sets ready for reuse; a new set is made when none is free.
    pub free_victims: Vec<Vec<DeviceRows<D>>>,
    /// Device bytes of the victim buffers.
    pub victim_bytes: u64,
}

impl<D: Device> Lookahead<D> {
    /// Takes back the buffers of rows already written back, and returns a set of victim buffers
    /// for this step.
    pub fn victims(
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
    pub fn bytes(&self) -> u64 {
        self.upload_bytes.get() + self.victim_bytes
    }

    /// The write-back stage's latest lap.
    pub fn writeback_time(&self) -> StageTime {
        self.writeback_time
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The device step's ends of the channels.
pub(super) struct DeviceSide<D: Device> {
    /// Batches ready to train.
    pub input: Receiver<Ready<D>>,
    /// Emptied batch buffers, back to the loader.
    pub free: Sender<Prepared>,
    /// The lookahead stages, when the policy has them.
    pub lookahead: Option<Lookahead<D>>,
}
