//! DLRM: bottom MLP over the dense features → pooled embeddings per sparse feature → pairwise
//! dot interaction → top MLP → sigmoid + binary cross-entropy.
//!
//! Every tensor lives on the device; a training step uploads the batch, launches the kernels in
//! order and reads back only the per-sample losses (needed on the host for the progress bar).
//! [`Dlrm::launch_step`] starts that read without waiting for it, so the host records the next
//! step while the device still runs this one; [`Dlrm::finish_loss`] collects it later.

mod external;

use super::{HashedFeatures, Layout, Mlp, ModelConfig, ModelError, mlp::ParamRef};
use crate::data::RowMap;
use crate::data::{Batch, Schema};
use crate::device::kernels::interaction_width;
use crate::device::{
    Activation, BceLoss, Device, DeviceError, DeviceExt, DeviceVec, InteractionBackward,
    InteractionForward, InteractionShape, sigmoid,
};
use crate::embedding::transfer::Evicted;
use crate::embedding::{EmbeddingSettings, EmbeddingTables, Placement, Residency};
use crate::rng::Stream;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

/// What one training step leaves behind.
pub struct Step<D: Device> {
    /// The batch's mean loss.
    pub loss: f64,
    /// The rows a planned step evicted, packed on the device, for the write-back stage
    /// (`None` on demand).
    pub evicted: Option<Evicted<D>>,
}

/// A launched step ([`Dlrm::launch_step`]): its loss on its way back, and what it evicted.
pub struct Launched<D: Device> {
    /// The batch's per-sample losses, being read back.
    pub loss: PendingLoss,
    /// The rows a planned step evicted, packed on the device, for the write-back stage
    /// (`None` on demand).
    pub evicted: Option<Evicted<D>>,
}

/// A step's losses on their way back from the device: redeem with [`Dlrm::finish_loss`].
#[must_use = "a pending loss holds a readback until it is finished"]
pub struct PendingLoss {
    slot: usize,
    samples: usize,
}

/// The model, its optimizer state and its activation buffers on device `D`.
pub struct Dlrm<D: Device> {
    num_dense: usize,
    dim: usize,
    capacity: usize,
    bottom: Mlp<D>,
    top: Mlp<D>,
    embeddings: EmbeddingTables<D>,
    /// The DHE features (none when every feature is a table).
    hashed: HashedFeatures<D>,
    layout: Layout,
    /// Embedding vectors per sample: tables' and DHEs'.
    vectors: usize,
    dense_in: DeviceVec<D>,
    labels: DeviceVec<D>,
    /// `[capacity, vectors, dim]` pooled embeddings and their gradient.
    pooled: D::Buffer,
    dpooled: D::Buffer,
    /// `[capacity, interaction_width]` top-MLP input and its gradient.
    inter: D::Buffer,
    dinter: D::Buffer,
    loss: D::Buffer,
    /// Readbacks of the losses, one per step in flight, and which are taken.
    loss_reads: Vec<(D::Readback, bool)>,
    host_out: Vec<f32>,
    /// Overrides the step's learning rate for the embeddings.
    embedding_lr: Option<f32>,
}

