//! Embedding tables and the per-batch structures that drive their kernels.
//!
//! [`EmbeddingTables`] holds a model's tables placed by a [`Policy`]: all on the device in FP32,
//! or a host backing store ([`store::HostStore`], FP32/FP16/INT8/INT4 rows, [`precision`])
//! under an FP32 device cache ([`cache`]) whose rows travel packed and are (de)quantized on the
//! device.

pub mod cache;
mod directory;
pub mod hotness;
mod init;
pub mod policy;
pub mod store;
mod tables;

pub use policy::Policy;
pub use tables::{EmbeddingSettings, EmbeddingTables, Placement};
