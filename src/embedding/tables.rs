//! `EmbeddingTables`: a model's embedding tables, whatever their placement (see [`Policy`]):
//! allocation and initialisation, memory accounting and inspection. What happens to one batch
//! (residency, lookups, the fused backward) is in `batch.rs`.

use super::cache::{DeviceCache, Slots, Transfer, lock_store};
use super::error::EmbeddingError;
use super::init::{INIT_CHUNK_ROWS, fill_uniform};
use super::inputs::BatchInputs;
use super::policy::{Placement, Policy};
use super::store::HostStore;
use crate::data::RowMap;
use crate::device::{Device, DeviceError, DeviceExt, OptimizerRule, Pooling};
use crate::telemetry::TableStats;
use std::sync::{Arc, Mutex};

/// How the embedding tables are trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingSettings {
    /// Vector size.
    pub dim: usize,
    /// Sum or mean of a bag's rows.
    pub pooling: Pooling,
    /// SGD or row-wise Adagrad, with Adagrad's constants.
    pub rule: OptimizerRule,
    /// Rows start uniform in `[-s, s]`.
    pub init_scale: f32,
}

/// One table on the device: its rows (all of them, or a cache's slots) and their optimizer
/// state, and the cache machinery when a host store backs it.
pub(super) struct Table<D: Device> {
    pub rows: u32,
    /// Rows of `weights`: the table's rows, or its cache slots.
    pub slots: u32,
    pub weights: D::Buffer,
    /// Row-wise Adagrad accumulators, one f32 per row (or slot).
    pub state: Option<D::Buffer>,
    pub cache: Option<DeviceCache>,
}

impl<D: Device> Table<D> {
    /// The slot buffers and the cache, borrowed apart so the cache can fill the slots.
    pub fn split(&mut self) -> (Slots<'_, D>, Option<&mut DeviceCache>) {
        (
            Slots {
                weights: &self.weights,
                state: self.state.as_ref(),
            },
            self.cache.as_mut(),
        )
    }
}

/// All embedding tables of a model.
pub struct EmbeddingTables<D: Device> {
    pub(super) settings: EmbeddingSettings,
    pub(super) placement: Placement,
    pub(super) tables: Vec<Table<D>>,
    pub(super) inputs: Vec<BatchInputs<D>>,
    /// Transfer buffers shared by the caches (none when every table lives on the device).
    pub(super) io: Option<Transfer<D>>,
    /// Counts of the last prepared batch, per table.
    pub(super) stats: Vec<TableStats>,
    /// Batches prepared so far (training and evaluation): orders uses in the on-demand caches
    /// and keys the rounding noise of their write-backs.
    pub(super) tick: u64,
    pub(super) noise_seed: u32,
    /// Per-batch host scratch: each unique row's slot, the renamed lookups, a map built for
    /// evaluation, and the map renamed to slots.
    pub(super) slot_of: Vec<u32>,
    pub(super) remapped: Vec<u32>,
    pub(super) local_map: RowMap,
    pub(super) renamed: RowMap,
    /// Vectors per bag in the pooled output, and the vector each table pools into.
    pub(super) vectors: u32,
    pub(super) positions: Vec<u32>,
}

/// `[slots × dim]` rows and, for Adagrad, `[slots]` accumulators starting at `init`.
fn alloc_slots<D: Device>(
    dev: &D,
    slots: u32,
    dim: usize,
    state: Option<f32>,
) -> Result<(D::Buffer, Option<D::Buffer>), DeviceError> {
    let weights = dev.alloc_rows(slots.max(1) as u64, 4 * dim as u64)?;
    let state = match state {
        Some(init) => {
            let s = dev.alloc_rows(slots.max(1) as u64, 4)?;
            dev.upload_elems(&s, 0, &vec![init; slots as usize])?;
            Some(s)
        }
        None => None,
    };
    Ok((weights, state))
}

