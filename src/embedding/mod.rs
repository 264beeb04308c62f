//! Embedding tables and the per-batch structures that drive their kernels.
//!
//! In this version every row lives on the device in FP32 ([`EmbeddingTables`], the
//! `AllOnDevice` arrangement). The cached mixed-precision store (host backing store in
//! FP32/FP16/INT8/INT4 + an FP32 device cache) replaces it behind the same interface.

mod rowmap;
mod tables;

pub use rowmap::RowMap;
pub use tables::{EmbeddingSettings, EmbeddingTables};
