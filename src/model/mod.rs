//! The DLRM model: MLPs, pooled embeddings, dot interaction, loss, optimizers.

pub mod dlrm;
pub mod mlp;

pub use dlrm::Dlrm;
pub use mlp::Mlp;

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
}

impl ModelConfig {
    /// The rule for dense parameters.
    pub fn dense_rule(&self) -> OptimizerRule {
        self.rule(self.dense_optimizer)
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
        }
    }
}
