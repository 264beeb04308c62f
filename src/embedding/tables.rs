//! `EmbeddingTables`: a model's embedding tables, whatever their placement (see [`Policy`]).
//!
//! The model talks to embeddings only through `stage` / `forward` / `backward` /
//! `finish_step`. With `all-on-device` the kernels read the tables directly; with a cache,
//! `stage` makes the batch's rows resident (writing back victims, fetching misses packed) and
//! renames rows to cache slots in the staged indices and unique-row maps, so the same kernels
//! run on the slots with the same sums in the same order.

use super::cache::{CachedRows, Slots, lock_store};
use super::init::{INIT_CHUNK_ROWS, fill_uniform};
use super::policy::Policy;
use super::store::HostStore;
use crate::data::Bags;
use crate::data::RowMap;
use crate::device::{
    BagBackward, BagForward, Device, DeviceError, DeviceExt, DeviceVec, OptimizerRule, Pooling,
    RowGradMap,
};
use crate::precision::{Precision, Rounding};
use crate::telemetry::TableStats;

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

/// Where the rows live.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The policy.
    pub policy: Policy,
    /// Host store precision (cached policies).
    pub precision: Precision,
    /// Rounding of write-backs.
    pub rounding: Rounding,
    /// Cache slots per table (cached policies except host-only, which sizes itself per batch).
    pub cache_rows: Vec<u32>,
}

impl Placement {
    /// Every row on the device in FP32.
    pub fn all_on_device() -> Self {
        Placement {
            policy: Policy::AllOnDevice,
            precision: Precision::Fp32,
            rounding: Rounding::Nearest,
            cache_rows: Vec::new(),
        }
    }
}

struct Table<D: Device> {
    rows: u32,
    /// Rows of `weights`: the table's rows, or its cache slots.
    slots: u32,
    weights: D::Buffer,
    /// Row-wise Adagrad accumulators, one f32 per row (or slot).
    state: Option<D::Buffer>,
    cache: Option<CachedRows<D>>,
    /// Rows gathered for evaluation (cached tables), and how many fit.
    eval: Option<(D::Buffer, u32)>,
}

/// One table's inputs for the current batch, on the device.
struct Staged<D: Device> {
    indices: DeviceVec<D>,
    offsets: DeviceVec<D>,
    unique_rows: DeviceVec<D>,
    row_starts: DeviceVec<D>,
    bag_ids: DeviceVec<D>,
    bags: usize,
    unique: usize,
    has_map: bool,
    /// Rows of the table's evaluation buffer the indices point into (read-only staging).
    eval_rows: Option<u32>,
}

