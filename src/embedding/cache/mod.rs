//! The device cache of one table: FP32 slots on the device, and on the host the directory (row →
//! slot, sized by the cache, not by the table), per-slot metadata and the transfers that move
//! rows packed between the host store and the slots.
//!
//! Three ways fill it: on demand (`lru`, `lfu`, `host-only`: a batch's misses are fetched before
//! its step, [`DeviceCache::prepare`]), planned ahead (`lookahead`: the planner's decisions are
//! applied, `planned.rs`), and read-only (evaluation reads through the cache without changing
//! it, `read_only.rs`).
//!
//! A step's rows are *pinned* while the step is prepared, so fetching its misses never evicts
//! a row the same step reads. Victims are written back (quantized on the device, downloaded
//! packed, scattered into the store) before their slots are refilled; rows only read since they
//! were fetched are clean and are dropped without a write-back.
//!
//! The transfer buffers ([`Transfer`]) are shared by every table's cache: the device orders
//! each transfer after the kernels that used its buffer before, so one set serves all tables
//! in turn, and memory holds one table's worth of rows in flight, not one per table.

mod planned;
mod read_only;

use super::directory::Directory;
use super::error::EmbeddingError;
use super::policy::{Policy, choose_victims};
use super::store::HostStore;
use super::transfer::DeviceRows;
use crate::device::{
    DequantizeRows, Device, DeviceError, DeviceExt, DeviceVec, QuantizeRows, RowMove, StateRows,
};
use crate::precision::{Precision, Rounding};
use crate::telemetry::TableStats;
use std::sync::{Arc, Mutex, MutexGuard};

/// Locks a host store (a poisoned lock only means another thread panicked; the rows are whole).
pub fn lock_store(store: &Mutex<HostStore>) -> MutexGuard<'_, HostStore> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slot buffers a cache fills (they belong to the table).
pub struct Slots<'a, D: Device> {
    /// `[slots × dim]` FP32 rows.
    pub weights: &'a D::Buffer,
    /// `[slots]` optimizer state, when the optimizer keeps one.
    pub state: Option<&'a D::Buffer>,
}

/// What a cache operation works with: the device, the transfer buffers the caches share, the
/// table's slot buffers, and the table's index (errors name it).
pub struct Access<'a, D: Device> {
    /// The device.
    pub dev: &'a D,
    /// The shared transfer buffers.
    pub io: &'a mut Transfer<D>,
    /// The table's slot buffers.
    pub slots: Slots<'a, D>,
    /// The table.
    pub table: usize,
}

impl<D: Device> Access<'_, D> {
    /// A plan or cache that does not fit: a bug in rowflow, named with the table.
    fn inconsistent(&self, message: impl Into<String>) -> EmbeddingError {
        EmbeddingError::Inconsistent {
            table: self.table,
            message: message.into(),
        }
    }
}

/// Where the rounding noise of rows written back comes from: the run's seed and the step (the
/// key the quantize kernels hash with each row and column).
#[derive(Clone, Copy, Debug)]
pub struct Noise {
    /// Run seed (low 32 bits).
    pub seed: u32,
    /// Training step (or the on-demand caches' tick).
    pub step: u32,
}

impl Noise {
    /// The noise of step (or tick) `step` under `seed`.
    pub fn at(seed: u32, step: u64) -> Self {
        Noise {
            seed,
            step: step as u32,
        }
    }
}

/// Transfer buffers shared by every table's cache (see the module docs): device staging for
/// packed rows with their slots and state (the same [`DeviceRows`] the pipeline's stages
/// move), row ids and offsets; the FP32 rows an evaluation batch reads; and the host scratch
/// the packed rows pass through.
pub struct Transfer<D: Device> {
    staged: DeviceRows<D>,
    row_ids: DeviceVec<D>,
    offsets: DeviceVec<D>,
    /// FP32 rows read for evaluation, one table at a time.
    pub(super) eval_rows: DeviceVec<D>,
    packed_host: Vec<u32>,
    state_host: Vec<f32>,
    rows: Vec<u32>,
    slots: Vec<u32>,
}

impl<D: Device> Transfer<D> {
    /// Empty buffers; each grows to what one step needs and is reused after.
    pub fn new(dev: &D) -> Result<Self, DeviceError> {
        Ok(Transfer {
            staged: DeviceRows::new(dev)?,
            row_ids: DeviceVec::new(dev, 1)?,
            offsets: DeviceVec::new(dev, 1)?,
            eval_rows: DeviceVec::new(dev, 1)?,
            packed_host: Vec::new(),
            state_host: Vec::new(),
            rows: Vec::new(),
            slots: Vec::new(),
        })
    }

    /// Device bytes allocated.
    pub fn device_bytes(&self) -> u64 {
        self.staged.bytes() + self.row_ids.bytes() + self.offsets.bytes() + self.eval_rows.bytes()
    }

    /// Host bytes allocated (vector capacities).
    pub fn host_bytes(&self) -> u64 {
        4 * (self.packed_host.capacity()
            + self.state_host.capacity()
            + self.rows.capacity()
            + self.slots.capacity()) as u64
    }