impl<D: Device> Dlrm<D> {
    /// Builds the model for data of `schema`, its embedding tables placed as `placement` says
    /// (a placement for the tables of `cfg`'s layout: `cfg.layout(…).split.schema(schema)`), for
    /// batches of up to `capacity` samples, with weights drawn from `seed`. Batches must be split
    /// by the same layout when it has DHE features (`data::SplitDataset`).
    pub fn new(
        dev: &D,
        cfg: &ModelConfig,
        schema: &Schema,
        placement: Placement,
        capacity: usize,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let layout = cfg.layout(schema.table_rows.len())?;
        let table_rows = layout.split.schema(schema).table_rows;
        let (dim, vectors) = (cfg.dim, layout.vectors);
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut bottom_sizes = vec![schema.num_dense];
        bottom_sizes.extend(&cfg.bottom_mlp);
        bottom_sizes.push(dim);
        let width = interaction_width(vectors as u32, dim as u32) as usize;
        let mut top_sizes = vec![width];
        top_sizes.extend(&cfg.top_mlp);
        top_sizes.push(1);
        let rule = cfg.dense_rule();
        let bottom = Mlp::new(
            dev,
            &bottom_sizes,
            Activation::Relu,
            capacity,
            rule,
            &mut rng,
        )?;
        let top = Mlp::new(
            dev,
            &top_sizes,
            Activation::Identity,
            capacity,
            rule,
            &mut rng,
        )?;
        let settings = EmbeddingSettings {
            dim,
            pooling: cfg.pooling,
            rule: cfg.embedding_rule(),
            init_scale: cfg.embedding_init_scale,
        };
        let mut embeddings = EmbeddingTables::new(
            dev,
            &table_rows,
            settings,
            placement,
            capacity,
            Stream::EmbeddingInit.key(seed),
        )?;
        embeddings.place_vectors(vectors, &layout.table_vectors);
        let hashed = HashedFeatures::new(
            dev,
            &cfg.dhe,
            &layout,
            dim,
            capacity,
            rule,
            cfg.pooling,
            seed,
        )?;
        Ok(Dlrm {
            num_dense: schema.num_dense,
            dim,
            capacity,
            bottom,
            top,
            embeddings,
            hashed,
            layout,
            vectors,
            dense_in: DeviceVec::new(dev, capacity * schema.num_dense)?,
            labels: DeviceVec::new(dev, capacity)?,
            pooled: dev.alloc_elems(capacity * vectors * dim)?,
            dpooled: dev.alloc_elems(capacity * vectors * dim)?,
            inter: dev.alloc_elems(capacity * width)?,
            dinter: dev.alloc_elems(capacity * width)?,
            loss: dev.alloc_elems(capacity)?,
            loss_reads: Vec::new(),
            host_out: vec![0.0; capacity],
            embedding_lr: cfg.embedding_lr,
        })
    }

    /// Checks and uploads the batch's dense features and labels; returns its size.
    fn upload_inputs(&mut self, dev: &D, batch: &Batch) -> Result<usize, ModelError> {
        let n = batch.len();
        if n == 0 || n > self.capacity {
            return Err(ModelError::BatchSize {
                samples: n,
                capacity: self.capacity,
            });
        }
        if batch.num_dense != self.num_dense || batch.dense.len() != n * self.num_dense {
            return Err(ModelError::DenseFeatures {
                values: batch.dense.len(),
                samples: n,
                features: self.num_dense,
            });
        }
        self.dense_in.upload_elems(dev, &batch.dense)?;
        self.labels.upload_elems(dev, &batch.labels)?;
        Ok(n)
    }

    /// Everything after the pooled embeddings: bottom MLP, interaction, top MLP.
    fn forward_dense(&self, dev: &D, n: usize) -> Result<(), ModelError> {
        self.bottom.forward(dev, self.dense_in.buffer(), n)?;
        dev.interaction_forward(&InteractionForward {
            dense: self.bottom.output(),
            emb: &self.pooled,
            out: &self.inter,
            shape: InteractionShape {
                batch: n as u32,
                tables: self.vectors as u32,
                dim: self.dim as u32,
            },
        })?;
        self.top.forward(dev, &self.inter, n)
    }

    /// Forward pass of an evaluation batch, reading through the caches without changing them.
    fn forward_eval(&mut self, dev: &D, batch: &Batch) -> Result<usize, ModelError> {
        let n = self.upload_inputs(dev, batch)?;
        self.embeddings
            .forward_eval(dev, &batch.sparse, &self.pooled)?;
        self.hashed
            .forward(dev, &batch.hashed, &self.pooled, false)?;
        self.forward_dense(dev, n)?;
        Ok(n)
    }

    /// Forward + loss only: `sum` of the per-sample losses of `batch` (no update).
    pub fn loss_sum(&mut self, dev: &D, batch: &Batch) -> Result<f64, ModelError> {
        let n = self.forward_eval(dev, batch)?;
        self.bce(dev, n)?;
        dev.download_f32(&self.loss, 0, &mut self.host_out[..n])?;
        Ok(self.host_out[..n].iter().map(|&l| l as f64).sum())
    }

    fn bce(&self, dev: &D, n: usize) -> Result<(), DeviceError> {
        dev.bce_loss(&BceLoss {
            logits: self.top.output(),
            labels: self.labels.buffer(),
            loss: &self.loss,
            dlogits: self.top.output_grad(),
            batch: n as u32,
            scale: 1.0 / n as f32,
        })
    }

