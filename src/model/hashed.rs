//! The DHE features of a model: one [`Dhe`] per hashed feature, its vectors pooled per bag into
//! the interaction's input and its gradient taken back out.
//!
//! A DHE embeds every id of the batch (`[ids, dim]`); the existing embedding kernels then treat
//! that batch of vectors as a table whose row `i` is id `i`: `bag_forward` pools each bag's ids
//! into the feature's interaction vector (sum or mean, as the tables), and `bag_backward_sgd` at
//! rate −1 over a zeroed buffer hands each id the gradient of its bag (`0 − (−1)·g = g`, exact),
//! which the decoder's backward takes from there. So a DHE pools multi-hot bags exactly as a
//! table does, with no kernel of its own beyond `hash_encode`.

use super::ModelError;
use super::dhe::{Dhe, DheConfig};
use super::mlp::ParamRef;
use super::repr::Layout;
use crate::data::IdBags;
use crate::device::{
    BagBackward, BagShape, Device, DeviceError, DeviceExt, OptimizerRule, Pooling, RowGradMap,
    Strided,
};
use crate::embedding::BatchInputs;

/// The hashed features' DHEs and their per-batch inputs.
pub struct HashedFeatures<D: Device> {
    dhes: Vec<Dhe<D>>,
    inputs: Vec<BatchInputs<D>>,
    /// The dataset's feature behind each DHE (names its parameters).
    features: Vec<usize>,
    /// The interaction vector of each DHE.
    positions: Vec<u32>,
    vectors: u32,
    dim: usize,
    pooling: Pooling,
    /// Ids of each feature in the last forward.
    counts: Vec<usize>,
    /// Host scratch: `0, 1, 2, …` and the bag of each id.
    iota: Vec<u32>,
    bag_of: Vec<u32>,
    /// Zeros on the device, copied over a decoder's output gradient before the scatter adds to
    /// it (a device copy, not an upload per step); grows with the ids.
    zeros: D::Buffer,
    zeros_len: usize,
    cfg: DheConfig,
}

