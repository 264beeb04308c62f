//! Where embedding rows live and which cached row leaves when room is needed.
//!
//! - `all-on-device`: every row on the device in FP32, no host store (the reference).
//! - `host-only`: no cache — every row a batch needs travels in before the step and back after
//!   it, every step.
//! - `lru`, `lfu`: an FP32 device cache over a host store, filled on demand: a batch's misses are
//!   fetched before its step (like FBGEMM's UVM caching); when the cache is full the least
//!   recently (LRU) or least frequently (LFU, ties by recency) used rows that the batch does
//!   not need are written back and replaced.
//! - `lookahead`: the same cache, planned ahead by the lookahead pipeline (`crate::pipeline`):
//!   misses are prefetched before their step and only rows no upcoming batch reads are evicted.

use super::directory::Directory;
use crate::precision::{Precision, Rounding};

named_enum! {
    /// The placement policy (`--policy`).
    #[derive(Default)]
    pub enum Policy as "kebab-case" {
        /// All rows on the device in FP32.
        #[default]
        AllOnDevice,
        /// No cache: rows travel in and out every step.
        HostOnly,
        /// On-demand cache, least recently used rows evicted first.
        Lru,
        /// On-demand cache, least frequently used rows evicted first.
        Lfu,
        /// ScratchPipe: a planner sees the next W batches, prefetches their misses ahead and evicts
        /// only rows none of them reads (see `crate::pipeline`).
        Lookahead,
    }
}

impl Policy {
    /// Whether the policy keeps a host store and a device cache.
    pub fn is_cached(self) -> bool {
        self != Policy::AllOnDevice
    }
}

/// Where the rows live: the policy and, for cached policies, the host store's precision, the
/// rounding of write-backs and each table's cache size.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The policy.
    pub policy: Policy,
    /// Host store precision (cached policies).
    pub precision: Precision,
    /// Rounding of write-backs.
    pub rounding: Rounding,
    /// Cache slots per table (cached policies except host-only, which sizes itself per batch).
    pub cache_rows: Vec<u32>,
}

impl Placement {
    /// Every row on the device in FP32.
    pub fn all_on_device() -> Self {
        Placement {
            policy: Policy::AllOnDevice,
            precision: Precision::Fp32,
            rounding: Rounding::Nearest,
            cache_rows: Vec::new(),
        }
    }
}

/// Appends to `out` the `need` unpinned occupied slots the policy evicts first.
pub fn choose_victims(policy: Policy, dir: &Directory, need: usize, out: &mut Vec<u32>) {
    if need == 0 {
        return;
    }
    let mut candidates: Vec<(u64, u64, u32)> = dir
        .evictable()
        .map(|slot| {
            let (uses, last) = dir.usage(slot);
            match policy {
                Policy::Lfu => (uses as u64, last, slot),
                _ => (last, 0, slot),
            }
        })
        .collect();
    let need = need.min(candidates.len());
    if need < candidates.len() {
        candidates.select_nth_unstable(need);
    }
    let mut chosen: Vec<(u64, u64, u32)> = candidates[..need].to_vec();
    // A fixed order, so runs are reproducible.
    chosen.sort_unstable();
    out.extend(chosen.iter().map(|c| c.2));
}