    /// Makes the batch's rows resident (as `residency` says), runs the forward, the loss and
    /// the dense backward, leaving the dense gradients in the MLPs' buffers and the pooled
    /// embeddings' gradient for [`Dlrm::update_embeddings`]. Returns the batch size and the rows
    /// a planned step evicted.
    fn forward_backward(
        &mut self,
        dev: &D,
        batch: &Batch,
        maps: &[RowMap],
        residency: Residency<'_, D>,
    ) -> Result<(usize, Option<Evicted<D>>), ModelError> {
        let n = self.upload_inputs(dev, batch)?;
        let evicted = self
            .embeddings
            .prepare_batch(dev, &batch.sparse, maps, residency)?;
        self.embeddings.forward(dev, &self.pooled)?;
        self.hashed
            .forward(dev, &batch.hashed, &self.pooled, true)?;
        self.forward_dense(dev, n)?;
        self.bce(dev, n)?;
        self.top.backward(dev, &self.inter, Some(&self.dinter), n)?;
        dev.interaction_backward(&InteractionBackward {
            dense: self.bottom.output(),
            emb: &self.pooled,
            dout: &self.dinter,
            ddense: self.bottom.output_grad(),
            demb: &self.dpooled,
            shape: InteractionShape {
                batch: n as u32,
                tables: self.vectors as u32,
                dim: self.dim as u32,
            },
        })?;
        self.bottom.backward(dev, self.dense_in.buffer(), None, n)?;
        self.hashed.backward(dev, &self.dpooled)?;
        Ok((n, evicted))
    }

    /// The embeddings' backward with their fused update at rate `lr` (gradient and update
    /// cannot be separated), and the end of their step.
    fn update_embeddings(&mut self, dev: &D, lr: f32) -> Result<(), ModelError> {
        self.embeddings.backward(dev, &self.dpooled, lr)?;
        self.embeddings.finish_step(dev)?;
        Ok(())
    }

    /// One training step on `batch` (with one unique-row map per table, see
    /// [`RowMap::build`]), its rows made resident as `residency` says: forward, backward,
    /// updates. Returns the batch's mean loss and, for a planned step, the rows it evicted,
    /// packed on the device, for the write-back stage to download.
    pub fn train_step(
        &mut self,
        dev: &D,
        batch: &Batch,
        maps: &[RowMap],
        residency: Residency<'_, D>,
        lr: f32,
    ) -> Result<Step<D>, ModelError> {
        let Launched { loss, evicted } = self.launch_step(dev, batch, maps, residency, lr)?;
        Ok(Step {
            loss: self.finish_loss(dev, loss)?,
            evicted,
        })
    }

    /// [`Dlrm::train_step`] without waiting for the device: launches the step and starts
    /// reading its losses back. Launches after it are ordered after it, so the next step may be
    /// launched before this one's loss is finished.
    pub fn launch_step(
        &mut self,
        dev: &D,
        batch: &Batch,
        maps: &[RowMap],
        residency: Residency<'_, D>,
        lr: f32,
    ) -> Result<Launched<D>, ModelError> {
        let (n, evicted) = self.forward_backward(dev, batch, maps, residency)?;
        self.update_embeddings(dev, self.embedding_lr.unwrap_or(lr))?;
        self.hashed.update(dev, lr)?;
        self.top.update(dev, lr)?;
        self.bottom.update(dev, lr)?;
        let slot = match self.loss_reads.iter().position(|(_, taken)| !taken) {
            Some(slot) => slot,
            None => {
                let readback = dev.alloc_readback(4 * self.capacity as u64)?;
                self.loss_reads.push((readback, false));
                self.loss_reads.len() - 1
            }
        };
        let (readback, taken) = &mut self.loss_reads[slot];
        dev.read_async(&self.loss, 0, 4 * n as u64, readback)?;
        *taken = true;
        Ok(Launched {
            loss: PendingLoss { slot, samples: n },
            evicted,
        })
    }

    /// Whether a launched step's losses are back (its kernels have finished); never waits.
    pub fn loss_ready(&self, dev: &D, loss: &PendingLoss) -> Result<bool, ModelError> {
        Ok(dev.readback_ready(&self.loss_reads[loss.slot].0)?)
    }