impl<D: Device> EmbeddingTables<D> {
    /// Allocates and initialises one table per entry of `rows` (values uniform in
    /// `[-init_scale, init_scale]`, drawn from `seed`), placed as `placement` says, with room
    /// for batches of `batch` bags.
    pub fn new(
        dev: &D,
        rows: &[u32],
        settings: EmbeddingSettings,
        placement: Placement,
        batch: usize,
        seed: u64,
    ) -> Result<Self, EmbeddingError> {
        let dim = settings.dim;
        let adagrad = settings.rule.has_state().then_some(settings.rule.init);
        let mut tables = Vec::with_capacity(rows.len());
        for (t, &n) in rows.iter().enumerate() {
            if !placement.policy.is_cached() {
                let (weights, state) = alloc_slots(dev, n, dim, adagrad)?;
                let mut chunk = vec![0f32; INIT_CHUNK_ROWS.min(n as usize) * dim];
                for (c, first) in (0..n as usize).step_by(INIT_CHUNK_ROWS).enumerate() {
                    let len = INIT_CHUNK_ROWS.min(n as usize - first) * dim;
                    let values = &mut chunk[..len];
                    fill_uniform(values, settings.init_scale, seed, t as u64, c as u64);
                    dev.upload_elems(&weights, first * dim, values)?;
                }
                tables.push(Table {
                    rows: n,
                    slots: n,
                    weights,
                    state,
                    cache: None,
                });
                continue;
            }
            let slots = match placement.policy {
                // Sized per batch (see `grow_host_only`).
                Policy::HostOnly => n.min(4096),
                _ => placement
                    .cache_rows
                    .get(t)
                    .copied()
                    .unwrap_or(n)
                    .clamp(1, n.max(1)),
            };
            let (precision, scale) = (placement.precision, settings.init_scale);
            let store = HostStore::new(n, dim, precision, adagrad, scale, seed, t as u64)?;
            let (weights, state) = alloc_slots(dev, slots, dim, adagrad)?;
            let cache = DeviceCache::new(store, slots, placement.policy, placement.rounding);
            tables.push(Table {
                rows: n,
                slots,
                weights,
                state,
                cache: Some(cache),
            });
        }
        let io = match placement.policy.is_cached() {
            true => Some(Transfer::new(dev)?),
            false => None,
        };
        let inputs = (0..rows.len())
            .map(|_| BatchInputs::new(dev, batch))
            .collect::<Result<_, DeviceError>>()?;
        Ok(EmbeddingTables {
            settings,
            stats: vec![TableStats::default(); rows.len()],
            tables,
            inputs,
            placement,
            io,
            tick: 0,
            noise_seed: (seed ^ (seed >> 32)) as u32,
            slot_of: Vec::new(),
            remapped: Vec::new(),
            local_map: RowMap::new(),
            renamed: RowMap::new(),
            vectors: rows.len() as u32,
            positions: (0..rows.len() as u32).collect(),
        })
    }

    /// Lays the pooled output out as `[bags, vectors, dim]` with table `t` at vector
    /// `positions[t]` (by default `[bags, tables, dim]`, table `t` at `t`), to share the
    /// interaction's input with other representations.
    pub fn place_vectors(&mut self, vectors: usize, positions: &[usize]) {
        assert!(
            positions.len() == self.tables.len() && positions.iter().all(|&p| p < vectors),
            "one position per table, each below {vectors}: {positions:?}"
        );
        self.vectors = vectors as u32;
        self.positions = positions.iter().map(|&p| p as u32).collect();
    }

    /// Number of tables.
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    /// Rows of each table.
    pub fn rows(&self) -> Vec<u32> {
        self.tables.iter().map(|t| t.rows).collect()
    }

    /// The training settings.
    pub fn settings(&self) -> &EmbeddingSettings {
        &self.settings
    }

    /// Where the rows live.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Counts of the last prepared batch (lookups, hits, misses, evictions, bytes), per table.
    pub fn stats(&self) -> &[TableStats] {
        &self.stats
    }

    /// Hands table `t`'s cache host buffers of rows already written back, for reuse.
    pub fn recycle(&mut self, t: usize, words: Vec<u32>, state: Vec<f32>) {
        if let Some(c) = self.tables.get_mut(t).and_then(|t| t.cache.as_mut()) {
            c.recycle(words, state);
        }
    }

    /// The host stores of the cached tables (shared with the lookahead pipeline's threads).
    pub fn stores(&self) -> Vec<Arc<Mutex<HostStore>>> {
        self.tables
            .iter()
            .filter_map(|t| t.cache.as_ref().map(|c| c.store.clone()))
            .collect()
    }

    /// Rows on the device per table: cache slots, or all the table's rows.
    pub fn slots(&self) -> Vec<u32> {
        self.tables.iter().map(|t| t.slots).collect()
    }

