//! One batch through the embedding tables: make its rows resident (on demand, or as the
//! lookahead planner placed them), upload its lookups renamed to slots, pool them, and apply
//! the fused backward. Evaluation reads through the caches without changing them.
//!
//! With `all-on-device` the kernels read the tables directly. With a cache, the batch's rows are
//! renamed to cache slots in its lookups and unique-row map, so the same kernels run on the slots
//! with the same sums in the same order, and a cached run trains exactly like an uncached one.

use super::cache::{Access, DeviceCache, Noise, Transfer};
use super::error::EmbeddingError;
use super::policy::Policy;
use super::tables::{EmbeddingTables, Table};
use super::transfer::{DeviceRows, Evicted, FetchedRows};
use crate::data::{Bags, RowMap};
use crate::device::{BagBackward, BagShape, Device, DeviceError, RowGradMap, Strided};
use crate::telemetry::TableStats;

/// How a training batch's rows become resident on the device.
pub enum Residency<'a, D: Device> {
    /// Every row already lives on the device (`all-on-device`), or the cache fetches the misses
    /// now and writes its victims back before the step (`lru`, `lfu`, `host-only`).
    OnDemand,
    /// The lookahead planner placed the rows ahead (`lookahead`).
    Planned {
        /// Per table: the plan and the rows the stager gathered.
        fetched: &'a [FetchedRows],
        /// Per table: those rows, already uploaded by the stager.
        uploads: &'a [DeviceRows<D>],
        /// Per table: where this step quantizes its victims, for the write-back stage.
        victims: Vec<DeviceRows<D>>,
        /// The training step (keys the rounding noise of the victims).
        step: u64,
    },
}

/// Checks that every lookup of table `t`'s batch is inside the table: the largest unique row
/// (the map is sorted) decides, and only a bad batch is scanned for the position to report.
/// Returns the table's counts, ready for what the residency adds.
fn check_rows(
    t: usize,
    rows: u32,
    bags: &Bags,
    map: &RowMap,
) -> Result<TableStats, EmbeddingError> {
    if map.positions.len() != bags.indices.len() {
        return Err(EmbeddingError::Inconsistent {
            table: t,
            message: format!(
                "the unique-row map covers {} lookups, the batch has {}",
                map.positions.len(),
                bags.indices.len()
            ),
        });
    }
    match map.unique_rows.last() {
        Some(&last) if last >= rows => {
            let position = bags.indices.iter().position(|&r| r >= rows).unwrap_or(0);
            Err(EmbeddingError::RowOutOfRange {
                table: t,
                row: bags.indices.get(position).copied().unwrap_or(last),
                position,
                rows,
            })
        }
        _ => Ok(TableStats {
            table: Some(t),
            lookups: bags.indices.len() as u64,
            unique_rows: map.unique() as u64,
            ..Default::default()
        }),
    }
}

fn mismatch(what: &str, got: usize, tables: usize) -> EmbeddingError {
    EmbeddingError::Inconsistent {
        table: 0,
        message: format!("{got} {what} for {tables} tables"),
    }
}

