//! `AllOnDevice` embedding tables: every row of every table lives on the device in FP32.
//!
//! The model talks to embeddings only through this type's `stage` / `forward` / `backward`, so
//! the cached store (host backing store + device cache) can take its place without touching the
//! model: it will remap rows to cache slots in `stage` and keep the same kernels.

use super::RowMap;
use crate::data::Bags;
use crate::device::{
    BagBackward, BagForward, Device, DeviceError, DeviceExt, Pooling, RowGradMap, StagingBuffer,
};
use crate::model::OptimizerKind;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

/// Rows initialised per upload, so a table larger than host memory would still fit in pieces.
const INIT_CHUNK_ROWS: usize = 1 << 16;

/// How the embedding tables are trained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingSettings {
    /// Vector size.
    pub dim: usize,
    /// Sum or mean of a bag's rows.
    pub pooling: Pooling,
    /// SGD or row-wise Adagrad.
    pub optimizer: OptimizerKind,
    /// Adagrad's denominator term.
    pub adagrad_eps: f32,
    /// Initial value of the row-wise Adagrad accumulators.
    pub adagrad_init: f32,
    /// Rows start uniform in `[-s, s]`.
    pub init_scale: f32,
}

struct Table<D: Device> {
    rows: u32,
    weights: D::Buffer,
    /// Row-wise Adagrad accumulators, one f32 per row.
    state: Option<D::Buffer>,
}

/// One table's inputs for the current batch, on the device.
struct Staged<D: Device> {
    indices: StagingBuffer<D>,
    offsets: StagingBuffer<D>,
    unique_rows: StagingBuffer<D>,
    row_starts: StagingBuffer<D>,
    bag_ids: StagingBuffer<D>,
    bags: usize,
    unique: usize,
    has_map: bool,
}

/// All embedding tables of a model, resident on the device (`AllOnDevice`).
pub struct EmbeddingTables<D: Device> {
    settings: EmbeddingSettings,
    tables: Vec<Table<D>>,
    staged: Vec<Staged<D>>,
}

