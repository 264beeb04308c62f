//! The stager stage: waits for the write-backs a plan depends on, gathers the packed rows of its
//! fetches from the host stores, uploads them to device staging and renames the batch to cache
//! slots — all ahead of the device stage.
//!
//! A GPU backend queues each upload on its copy engine and orders it only against the work that
//! used the same buffer before (CUDA: a copy stream and per-buffer events), so the transfer of
//! batch t+1's rows runs during the step of batch t and the device stage only expands them
//! (`dequantize_rows`). Sets of device buffers ([`UploadSets`]) circulate between the two
//! threads: the stager takes a free set, fills it and sends it along with the batch; the device
//! stage returns it once the step's loss has been read back, when every kernel that read it has
//! finished on every backend.

use super::faults::{DelayedStage, Faults};
use super::link::Link;
use super::stage::Ports;
use super::writeback::Progress;
use super::{PipelineError, Placed, Planned, Ready};
use crate::data::RowMap;
use crate::device::{Device, DeviceError};
use crate::embedding::lock_store;
use crate::embedding::store::HostStore;
use crate::embedding::transfer::{DeviceRows, FetchedRows};
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The device staging sets of a run, and the device bytes they hold together (they grow on
/// demand, in whichever thread fills them).
#[derive(Clone)]
pub struct UploadBytes(Arc<AtomicU64>);

impl UploadBytes {
    /// Bytes allocated now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One staging set: a [`DeviceRows`] per table.
pub type UploadSet<D> = Vec<DeviceRows<D>>;

/// `sets` sets of empty staging for `tables` tables, and their shared byte count.
pub fn upload_sets<D: Device>(
    dev: &D,
    sets: usize,
    tables: usize,
) -> Result<(Vec<UploadSet<D>>, UploadBytes), DeviceError> {
    let all = (0..sets)
        .map(|_| DeviceRows::set(dev, tables))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = all.iter().flatten().map(DeviceRows::bytes).sum();
    Ok((all, UploadBytes(Arc::new(AtomicU64::new(bytes)))))
}

/// What the stager needs besides its ports.
pub struct StagerJob<'a, D: Device> {
    /// The device the rows go to.
    pub dev: &'a D,
    /// Free staging sets, back from the device stage.
    pub sets: Receiver<Vec<DeviceRows<D>>>,
    /// The host stores, one per table.
    pub stores: Vec<Arc<Mutex<HostStore>>>,
    /// How far the write-back stage has got.
    pub progress: Arc<Progress>,
    /// The staging sets' byte count, kept current as buffers grow.
    pub upload_bytes: UploadBytes,
    /// The modelled link; uploads are charged to this stage.
    pub link: Link,
}

/// The stager stage (see the module docs).
pub fn stage<D: Device>(
    job: StagerJob<'_, D>,
    mut ports: Ports<Planned<D>, Ready<D>>,
    faults: &Faults,
) -> Result<(), PipelineError> {
    while let Some(planned) = ports.recv() {
        let Planned {
            mut ready,
            plans,
            schedule,
        } = planned;
        if !ports.wait(|| job.progress.wait_for(schedule.depends_on)) {
            return Ok(());
        }
        faults.delay(DelayedStage::Stager, ready.step);
        let mut fetched = Vec::with_capacity(plans.len());
        let mut bytes = 0u64;
        for (t, plan) in plans.into_iter().enumerate() {
            let mut gathered = plan.fetch.clone();
            if faults.drops_prefetch(ready.step, t) && !gathered.is_empty() {
                gathered.rows.remove(0);
                gathered.slots.remove(0);
            }
            let (mut packed, mut state) = (Vec::new(), Vec::new());
            lock_store(&job.stores[t]).gather(&gathered.rows, &mut packed, &mut state);
            let map = &ready.prepared.maps[t];
            let mut indices = Vec::new();
            map.rename_lookups(&plan.slot_of, &mut indices);
            let mut renamed = RowMap::new();
            map.rename_into(&plan.slot_of, &mut renamed);
            let rows = FetchedRows {
                plan,
                gathered,
                packed,
                state,
                indices,
                map: renamed,
            };
            bytes += rows.bytes();
            fetched.push(rows);
        }
        // Uploads happen here, ahead of the device: on a GPU they run on its copy engine while
        // the device stage trains an earlier batch; the modelled link is this stage's time.
        let Some(mut uploads) = ports.wait(|| job.sets.recv().ok()) else {
            return Ok(());
        };
        let before: u64 = uploads.iter().map(DeviceRows::bytes).sum();
        for (set, rows) in uploads.iter_mut().zip(&fetched) {
            set.upload(job.dev, rows)?;
        }
        let after: u64 = uploads.iter().map(DeviceRows::bytes).sum();
        job.upload_bytes
            .0
            .fetch_add(after - before, Ordering::Relaxed);
        job.link.charge(bytes);
        ready.placed = Some(Placed {
            fetched,
            uploads,
            schedule,
        });
        if !ports.finish(ready) {
            return Ok(());
        }
    }
    Ok(())
}