impl<D: Device> EmbeddingTables<D> {
    /// Makes a training batch's rows resident and uploads its lookups (`sparse`, one entry per
    /// table) and unique-row maps (`maps`), renamed to cache slots where a cache holds the
    /// table; rows are checked against their tables first. With [`Residency::Planned`] returns
    /// the rows the step evicted, packed on the device, for the write-back stage.
    pub fn prepare_batch(
        &mut self,
        dev: &D,
        sparse: &[Bags],
        maps: &[RowMap],
        residency: Residency<'_, D>,
    ) -> Result<Option<Evicted<D>>, EmbeddingError> {
        let n = self.tables.len();
        if sparse.len() != n || maps.len() != n {
            return Err(mismatch(
                "sparse features and maps",
                sparse.len().min(maps.len()),
                n,
            ));
        }
        let (fetched, uploads, mut victims, step) = match residency {
            Residency::OnDemand => (None, None, Vec::new(), 0),
            Residency::Planned {
                fetched,
                uploads,
                victims,
                step,
            } => {
                if fetched.len() != n || uploads.len() != n || victims.len() != n {
                    return Err(mismatch("planned tables", fetched.len(), n));
                }
                (Some(fetched), Some(uploads), victims, step)
            }
        };
        self.tick += 1;
        let mut evicted = Vec::with_capacity(if fetched.is_some() { n } else { 0 });
        for t in 0..n {
            let (bags, map) = (&sparse[t], &maps[t]);
            let mut stats = check_rows(t, self.tables[t].rows, bags, map)?;
            if self.tables[t].cache.is_none() {
                if fetched.is_some() {
                    return Err(EmbeddingError::Inconsistent {
                        table: t,
                        message: "the lookahead policy needs a cached table".into(),
                    });
                }
                let inputs = &mut self.inputs[t];
                inputs.upload_lookups(dev, &bags.indices, &bags.offsets)?;
                inputs.upload_map(dev, map)?;
                // Every row is resident: all unique rows hit, nothing travels.
                stats.hits = stats.unique_rows;
                stats.cache_rows = self.tables[t].rows as u64;
                stats.cache_occupancy = 1.0;
                self.stats[t] = stats;
                continue;
            }
            match (fetched, uploads) {
                (Some(fetched), Some(uploads)) => {
                    let (mut at, cache) = cache_parts(dev, &mut self.io, &mut self.tables[t], t)?;
                    let noise = Noise::at(self.noise_seed, step);
                    evicted.push(cache.apply_plan(
                        &mut at,
                        (&fetched[t], &uploads[t]),
                        &mut victims[t],
                        &map.unique_rows,
                        noise,
                        &mut stats,
                    )?);
                    let inputs = &mut self.inputs[t];
                    inputs.upload_lookups(dev, &fetched[t].indices, &bags.offsets)?;
                    inputs.upload_map(dev, &fetched[t].map)?;
                }
                _ => {
                    self.grow_host_only(dev, t, map.unique())?;
                    let (tick, seed) = (self.tick, self.noise_seed);
                    let (mut at, cache) = cache_parts(dev, &mut self.io, &mut self.tables[t], t)?;
                    let unique = &map.unique_rows;
                    let noise = (tick, seed);
                    cache.prepare(&mut at, unique, &mut self.slot_of, noise, &mut stats)?;
                    map.rename_lookups(&self.slot_of, &mut self.remapped);
                    map.rename_into(&self.slot_of, &mut self.renamed);
                    let inputs = &mut self.inputs[t];
                    inputs.upload_lookups(dev, &self.remapped, &bags.offsets)?;
                    inputs.upload_map(dev, &self.renamed)?;
                }
            }
            self.stats[t] = stats;
        }
        Ok(fetched.map(|_| Evicted {
            tables: evicted,
            device: victims,
        }))
    }

    /// Evaluation: pools a batch's lookups (`sparse`) into `out` (`[bags, vectors, dim]`), reading
    /// through the caches without changing them, one table at a time so that tables share one
    /// buffer of rows read for evaluation. Counts what it found resident.
    pub fn forward_eval(
        &mut self,
        dev: &D,
        sparse: &[Bags],
        out: &D::Buffer,
    ) -> Result<(), EmbeddingError> {
        let n = self.tables.len();
        if sparse.len() != n {
            return Err(mismatch("sparse features", sparse.len(), n));
        }
        // No tick: an evaluation reads the caches without changing them, so training (its
        // uses' order, its rounding noise) is the same whenever and however often it evaluates.
        let (dim, stride) = (
            self.settings.dim as u32,
            self.vectors * self.settings.dim as u32,
        );
        for (t, bags) in sparse.iter().enumerate() {
            let mut map = std::mem::take(&mut self.local_map);
            map.build(bags);
            let done = self.eval_table(dev, t, bags, &map, out, dim, stride);
            self.local_map = map;
            done?;
        }
        Ok(())
    }

    /// [`EmbeddingTables::forward_eval`] for table `t`, given its batch's unique-row map.
    #[allow(clippy::too_many_arguments)]
    fn eval_table(
        &mut self,
        dev: &D,
        t: usize,
        bags: &Bags,
        map: &RowMap,
        out: &D::Buffer,
        dim: u32,
        stride: u32,
    ) -> Result<(), EmbeddingError> {
        let mut stats = check_rows(t, self.tables[t].rows, bags, map)?;
        let (source, rows) = match cache_parts(dev, &mut self.io, &mut self.tables[t], t) {
            Ok((mut at, cache)) => {
                let unique = &map.unique_rows;
                cache.read_only(&mut at, unique, &mut self.slot_of, &mut stats)?;
                map.rename_lookups(&self.slot_of, &mut self.remapped);
                self.inputs[t].upload_lookups(dev, &self.remapped, &bags.offsets)?;
                (at.io.eval_rows.buffer(), map.unique() as u32)
            }
            Err(_) => {
                let table = &self.tables[t];
                self.inputs[t].upload_lookups(dev, &bags.indices, &bags.offsets)?;
                (&table.weights, table.slots)
            }
        };
        let pooling = self.settings.pooling;
        let at = self.positions[t];
        self.inputs[t].pool(dev, (source, rows), dim, pooling, out, stride, at)?;
        self.stats[t] = stats;
        Ok(())
    }