impl<D: Device> EmbeddingTables<D> {
    /// Allocates and initialises one table per entry of `rows` (values uniform in
    /// `[-init_scale, init_scale]`, drawn from `seed`), with room for batches of `batch` bags.
    pub fn new(
        dev: &D,
        rows: &[u32],
        settings: EmbeddingSettings,
        batch: usize,
        seed: u64,
    ) -> Result<Self, DeviceError> {
        let dim = settings.dim;
        let mut tables = Vec::with_capacity(rows.len());
        for (t, &n) in rows.iter().enumerate() {
            let weights = dev.alloc_rows(n.max(1) as u64, 4 * dim as u64)?;
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
            let state = match settings.optimizer {
                OptimizerKind::Adagrad => {
                    let state = dev.alloc_rows(n.max(1) as u64, 4)?;
                    dev.upload_f32(&state, 0, &vec![settings.adagrad_init; n as usize])?;
                    Some(state)
                }
                OptimizerKind::Sgd => None,
            };
            tables.push(Table {
                rows: n,
                weights,
                state,
            });
        }
        let staged = (0..rows.len())
            .map(|_| {
                Ok(Staged {
                    indices: StagingBuffer::new(dev, batch * 4)?,
                    offsets: StagingBuffer::new(dev, batch + 1)?,
                    unique_rows: StagingBuffer::new(dev, batch * 4)?,
                    row_starts: StagingBuffer::new(dev, batch * 4 + 1)?,
                    bag_ids: StagingBuffer::new(dev, batch * 4)?,
                    bags: 0,
                    unique: 0,
                    has_map: false,
                })
            })
            .collect::<Result<_, DeviceError>>()?;
        Ok(EmbeddingTables {
            settings,
            tables,
            staged,
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

    /// Uploads a batch's lookups (one [`Bags`] per table) and, for training, the unique-row maps
    /// the backward needs. Indices are checked against the tables here, on the host.
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
        for (t, (bags, staged)) in sparse.iter().zip(self.staged.iter_mut()).enumerate() {
            let rows = self.tables[t].rows;
            if let Some(p) = bags.indices.iter().position(|&r| r >= rows) {
                return Err(DeviceError::IndexOutOfRange {
                    kernel: "bag_forward",
                    index: bags.indices[p],
                    position: p,
                    rows,
                });
            }
            staged.indices.upload_u32(dev, &bags.indices)?;
            staged.offsets.upload_u32(dev, &bags.offsets)?;
            staged.bags = bags.len();
            staged.has_map = false;
            if let Some(maps) = maps {
                let Some(m) = maps.get(t) else {
                    return Err(DeviceError::InvalidArgument {
                        kernel: "bag_backward_sgd",
                        message: format!(
                            "{} unique-row maps for {} tables",
                            maps.len(),
                            sparse.len()
                        ),
                    });
                };
                staged.unique_rows.upload_u32(dev, &m.unique_rows)?;
                staged.row_starts.upload_u32(dev, &m.row_starts)?;
                staged.bag_ids.upload_u32(dev, &m.bag_ids)?;
                staged.unique = m.unique();
                staged.has_map = true;
            }
        }
        Ok(())
    }

    /// Pooled lookups of the staged batch into `out`, laid out `[bags, tables, dim]`.
    pub fn forward(&self, dev: &D, out: &D::Buffer) -> Result<(), DeviceError> {
        let (dim, t_count) = (self.settings.dim as u32, self.tables.len() as u32);
        for (t, (table, staged)) in self.tables.iter().zip(&self.staged).enumerate() {
            dev.bag_forward(&BagForward {
                table: &table.weights,
                rows: table.rows,
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
                rows: table.rows,
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
                Some(state) => dev.bag_backward_adagrad(&args, state, self.settings.adagrad_eps)?,
                None => dev.bag_backward_sgd(&args)?,
            }
        }
        Ok(())
    }

    /// Downloads table `t` (`rows × dim`).
    pub fn read_table(&self, dev: &D, t: usize) -> Result<Vec<f32>, DeviceError> {
        let table = &self.tables[t];
        dev.read_f32(&table.weights, 0, table.rows as usize * self.settings.dim)
    }

    /// Overwrites table `t` with `values` (`rows × dim`).
    pub fn write_table(&self, dev: &D, t: usize, values: &[f32]) -> Result<(), DeviceError> {
        dev.upload_f32(&self.tables[t].weights, 0, values)
    }

    /// Device bytes held: weights, optimizer state and the staging buffers.
    pub fn device_bytes(&self, dev: &D) -> u64 {
        let tables: u64 = self
            .tables
            .iter()
            .map(|t| {
                dev.buffer_bytes(&t.weights) + t.state.as_ref().map_or(0, |s| dev.buffer_bytes(s))
            })
            .sum();
        let staged: u64 = self
            .staged
            .iter()
            .map(|s| {
                s.indices.bytes()
                    + s.offsets.bytes()
                    + s.unique_rows.bytes()
                    + s.row_starts.bytes()
                    + s.bag_ids.bytes()
            })
            .sum();
        tables + staged
    }

    /// Bytes of the weights alone, as FP32 (the reference for memory savings).
    pub fn fp32_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| 4 * t.rows as u64 * self.settings.dim as u64)
            .sum()
    }
}

/// Fills `chunk` with values uniform in `[-scale, scale]`, from a stream keyed by
/// `(seed, table, chunk index)` so initialisation is reproducible and parallel.
fn fill_uniform(chunk: &mut [f32], scale: f32, seed: u64, table: u64, index: u64) {
    use crate::data::synthetic::splitmix64;
    const PIECE: usize = 1 << 14;
    chunk
        .par_chunks_mut(PIECE)
        .enumerate()
        .for_each(|(p, piece)| {
            let key =
                splitmix64(seed ^ splitmix64(table ^ splitmix64(index ^ splitmix64(p as u64))));
            let mut rng = Pcg64Mcg::seed_from_u64(key);
            piece
                .iter_mut()
                .for_each(|x| *x = rng.random_range(-scale..=scale));
        });
}
