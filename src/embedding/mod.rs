//! Embedding tables and where their rows live.
//!
//! [`EmbeddingTables`] holds a model's tables placed by a [`Placement`]: all on the device in
//! FP32, or a host backing store ([`store::HostStore`], FP32/FP16/INT8/INT4 rows in the layouts
//! of [`crate::precision`]) under an FP32 device cache (`cache/`, named `DeviceCache` after
//! DESIGN.md) whose rows travel packed and are (de)quantized on the device. A training batch's
//! rows become resident on demand or as the lookahead planner placed them ([`Residency`]); the
//! rows the lookahead pipeline moves between its stages are the types of [`transfer`].
//!
//! Imports: `data` (batches, unique-row maps), `device`, `precision`, `hostmem`, `rng`,
//! `telemetry`. Nothing here knows of models, pipelines or configs.

mod batch;
mod cache;
mod directory;
mod error;
pub mod hotness;
pub mod init;
mod inputs;
mod persist;
mod policy;
pub mod store;
mod tables;
pub mod transfer;

pub use batch::Residency;
pub use cache::{DeviceCache, lock_store};
pub use error::EmbeddingError;
pub use inputs::BatchInputs;
pub use policy::{Placement, Policy};
pub use tables::{EmbeddingSettings, EmbeddingTables};
