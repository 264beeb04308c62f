//! The DLRM model: MLPs, pooled embeddings, dot interaction, loss, optimizers.
//!
//! One [`Dlrm::train_step`] serves every placement policy: how the batch's rows become resident
//! is the caller's [`crate::embedding::Residency`], not a second step function.
//!
//! Imports: `data`, `device`, `embedding` and the leaves; never the pipeline that drives it.

pub mod dhe;
pub mod dlrm;
pub mod hashed;
pub mod mlp;
mod persist;
pub mod repr;

pub use dhe::{Dhe, DheConfig, DheOutput};
pub use dlrm::{Dlrm, Launched, PendingLoss, Step};
pub use hashed::HashedFeatures;
pub use mlp::Mlp;
pub use repr::{Layout, Representation};

use crate::device::DeviceError;
use crate::embedding::EmbeddingError;

/// What can stop the model: a batch that does not fit it, or its embeddings or device failing.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A batch larger than the model was built for (or empty).
    #[error("a batch of {samples} samples; this model takes 1 to {capacity}")]
    BatchSize {
        /// Samples in the batch.
        samples: usize,
        /// The largest batch the model takes.
        capacity: usize,
    },
    /// A batch whose dense features do not match the model's.
    #[error("the batch has {values} dense values for {samples} samples of {features} features")]
    DenseFeatures {
        /// Dense values in the batch.
        values: usize,
        /// Samples in the batch.
        samples: usize,
        /// Dense features per sample the model takes.
        features: usize,
    },
    /// MLP layer sizes that cannot make a network.
    #[error("an MLP needs at least two non-zero layer sizes, got {0:?}")]
    LayerSizes(Vec<usize>),
    /// A model setting out of range (the message names the key).
    #[error("{0}")]
    Config(String),
    /// The embedding tables failed (a cache too small, a row past its table, …).
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
    /// The device failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

use crate::device::{Optimizer, OptimizerRule, Pooling};
use serde::{Deserialize, Serialize};

/// Sizes and training rules of the model (`[model]` in a config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Embedding dimension; also the bottom MLP's output size.
    pub dim: usize,
    /// Hidden sizes of the bottom MLP (a last layer of size `dim` is appended).
    pub bottom_mlp: Vec<usize>,
    /// Hidden sizes of the top MLP (a last layer of size 1, the logit, is appended).
    pub top_mlp: Vec<usize>,
    /// How the rows of a bag are combined.
    pub pooling: Pooling,
    /// Rule for embedding rows (fused into the embedding backward).
    pub embedding_optimizer: Optimizer,
    /// Rule for the MLPs' weights and biases.
    pub dense_optimizer: Optimizer,
    /// Adagrad's denominator term.
    pub adagrad_eps: f32,
    /// Adagrad accumulators start at this value (damps the first, noisiest steps of rare rows).
    pub adagrad_init: f32,
    /// Embedding rows start uniform in `[-s, s]`.
    pub embedding_init_scale: f32,
    /// Learning rate of the embeddings (`null`: the run's `lr`).
    pub embedding_lr: Option<f32>,
    /// How each sparse feature is represented: `table`, `dhe`, `hybrid` or `select`.
    pub representation: Representation,
    /// Features (numbered from 0) that are DHEs under `select`, or hybrids under `hybrid`
    /// (empty: every feature).
    pub dhe_features: Vec<usize>,
    /// The DHEs' sizes (`[model.dhe]`).
    pub dhe: DheConfig,
}

impl ModelConfig {
    /// The rule for dense parameters.
    pub fn dense_rule(&self) -> OptimizerRule {
        self.rule(self.dense_optimizer)
    }

    /// Where the vectors of data with `features` sparse features go.
    pub fn layout(&self, features: usize) -> Result<Layout, ModelError> {
        Layout::new(self.representation, &self.dhe_features, features).map_err(ModelError::Config)
    }

    /// The rule for embedding rows.
    pub fn embedding_rule(&self) -> OptimizerRule {
        self.rule(self.embedding_optimizer)
    }

    fn rule(&self, optimizer: Optimizer) -> OptimizerRule {
        OptimizerRule {
            optimizer,
            eps: self.adagrad_eps,
            init: self.adagrad_init,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dim: 16,
            bottom_mlp: vec![64],
            top_mlp: vec![64, 32],
            pooling: Pooling::Sum,
            embedding_optimizer: Optimizer::Adagrad,
            dense_optimizer: Optimizer::Adagrad,
            adagrad_eps: 1e-8,
            adagrad_init: 0.01,
            embedding_init_scale: 0.05,
            embedding_lr: None,
            representation: Representation::Table,
            dhe_features: Vec::new(),
            dhe: DheConfig::default(),
        }
    }
}
