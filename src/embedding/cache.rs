//! The device cache of one table: FP32 slots on the device, and on the host the directory
//! (row → slot, sized by the cache, not by the table), per-slot metadata and the transfers that
//! move rows packed between the host store and the slots.
//!
//! A step's rows are *pinned* while the step is prepared, so fetching its misses never evicts
//! a row the same step reads; the lookahead policy pins rows of future batches the same way.
//! Victims are written back (quantized on the device, downloaded packed, scattered into the
//! store) before their slots are refilled; rows only read since they were fetched are clean and
//! are dropped without a write-back.

use super::policy::{Policy, choose_victims};
use super::store::HostStore;
use crate::device::{
    BagForward, DequantizeRows, Device, DeviceError, DeviceExt, DeviceVec, Pooling, QuantizeRows,
    StateRows,
};
use crate::precision::{Precision, Rounding};
use crate::telemetry::TableStats;
use std::sync::{Arc, Mutex, MutexGuard};

pub use super::directory::Directory;

/// Rows a planned eviction took off the device, for the write-back stage: their ids, their
/// packed words (row-major, one packed row each) and their optimizer state (empty without one).
pub type EvictedRows = (Vec<u32>, Vec<u32>, Vec<f32>);

/// The cache machinery of one table: its host store, directory and transfer buffers. The slot
/// buffers themselves (weights, optimizer state) belong to the table.
pub struct CachedRows<D: Device> {
    /// Shared with the lookahead pipeline's stager and write-back threads.
    pub(super) store: Arc<Mutex<HostStore>>,
    precision: Precision,
    words: usize,
    pub(super) dir: Directory,
    policy: Policy,
    rounding: Rounding,
    dim: usize,
    packed: DeviceVec<D>,
    slot_ids: DeviceVec<D>,
    row_ids: DeviceVec<D>,
    staged_state: DeviceVec<D>,
    offsets: DeviceVec<D>,
    packed_host: Vec<u32>,
    state: Vec<f32>,
    rows_scratch: Vec<u32>,
    slots_scratch: Vec<u32>,
    /// Buffers of evicted rows handed back by the write-back stage, for reuse.
    spare: Vec<(Vec<u32>, Vec<f32>)>,
}

/// Locks a host store (a poisoned lock only means another thread panicked; the rows are whole).
pub fn lock_store(store: &Mutex<HostStore>) -> MutexGuard<'_, HostStore> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slot buffers a cache fills.
pub struct Slots<'a, D: Device> {
    /// `[slots × dim]` FP32 rows.
    pub weights: &'a D::Buffer,
    /// `[slots]` optimizer state, when the optimizer keeps one.
    pub state: Option<&'a D::Buffer>,
}

impl<D: Device> CachedRows<D> {
    /// Cache machinery over `store` with `slots` slots.
    pub fn new(
        dev: &D,
        store: HostStore,
        slots: u32,
        policy: Policy,
        rounding: Rounding,
        dim: usize,
    ) -> Result<Self, DeviceError> {
        let words = store.row_words();
        let precision = store.precision();
        Ok(CachedRows {
            store: Arc::new(Mutex::new(store)),
            precision,
            words,
            dir: Directory::new(slots),
            policy,
            rounding,
            dim,
            packed: DeviceVec::new(dev, 256 * words)?,
            slot_ids: DeviceVec::new(dev, 256)?,
            row_ids: DeviceVec::new(dev, 256)?,
            staged_state: DeviceVec::new(dev, 256)?,
            offsets: DeviceVec::new(dev, 257)?,
            packed_host: Vec::new(),
            state: Vec::new(),
            rows_scratch: Vec::new(),
            slots_scratch: Vec::new(),
            spare: Vec::new(),
        })
    }

    /// Bytes allocated: host store, directory, transfer buffers (device and host).
    pub fn bytes(&self) -> u64 {
        self.host_bytes() + self.device_bytes()
    }

    /// Device bytes: the transfer buffers for packed rows, slot and row ids, state.
    pub fn device_bytes(&self) -> u64 {
        self.packed.bytes()
            + self.slot_ids.bytes()
            + self.row_ids.bytes()
            + self.staged_state.bytes()
            + self.offsets.bytes()
    }

