//! DHE, deep hash embedding (Kang et al., KDD'21), as MP-Rec's artifact defines it
//! (samhsia/MP-Rec-AE, `dlrm_mprec/dhebag.py`): an id's embedding is computed, not stored.
//!
//! `k` universal hashes `h_j(x) = ((a_j·x + b_j) mod p) mod m` (`p` the first prime above `m`;
//! `a_j ∈ [1, p−1]`, `b_j ∈ [0, p−1]` drawn from the seed per feature) turn the raw 64-bit id
//! into `k` numbers (`hash_encode`: `uniform` in [−1, 1] or `gaussian` N(0, 1)); a decoder MLP
//! `k → hidden… → D` (ReLU hidden layers, a `sigmoid` or `linear` output) makes the vector.
//! Memory is the decoder's weights alone, whatever the number of ids, and no two ids share a
//! vector by a table's hashing. The decoder trains with the dense layers' rule; the hashes are
//! fixed, so no gradient flows past the decoder's input.

use super::ModelError;
use super::mlp::{Mlp, ParamRef};
use crate::device::kernels::hash::{MAX_HASH_RANGE, first_prime_above};
use crate::device::{
    Activation, Device, DeviceError, DeviceExt, HashEncode, HashShape, HashTransform, OptimizerRule,
};
use crate::rng::{Stream, splitmix64};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

/// The decoder's output activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DheOutput {
    /// The artifact's default.
    Sigmoid,
    /// No activation.
    Linear,
    /// Mish, `x · tanh(softplus(x))`: the artifact's other option.
    Mish,
}

/// A DHE's sizes (`[model.dhe]` in a config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DheConfig {
    /// Hashes per id: the decoder's input size.
    pub k: usize,
    /// Hash range.
    pub m: u32,
    /// How hashes become numbers.
    pub transform: HashTransform,
    /// Hidden sizes of the decoder (an output layer of the embedding dimension is appended).
    pub hidden: Vec<usize>,
    /// The decoder's output activation.
    pub output: DheOutput,
}

impl Default for DheConfig {
    /// The artifact's defaults: k = 1024, m = 1,000,000, uniform, decoder 1024-128-D, sigmoid.
    fn default() -> Self {
        DheConfig {
            k: 1024,
            m: 1_000_000,
            transform: HashTransform::Uniform,
            hidden: vec![128],
            output: DheOutput::Sigmoid,
        }
    }
}

impl DheConfig {
    /// Checks the sizes, naming the key and its range.
    pub fn check(&self) -> Result<(), String> {
        if !(2..=65_536).contains(&self.k) {
            return Err(format!("model.dhe.k = {} is outside 2..=65536", self.k));
        }
        if self.transform == HashTransform::Gaussian && self.k % 2 == 1 {
            return Err(format!(
                "model.dhe.k = {} must be even for the gaussian transform (it pairs hashes)",
                self.k
            ));
        }
        if !(2..=MAX_HASH_RANGE).contains(&self.m) {
            return Err(format!(
                "model.dhe.m = {} is outside 2..={MAX_HASH_RANGE}",
                self.m
            ));
        }
        if self.hidden.contains(&0) {
            return Err("model.dhe.hidden sizes must be at least 1".into());
        }
        Ok(())
    }

    /// The decoder's layer sizes for embeddings of `dim`: `[k, hidden…, dim]`.
    pub fn sizes(&self, dim: usize) -> Vec<usize> {
        let mut s = vec![self.k];
        s.extend(&self.hidden);
        s.push(dim);
        s
    }

    /// Trainable values (weights and biases) of one feature's decoder.
    pub fn parameters(&self, dim: usize) -> u64 {
        let s = self.sizes(dim);
        s.windows(2).map(|w| (w[0] * w[1] + w[1]) as u64).sum()
    }

    /// Floating-point operations per id of the forward pass: `k` hash transforms and two per
    /// multiply-add of the decoder (biases and activations not counted).
    pub fn flops_per_id(&self, dim: usize) -> u64 {
        let s = self.sizes(dim);
        self.k as u64 + s.windows(2).map(|w| 2 * (w[0] * w[1]) as u64).sum::<u64>()
    }
}

