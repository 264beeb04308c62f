//! rowflow: training DLRM-style recommendation models whose embedding tables are far larger than
//! device memory.
//!
//! The data's way through the system: a [`data::Dataset`] streams batches; the trainer
//! ([`train`]) builds each batch's unique-row maps ([`embedding::RowMap`]) off the critical path
//! and feeds the [`model::Dlrm`], which runs every kernel on one [`device::Device`] (the CPU
//! reference backend here; wgpu and CUDA behind the same trait). One [`telemetry::Snapshot`] per
//! step feeds the progress bar, the JSON-lines log and, later, rowflow-studio.

#[macro_use]
mod names;

pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod embedding;
pub mod hostmem;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod precision;
pub mod rng;
pub mod shard;
pub mod telemetry;
pub mod train;