    /// Waits for a launched step (only for it and the work before it) and returns its batch's
    /// mean loss.
    pub fn finish_loss(&mut self, dev: &D, loss: PendingLoss) -> Result<f64, ModelError> {
        let PendingLoss { slot, samples: n } = loss;
        let (readback, taken) = &mut self.loss_reads[slot];
        *taken = false;
        let out = &mut self.host_out[..n];
        dev.finish_read(readback, bytemuck::cast_slice_mut(out))?;
        Ok(out.iter().map(|&l| l as f64).sum::<f64>() / n as f64)
    }

    /// Gradients only (for gradient checks): the dense and DHE gradients are left in the MLPs'
    /// gradient buffers; the embeddings get their fused update with `embedding_lr`.
    pub fn compute_gradients(
        &mut self,
        dev: &D,
        batch: &Batch,
        maps: &[RowMap],
        embedding_lr: f32,
    ) -> Result<(), ModelError> {
        self.forward_backward(dev, batch, maps, Residency::OnDemand)?;
        self.update_embeddings(dev, embedding_lr)
    }

    /// Click probabilities for every sample of `batch`, appended to `out`.
    pub fn predict(
        &mut self,
        dev: &D,
        batch: &Batch,
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let n = self.forward_eval(dev, batch)?;
        dev.download_f32(self.top.output(), 0, &mut self.host_out[..n])?;
        out.extend(self.host_out[..n].iter().map(|&z| sigmoid(z)));
        Ok(())
    }

    /// The embedding tables.
    pub fn embeddings(&self) -> &EmbeddingTables<D> {
        &self.embeddings
    }

    /// The embedding tables, mutably.
    pub fn embeddings_mut(&mut self) -> &mut EmbeddingTables<D> {
        &mut self.embeddings
    }

    /// The DHE features.
    pub fn hashed(&self) -> &HashedFeatures<D> {
        &self.hashed
    }

    /// Where each feature's vectors go.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every dense parameter (bottom MLP first, then top, then the DHE decoders), with its
    /// gradient buffer.
    pub fn dense_params(&self) -> Vec<ParamRef<'_, D::Buffer>> {
        let mut v: Vec<_> = self.bottom.params();
        v.iter_mut()
            .for_each(|p| p.name = format!("bottom.{}", p.name));
        let mut top = self.top.params();
        top.iter_mut()
            .for_each(|p| p.name = format!("top.{}", p.name));
        v.extend(top);
        v.extend(self.hashed.params());
        v
    }

    /// Bytes of every trainable value in FP32: table rows, MLPs, DHE decoders (optimizer state
    /// and activations not counted) — a representation's size, whatever its placement.
    pub fn parameter_bytes(&self) -> u64 {
        let dense: u64 = self.dense_params().iter().map(|p| p.len as u64).sum();
        self.embeddings.fp32_bytes() + 4 * dense
    }

    /// Forward FLOPs per sample of `batch` (split by this model's layout), averaged over it:
    /// both MLPs' and the DHE decoders' multiply-adds (two each), the hash transforms, the
    /// tables' and DHEs' pooling additions and the interaction's dot products.
    pub fn flops_per_sample(&self, batch: &Batch) -> f64 {
        let n = batch.len().max(1) as f64;
        let dim = self.dim as f64;
        let lookups: usize = batch.sparse.iter().map(|b| b.indices.len()).sum();
        let ids: usize = batch.hashed.iter().map(|b| b.ids.len()).sum();
        let pairs = (self.vectors * (self.vectors + 1) / 2) as f64;
        let per_id = self.hashed.flops_per_sample(1.0) / self.hashed.len().max(1) as f64;
        (self.bottom.flops_per_sample() + self.top.flops_per_sample()) as f64
            + 2.0 * pairs * dim
            + (lookups + ids) as f64 * dim / n
            + ids as f64 * per_id / n
    }

    /// Largest batch the model accepts.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Device bytes of the whole model (parameters, optimizer state, activations, staging).
    pub fn device_bytes(&self, dev: &D) -> u64 {
        self.bottom.device_bytes(dev)
            + self.top.device_bytes(dev)
            + self.embeddings.device_bytes(dev)
            + self.hashed.device_bytes(dev)
            + self.dense_in.bytes()
            + self.labels.bytes()
            + [
                &self.pooled,
                &self.dpooled,
                &self.inter,
                &self.dinter,
                &self.loss,
            ]
            .iter()
            .map(|b| dev.buffer_bytes(b))
            .sum::<u64>()
    }
}