/// One feature's DHE on the device, sized for batches of up to `capacity` ids.
pub struct Dhe<D: Device> {
    /// The hash family (`batch` is set per call).
    shape: HashShape,
    /// `[k × 2]` u32: `a_j, b_j`.
    coeffs: D::Buffer,
    /// `[capacity × 2]` u32: the batch's ids, low and high words.
    ids: D::Buffer,
    /// `[capacity × k]` f32: `hash_encode`'s output, the decoder's input.
    encoded: D::Buffer,
    decoder: Mlp<D>,
    capacity: usize,
    /// The ids as words, kept to upload without allocating.
    words: Vec<u32>,
}

/// The hash coefficients of `feature` for `seed`: `k` pairs `(a, b)`, `a ∈ [1, p−1]`,
/// `b ∈ [0, p−1]`, as `[a_0, b_0, a_1, b_1, …]`.
pub fn coefficients(seed: u64, feature: usize, k: usize, p: u32) -> Vec<u32> {
    let mut rng = Pcg64Mcg::seed_from_u64(splitmix64(Stream::Dhe.indexed(seed, feature as u64)));
    (0..k)
        .flat_map(|_| [rng.random_range(1..p), rng.random_range(0..p)])
        .collect()
}

impl<D: Device> Dhe<D> {
    /// The DHE of `feature` with embeddings of `dim`; hashes and decoder weights from `seed`.
    pub fn new(
        dev: &D,
        cfg: &DheConfig,
        dim: usize,
        capacity: usize,
        rule: OptimizerRule,
        seed: u64,
        feature: usize,
    ) -> Result<Self, ModelError> {
        cfg.check().map_err(ModelError::Config)?;
        let p = first_prime_above(cfg.m);
        let coeffs = dev.buffer_from_u32(&coefficients(seed, feature, cfg.k, p))?;
        let mut rng = Pcg64Mcg::seed_from_u64(splitmix64(
            Stream::Dhe.indexed(seed, feature as u64) ^ 0x00DE_C0DE,
        ));
        let last = match cfg.output {
            DheOutput::Sigmoid => Activation::Sigmoid,
            DheOutput::Linear => Activation::Identity,
            DheOutput::Mish => Activation::Mish,
        };
        let decoder = Mlp::new(dev, &cfg.sizes(dim), last, capacity, rule, &mut rng)?;
        Ok(Dhe {
            shape: HashShape {
                batch: 0,
                k: cfg.k as u32,
                m: cfg.m,
                p,
                transform: cfg.transform,
            },
            coeffs,
            ids: dev.alloc_elems(2 * capacity)?,
            encoded: dev.alloc_elems(capacity * cfg.k)?,
            decoder,
            capacity,
            words: Vec::with_capacity(2 * capacity),
        })
    }

    /// Embeds `ids` (raw 64-bit ids): the result is in [`Dhe::output`], `[ids.len() × dim]`.
    /// Room grows when a batch has more ids than the last (multi-hot bags).
    pub fn forward(&mut self, dev: &D, ids: &[u64]) -> Result<(), ModelError> {
        if ids.is_empty() {
            return Err(ModelError::BatchSize {
                samples: 0,
                capacity: self.capacity,
            });
        }
        if ids.len() > self.capacity {
            let capacity = ids.len().next_power_of_two();
            self.ids = dev.alloc_elems(2 * capacity)?;
            self.encoded = dev.alloc_elems(capacity * self.shape.k as usize)?;
            self.decoder.reserve(dev, capacity)?;
            self.capacity = capacity;
        }
        self.words.clear();
        self.words
            .extend(ids.iter().flat_map(|&x| [x as u32, (x >> 32) as u32]));
        dev.upload_elems(&self.ids, 0, &self.words)?;
        let shape = HashShape {
            batch: ids.len() as u32,
            ..self.shape
        };
        dev.hash_encode(&HashEncode {
            ids: &self.ids,
            coeffs: &self.coeffs,
            out: &self.encoded,
            shape,
        })?;
        self.decoder.forward(dev, &self.encoded, ids.len())
    }

    /// The embeddings of the last forward, `[batch × dim]`.
    pub fn output(&self) -> &D::Buffer {
        self.decoder.output()
    }

    /// Where the caller writes the gradient of [`Dhe::output`] before [`Dhe::backward`].
    pub fn output_grad(&self) -> &D::Buffer {
        self.decoder.output_grad()
    }

    /// The decoder's gradients for the last forward's `batch` ids (the hashes take none).
    pub fn backward(&self, dev: &D, batch: usize) -> Result<(), ModelError> {
        self.decoder.backward(dev, &self.encoded, None, batch)
    }

    /// One optimizer step of the decoder.
    pub fn update(&self, dev: &D, lr: f32) -> Result<(), DeviceError> {
        self.decoder.update(dev, lr)
    }