    /// Host-only tables grow their slot buffers to hold a whole batch.
    fn grow_host_only(&mut self, dev: &D, t: usize, unique: usize) -> Result<(), DeviceError> {
        let dim = self.settings.dim;
        let init = self.settings.rule.init;
        let table = &mut self.tables[t];
        let Some(cache) = &mut table.cache else {
            return Ok(());
        };
        if cache.policy() != Policy::HostOnly || unique <= table.slots as usize {
            return Ok(());
        }
        let slots = (unique as u32).next_power_of_two().min(table.rows);
        let weights = dev.alloc_rows(slots.max(1) as u64, 4 * dim as u64)?;
        let state = match table.state {
            Some(_) => {
                let s = dev.alloc_rows(slots.max(1) as u64, 4)?;
                crate::device::DeviceExt::upload_elems(dev, &s, 0, &vec![init; slots as usize])?;
                Some(s)
            }
            None => None,
        };
        (table.weights, table.state, table.slots) = (weights, state, slots);
        cache.resize(slots);
        Ok(())
    }

    /// Ends a training step: host-only tables write every row back and empty their slots.
    pub fn finish_step(&mut self, dev: &D) -> Result<(), EmbeddingError> {
        let noise = Noise::at(self.noise_seed, self.tick);
        for (t, table) in self.tables.iter_mut().enumerate() {
            if let Ok((mut at, cache)) = cache_parts(dev, &mut self.io, table, t)
                && cache.policy() == Policy::HostOnly
            {
                cache.flush(&mut at, noise, &mut self.stats[t])?;
            }
        }
        Ok(())
    }

    /// Pooled lookups of the prepared training batch into `out`, laid out `[bags, vectors,
    /// dim]`, table `t` at vector `positions[t]` ([`EmbeddingTables::place_vectors`]).
    pub fn forward(&self, dev: &D, out: &D::Buffer) -> Result<(), DeviceError> {
        let (dim, pooling) = (self.settings.dim as u32, self.settings.pooling);
        let stride = self.vectors * dim;
        for (t, (table, inputs)) in self.tables.iter().zip(&self.inputs).enumerate() {
            let source = (&table.weights, table.slots);
            inputs.pool(dev, source, dim, pooling, out, stride, self.positions[t])?;
        }
        Ok(())
    }

    /// Fused backward + optimizer step for the prepared training batch, given the gradient of
    /// `forward`'s output (`[bags, vectors, dim]`).
    pub fn backward(&self, dev: &D, grad: &D::Buffer, lr: f32) -> Result<(), EmbeddingError> {
        let dim = self.settings.dim as u32;
        for (t, (table, inputs)) in self.tables.iter().zip(&self.inputs).enumerate() {
            if !inputs.has_map {
                return Err(EmbeddingError::Inconsistent {
                    table: t,
                    message: "backward after a batch prepared without its unique-row map".into(),
                });
            }
            let args = BagBackward {
                table: &table.weights,
                map: RowGradMap {
                    unique_rows: inputs.unique_rows.buffer(),
                    row_starts: inputs.row_starts.buffer(),
                    bag_ids: inputs.bag_ids.buffer(),
                    unique: inputs.unique as u32,
                },
                offsets: inputs.offsets.buffer(),
                shape: BagShape {
                    rows: table.slots,
                    dim,
                    bags: inputs.bags as u32,
                    pooling: self.settings.pooling,
                },
                grad: Strided {
                    buffer: grad,
                    stride: self.vectors * dim,
                    offset: self.positions[t] * dim,
                },
                lr,
            };
            match &table.state {
                Some(state) => dev.bag_backward_adagrad(&args, state, self.settings.rule.eps)?,
                None => dev.bag_backward_sgd(&args)?,
            }
        }
        Ok(())
    }
}

/// The shared transfer buffers, the slot buffers and the cache of cached table `t`.
fn cache_parts<'a, D: Device>(
    dev: &'a D,
    io: &'a mut Option<Transfer<D>>,
    table: &'a mut Table<D>,
    t: usize,
) -> Result<(Access<'a, D>, &'a mut DeviceCache), EmbeddingError> {
    let (slots, cache) = table.split();
    match (io.as_mut(), cache) {
        (Some(io), Some(cache)) => Ok((
            Access {
                dev,
                io,
                slots,
                table: t,
            },
            cache,
        )),
        _ => Err(EmbeddingError::Inconsistent {
            table: t,
            message: "a cached table without its cache machinery".into(),
        }),
    }
}