impl<D: Device> HashedFeatures<D> {
    /// One DHE per hashed feature of `layout`, for batches of `capacity` samples, weights from
    /// `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dev: &D,
        cfg: &DheConfig,
        layout: &Layout,
        dim: usize,
        capacity: usize,
        rule: OptimizerRule,
        pooling: Pooling,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let features = layout.split.hashed.clone();
        let dhes = features
            .iter()
            .map(|&f| Dhe::new(dev, cfg, dim, capacity, rule, seed, f))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = features
            .iter()
            .map(|_| BatchInputs::new(dev, capacity))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HashedFeatures {
            counts: vec![0; dhes.len()],
            dhes,
            inputs,
            positions: layout.dhe_vectors.iter().map(|&p| p as u32).collect(),
            features,
            vectors: layout.vectors as u32,
            dim,
            pooling,
            iota: Vec::new(),
            bag_of: Vec::new(),
            zeros: dev.buffer_from_f32(&vec![0.0; capacity * dim])?,
            zeros_len: capacity * dim,
            cfg: cfg.clone(),
        })
    }

    /// Number of DHE features.
    pub fn len(&self) -> usize {
        self.dhes.len()
    }

    /// Whether the model has no DHE feature.
    pub fn is_empty(&self) -> bool {
        self.dhes.is_empty()
    }

    /// Embeds and pools the batch's hashed features (`hashed`, one per DHE) into `out`
    /// (`[bags, vectors, dim]`); with `training`, also uploads what the backward needs.
    pub fn forward(
        &mut self,
        dev: &D,
        hashed: &[IdBags],
        out: &D::Buffer,
        training: bool,
    ) -> Result<(), ModelError> {
        if hashed.len() != self.dhes.len() {
            return Err(ModelError::Config(format!(
                "the batch has {} hashed features; the model has {} DHE features (split batches \
                 with the model's layout: data::SplitDataset)",
                hashed.len(),
                self.dhes.len()
            )));
        }
        let stride = self.vectors * self.dim as u32;
        for (i, ids) in hashed.iter().enumerate() {
            let n = ids.ids.len();
            if self.iota.len() < n + 1 {
                self.iota.extend(self.iota.len() as u32..=n as u32);
            }
            let dhe = &mut self.dhes[i];
            if n > 0 {
                dhe.forward(dev, &ids.ids)?;
            }
            let inputs = &mut self.inputs[i];
            inputs.upload_lookups(dev, &self.iota[..n], &ids.offsets)?;
            let table = (dhe.output(), n as u32);
            let (dim, pos) = (self.dim as u32, self.positions[i]);
            inputs.pool(dev, table, dim, self.pooling, out, stride, pos)?;
            self.counts[i] = n;
            if training {
                // Id `i` is "row" `i`, read by its own bag only: the map is the identity.
                self.bag_of.clear();
                for (b, w) in ids.offsets.windows(2).enumerate() {
                    self.bag_of
                        .extend(std::iter::repeat_n(b as u32, (w[1] - w[0]) as usize));
                }
                inputs.unique_rows.upload_elems(dev, &self.iota[..n])?;
                inputs.row_starts.upload_elems(dev, &self.iota[..n + 1])?;
                inputs.bag_ids.upload_elems(dev, &self.bag_of)?;
                inputs.unique = n;
                inputs.has_map = true;
            }
        }
        Ok(())
    }

    /// The decoders' gradients for the last training forward, given the gradient of the
    /// pooled vectors (`grad`, `[bags, vectors, dim]`).
    pub fn backward(&mut self, dev: &D, grad: &D::Buffer) -> Result<(), ModelError> {
        let dim = self.dim as u32;
        let most = self.counts.iter().max().copied().unwrap_or(0) * self.dim;
        if most > self.zeros_len {
            self.zeros = dev.buffer_from_f32(&vec![0.0; most])?;
            self.zeros_len = most;
        }
        for (i, dhe) in self.dhes.iter().enumerate() {
            let (n, inputs) = (self.counts[i], &self.inputs[i]);
            if n == 0 {
                continue;
            }
            if !inputs.has_map {
                return Err(ModelError::Config(
                    "a DHE backward after a forward that was not a training one".into(),
                ));
            }
            let bytes = 4 * (n * self.dim) as u64;
            dev.copy_buffer(&self.zeros, 0, dhe.output_grad(), 0, bytes)?;
            dev.bag_backward_sgd(&BagBackward {
                table: dhe.output_grad(),
                map: RowGradMap {
                    unique_rows: inputs.unique_rows.buffer(),
                    row_starts: inputs.row_starts.buffer(),
                    bag_ids: inputs.bag_ids.buffer(),
                    unique: n as u32,
                },
                offsets: inputs.offsets.buffer(),
                shape: BagShape {
                    rows: n as u32,
                    dim,
                    bags: inputs.bags as u32,
                    pooling: self.pooling,
                },
                grad: Strided {
                    buffer: grad,
                    stride: self.vectors * dim,
                    offset: self.positions[i] * dim,
                },
                lr: -1.0,
            })?;
            dhe.backward(dev, n)?;
        }
        Ok(())
    }

    /// One optimizer step of every decoder.
    pub fn update(&self, dev: &D, lr: f32) -> Result<(), DeviceError> {
        self.dhes.iter().try_for_each(|d| d.update(dev, lr))
    }

    /// Every decoder's weights and biases with their gradients, named `dhe.FEATURE.layerN.…`.
    pub fn params(&self) -> Vec<ParamRef<'_, D::Buffer>> {
        let mut v = Vec::new();
        for (dhe, f) in self.dhes.iter().zip(&self.features) {
            v.extend(dhe.params().into_iter().map(|mut p| {
                p.name = format!("dhe.{f}.{}", p.name);
                p
            }));
        }
        v
    }

    /// Trainable values of the decoders.
    pub fn parameters(&self) -> u64 {
        self.len() as u64 * self.cfg.parameters(self.dim)
    }

    /// Forward FLOPs of the decoders per sample, for `ids_per_sample` ids of each feature.
    pub fn flops_per_sample(&self, ids_per_sample: f64) -> f64 {
        self.len() as f64 * ids_per_sample * self.cfg.flops_per_id(self.dim) as f64
    }

    /// Device bytes of the decoders and their inputs.
    pub fn device_bytes(&self, dev: &D) -> u64 {
        let dhes: u64 = self.dhes.iter().map(|d| d.device_bytes(dev)).sum();
        dhes + self.inputs.iter().map(BatchInputs::bytes).sum::<u64>()
    }
}