    /// Table `t` as FP32 (`rows × dim`): the device rows, or the host store with the cached rows'
    /// newer values laid over it.
    pub fn read_table(&self, dev: &D, t: usize) -> Result<Vec<f32>, DeviceError> {
        let table = &self.tables[t];
        let dim = self.settings.dim;
        let Some(cache) = &table.cache else {
            return dev.read_f32(&table.weights, 0..table.rows as usize * dim);
        };
        let mut out = vec![0f32; table.rows as usize * dim];
        let store = lock_store(&cache.store);
        for r in 0..table.rows {
            store.read_row(r, &mut out[r as usize * dim..(r as usize + 1) * dim]);
        }
        let slots = dev.read_f32(&table.weights, 0..table.slots as usize * dim)?;
        for (s, r) in cache.dir.resident() {
            let (s, r) = (s as usize, r as usize);
            out[r * dim..(r + 1) * dim].copy_from_slice(&slots[s * dim..(s + 1) * dim]);
        }
        Ok(out)
    }

    /// Overwrites table `t` with `values` (`rows × dim`); only tables kept whole on the device
    /// (a cached table's rows live in its host store).
    pub fn write_table(&self, dev: &D, t: usize, values: &[f32]) -> Result<(), EmbeddingError> {
        let table = &self.tables[t];
        if table.cache.is_some() {
            return Err(EmbeddingError::NotOnDevice { table: t });
        }
        Ok(dev.upload_elems(&table.weights, 0, values)?)
    }

    /// Whether row `row` of table `t` is on the device now.
    pub fn is_resident(&self, t: usize, row: u32) -> bool {
        match &self.tables[t].cache {
            None => true,
            Some(c) => c.dir.lookup(row).is_some(),
        }
    }

    /// The rows of table `t` on the device now (`None` without a cache: every row is).
    pub fn resident_rows(&self, t: usize) -> Option<impl Iterator<Item = u32> + '_> {
        self.tables[t]
            .cache
            .as_ref()
            .map(|c| c.dir.resident().map(|(_, row)| row))
    }

    /// Bytes the embeddings hold: host stores, device rows or cache slots, optimizer state,
    /// directories and the caches' transfer buffers — allocated sizes, not formulas.
    pub fn embedding_bytes(&self, dev: &D) -> u64 {
        let transfer = self
            .io
            .as_ref()
            .map_or(0, |io| io.device_bytes() + io.host_bytes());
        self.tables
            .iter()
            .map(|t| {
                self.table_device_bytes(dev, t) + t.cache.as_ref().map_or(0, |c| c.host_bytes())
            })
            .sum::<u64>()
            + transfer
    }

    /// Bytes of the host stores alone (`None` when all rows live on the device).
    pub fn host_store_bytes(&self) -> Option<u64> {
        let caches: Vec<_> = self
            .tables
            .iter()
            .filter_map(|t| t.cache.as_ref())
            .collect();
        (!caches.is_empty()).then(|| caches.iter().map(|c| lock_store(&c.store).bytes()).sum())
    }

    /// Device bytes held: rows or slots, optimizer state, the caches' transfer buffers and the
    /// batch inputs.
    pub fn device_bytes(&self, dev: &D) -> u64 {
        let tables: u64 = self
            .tables
            .iter()
            .map(|t| self.table_device_bytes(dev, t))
            .sum();
        tables + self.io.as_ref().map_or(0, Transfer::device_bytes) + self.batch_input_bytes()
    }

    fn table_device_bytes(&self, dev: &D, t: &Table<D>) -> u64 {
        dev.buffer_bytes(&t.weights) + t.state.as_ref().map_or(0, |s| dev.buffer_bytes(s))
    }

    /// Device bytes of the per-batch inputs (indices, offsets, unique-row maps): allocated by
    /// the tables but not embedding storage, so not in [`EmbeddingTables::embedding_bytes`].
    pub fn batch_input_bytes(&self) -> u64 {
        self.inputs.iter().map(BatchInputs::bytes).sum()
    }

    /// Host bytes of the per-batch scratch (remapped indices, renamed maps): like the batch
    /// inputs, not embedding storage.
    pub fn batch_scratch_bytes(&self) -> u64 {
        (4 * (self.slot_of.capacity() + self.remapped.capacity())) as u64
            + self.local_map.bytes()
            + self.renamed.bytes()
    }

    /// Bytes of the tables' rows in FP32 (the reference for memory savings).
    pub fn fp32_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| 4 * t.rows as u64 * self.settings.dim as u64)
            .sum()
    }
}