    /// The row and slot scratch lists, emptied, lent out while the transfer buffers are in use.
    fn take_lists(&mut self) -> (Vec<u32>, Vec<u32>) {
        let (mut rows, mut slots) = (
            std::mem::take(&mut self.rows),
            std::mem::take(&mut self.slots),
        );
        rows.clear();
        slots.clear();
        (rows, slots)
    }

    /// Returns the lists [`Transfer::take_lists`] lent.
    fn put_lists(&mut self, rows: Vec<u32>, slots: Vec<u32>) {
        (self.rows, self.slots) = (rows, slots);
    }
}

/// The cache machinery of one table: its host store, directory and policy. The slot buffers
/// (weights, optimizer state) belong to the table; the transfer buffers are shared.
pub struct DeviceCache {
    /// Shared with the lookahead pipeline's stager and write-back threads.
    pub(super) store: Arc<Mutex<HostStore>>,
    precision: Precision,
    words: usize,
    pub(super) dir: Directory,
    policy: Policy,
    rounding: Rounding,
    dim: usize,
    /// Host buffers of evicted rows handed back by the write-back stage, for reuse.
    spare: Vec<(Vec<u32>, Vec<f32>)>,
}

impl DeviceCache {
    /// Cache machinery over `store` with `slots` slots.
    pub fn new(store: HostStore, slots: u32, policy: Policy, rounding: Rounding) -> Self {
        DeviceCache {
            words: store.row_words(),
            precision: store.precision(),
            dim: store.dim(),
            store: Arc::new(Mutex::new(store)),
            dir: Directory::new(slots),
            policy,
            rounding,
            spare: Vec::new(),
        }
    }

    /// Host bytes allocated: the store, the directory and the recycled eviction buffers.
    pub fn host_bytes(&self) -> u64 {
        lock_store(&self.store).bytes()
            + self.dir.bytes()
            + self
                .spare
                .iter()
                .map(|(w, st)| (w.capacity() * 4 + st.capacity() * 4) as u64)
                .sum::<u64>()
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Counts the cache's size and occupancy into `stats`.
    fn count_occupancy(&self, stats: &mut TableStats) {
        stats.cache_rows = self.dir.slots() as u64;
        stats.cache_occupancy = self.dir.occupied() as f64 / self.dir.slots().max(1) as f64;
    }

    /// On demand: makes every row of `unique` (sorted, distinct) resident and pinned for this
    /// step, writing back victims and fetching misses; writes each row's slot into `slot_of`.
    /// `tick` orders uses (LRU, LFU) and is the step of the write-backs' rounding noise. Counts
    /// hits, misses, evictions and bytes.
    pub fn prepare<D: Device>(
        &mut self,
        at: &mut Access<'_, D>,
        unique: &[u32],
        slot_of: &mut Vec<u32>,
        (tick, seed): (u64, u32),
        stats: &mut TableStats,
    ) -> Result<(), EmbeddingError> {
        if unique.len() > self.dir.slots() as usize {
            return Err(EmbeddingError::CacheTooSmall {
                table: at.table,
                needed: unique.len(),
                slots: self.dir.slots(),
            });
        }
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
        let need = misses.len().saturating_sub(self.dir.free_slots());
        let mut victims = Vec::with_capacity(need);
        choose_victims(self.policy, &self.dir, need, &mut victims);
        self.evict(at, &victims, Noise::at(seed, tick), stats)?;

        // Fetch the misses into the slots just freed.
        let (mut rows, mut fetch_slots) = at.io.take_lists();
        for &u in &misses {
            let Some(slot) = self.dir.insert(unique[u]) else {
                at.io.put_lists(rows, fetch_slots);
                return Err(at.inconsistent("no free cache slot after eviction"));
            };
            self.dir.touch(slot, tick);
            slot_of[u] = slot;
            rows.push(unique[u]);
            fetch_slots.push(slot);
        }
        let fetched = self.fetch(at, &rows, &fetch_slots, stats);
        at.io.put_lists(rows, fetch_slots);
        fetched?;
        // The step updates every row it reads: each is written back when evicted.
        slot_of.iter().for_each(|&s| self.dir.mark_dirty(s));
        stats.hits += (unique.len() - misses.len()) as u64;
        stats.misses += misses.len() as u64;
        self.count_occupancy(stats);
        Ok(())
    }

    /// Evicts `victims`: dirty ones are quantized on the device, downloaded packed and scattered
    /// into the store (so a later fetch of the same row reads the written-back value).
    fn evict<D: Device>(
        &mut self,
        at: &mut Access<'_, D>,
        victims: &[u32],
        noise: Noise,
        stats: &mut TableStats,
    ) -> Result<(), EmbeddingError> {
        if victims.is_empty() {
            return Ok(());
        }
        let io = &mut *at.io;
        io.rows.clear();
        io.slots.clear();
        for &slot in victims {
            let (row, dirty) = self.dir.evict(slot);
            if dirty {
                io.rows.push(row);
                io.slots.push(slot);
            }
        }
        *stats.evictions.get_or_insert(0) += victims.len() as u64;
        let n = io.rows.len();
        if n == 0 {
            return Ok(());
        }
        let (dev, words) = (at.dev, self.words);
        let staged = &mut io.staged;
        let ids = (&mut staged.slots, &mut io.row_ids);
        let out = (&mut staged.packed, &mut staged.state);
        self.pack(dev, &at.slots, (&io.slots, &io.rows), ids, out, noise)?;
        io.packed_host.resize(n * words, 0);
        dev.download(
            io.staged.packed.buffer(),
            0,
            bytemuck::cast_slice_mut(&mut io.packed_host[..n * words]),
        )?;
        io.state_host.clear();
        if at.slots.state.is_some() {
            io.state_host.resize(n, 0.0);
            dev.download_f32(io.staged.state.buffer(), 0, &mut io.state_host)?;
        }
        lock_store(&self.store).scatter(&io.rows, &io.packed_host[..n * words], &io.state_host);
        stats.bytes_d2h += 4 * (n * words + io.state_host.len()) as u64;
        stats.bytes_h2d += 8 * n as u64; // the slot and row ids sent down
        Ok(())
    }

    /// Packs the slots `slot_list` (holding rows `rows`) for the host store: uploads both lists
    /// into `ids`, then launches `quantize_rows` into `out` (packed words, and optimizer state),
    /// which grow to fit, rounding with `noise`.
    fn pack<D: Device>(
        &self,
        dev: &D,
        slots: &Slots<'_, D>,
        (slot_list, rows): (&[u32], &[u32]),
        (slot_ids, row_ids): (&mut DeviceVec<D>, &mut DeviceVec<D>),
        (packed, staged_state): (&mut DeviceVec<D>, &mut DeviceVec<D>),
        noise: Noise,
    ) -> Result<(), DeviceError> {
        let rows_n = rows.len();
        slot_ids.upload_elems(dev, slot_list)?;
        row_ids.upload_elems(dev, rows)?;
        packed.reserve(dev, rows_n * self.words)?;
        staged_state.reserve(dev, rows_n)?;
        dev.quantize_rows(&QuantizeRows {
            moved: self.row_move(slots, rows_n, (packed, slot_ids, staged_state)),
            row_ids: row_ids.buffer(),
            rounding: self.rounding,
            seed: noise.seed,
            step: noise.step,
        })
    }

    /// Gathers `rows` from the store, uploads them packed and expands them into `slot_list`
    /// (whose residency the caller records). Counts the bytes moved.
    fn fetch<D: Device>(
        &self,
        at: &mut Access<'_, D>,
        rows: &[u32],
        slot_list: &[u32],
        stats: &mut TableStats,
    ) -> Result<(), EmbeddingError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (dev, io) = (at.dev, &mut *at.io);
        io.packed_host.clear();
        io.state_host.clear();
        lock_store(&self.store).gather(rows, &mut io.packed_host, &mut io.state_host);
        let state: &[f32] = match at.slots.state {
            Some(_) => &io.state_host,
            None => &[],
        };
        io.staged
            .upload_parts(dev, &io.packed_host, slot_list, state)?;
        self.expand(dev, &at.slots, rows.len(), &io.staged)?;
        stats.bytes_h2d +=
            4 * (io.packed_host.len() + io.state_host.len() + slot_list.len()) as u64;
        Ok(())
    }

