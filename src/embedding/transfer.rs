//! The rows the lookahead pipeline moves between its stages, table by table: the planner's slot
//! plan, the stager's fetched rows (gathered on the host, uploaded to device staging), and the
//! rows a step evicted (packed on the device, for the write-back stage to download).
//!
//! They live here, with the cache they feed, so that the pipeline depends on the embedding
//! tables and never the other way round.

use crate::data::RowMap;
use crate::device::{Device, DeviceError, DeviceVec};

/// Rows of one table and the cache slots they go to (or leave), in step: `slots[i]` is the
/// slot of `rows[i]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowSlots {
    /// Row ids in their table.
    pub rows: Vec<u32>,
    /// The slot of each row.
    pub slots: Vec<u32>,
}

impl RowSlots {
    /// Adds `row` at `slot`.
    pub fn push(&mut self, row: u32, slot: u32) {
        self.rows.push(row);
        self.slots.push(slot);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The planner's decisions for one table and one batch.
#[derive(Clone, Debug, Default)]
pub struct SlotPlan {
    /// The slot of each unique row of the batch (in the order of its unique-row map).
    pub slot_of: Vec<u32>,
    /// Rows to fetch from the host store, and their slots.
    pub fetch: RowSlots,
    /// Rows to write back and evict before the fetches, and their slots.
    pub evict: RowSlots,
}

/// One table's rows fetched by the stager for one batch: the packed rows and optimizer state
/// gathered from the host store (the planned fetches, less any a fault-injection test dropped),
/// and the batch's lookups and unique-row map renamed to cache slots.
#[derive(Clone, Debug, Default)]
pub struct FetchedRows {
    /// The planner's decisions.
    pub plan: SlotPlan,
    /// Rows gathered, and their slots (`plan.fetch`, less any a fault-injection test dropped).
    pub gathered: RowSlots,
    /// Their packed words, row after row.
    pub packed: Vec<u32>,
    /// Their optimizer state (empty without one).
    pub state: Vec<f32>,
    /// The batch's lookups renamed to slots.
    pub indices: Vec<u32>,
    /// The batch's unique-row map renamed to slots.
    pub map: RowMap,
}

impl FetchedRows {
    /// Bytes these rows move host → device: packed words, state and slot ids.
    pub fn bytes(&self) -> u64 {
        4 * (self.packed.len() + self.state.len() + self.gathered.len()) as u64
    }
}

/// One table's rows on the device between stages: fetched rows the stager uploaded, or
/// victims the device step quantized. Buffers grow on demand and are reused.
pub struct DeviceRows<D: Device> {
    /// Packed rows, row after row (u32 words).
    pub packed: DeviceVec<D>,
    /// Slot of each row (fetched rows only).
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

    /// One empty set per table.
    pub fn set(dev: &D, tables: usize) -> Result<Vec<Self>, DeviceError> {
        (0..tables).map(|_| Self::new(dev)).collect()
    }

    /// Device bytes allocated.
    pub fn bytes(&self) -> u64 {
        self.packed.bytes() + self.slots.bytes() + self.state.bytes()
    }

    /// Uploads `fetched`'s gathered rows (nothing when it fetched none).
    pub fn upload(&mut self, dev: &D, fetched: &FetchedRows) -> Result<(), DeviceError> {
        if fetched.gathered.is_empty() {
            return Ok(());
        }
        let slots = &fetched.gathered.slots;
        self.upload_parts(dev, &fetched.packed, slots, &fetched.state)
    }

    /// Uploads packed rows, their slots and their state (none when `state` is empty).
    pub fn upload_parts(
        &mut self,
        dev: &D,
        packed: &[u32],
        slots: &[u32],
        state: &[f32],
    ) -> Result<(), DeviceError> {
        self.packed.upload_elems(dev, packed)?;
        self.slots.upload_elems(dev, slots)?;
        if !state.is_empty() {
            self.state.upload_elems(dev, state)?;
        }
        Ok(())
    }
}

/// One table's rows evicted at one step, on the host: ids, and buffers of the right size for
/// their packed words (one packed row each, row-major) and optimizer state (empty without
/// one), which the write-back stage fills from the device.
#[derive(Clone, Debug, Default)]
pub struct EvictedRows {
    /// The evicted row ids.
    pub rows: Vec<u32>,
    /// Their packed words.
    pub words: Vec<u32>,
    /// Their optimizer state.
    pub state: Vec<f32>,
}

/// Every table's rows evicted at one step: host buffers to fill, and the device buffers the
/// step quantized the victims into.
pub struct Evicted<D: Device> {
    /// Per table, the host side.
    pub tables: Vec<EvictedRows>,
    /// Per table, the device buffers (`packed`, `state`).
    pub device: Vec<DeviceRows<D>>,
}

impl<D: Device> Evicted<D> {
    /// Bytes the write-back moves device → host.
    pub fn bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| 4 * (t.words.len() + t.state.len()) as u64)
            .sum()
    }

    /// Fills each table's host buffers from the device buffers its step quantized into.
    pub fn download(&mut self, dev: &D) -> Result<(), DeviceError> {
        for (rows, device) in self.tables.iter_mut().zip(&self.device) {
            if rows.rows.is_empty() {
                continue;
            }
            dev.download(
                device.packed.buffer(),
                0,
                bytemuck::cast_slice_mut(rows.words.as_mut_slice()),
            )?;
            if !rows.state.is_empty() {
                dev.download(
                    device.state.buffer(),
                    0,
                    bytemuck::cast_slice_mut(rows.state.as_mut_slice()),
                )?;
            }
        }
        Ok(())
    }
}
