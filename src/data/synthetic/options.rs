//! The generator's settings, read by the dataset and by its teacher.

use serde::{Deserialize, Serialize};

/// Settings of the generator (`[synthetic]` in a config file). Table sizes come from
/// `table_rows`, shared with the Criteo reader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticOptions {
    /// Sparse features, one table each.
    pub tables: usize,
    /// Rows per bag (multi-hot pooling factor `L`).
    pub pooling_factor: usize,
    /// Zipf exponent of row popularity.
    pub zipf_alpha: f64,
    /// Dense features per sample.
    pub dense_features: usize,
    /// Samples in the training split.
    pub train_samples: u64,
    /// Samples in the test split (generated after the training samples in time).
    pub test_samples: u64,
    /// Samples per one-rank shift of the hot set (0: no drift).
    pub drift_samples_per_rank: u64,
    /// Embedding size of the hidden teacher.
    pub teacher_dim: usize,
    /// Scale of the teacher's logit: larger is less noisy labels and a higher `teacher_auc`.
    pub teacher_scale: f64,
    /// Bias of the teacher's logit (sets the click rate).
    pub teacher_bias: f64,
    /// Fraction of the teacher logit's variance from pairwise dot products (the rest is
    /// linear in the pooled embeddings).
    pub teacher_pair_share: f64,
    /// Popularity rank at which a row's teacher embedding has half its full weight
    /// (`1 / (1 + rank / R)`); 0 gives every row full weight.
    pub teacher_tail_rank: f64,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        SyntheticOptions {
            tables: 8,
            pooling_factor: 4,
            zipf_alpha: 1.05,
            dense_features: 13,
            train_samples: 1_000_000,
            test_samples: 100_000,
            drift_samples_per_rank: 10_000,
            teacher_dim: 4,
            teacher_scale: 2.0,
            teacher_bias: -1.0,
            teacher_tail_rank: 300.0,
            teacher_pair_share: 0.1,
        }
    }
}
