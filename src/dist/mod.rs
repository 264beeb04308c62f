//! Training across processes: embedding tables sharded by a plan, dense layers data-parallel,
//! over existing collective engines — MPI (feature `mpi`) for processes on CPU hosts, NCCL
//! (feature `nccl`) for GPUs — never a transport of our own.
//!
//! `mpirun -np N rowflow train --distributed …` starts N ranks. Each reads its slice of every
//! global batch; per step ([`exchange`]): the ids go to their rows' owners (all-to-all), one
//! vector per lookup comes back (all-to-all) and is pooled where the sample is, the dense layers
//! run forward and backward on the rank's slice, their gradients are summed over ranks
//! (all-reduce), and each lookup's gradient goes back to its row's owner (the reverse
//! all-to-all), which applies the optimizer; replicated rows' gradients are all-reduced and
//! applied by every holder. Rank 0 prints progress, evaluates (the test split is sliced too and
//! the predictions gathered), writes the summary with every rank's traffic ([`traffic`]) and
//! saves checkpoints holding every shard, in the single-process format.
//!
//! The arithmetic is the single-process run's: rows start from the same values, lookups are
//! pooled and gradients summed in the global batch's order with the CPU kernels. What differs
//! is the dense gradients' sum (per rank, then over ranks), so the dense weights — and after the
//! first step, everything they touch — agree within rounding; with the dense layers frozen
//! (`--lr 0 --embedding-lr X`) row-wise and table-wise runs reproduce the single-process tables
//! bit for bit (tests/distributed.rs).
//!
//! What a rank keeps of its shard: every row in host memory ([`shard`]); the device of each
//! rank runs the dense layers. Cached placements of a shard (LRU, lookahead) are not wired in
//! yet, and DHE features are not sharded: both are refused with a message.
//!
//! No rank waits forever ([`watchdog`]): a rank that fails aborts the job, and a collective
//! that waits past `--comm-timeout-s` ends its rank. [`measure`] runs a plan's exchange on the
//! simulator's workload and compares the bytes (`rowflow shard exchange`).

pub mod collective;
pub mod exchange;
mod finish;
pub mod measure;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod shard;
mod step;
pub mod traffic;
pub mod train;
pub mod watchdog;

pub use collective::{Collective, CollectiveExt, Local};
pub use train::{DistOptions, DistStep, DistSummary, train_distributed};

/// Anything that stops a distributed run.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The run's settings, its plan or the ranks disagree; the message says what to change.
    #[error("{0}")]
    Config(String),
    /// A collective engine failed.
    #[error("{0}")]
    Engine(String),
    /// The run itself (data, model, checkpoint) failed.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A plan file could not be read.
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    /// A checkpoint could not be written.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// Data could not be read.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

/// A 64-bit FNV-1a hash: the same bytes give the same value in every process and build.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