/// All embedding tables of a model.
pub struct EmbeddingTables<D: Device> {
    settings: EmbeddingSettings,
    placement: Placement,
    tables: Vec<Table<D>>,
    staged: Vec<Staged<D>>,
    /// Counts of the last `stage` + `finish_step`, per table.
    stats: Vec<TableStats>,
    tick: u64,
    noise_seed: u32,
    slot_of: Vec<u32>,
    remapped: Vec<u32>,
    local_map: RowMap,
    renamed: RowMap,
}

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
            dev.upload_f32(&s, 0, &vec![init; slots as usize])?;
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
    ) -> Result<Self, DeviceError> {
        let dim = settings.dim;
        let adagrad = settings.rule.has_state().then_some(settings.rule.init);
        let mut tables = Vec::with_capacity(rows.len());
        for (t, &n) in rows.iter().enumerate() {
            if !placement.policy.is_cached() {
                let (weights, state) = alloc_slots(dev, n, dim, adagrad)?;
                let mut chunk = vec![0f32; INIT_CHUNK_ROWS.min(n as usize) * dim];
                for (c, first) in (0..n as usize).step_by(INIT_CHUNK_ROWS).enumerate() {
                    let len = INIT_CHUNK_ROWS.min(n as usize - first) * dim;
                    fill_uniform(
                        &mut chunk[..len],
                        settings.init_scale,
                        seed,
                        t as u64,
                        c as u64,
                    );
                    dev.upload_f32(&weights, first * dim, &chunk[..len])?;
                }
                tables.push(Table {
                    rows: n,
                    slots: n,
                    weights,
                    state,
                    cache: None,
                    eval: None,
                });
                continue;
            }
            let slots = match placement.policy {
                Policy::HostOnly => n.min(4096),
                _ => placement
                    .cache_rows
                    .get(t)
                    .copied()
                    .unwrap_or(n)
                    .clamp(1, n.max(1)),
            };
            let store = HostStore::new(
                n,
                dim,
                placement.precision,
                adagrad,
                settings.init_scale,
                seed,
                t as u64,
            )?;
            let (weights, state) = alloc_slots(dev, slots, dim, adagrad)?;
            let cache =
                CachedRows::new(dev, store, slots, placement.policy, placement.rounding, dim)?;
            tables.push(Table {
                rows: n,
                slots,
                weights,
                state,
                cache: Some(cache),
                eval: None,
            });
        }
        let staged = (0..rows.len())
            .map(|_| {
                Ok(Staged {
                    indices: DeviceVec::new(dev, batch * 4)?,
                    offsets: DeviceVec::new(dev, batch + 1)?,
                    unique_rows: DeviceVec::new(dev, batch * 4)?,
                    row_starts: DeviceVec::new(dev, batch * 4 + 1)?,
                    bag_ids: DeviceVec::new(dev, batch * 4)?,
                    bags: 0,
                    unique: 0,
                    has_map: false,
                    eval_rows: None,
                })
            })
            .collect::<Result<_, DeviceError>>()?;
        Ok(EmbeddingTables {
            settings,
            stats: vec![TableStats::default(); rows.len()],
            placement,
            tables,
            staged,
            tick: 0,
            noise_seed: (seed ^ (seed >> 32)) as u32,
            slot_of: Vec::new(),
            remapped: Vec::new(),
            local_map: RowMap::new(),
            renamed: RowMap::new(),
        })
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

    /// Counts of the last staged step (lookups, hits, misses, evictions, bytes), per table.
    pub fn stats(&self) -> &[TableStats] {
        &self.stats
    }

    /// Uploads a batch's lookups (one [`Bags`] per table) and, for training, the unique-row maps
    /// the backward needs; with a cache, first makes the batch's rows resident. Indices are
    /// checked against the tables here, on the host.
    pub fn stage(
        &mut self,
        dev: &D,
        sparse: &[Bags],
        maps: Option<&[RowMap]>,
    ) -> Result<(), DeviceError> {
        if sparse.len() != self.tables.len() {
            return Err(DeviceError::InvalidArgument {
                kernel: "bag_forward",
                message: format!(
                    "{} sparse features for {} tables",
                    sparse.len(),
                    self.tables.len()
                ),
            });
        }
        if let Some(maps) = maps
            && maps.len() != sparse.len()
        {
            return Err(DeviceError::InvalidArgument {
                kernel: "bag_backward_sgd",
                message: format!("{} unique-row maps for {} tables", maps.len(), sparse.len()),
            });
        }
        self.tick += 1;
        let train = maps.is_some();
        for t in 0..self.tables.len() {
            let bags = &sparse[t];
            let rows = self.tables[t].rows;
            if let Some(p) = bags.indices.iter().position(|&r| r >= rows) {
                return Err(DeviceError::IndexOutOfRange {
                    kernel: "bag_forward",
                    index: bags.indices[p],
                    position: p,
                    rows,
                });
            }
            let mut stats = TableStats {
                table: Some(t),
                lookups: bags.indices.len() as u64,
                ..Default::default()
            };
            if self.tables[t].cache.is_none() {
                let staged = &mut self.staged[t];
                staged.indices.upload_u32(dev, &bags.indices)?;
                staged.offsets.upload_u32(dev, &bags.offsets)?;
                staged.bags = bags.len();
                staged.has_map = false;
                staged.eval_rows = None;
                if let Some(m) = maps.map(|m| &m[t]) {
                    upload_map(dev, staged, m)?;
                    // Every row is resident: all unique rows hit, nothing travels.
                    stats.unique_rows = m.unique() as u64;
                    stats.hits = stats.unique_rows;
                }
                stats.cache_rows = rows as u64;
                stats.cache_occupancy = 1.0;
                self.stats[t] = stats;
                continue;
            }
            let mut local = std::mem::take(&mut self.local_map);
            let map = match maps {
                Some(m) => &m[t],
                None => {
                    local.build(bags);
                    &local
                }
            };
            stats.unique_rows = map.unique() as u64;
            if train {
                self.ensure_slots(dev, t, map.unique())?;
            } else {
                self.ensure_eval(dev, t, map.unique())?;
            }
            let table = &mut self.tables[t];
            let slots = Slots {
                weights: &table.weights,
                state: table.state.as_ref(),
            };
            let missing = || DeviceError::InvalidArgument {
                kernel: "bag_forward",
                message: "cache missing".into(),
            };
            let cache = table.cache.as_mut().ok_or_else(missing)?;
            if train {
                let (tick, seed) = (self.tick, self.noise_seed);
                cache.prepare(
                    dev,
                    &slots,
                    &map.unique_rows,
                    &mut self.slot_of,
                    tick,
                    seed,
                    true,
                    &mut stats,
                )?;
            } else {
                // Evaluation reads through the cache without changing it.
                let out = table.eval.as_ref().map(|(b, _)| b).ok_or_else(missing)?;
                cache.read_only(
                    dev,
                    &slots,
                    &map.unique_rows,
                    out,
                    &mut self.slot_of,
                    &mut stats,
                )?;
            }
            remap(&bags.indices, map, &self.slot_of, &mut self.remapped)?;
            let staged = &mut self.staged[t];
            staged.indices.upload_u32(dev, &self.remapped)?;
            staged.offsets.upload_u32(dev, &bags.offsets)?;
            staged.bags = bags.len();
            staged.has_map = false;
            staged.eval_rows = (!train).then_some(map.unique() as u32);
            if train {
                map.rename_into(&self.slot_of, &mut self.renamed);
                upload_map(dev, staged, &self.renamed)?;
            }
            self.stats[t] = stats;
            self.local_map = local;
        }
        Ok(())
    }

    /// Lookahead: stages a batch whose rows a planner placed ahead (`staged`, one per table,
    /// from the stager): applies each table's plan (evictions, fetches, the train stage's own
    /// residency check) and uploads the batch renamed to slots. Returns the evicted rows, packed,
    /// for the write-back stage. `step` keys the rounding noise.
    #[allow(clippy::too_many_arguments)]
    pub fn stage_planned(
        &mut self,
        dev: &D,
        sparse: &[Bags],
        maps: &[RowMap],
        staged: &[crate::pipeline::StagedTable],
        uploaded: &[crate::pipeline::DeviceRows<D>],
        mut victims: Vec<crate::pipeline::DeviceRows<D>>,
        step: u64,
    ) -> Result<crate::pipeline::Evicted<D>, DeviceError> {
        if uploaded.len() != self.tables.len()
            || staged.len() != self.tables.len()
            || victims.len() != self.tables.len()
        {
            return Err(DeviceError::InvalidArgument {
                kernel: "dequantize_rows",
                message: format!(
                    "{} staged and {} uploaded tables for {} tables",
                    staged.len(),
                    uploaded.len(),
                    self.tables.len()
                ),
            });
        }
        self.tick += 1;
        let mut evicted = Vec::with_capacity(self.tables.len());
        for t in 0..self.tables.len() {
            let (bags, map, st) = (&sparse[t], &maps[t], &staged[t]);
            let mut stats = TableStats {
                table: Some(t),
                lookups: bags.indices.len() as u64,
                unique_rows: map.unique() as u64,
                ..Default::default()
            };
            let table = &mut self.tables[t];
            let slots = Slots {
                weights: &table.weights,
                state: table.state.as_ref(),
            };
            let cache = table
                .cache
                .as_mut()
                .ok_or_else(|| DeviceError::InvalidArgument {
                    kernel: "bag_forward",
                    message: "the lookahead policy needs a cached table".into(),
                })?;
            evicted.push(cache.apply_plan(
                dev,
                &slots,
                st,
                &uploaded[t],
                &mut victims[t],
                &map.unique_rows,
                step as u32,
                self.noise_seed,
                &mut stats,
            )?);
            let staged_t = &mut self.staged[t];
            staged_t.indices.upload_u32(dev, &st.indices)?;
            staged_t.offsets.upload_u32(dev, &bags.offsets)?;
            staged_t.bags = bags.len();
            staged_t.eval_rows = None;
            upload_map(dev, staged_t, &st.map)?;
            self.stats[t] = stats;
        }
        Ok(crate::pipeline::Evicted {
            tables: evicted,
            device: victims,
        })
    }

    /// Hands table `t`'s cache buffers of rows already written back, for reuse.
    pub fn recycle(&mut self, t: usize, words: Vec<u32>, state: Vec<f32>) {
        if let Some(c) = self.tables.get_mut(t).and_then(|t| t.cache.as_mut()) {
            c.recycle(words, state);
        }
    }

    /// The host stores of the cached tables (shared with the lookahead pipeline's threads).
    pub fn stores(&self) -> Vec<std::sync::Arc<std::sync::Mutex<super::store::HostStore>>> {
        self.tables
            .iter()
            .filter_map(|t| t.cache.as_ref().map(|c| c.store.clone()))
            .collect()
    }

    /// Rows on the device per table: cache slots, or all the table's rows.
    pub fn slots(&self) -> Vec<u32> {
        self.tables.iter().map(|t| t.slots).collect()
    }

    /// Grows table `t`'s evaluation buffer to hold `unique` rows.
    fn ensure_eval(&mut self, dev: &D, t: usize, unique: usize) -> Result<(), DeviceError> {
        let table = &mut self.tables[t];
        if table
            .eval
            .as_ref()
            .is_some_and(|(_, cap)| *cap as usize >= unique)
        {
            return Ok(());
        }
        let cap = (unique as u32).next_power_of_two().max(256);
        table.eval = Some((
            dev.alloc_rows(cap as u64, 4 * self.settings.dim as u64)?,
            cap,
        ));
        Ok(())
    }

    /// Host-only tables grow their slot buffers to hold a whole batch.
    fn ensure_slots(&mut self, dev: &D, t: usize, unique: usize) -> Result<(), DeviceError> {
        let table = &mut self.tables[t];
        let Some(cache) = &mut table.cache else {
            return Ok(());
        };
        if cache.policy() != Policy::HostOnly || unique <= table.slots as usize {
            return Ok(());
        }
        let slots = (unique as u32).next_power_of_two().min(table.rows);
        let adagrad = table.state.as_ref().map(|_| self.settings.rule.init);
        let (weights, state) = alloc_slots(dev, slots, self.settings.dim, adagrad)?;
        (table.weights, table.state, table.slots) = (weights, state, slots);
        cache.resize(slots);
        Ok(())
    }

    /// Ends a step: host-only tables write every row back and empty their slots.
    pub fn finish_step(&mut self, dev: &D) -> Result<(), DeviceError> {
        for (t, table) in self.tables.iter_mut().enumerate() {
            if let Some(cache) = &mut table.cache
                && cache.policy() == Policy::HostOnly
            {
                let slots = Slots {
                    weights: &table.weights,
                    state: table.state.as_ref(),
                };
                cache.flush(dev, &slots, self.tick, self.noise_seed, &mut self.stats[t])?;
            }
        }
        Ok(())
    }

    /// Pooled lookups of the staged batch into `out`, laid out `[bags, tables, dim]`.
    pub fn forward(&self, dev: &D, out: &D::Buffer) -> Result<(), DeviceError> {
        let (dim, t_count) = (self.settings.dim as u32, self.tables.len() as u32);
        for (t, (table, staged)) in self.tables.iter().zip(&self.staged).enumerate() {
            let (weights, rows) = match (staged.eval_rows, &table.eval) {
                (Some(rows), Some((buffer, _))) => (buffer, rows),
                _ => (&table.weights, table.slots),
            };
            dev.bag_forward(&BagForward {
                table: weights,
                rows,
                dim,
                indices: staged.indices.buffer(),
                offsets: staged.offsets.buffer(),
                bags: staged.bags as u32,
                pooling: self.settings.pooling,
                out,
                out_stride: t_count * dim,
                out_offset: t as u32 * dim,
            })?;
        }
        Ok(())
    }

    /// Fused backward + optimizer step for the staged batch, given the gradient of `forward`'s
    /// output (`[bags, tables, dim]`).
    pub fn backward(&self, dev: &D, grad: &D::Buffer, lr: f32) -> Result<(), DeviceError> {
        let (dim, t_count) = (self.settings.dim as u32, self.tables.len() as u32);
        for (t, (table, staged)) in self.tables.iter().zip(&self.staged).enumerate() {
            if !staged.has_map {
                return Err(DeviceError::InvalidArgument {
                    kernel: "bag_backward_sgd",
                    message: "the batch was staged without its unique-row map".into(),
                });
            }
            let args = BagBackward {
                table: &table.weights,
                rows: table.slots,
                dim,
                map: RowGradMap {
                    unique_rows: staged.unique_rows.buffer(),
                    row_starts: staged.row_starts.buffer(),
                    bag_ids: staged.bag_ids.buffer(),
                    unique: staged.unique as u32,
                },
                offsets: staged.offsets.buffer(),
                bags: staged.bags as u32,
                pooling: self.settings.pooling,
                grad,
                grad_stride: t_count * dim,
                grad_offset: t as u32 * dim,
                lr,
            };
            match &table.state {
                Some(state) => dev.bag_backward_adagrad(&args, state, self.settings.rule.eps)?,
                None => dev.bag_backward_sgd(&args)?,
            }
        }
        Ok(())
    }

    /// Table `t` as FP32 (`rows × dim`): the device rows, or the host store with the cached rows'
    /// newer values laid over it.
    pub fn read_table(&self, dev: &D, t: usize) -> Result<Vec<f32>, DeviceError> {
        let table = &self.tables[t];
        let dim = self.settings.dim;
        let Some(cache) = &table.cache else {
            return dev.read_f32(&table.weights, 0, table.rows as usize * dim);
        };
        let mut out = vec![0f32; table.rows as usize * dim];
        let store = lock_store(&cache.store);
        for r in 0..table.rows {
            store.read_row(r, &mut out[r as usize * dim..(r as usize + 1) * dim]);
        }
        let slots = dev.read_f32(&table.weights, 0, table.slots as usize * dim)?;
        for (s, r) in cache.dir.resident() {
            let (s, r) = (s as usize, r as usize);
            out[r * dim..(r + 1) * dim].copy_from_slice(&slots[s * dim..(s + 1) * dim]);
        }
        Ok(out)
    }

    /// Overwrites table `t` with `values` (`rows × dim`); only for tables kept on the device.
    pub fn write_table(&self, dev: &D, t: usize, values: &[f32]) -> Result<(), DeviceError> {
        if self.tables[t].cache.is_some() {
            return Err(DeviceError::InvalidArgument {
                kernel: "upload",
                message: "write_table needs an all-on-device table".into(),
            });
        }
        dev.upload_f32(&self.tables[t].weights, 0, values)
    }

    /// Whether row `row` of table `t` is on the device now.
    pub fn is_resident(&self, t: usize, row: u32) -> bool {
        match &self.tables[t].cache {
            None => true,
            Some(c) => c.dir.lookup(row).is_some(),
        }
    }

    /// Bytes the embeddings hold: host stores, device rows or cache slots, optimizer state,
    /// directories and the transfer buffers of the caches — allocated sizes, not formulas.
    pub fn embedding_bytes(&self, dev: &D) -> u64 {
        self.tables
            .iter()
            .map(|t| {
                dev.buffer_bytes(&t.weights)
                    + t.state.as_ref().map_or(0, |s| dev.buffer_bytes(s))
                    + t.cache.as_ref().map_or(0, |c| c.bytes())
                    + t.eval.as_ref().map_or(0, |(b, _)| dev.buffer_bytes(b))
            })
            .sum()
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
    /// batch staging buffers.
    pub fn device_bytes(&self, dev: &D) -> u64 {
        let tables: u64 = self
            .tables
            .iter()
            .map(|t| {
                dev.buffer_bytes(&t.weights)
                    + t.state.as_ref().map_or(0, |s| dev.buffer_bytes(s))
                    + t.cache.as_ref().map_or(0, |c| c.device_bytes())
                    + t.eval.as_ref().map_or(0, |(b, _)| dev.buffer_bytes(b))
            })
            .sum();
        tables + self.batch_staging_bytes()
    }

    /// Device bytes of the per-batch inputs (indices, offsets, unique-row maps): allocated by
    /// the tables but not embedding storage, so not in [`EmbeddingTables::embedding_bytes`].
    pub fn batch_staging_bytes(&self) -> u64 {
        self.staged
            .iter()
            .map(|s| {
                s.indices.bytes()
                    + s.offsets.bytes()
                    + s.unique_rows.bytes()
                    + s.row_starts.bytes()
                    + s.bag_ids.bytes()
            })
            .sum()
    }

    /// Host bytes of the per-batch scratch (remapped indices, renamed maps): like the batch
    /// staging, not embedding storage.
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

fn upload_map<D: Device>(dev: &D, staged: &mut Staged<D>, m: &RowMap) -> Result<(), DeviceError> {
    staged.unique_rows.upload_u32(dev, &m.unique_rows)?;
    staged.row_starts.upload_u32(dev, &m.row_starts)?;
    staged.bag_ids.upload_u32(dev, &m.bag_ids)?;
    staged.unique = m.unique();
    staged.has_map = true;
    Ok(())
}

/// Renames each lookup of the batch through its unique rows: position `p` gets `names[u]`.
fn remap(
    indices: &[u32],
    map: &RowMap,
    names: &[u32],
    out: &mut Vec<u32>,
) -> Result<(), DeviceError> {
    if map.positions.len() != indices.len() {
        return Err(DeviceError::InvalidArgument {
            kernel: "bag_forward",
            message: format!(
                "the unique-row map covers {} lookups, the batch has {}",
                map.positions.len(),
                indices.len()
            ),
        });
    }
    map.rename_lookups(names, out);
    Ok(())
}
