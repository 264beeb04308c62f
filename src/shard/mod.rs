//! Row-level tiered sharding of sequence embeddings (FlexShard): topology, access profiles,
//! planners, and a traffic simulator that counts every byte.
//!
//! # What is modelled
//!
//! A cluster of `hosts × devices_per_host` devices ([`Topology`]) trains on sequence features:
//! every element of a sequence is one lookup and one embedding vector (pooling `none`). Each
//! device draws its own share of a step's samples. A [`Plan`] says where every row of every
//! table lives; a lookup of a row the requester does not hold travels through the step's
//! **forward all-to-all** (the embedding, owner → requester) and its gradient through the
//! **backward all-to-all** (requester → owner). As in TorchRec's sequence sharding, one vector
//! travels per lookup; `--dedup` sends one vector per distinct row per requester instead, for
//! every planner alike. The all-to-all of the ids themselves (8 bytes per lookup in TorchRec,
//! 3% of a D=64 FP32 vector) is not counted.
//!
//! # Planners ([`PlannerKind`])
//!
//! The four TorchRec baselines place every row exactly once: `table-wise` (a table on one
//! device), `row-wise` (a table in equal contiguous row blocks over all devices), `column-wise`
//! (a table in column slices, each slice holding all rows, so a lookup gathers a partial vector
//! from every slice's device) and `table-row-wise` (a table on one host, row-wise over its
//! devices). `flexshard` ([`flexshard`]) replicates rows by access probability, on every device
//! (`global`) or once per host (`host`, sharded over the host's devices), and balances the rest
//! by expected load. Every planner gets the same per-device memory budget
//! ([`memory_budget_bytes`]): `F ×` an even share of all rows. A baseline whose fixed layout does
//! not fit the budget is reported as infeasible (`feasible: false` and the reason), as TorchRec's
//! planner drops a sharding option that violates a storage constraint and fails when no option is
//! left; no plan that exceeds the budget is ever returned.
//!
//! # Gradients of replicas
//!
//! A replicated row is trained data-parallel: each replica's gradient must be summed over all
//! devices every step. The simulator charges that honestly as a ring all-reduce over the
//! distinct replicated rows touched in the step (a sum per row, so duplicates collapse):
//! global replicas with a hierarchical all-reduce (reduce-scatter inside each host, all-reduce
//! of each device's 1/G slice across hosts, all-gather inside the host), host replicas with an
//! all-reduce among the `H` devices that hold the same local slice. The FlexShard planner weighs
//! this cost against the all-to-all bytes a replica saves and replicates a row only where the
//! saving is larger.
//!
//! # Cost model
//!
//! Per phase (forward all-to-all, backward all-to-all, gradient sync) and per device, the
//! α-β time is `Σ_tier messages·α_tier + max(bytes sent, bytes received)_tier / β_tier`; the
//! slowest device sets each phase, and a step's communication latency is the sum of its phases.
//! An all-to-all sends one message per peer with bytes to exchange; a ring all-reduce over `p`
//! participants takes `2(p − 1)` messages.
//!
//! # Execution (design note)
//!
//! Execution on a real cluster is a later issue. The plan file ([`Plan::save`]) holds, per
//! table, the replicated set, the host-replicated set with each row's local device, rows pinned
//! to one device, and contiguous row ranges for the rest (or column slices), so an engine can
//! rebuild the [`Router`] on every rank without the profile. On each rank the router turns a
//! batch's sequence ids (per table, in CSR form) into per-peer send counts and buffers, which map
//! one-to-one onto NCCL's `ncclAllToAllv`-style grouped `ncclSend`/`ncclRecv` through cudarc: the
//! forward all-to-all returns one vector per element (no pooling), the backward all-to-all sends
//! each element's gradient to its row's owner, which applies the optimizer. Replica gradients map
//! onto `ncclAllReduce` on per-host and cross-host communicators split from the world
//! communicator. The engine runs on existing collectives, never a home-made transport
//! (DESIGN.md, "Scale beyond one machine").

pub mod baselines;
mod blocks;
pub mod compare;
pub mod flexshard;
pub mod plan;
pub mod profile;
pub mod sim;
pub mod topology;

pub use baselines::{make_plan, make_plan_with};
pub use flexshard::Objective;
pub use plan::{Plan, PlannerKind, Router, Source};
pub use profile::AccessProfile;
pub use sim::{PlanStats, SimOptions, replay, simulate};
pub use topology::{TableSpec, Tier, Topology, memory_budget_bytes};

use std::path::PathBuf;

/// Errors of the sharding planner and simulator: bad input names the problem and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A topology that cannot exist (no hosts, no devices, a tier without bandwidth…).
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A workload that cannot be generated (no tables, zero rows, bad Zipf exponent…).
    #[error("invalid workload: {0}")]
    Workload(String),
    /// The devices cannot hold the tables under the memory budget, whatever the planner.
    #[error("the tables do not fit: {0}")]
    Capacity(String),
    /// One planner's layout does not fit the per-device memory budget.
    #[error("{planner}: infeasible under the memory budget: {reason}")]
    Infeasible {
        /// The planner's name.
        planner: &'static str,
        /// What does not fit, and by how much.
        reason: String,
    },
    /// A plan file that does not parse or does not describe a valid placement.
    #[error("{}: malformed plan: {message}", path.display())]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plan file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