    /// Host bytes: the store, the directory and the transfer scratch vectors.
    pub fn host_bytes(&self) -> u64 {
        lock_store(&self.store).bytes()
            + self.dir.bytes()
            + self
                .spare
                .iter()
                .map(|(w, st)| (w.capacity() * 4 + st.capacity() * 4) as u64)
                .sum::<u64>()
            + (self.packed_host.capacity() * 4
                + self.state.capacity() * 4
                + self.rows_scratch.capacity() * 4
                + self.slots_scratch.capacity() * 4) as u64
    }

    /// Makes every row of `unique` (sorted, distinct) resident and pinned for this step, writing
    /// back victims and fetching misses; writes each row's slot into `slot_of`. `train` marks
    /// the rows dirty (the step will update them). Counts hits, misses, evictions and bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &mut self,
        dev: &D,
        slots: &Slots<'_, D>,
        unique: &[u32],
        slot_of: &mut Vec<u32>,
        tick: u64,
        seed: u32,
        train: bool,
        stats: &mut TableStats,
    ) -> Result<(), DeviceError> {
        self.dir.begin_step();
        slot_of.clear();
        let mut misses = Vec::new();
        for (u, &row) in unique.iter().enumerate() {
            match self.dir.lookup(row) {
                Some(s) => {
                    self.dir.touch(s, tick);
                    slot_of.push(s);
                }
                None => {
                    misses.push(u);
                    slot_of.push(u32::MAX);
                }
            }
        }
        let hits = unique.len() - misses.len();
        if unique.len() > self.dir.slots() as usize {
            return Err(DeviceError::InvalidArgument {
                kernel: "dequantize_rows",
                message: format!(
                    "a batch reads {} unique rows of a table whose cache holds {} rows; raise \
                     --cache-rows or --cache-fraction to at least {} rows for this table",
                    unique.len(),
                    self.dir.slots(),
                    unique.len()
                ),
            });
        }
        let need = misses.len().saturating_sub(self.dir.free_slots());
        let mut victims = Vec::with_capacity(need);
        choose_victims(self.policy, &self.dir, need, &mut victims);
        self.evict(dev, slots, &victims, tick as u32, seed, stats)?;

        // Fetch the misses: gather packed rows, upload, expand into their slots.
        self.rows_scratch.clear();
        self.slots_scratch.clear();
        for &u in &misses {
            // The cache has room: `need` victims were just evicted.
            let slot = self
                .dir
                .insert(unique[u])
                .ok_or_else(|| DeviceError::InvalidArgument {
                    kernel: "dequantize_rows",
                    message: "no free cache slot after eviction".into(),
                })?;
            self.dir.touch(slot, tick);
            slot_of[u] = slot;
            self.rows_scratch.push(unique[u]);
            self.slots_scratch.push(slot);
        }
        if !misses.is_empty() {
            self.packed_host.clear();
            self.state.clear();
            lock_store(&self.store).gather(
                &self.rows_scratch,
                &mut self.packed_host,
                &mut self.state,
            );
            self.packed.upload_u32(dev, &self.packed_host)?;
            self.slot_ids.upload_u32(dev, &self.slots_scratch)?;
            let state = match slots.state {
                Some(cache_state) => {
                    self.staged_state.upload_f32(dev, &self.state)?;
                    Some(StateRows {
                        cache_state,
                        staged: self.staged_state.buffer(),
                    })
                }
                None => None,
            };
            dev.dequantize_rows(&DequantizeRows {
                packed: self.packed.buffer(),
                slots: self.slot_ids.buffer(),
                rows: misses.len() as u32,
                dim: self.dim as u32,
                precision: self.precision,
                cache: slots.weights,
                cache_rows: self.dir.slots(),
                state,
            })?;
            stats.bytes_h2d +=
                4 * (self.packed_host.len() + self.state.len() + self.slots_scratch.len()) as u64;
        }
        if train {
            slot_of.iter().for_each(|&s| self.dir.mark_dirty(s));
        }
        stats.hits += hits as u64;
        stats.misses += misses.len() as u64;
        stats.cache_rows = self.dir.slots() as u64;
        stats.cache_occupancy = self.dir.occupied() as f64 / self.dir.slots().max(1) as f64;
        Ok(())
    }

    /// Evicts `victims`: dirty ones are quantized on the device, downloaded packed and scattered
    /// into the store (so a later fetch of the same row reads the written-back value).
    fn evict(
        &mut self,
        dev: &D,
        slots: &Slots<'_, D>,
        victims: &[u32],
        step: u32,
        seed: u32,
        stats: &mut TableStats,
    ) -> Result<(), DeviceError> {
        if victims.is_empty() {
            return Ok(());
        }
        self.rows_scratch.clear();
        self.slots_scratch.clear();
        for &slot in victims {
            let (row, dirty) = self.dir.evict(slot);
            if dirty {
                self.rows_scratch.push(row);
                self.slots_scratch.push(slot);
            }
        }
        *stats.evictions.get_or_insert(0) += victims.len() as u64;
        let n = self.rows_scratch.len();
        if n == 0 {
            return Ok(());
        }
        let words = self.words;
        self.slot_ids.upload_u32(dev, &self.slots_scratch)?;
        self.row_ids.upload_u32(dev, &self.rows_scratch)?;
        self.packed.reserve(dev, n * words)?;
        self.staged_state.reserve(dev, n)?;
        let state = slots.state.map(|cache_state| StateRows {
            cache_state,
            staged: self.staged_state.buffer(),
        });
        dev.quantize_rows(&QuantizeRows {
            cache: slots.weights,
            cache_rows: self.dir.slots(),
            slots: self.slot_ids.buffer(),
            row_ids: self.row_ids.buffer(),
            rows: n as u32,
            dim: self.dim as u32,
            precision: self.precision,
            rounding: self.rounding,
            seed,
            step,
            packed: self.packed.buffer(),
            state,
        })?;
        self.packed_host.resize(n * words, 0);
        dev.download(
            self.packed.buffer(),
            0,
            bytemuck::cast_slice_mut(&mut self.packed_host[..n * words]),
        )?;
        self.state.clear();
        if slots.state.is_some() {
            self.state.resize(n, 0.0);
            dev.download_f32(self.staged_state.buffer(), 0, &mut self.state)?;
        }
        lock_store(&self.store).scatter(
            &self.rows_scratch,
            &self.packed_host[..n * words],
            &self.state,
        );
        stats.bytes_d2h += 4 * (n * words + self.state.len()) as u64;
        stats.bytes_h2d += 8 * n as u64; // the slot and row ids sent down
        Ok(())
    }

    /// Fills `out` (`[unique.len() × dim]`, FP32) with the rows `unique` without changing the
    /// cache: resident rows are gathered from their slots (a `bag_forward` over one-row bags),
    /// the others are read from the store and expanded. Row `unique[u]` lands at `position[u]`.
    /// Evaluation uses it, so measuring a model never perturbs what training caches.
    pub fn read_only(
        &mut self,
        dev: &D,
        slots: &Slots<'_, D>,
        unique: &[u32],
        out: &D::Buffer,
        position: &mut Vec<u32>,
        stats: &mut TableStats,
    ) -> Result<(), DeviceError> {
        self.dir.refresh();
        position.clear();
        position.resize(unique.len(), 0);
        self.rows_scratch.clear(); // missing rows
        self.slots_scratch.clear(); // slots of resident rows
        let mut missing = Vec::new();
        for (u, &row) in unique.iter().enumerate() {
            match self.dir.lookup(row) {
                Some(s) => {
                    position[u] = self.slots_scratch.len() as u32;
                    self.slots_scratch.push(s);
                }
                None => {
                    missing.push(u);
                    self.rows_scratch.push(row);
                }
            }
        }
        let hits = self.slots_scratch.len();
        for (i, &u) in missing.iter().enumerate() {
            position[u] = (hits + i) as u32;
        }
        let total = unique.len() as u32;
        if hits > 0 {
            let offsets: Vec<u32> = (0..=hits as u32).collect();
            self.offsets.upload_u32(dev, &offsets)?;
            self.slot_ids.upload_u32(dev, &self.slots_scratch)?;
            dev.bag_forward(&BagForward {
                table: slots.weights,
                rows: self.dir.slots(),
                dim: self.dim as u32,
                indices: self.slot_ids.buffer(),
                offsets: self.offsets.buffer(),
                bags: hits as u32,
                pooling: Pooling::Sum,
                out,
                out_stride: self.dim as u32,
                out_offset: 0,
            })?;
        }
        if !missing.is_empty() {
            self.packed_host.clear();
            self.state.clear();
            lock_store(&self.store).gather(
                &self.rows_scratch,
                &mut self.packed_host,
                &mut self.state,
            );
            self.packed.upload_u32(dev, &self.packed_host)?;
            let targets: Vec<u32> = (hits as u32..total).collect();
            self.row_ids.upload_u32(dev, &targets)?;
            dev.dequantize_rows(&DequantizeRows {
                packed: self.packed.buffer(),
                slots: self.row_ids.buffer(),
                rows: missing.len() as u32,
                dim: self.dim as u32,
                precision: self.precision,
                cache: out,
                cache_rows: total,
                state: None,
            })?;
            stats.bytes_h2d += 4 * (self.packed_host.len() + targets.len()) as u64;
        }
        stats.hits += hits as u64;
        stats.misses += missing.len() as u64;
        Ok(())
    }

    /// Lookahead: applies a plan made ahead for this table — evicts the planned victims
    /// (quantized on the device into `victims`, returned with host buffers of the right size
    /// for the write-back stage, which downloads them),
    /// expands the rows the stager gathered into their slots, then checks every row of the batch
    /// (`unique`) at its planned slot: a row that is not there (a dropped prefetch) is a
    /// train-stage miss, fetched here synchronously. Counts hits and misses as the train stage
    /// saw them.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_plan(
        &mut self,
        dev: &D,
        slots: &Slots<'_, D>,
        staged: &crate::pipeline::StagedTable,
        uploaded: &crate::pipeline::DeviceRows<D>,
        victims: &mut crate::pipeline::DeviceRows<D>,
        unique: &[u32],
        step: u32,
        seed: u32,
        stats: &mut TableStats,
    ) -> Result<EvictedRows, DeviceError> {
        let plan = &staged.plan;
        let n = plan.evict_slots.len();
        let mut evicted = (Vec::new(), Vec::new(), Vec::new());
        if n > 0 {
            for &slot in &plan.evict_slots {
                self.dir.vacate(slot);
            }
            self.slot_ids.upload_u32(dev, &plan.evict_slots)?;
            self.row_ids.upload_u32(dev, &plan.evict_rows)?;
            // Packed into this step's victim buffers; the write-back stage downloads them, so
            // the device stage never waits for a device-to-host copy.
            victims.packed.reserve(dev, n * self.words)?;
            victims.state.reserve(dev, n)?;
            let state = slots.state.map(|cache_state| StateRows {
                cache_state,
                staged: victims.state.buffer(),
            });
            dev.quantize_rows(&QuantizeRows {
                cache: slots.weights,
                cache_rows: self.dir.slots(),
                slots: self.slot_ids.buffer(),
                row_ids: self.row_ids.buffer(),
                rows: n as u32,
                dim: self.dim as u32,
                precision: self.precision,
                rounding: self.rounding,
                seed,
                step,
                packed: victims.packed.buffer(),
                state,
            })?;
            // Sized here, filled by the write-back stage.
            let (mut words, mut state) = self.spare.pop().unwrap_or_default();
            words.clear();
            words.resize(n * self.words, 0);
            state.clear();
            if slots.state.is_some() {
                state.resize(n, 0.0);
            }
            stats.bytes_d2h += 4 * (words.len() + state.len()) as u64;
            stats.bytes_h2d += 8 * n as u64;
            evicted = (plan.evict_rows.clone(), words, state);
        }
        *stats.evictions.get_or_insert(0) += n as u64;
        // The stager uploaded the rows already (`uploaded`); only their expansion is left.
        self.expand(dev, slots, &staged.rows, &staged.slots, Some(uploaded))?;
        stats.bytes_h2d +=
            4 * (staged.packed.len() + staged.state.len() + staged.slots.len()) as u64;
        // The train stage's own count: is every row where the plan says?
        self.rows_scratch.clear();
        self.slots_scratch.clear();
        let mut hits = 0;
        for (u, &row) in unique.iter().enumerate() {
            let slot = plan.slot_of[u];
            if self.dir.row_in(slot) == Some(row) {
                hits += 1;
            } else {
                self.rows_scratch.push(row);
                self.slots_scratch.push(slot);
            }
        }
        let missing = self.rows_scratch.len();
        if missing > 0 {
            let (rows, slot_list) = (
                std::mem::take(&mut self.rows_scratch),
                std::mem::take(&mut self.slots_scratch),
            );
            let (mut words, mut state) = (Vec::new(), Vec::new());
            lock_store(&self.store).gather(&rows, &mut words, &mut state);
            self.fill(dev, slots, &rows, &slot_list, &words, &state, stats)?;
            (self.rows_scratch, self.slots_scratch) = (rows, slot_list);
        }
        stats.hits += hits;
        stats.misses += missing as u64;
        *stats.planner_misses.get_or_insert(0) += plan.fetch_rows.len() as u64;
        stats.cache_rows = self.dir.slots() as u64;
        stats.cache_occupancy = self.dir.occupied() as f64 / self.dir.slots().max(1) as f64;
        Ok(evicted)
    }

    /// Uploads packed rows (and state) and expands them into `slot_list`, recording them resident.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        dev: &D,
        slots: &Slots<'_, D>,
        rows: &[u32],
        slot_list: &[u32],
        words: &[u32],
        state: &[f32],
        stats: &mut TableStats,
    ) -> Result<(), DeviceError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.packed.upload_u32(dev, words)?;
        self.slot_ids.upload_u32(dev, slot_list)?;
        if slots.state.is_some() {
            self.staged_state.upload_f32(dev, state)?;
        }
        self.expand(dev, slots, rows, slot_list, None)?;
        stats.bytes_h2d += 4 * (words.len() + state.len() + slot_list.len()) as u64;
        Ok(())
    }

    /// Expands packed rows already on the device (`uploaded`, or this cache's own staging when
    /// `None`) into `slot_list`, recording them resident.
    fn expand(
        &mut self,
        dev: &D,
        slots: &Slots<'_, D>,
        rows: &[u32],
        slot_list: &[u32],
        uploaded: Option<&crate::pipeline::DeviceRows<D>>,
    ) -> Result<(), DeviceError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (packed, slot_ids, staged_state) = match uploaded {
            Some(u) => (u.packed.buffer(), u.slots.buffer(), u.state.buffer()),
            None => (
                self.packed.buffer(),
                self.slot_ids.buffer(),
                self.staged_state.buffer(),
            ),
        };
        let state_rows = slots.state.map(|cache_state| StateRows {
            cache_state,
            staged: staged_state,
        });
        dev.dequantize_rows(&DequantizeRows {
            packed,
            slots: slot_ids,
            rows: rows.len() as u32,
            dim: self.dim as u32,
            precision: self.precision,
            cache: slots.weights,
            cache_rows: self.dir.slots(),
            state: state_rows,
        })?;
        for (&r, &s) in rows.iter().zip(slot_list) {
            self.dir.place(r, s)?;
        }
        Ok(())
    }

    /// Writes back and empties every slot (host-only policy after each step, or a final flush).
    pub fn flush(
        &mut self,
        dev: &D,
        slots: &Slots<'_, D>,
        tick: u64,
        seed: u32,
        stats: &mut TableStats,
    ) -> Result<(), DeviceError> {
        self.dir.begin_step();
        let all: Vec<u32> = self.dir.resident().map(|(s, _)| s).collect();
        self.evict(dev, slots, &all, tick as u32, seed, stats)
    }

    /// Takes back buffers of rows already written back, to reuse for later evictions.
    pub fn recycle(&mut self, words: Vec<u32>, state: Vec<f32>) {
        if self.spare.len() < 8 {
            self.spare.push((words, state));
        }
    }

    /// Replaces the directory by an empty one of `slots` slots (the cache must be empty, as a
    /// host-only cache is between steps).
    pub fn resize(&mut self, slots: u32) {
        self.dir = Directory::new(slots);
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }
}
