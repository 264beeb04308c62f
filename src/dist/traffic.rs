//! Bytes a rank really sent, per peer and phase, and their sums per network
//! tier (ranks map to `hosts × devices_per_host` as the shard simulator's devices do).

use super::DistError;
use super::collective::{Collective, CollectiveExt};
use serde::Serialize;

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Row ids (with table and bag length) to their owners.
    Ids,
    /// Embedding vectors, owner → requester.
    Forward,
    /// Gradients, requester → owner.
    Backward,
    /// Replicated rows: their keys gathered and their gradients all-reduced.
    Sync,
    /// The dense gradients' all-reduce.
    Dense,
}

/// Every phase, in the counters' order.
pub const PHASES: [Phase; 5] = [
    Phase::Ids,
    Phase::Forward,
    Phase::Backward,
    Phase::Sync,
    Phase::Dense,
];

/// One rank's counters.
#[derive(Clone, Debug, Serialize)]
pub struct Traffic {
    /// This rank.
    pub rank: usize,
    /// Its host (`rank / devices_per_host`).
    pub host: usize,
    #[serde(skip)]
    devices_per_host: usize,
    /// Bytes sent to each peer, per phase in [`PHASES`] order (`sent[phase][peer]`); what a rank
    /// sends itself is counted under its own rank and crosses no network. JSON: an object of
    /// phase names (`"ids": [bytes to rank 0, …]`).
    #[serde(serialize_with = "by_phase")]
    pub sent: Vec<Vec<u64>>,
    /// Bytes handed to all-reduces, per phase: the engine chooses how they travel, so they are
    /// not attributed to peers. JSON: an object of phase names.
    #[serde(serialize_with = "by_phase")]
    pub all_reduce: Vec<u64>,
}

/// Writes per-phase values as an object keyed by the phases' names.
fn by_phase<T: Serialize, S: serde::Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(v.len()))?;
    for (p, x) in PHASES.iter().zip(v) {
        m.serialize_entry(p, x)?;
    }
    m.end()
}

/// Bytes of one phase per tier.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct TierBytes {
    /// Between ranks of one host.
    pub intra_host: u64,
    /// Between hosts.
    pub inter_host: u64,
}

impl Traffic {
    /// Zeroed counters of `rank` among `size`.
    pub fn new(rank: usize, size: usize, devices_per_host: usize) -> Self {
        Traffic {
            rank,
            host: rank / devices_per_host.max(1),
            devices_per_host: devices_per_host.max(1),
            sent: vec![vec![0; size]; PHASES.len()],
            all_reduce: vec![0; PHASES.len()],
        }
    }

    fn index(phase: Phase) -> usize {
        PHASES.iter().position(|&p| p == phase).unwrap_or(0)
    }

    /// Counts `bytes` sent to `peer`.
    pub fn add(&mut self, phase: Phase, peer: usize, bytes: u64) {
        self.sent[Self::index(phase)][peer] += bytes;
    }

    /// Counts `bytes` handed to an all-reduce.
    pub fn add_collective(&mut self, phase: Phase, bytes: u64) {
        self.all_reduce[Self::index(phase)] += bytes;
    }

    /// Point-to-point bytes of `phase` this rank sent, per tier.
    pub fn tiers(&self, phase: Phase) -> TierBytes {
        let mut t = TierBytes::default();
        for (peer, &b) in self.sent[Self::index(phase)].iter().enumerate() {
            if peer == self.rank {
                continue;
            }
            match peer / self.devices_per_host == self.host {
                true => t.intra_host += b,
                false => t.inter_host += b,
            }
        }
        t
    }

    /// Every rank's counters, on rank 0 (`None` elsewhere).
    pub fn gather<C: Collective + ?Sized>(
        &self,
        coll: &C,
    ) -> Result<Option<Vec<Traffic>>, DistError> {
        let n = coll.size();
        let mut flat: Vec<u64> = self.sent.iter().flatten().copied().collect();
        flat.extend(&self.all_reduce);
        let mut counts = vec![0; n];
        counts[0] = flat.len();
        let (all, got) = coll.all_to_all_v(&flat, &counts)?;
        if coll.rank() != 0 {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(n);
        let mut at = 0;
        for (r, &c) in got.iter().enumerate() {
            let v = &all[at..at + c];
            at += c;
            let mut t = Traffic::new(r, n, self.devices_per_host);
            for (p, row) in t.sent.iter_mut().enumerate() {
                row.copy_from_slice(&v[p * n..(p + 1) * n]);
            }
            t.all_reduce.copy_from_slice(&v[PHASES.len() * n..]);
            out.push(t);
        }
        Ok(Some(out))
    }
}

/// The whole run's traffic, as rank 0 reports it.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficReport {
    /// Ranks.
    pub ranks: usize,
    /// Ranks per host.
    pub devices_per_host: usize,
    /// Steps counted.
    pub steps: u64,
    /// Point-to-point bytes of all ranks, per phase and tier (`ids`, `forward`, `backward`,
    /// `sync` — the replicated rows' keys).
    pub tiers: std::collections::BTreeMap<String, TierBytes>,
    /// Bytes every rank together handed to all-reduces, per phase (`sync`, `dense`).
    pub all_reduce: std::collections::BTreeMap<String, u64>,
    /// Each rank's counters.
    pub per_rank: Vec<Traffic>,
}

impl TrafficReport {
    /// Sums every rank's counters.
    pub fn new(per_rank: Vec<Traffic>, devices_per_host: usize, steps: u64) -> Self {
        let name = |p: Phase| {
            serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let mut tiers = std::collections::BTreeMap::new();
        let mut all_reduce = std::collections::BTreeMap::new();
        for (i, &p) in PHASES.iter().enumerate() {
            let mut sum = TierBytes::default();
            for t in &per_rank {
                let x = t.tiers(p);
                sum.intra_host += x.intra_host;
                sum.inter_host += x.inter_host;
            }
            if p != Phase::Dense {
                tiers.insert(name(p), sum);
            }
            if matches!(p, Phase::Sync | Phase::Dense) {
                all_reduce.insert(name(p), per_rank.iter().map(|t| t.all_reduce[i]).sum());
            }
        }
        TrafficReport {
            ranks: per_rank.len(),
            devices_per_host,
            steps,
            tiers,
            all_reduce,
            per_rank,
        }
    }
}