    /// Expands the first `rows` rows of `staged` (packed rows already on the device, with
    /// their slots and state) into the cache.
    fn expand<D: Device>(
        &self,
        dev: &D,
        slots: &Slots<'_, D>,
        rows: usize,
        staged: &DeviceRows<D>,
    ) -> Result<(), DeviceError> {
        if rows == 0 {
            return Ok(());
        }
        let parts = (&staged.packed, &staged.slots, &staged.state);
        dev.dequantize_rows(&DequantizeRows {
            moved: self.row_move(slots, rows, parts),
        })
    }

    /// The `rows` rows that `pack` and `expand` move between the cache's `slots` and `packed`,
    /// at the slots in `slot_ids`, with their optimizer state (when the cache keeps one) staged
    /// in `staged_state`.
    fn row_move<'a, D: Device>(
        &self,
        slots: &Slots<'a, D>,
        rows: usize,
        (packed, slot_ids, staged_state): (&'a DeviceVec<D>, &'a DeviceVec<D>, &'a DeviceVec<D>),
    ) -> RowMove<'a, D::Buffer> {
        RowMove {
            packed: packed.buffer(),
            slots: slot_ids.buffer(),
            cache: slots.weights,
            cache_rows: self.dir.slots(),
            rows: rows as u32,
            dim: self.dim as u32,
            precision: self.precision,
            state: slots.state.map(|cache_state| StateRows {
                cache_state,
                staged: staged_state.buffer(),
            }),
        }
    }

    /// Writes back and empties every slot (host-only policy after each step, or a final flush).
    pub fn flush<D: Device>(
        &mut self,
        at: &mut Access<'_, D>,
        noise: Noise,
        stats: &mut TableStats,
    ) -> Result<(), EmbeddingError> {
        self.dir.begin_step();
        let all: Vec<u32> = self.dir.resident().map(|(s, _)| s).collect();
        self.evict(at, &all, noise, stats)
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
}
