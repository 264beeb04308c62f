//! Reading rows through a cache without changing it: evaluation must measure a model without
//! perturbing what training caches (no fetch, no eviction, no use counted).

use super::{Access, DeviceCache, lock_store};
use crate::device::{
    BagForward, BagShape, DequantizeRows, Device, DeviceError, Pooling, RowMove, Strided,
};
use crate::telemetry::TableStats;

impl DeviceCache {
    /// Fills the shared evaluation rows (`io.eval_rows`, `[unique.len() × dim]` FP32) with the
    /// rows `unique`: resident rows are gathered from their slots (a `bag_forward` over one-row
    /// bags), the others read from the store and expanded. Row `unique[u]` lands at
    /// `position[u]`. Counts hits, misses and the bytes fetched.
    pub fn read_only<D: Device>(
        &self,
        at: &mut Access<'_, D>,
        unique: &[u32],
        position: &mut Vec<u32>,
        stats: &mut TableStats,
    ) -> Result<(), DeviceError> {
        let (dev, io, slots) = (at.dev, &mut *at.io, &at.slots);
        io.eval_rows.reserve(dev, unique.len() * self.dim)?;
        position.clear();
        position.resize(unique.len(), 0);
        io.rows.clear(); // missing rows
        io.slots.clear(); // slots of resident rows
        let mut missing = Vec::new();
        for (u, &row) in unique.iter().enumerate() {
            match self.dir.lookup(row) {
                Some(s) => {
                    position[u] = io.slots.len() as u32;
                    io.slots.push(s);
                }
                None => {
                    missing.push(u);
                    io.rows.push(row);
                }
            }
        }
        let hits = io.slots.len();
        for (i, &u) in missing.iter().enumerate() {
            position[u] = (hits + i) as u32;
        }
        let total = unique.len() as u32;
        if hits > 0 {
            let offsets: Vec<u32> = (0..=hits as u32).collect();
            io.offsets.upload_elems(dev, &offsets)?;
            io.staged.slots.upload_elems(dev, &io.slots)?;
            dev.bag_forward(&BagForward {
                table: slots.weights,
                indices: io.staged.slots.buffer(),
                offsets: io.offsets.buffer(),
                shape: BagShape {
                    rows: self.dir.slots(),
                    dim: self.dim as u32,
                    bags: hits as u32,
                    pooling: Pooling::Sum,
                },
                out: Strided::packed(io.eval_rows.buffer(), self.dim as u32),
            })?;
        }
        if !missing.is_empty() {
            io.packed_host.clear();
            io.state_host.clear();
            lock_store(&self.store).gather(&io.rows, &mut io.packed_host, &mut io.state_host);
            io.staged.packed.upload_elems(dev, &io.packed_host)?;
            let targets: Vec<u32> = (hits as u32..total).collect();
            io.row_ids.upload_elems(dev, &targets)?;
            dev.dequantize_rows(&DequantizeRows {
                moved: RowMove {
                    packed: io.staged.packed.buffer(),
                    slots: io.row_ids.buffer(),
                    cache: io.eval_rows.buffer(),
                    cache_rows: total,
                    rows: missing.len() as u32,
                    dim: self.dim as u32,
                    precision: self.precision,
                    state: None,
                },
            })?;
            stats.bytes_h2d += 4 * (io.packed_host.len() + targets.len()) as u64;
        }
        stats.hits += hits as u64;
        stats.misses += missing.len() as u64;
        Ok(())
    }
}
