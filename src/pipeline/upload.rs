//! Device-side staging filled by the stager thread: the packed rows of a batch's misses go to
//! the device while the device stage is still training an earlier batch.
//!
//! A GPU backend queues each upload on its copy engine and orders it only against the work that
//! used the same buffer before (CUDA: a copy stream and per-buffer events), so the transfer of
//! batch t+1's rows runs during the step of batch t and the device stage only expands them
//! (`dequantize_rows`). Sets of buffers circulate between the two threads: the stager takes a
//! free set, fills it and sends it along with the batch; the device stage returns it once the
//! step's loss has been read back, when every kernel that read it has finished on every backend.

use super::StagedTable;
use crate::device::{Device, DeviceError, DeviceVec};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One table's staged fetch, on the device.
pub struct DeviceRows<D: Device> {
    /// Packed rows, row after row (u32 words).
    pub packed: DeviceVec<D>,
    /// Destination slot of each row.
    pub slots: DeviceVec<D>,
    /// Optimizer state of each row (unused without one).
    pub state: DeviceVec<D>,
}

impl<D: Device> DeviceRows<D> {
    /// Empty buffers (they grow on demand).
    pub fn new(dev: &D) -> Result<Self, DeviceError> {
        Ok(DeviceRows {
            packed: DeviceVec::new(dev, 1)?,
            slots: DeviceVec::new(dev, 1)?,
            state: DeviceVec::new(dev, 1)?,
        })
    }

    /// Device bytes allocated.
    pub fn bytes(&self) -> u64 {
        self.packed.bytes() + self.slots.bytes() + self.state.bytes()
    }

    /// Uploads `table`'s gathered rows (nothing when it fetches none).
    fn upload(&mut self, dev: &D, table: &StagedTable) -> Result<(), DeviceError> {
        if table.rows.is_empty() {
            return Ok(());
        }
        self.packed.upload_u32(dev, &table.packed)?;
        self.slots.upload_u32(dev, &table.slots)?;
        if !table.state.is_empty() {
            self.state.upload_f32(dev, &table.state)?;
        }
        Ok(())
    }
}

/// The circulating sets of per-table device staging, and their total size for the memory
/// accounting.
pub struct UploadPool<D: Device> {
    sets: Vec<Vec<DeviceRows<D>>>,
    bytes: Arc<AtomicU64>,
}

impl<D: Device> UploadPool<D> {
    /// `sets` sets of `tables` tables each (buffers grow on demand).
    pub fn new(dev: &D, sets: usize, tables: usize) -> Result<Self, DeviceError> {
        let mut all = Vec::with_capacity(sets);
        for _ in 0..sets {
            all.push(
                (0..tables)
                    .map(|_| DeviceRows::new(dev))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let pool = UploadPool {
            sets: all,
            bytes: Arc::new(AtomicU64::new(0)),
        };
        pool.bytes.store(pool.total(), Ordering::Relaxed);
        Ok(pool)
    }

    fn total(&self) -> u64 {
        self.sets.iter().flatten().map(DeviceRows::bytes).sum()
    }

    /// The sets, to hand to the channel that circulates them.
    pub fn into_sets(self) -> (Vec<Vec<DeviceRows<D>>>, UploadBytes) {
        (self.sets, UploadBytes(self.bytes))
    }
}

/// A shared count of the device bytes all upload sets hold.
#[derive(Clone)]
pub struct UploadBytes(Arc<AtomicU64>);

impl UploadBytes {
    /// Bytes allocated now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Uploads every table of a staged batch into `set`, keeping `bytes` current when buffers grow.
pub(super) fn upload_set<D: Device>(
    dev: &D,
    set: &mut [DeviceRows<D>],
    tables: &[StagedTable],
    bytes: &UploadBytes,
) -> Result<(), DeviceError> {
    let before: u64 = set.iter().map(DeviceRows::bytes).sum();
    for (rows, table) in set.iter_mut().zip(tables) {
        rows.upload(dev, table)?;
    }
    let after: u64 = set.iter().map(DeviceRows::bytes).sum();
    if after != before {
        bytes.0.fetch_add(after - before, Ordering::Relaxed);
    }
    Ok(())
}
