//! Applying the lookahead planner's decisions for one table (ScratchPipe, DESIGN.md): evict the
//! planned victims into this step's victim buffers, expand the rows the stager fetched, then
//! count, as the training step sees it, whether every row is where the plan put it.

use super::{Access, DeviceCache, Noise};
use crate::device::Device;
use crate::embedding::error::EmbeddingError;
use crate::embedding::transfer::{DeviceRows, EvictedRows, FetchedRows};
use crate::telemetry::TableStats;

impl DeviceCache {
    /// Applies the plan of `fetched` (from the stager, whose rows are on the device in
    /// `uploaded`): the planned victims are quantized on the device into `victims` and returned
    /// with host buffers of the right size for the write-back stage, which downloads them; the
    /// fetched rows are expanded into their slots; then every row of the batch (`unique`) is
    /// checked at its planned slot, and a row that is not there (a dropped prefetch) is a
    /// train-stage miss, fetched here synchronously. `step` keys the rounding noise.
    pub fn apply_plan<D: Device>(
        &mut self,
        at: &mut Access<'_, D>,
        (fetched, uploaded): (&FetchedRows, &DeviceRows<D>),
        victims: &mut DeviceRows<D>,
        unique: &[u32],
        noise: Noise,
        stats: &mut TableStats,
    ) -> Result<EvictedRows, EmbeddingError> {
        let plan = &fetched.plan;
        let n = plan.evict.len();
        let mut evicted = EvictedRows::default();
        if n > 0 {
            for &slot in &plan.evict.slots {
                self.dir.vacate(slot);
            }
            // Packed into this step's victim buffers; the write-back stage downloads them, so
            // the device stage never waits for a device-to-host copy.
            let io = &mut *at.io;
            let ids = (&mut io.staged.slots, &mut io.row_ids);
            let out = (&mut victims.packed, &mut victims.state);
            let victims_list = (plan.evict.slots.as_slice(), plan.evict.rows.as_slice());
            self.pack(at.dev, &at.slots, victims_list, ids, out, noise)?;
            // Sized here, filled by the write-back stage.
            let (mut words, mut state) = self.spare.pop().unwrap_or_default();
            words.clear();
            words.resize(n * self.words, 0);
            state.clear();
            if at.slots.state.is_some() {
                state.resize(n, 0.0);
            }
            stats.bytes_d2h += 4 * (words.len() + state.len()) as u64;
            stats.bytes_h2d += 8 * n as u64;
            evicted = EvictedRows {
                rows: plan.evict.rows.clone(),
                words,
                state,
            };
        }
        *stats.evictions.get_or_insert(0) += n as u64;
        // The stager uploaded the rows already; only their expansion is left.
        let gathered = &fetched.gathered;
        self.expand(at.dev, &at.slots, gathered.len(), uploaded)?;
        self.place_all(at, &gathered.rows, &gathered.slots)?;
        stats.bytes_h2d += fetched.bytes();
        // The train stage's own count: is every row where the plan says?
        let (mut rows, mut slot_list) = at.io.take_lists();
        let mut hits = 0;
        for (u, &row) in unique.iter().enumerate() {
            let slot = plan.slot_of[u];
            if self.dir.row_in(slot) == Some(row) {
                hits += 1;
            } else {
                rows.push(row);
                slot_list.push(slot);
            }
        }
        let missing = rows.len();
        let filled = self
            .fetch(at, &rows, &slot_list, stats)
            .and_then(|()| self.place_all(at, &rows, &slot_list));
        at.io.put_lists(rows, slot_list);
        filled?;
        // Each row's last use, so a checkpoint can rebuild the planner's LRU order.
        for &slot in &plan.slot_of {
            self.dir.touch(slot, noise.step as u64);
        }
        stats.hits += hits;
        stats.misses += missing as u64;
        *stats.planner_misses.get_or_insert(0) += plan.fetch.len() as u64;
        self.count_occupancy(stats);
        Ok(evicted)
    }

    /// Records `rows` resident in the empty slots `slot_list` the plan chose for them.
    fn place_all<D: Device>(
        &mut self,
        at: &Access<'_, D>,
        rows: &[u32],
        slot_list: &[u32],
    ) -> Result<(), EmbeddingError> {
        for (&r, &s) in rows.iter().zip(slot_list) {
            self.dir.place(r, s).map_err(|m| at.inconsistent(m))?;
        }
        Ok(())
    }
}
