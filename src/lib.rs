//! rowflow: training DLRM-style recommendation models whose embedding tables are far larger than
//! device memory.
//!
//! The data's way through the system, which the modules follow (imports go from the leaves up,
//! never back): a [`data::Dataset`] streams batches; the [`pipeline`]'s loader builds each
//! batch's unique-row maps ([`data::RowMap`]) off the device's critical path, its planner and
//! stager place the rows of the batches ahead (lookahead) and its device step trains the
//! [`model::Dlrm`], whose kernels run on one [`device::Device`] (CPU, wgpu or CUDA) and whose
//! [`embedding`] tables live on the device or in a host store under a device cache; the
//! write-back stage returns evicted rows to the store. [`train`] turns a [`config::RunConfig`]
//! into such a run and sums it up. One [`telemetry::Snapshot`] per step feeds the progress bar,
//! the JSON-lines log and, later, rowflow-studio. ARCHITECTURE.md has the map.

#[macro_use]
mod names;

pub mod bench;
pub mod bounds;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod embedding;
pub mod hostmem;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod precision;
pub mod report;
pub mod rng;
pub mod serve;
pub mod shard;
pub mod telemetry;
pub mod train;