    /// The decoder's weights and biases with their gradients.
    pub fn params(&self) -> Vec<ParamRef<'_, D::Buffer>> {
        self.decoder.params()
    }

    /// Bytes of the trainable values in FP32.
    pub fn parameter_bytes(&self) -> u64 {
        4 * self.params().iter().map(|p| p.len as u64).sum::<u64>()
    }

    /// Device bytes: the decoder (weights, gradients, state, activations), the hash
    /// coefficients and the batch's ids and encodings.
    pub fn device_bytes(&self, dev: &D) -> u64 {
        self.decoder.device_bytes(dev)
            + [&self.coeffs, &self.ids, &self.encoded]
                .iter()
                .map(|b| dev.buffer_bytes(b))
                .sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu::CpuDevice;
    use crate::device::{Optimizer, kernels::hash::dhe_hash};

    fn rule() -> OptimizerRule {
        OptimizerRule {
            optimizer: Optimizer::Sgd,
            eps: 1e-8,
            init: 0.0,
        }
    }

    #[test]
    fn the_first_layer_is_the_ids_hashes_and_sizes_are_counted() {
        let dev = CpuDevice::new();
        let cfg = DheConfig {
            k: 16,
            hidden: vec![8],
            ..DheConfig::default()
        };
        let mut dhe = Dhe::new(&dev, &cfg, 4, 10, rule(), 7, 2).unwrap();
        let ids = [0u64, 1, u64::MAX, 0xABCD_EF01_2345_6789];
        dhe.forward(&dev, &ids).unwrap();
        let enc = dev.read_f32(&dhe.encoded, 0..ids.len() * 16).unwrap();
        let p = first_prime_above(cfg.m);
        let c = coefficients(7, 2, 16, p);
        for (i, &x) in ids.iter().enumerate() {
            for j in 0..16 {
                let h = dhe_hash(x, c[2 * j], c[2 * j + 1], p, cfg.m) as f64;
                let want = h / (cfg.m as f64 - 1.0) * 2.0 - 1.0;
                assert!((enc[i * 16 + j] as f64 - want).abs() < 1e-6);
            }
        }
        let out = dev.read_f32(dhe.output(), 0..ids.len() * 4).unwrap();
        assert!(
            out.iter().all(|&v| v > 0.0 && v < 1.0),
            "sigmoid outputs: {out:?}"
        );
        assert_eq!(cfg.parameters(4), 16 * 8 + 8 + 8 * 4 + 4);
        assert_eq!(dhe.parameter_bytes(), 4 * cfg.parameters(4));
        assert_eq!(cfg.flops_per_id(4), 16 + 2 * (16 * 8 + 8 * 4));
        // Another feature hashes differently; the same feature and seed the same.
        assert_ne!(coefficients(7, 2, 16, p), coefficients(7, 3, 16, p));
        assert_eq!(coefficients(7, 2, 16, p), c);
        let e = dhe.forward(&dev, &[]).unwrap_err().to_string();
        assert!(e.contains("a batch of 0 samples"), "{e}");
        // More ids than the room made: the buffers grow, the weights stay.
        let before = dev.read_f32(dhe.params()[0].value, 0..16 * 8).unwrap();
        let many: Vec<u64> = (0..37).collect();
        dhe.forward(&dev, &many).unwrap();
        let grown = dev.read_f32(dhe.output(), 0..37 * 4).unwrap();
        dhe.forward(&dev, &ids).unwrap();
        assert_eq!(dev.read_f32(dhe.output(), 0..4 * 4).unwrap(), out);
        assert_eq!(&grown[..2 * 4], &out[..2 * 4], "ids 0 and 1 embed the same");
        assert_eq!(
            dev.read_f32(dhe.params()[0].value, 0..16 * 8).unwrap(),
            before
        );
    }

    #[test]
    fn bad_sizes_name_the_key() {
        for (cfg, key) in [
            (
                DheConfig {
                    k: 1,
                    ..DheConfig::default()
                },
                "model.dhe.k",
            ),
            (
                DheConfig {
                    k: 7,
                    transform: HashTransform::Gaussian,
                    ..DheConfig::default()
                },
                "even",
            ),
            (
                DheConfig {
                    m: MAX_HASH_RANGE + 1,
                    ..DheConfig::default()
                },
                "model.dhe.m",
            ),
        ] {
            let e = cfg.check().unwrap_err();
            assert!(e.contains(key), "{e}");
        }
    }
}
