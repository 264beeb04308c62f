//! The traffic simulator: replays sequence batches through plans and counts every byte, per
//! tier and device pair, with the α-β latency model of [`crate::shard`]'s module docs.

use super::ShardError;
use super::plan::{Plan, PlannerKind, Router, Source};
use super::topology::{TierKind, Topology};
use crate::data::sequence::SequenceGenerator;
use rayon::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// How the simulator replays batches.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    /// Samples each device draws per step.
    pub samples_per_device: usize,
    /// Steps replayed (figures are means per step).
    pub steps: usize,
    /// One vector per distinct row per requester and step instead of one per lookup.
    pub dedup: bool,
    /// The generator stream of the first step's device 0 (profiles use other streams).
    pub first_stream: u64,
}

/// One plan's traffic, latency, load and memory; bytes and seconds are means per step.
#[derive(Clone, Debug, Serialize)]
pub struct PlanStats {
    /// The planner.
    pub planner: PlannerKind,
    /// Bytes between devices of one host: both all-to-alls plus replica gradient sync.
    pub intra_host_bytes: f64,
    /// Bytes between hosts: both all-to-alls plus replica gradient sync.
    pub inter_host_bytes: f64,
    /// Of `intra_host_bytes`, the forward and backward all-to-all.
    pub intra_host_all_to_all_bytes: f64,
    /// Of `inter_host_bytes`, the forward and backward all-to-all.
    pub inter_host_all_to_all_bytes: f64,
    /// Of `intra_host_bytes`, the all-reduce of replica gradients.
    pub intra_host_sync_bytes: f64,
    /// Of `inter_host_bytes`, the all-reduce of replica gradients.
    pub inter_host_sync_bytes: f64,
    /// Modelled communication seconds of a step: forward + backward + sync.
    pub comm_latency_s: f64,
    /// The forward all-to-all's seconds (slowest device).
    pub forward_s: f64,
    /// The backward all-to-all's seconds (slowest device).
    pub backward_s: f64,
    /// The replica gradient all-reduce's seconds (slowest device).
    pub sync_s: f64,
    /// Bytes sent plus received by the busiest device.
    pub max_device_bytes: f64,
    /// Bytes sent plus received per device, on average.
    pub mean_device_bytes: f64,
    /// `max_device_bytes / mean_device_bytes` (null when nothing moves).
    pub load_imbalance: Option<f64>,
    /// Embedding bytes held by the fullest device.
    pub max_memory_bytes: u64,
    /// Embedding bytes held per device, on average.
    pub mean_memory_bytes: f64,
    /// The per-device memory budget.
    pub memory_budget_bytes: u64,
    /// Lookups per step (before dedup).
    pub lookups: f64,
    /// Fraction of lookups served without any traffic (of distinct rows per requester with
    /// dedup).
    pub local_lookup_fraction: f64,
    /// Forward all-to-all bytes from device `s` to device `d` at `s · devices + d`.
    #[serde(skip)]
    pub forward_pair_bytes: Vec<f64>,
}

/// What one requester device pulled in one step.
struct Pulled {
    /// Bytes received from each device in the forward all-to-all.
    from: Vec<u64>,
    local: u64,
    lookups: u64,
}

/// Replays `opts.steps` steps of `generator` batches through every plan (the same batches for
/// all), and returns one [`PlanStats`] per plan, in order.
pub fn simulate(
    plans: &[&Plan],
    topo: &Topology,
    generator: &SequenceGenerator,
    opts: &SimOptions,
) -> Result<Vec<PlanStats>, ShardError> {
    let table_rows = &generator.options().table_rows;
    for p in plans {
        if p.tables.len() != table_rows.len()
            || p.tables.iter().zip(table_rows).any(|(t, &r)| t.rows != r)
        {
            return Err(ShardError::Workload(format!(
                "the {} plan's tables do not match the workload's",
                p.planner.name()
            )));
        }
    }
    let mut replayer = Replayer::new(plans, topo)?;
    let n = topo.devices();
    for step in 0..opts.steps {
        let stream0 = opts.first_stream + (step * n) as u64;
        let batch: Vec<Vec<Vec<u32>>> = (0..n)
            .into_par_iter()
            .map(|d| {
                generator
                    .batch(stream0 + d as u64, opts.samples_per_device)
                    .into_iter()
                    .map(|bags| bags.indices)
                    .collect()
            })
            .collect();
        replayer.step(batch, opts.dedup)?;
    }
    Ok(replayer.finish())
}

/// Replays explicit batches through every plan: `steps[s][d][t]` are the ids device `d` looks up
/// in table `t` at step `s` (one vector per id, or per distinct id with `dedup`).
pub fn replay(
    plans: &[&Plan],
    topo: &Topology,
    steps: &[Vec<Vec<Vec<u32>>>],
    dedup: bool,
) -> Result<Vec<PlanStats>, ShardError> {
    let mut replayer = Replayer::new(plans, topo)?;
    for batch in steps {
        replayer.step(batch.clone(), dedup)?;
    }
    Ok(replayer.finish())
}

/// Plans being replayed, with their routers and running sums.
struct Replayer<'a> {
    plans: &'a [&'a Plan],
    topo: &'a Topology,
    routers: Vec<Router>,
    acc: Vec<Acc>,
    steps: usize,
}

impl<'a> Replayer<'a> {
    fn new(plans: &'a [&'a Plan], topo: &'a Topology) -> Result<Self, ShardError> {
        let routers: Vec<Router> = plans
            .iter()
            .map(|p| {
                if p.hosts != topo.hosts || p.devices_per_host != topo.devices_per_host {
                    return Err(ShardError::Workload(format!(
                        "the {} plan is for {} × {} devices, the topology is {} × {}",
                        p.planner.name(),
                        p.hosts,
                        p.devices_per_host,
                        topo.hosts,
                        topo.devices_per_host
                    )));
                }
                Router::new(p).map_err(|reason| ShardError::Infeasible {
                    planner: p.planner.name(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        let n = topo.devices();
        Ok(Replayer {
            plans,
            topo,
            routers,
            acc: plans.iter().map(|_| Acc::new(n)).collect(),
            steps: 0,
        })
    }

    fn step(&mut self, mut batch: Vec<Vec<Vec<u32>>>, dedup: bool) -> Result<(), ShardError> {
        let n = self.topo.devices();
        if batch.len() != n {
            return Err(ShardError::Workload(format!(
                "a step holds batches of {} devices, the topology has {n}",
                batch.len()
            )));
        }
        for p in self.plans {
            for ids in &batch {
                if ids.len() != p.tables.len() {
                    return Err(ShardError::Workload(format!(
                        "a batch has {} tables, the {} plan {}",
                        ids.len(),
                        p.planner.name(),
                        p.tables.len()
                    )));
                }
                for (t, tp) in p.tables.iter().enumerate() {
                    if let Some(&r) = ids[t].iter().find(|&&r| r >= tp.rows) {
                        return Err(ShardError::Workload(format!(
                            "table {t}: row {r} is out of range ({} rows)",
                            tp.rows
                        )));
                    }
                }
            }
        }
        let lookups: u64 = batch.iter().flatten().map(|ids| ids.len() as u64).sum();
        if dedup {
            batch.par_iter_mut().flatten().for_each(|ids| {
                ids.sort_unstable();
                ids.dedup();
            });
        }
        for ((router, plan), a) in self.routers.iter().zip(self.plans).zip(self.acc.iter_mut()) {
            step_plan(router, plan, self.topo, &batch, lookups, a);
        }
        self.steps += 1;
        Ok(())
    }

    fn finish(self) -> Vec<PlanStats> {
        let steps = self.steps;
        self.plans
            .iter()
            .zip(self.routers)
            .zip(self.acc)
            .map(|((p, r), a)| a.finish(p, &r, steps))
            .collect()
    }
}

/// Sums over steps for one plan.
struct Acc {
    pair: Vec<f64>,
    intra_a2a: f64,
    inter_a2a: f64,
    intra_sync: f64,
    inter_sync: f64,
    forward_s: f64,
    backward_s: f64,
    sync_s: f64,
    device_bytes: Vec<f64>,
    lookups: f64,
    /// Lookups the requesters resolved: all of them, or the distinct rows with dedup.
    served: f64,
    local: f64,
}

impl Acc {
    fn new(n: usize) -> Self {
        Acc {
            pair: vec![0.0; n * n],
            intra_a2a: 0.0,
            inter_a2a: 0.0,
            intra_sync: 0.0,
            inter_sync: 0.0,
            forward_s: 0.0,
            backward_s: 0.0,
            sync_s: 0.0,
            device_bytes: vec![0.0; n],
            lookups: 0.0,
            served: 0.0,
            local: 0.0,
        }
    }

    fn finish(self, plan: &Plan, router: &Router, steps: usize) -> PlanStats {
        let k = 1.0 / steps.max(1) as f64;
        let n = self.device_bytes.len() as f64;
        let max_dev = self.device_bytes.iter().cloned().fold(0.0, f64::max) * k;
        let mean_dev = self.device_bytes.iter().sum::<f64>() / n * k;
        let mem = router.memory_per_device();
        PlanStats {
            planner: plan.planner,
            intra_host_bytes: (self.intra_a2a + self.intra_sync) * k,
            inter_host_bytes: (self.inter_a2a + self.inter_sync) * k,
            intra_host_all_to_all_bytes: self.intra_a2a * k,
            inter_host_all_to_all_bytes: self.inter_a2a * k,
            intra_host_sync_bytes: self.intra_sync * k,
            inter_host_sync_bytes: self.inter_sync * k,
            comm_latency_s: (self.forward_s + self.backward_s + self.sync_s) * k,
            forward_s: self.forward_s * k,
            backward_s: self.backward_s * k,
            sync_s: self.sync_s * k,
            max_device_bytes: max_dev,
            mean_device_bytes: mean_dev,
            load_imbalance: (mean_dev > 0.0).then(|| max_dev / mean_dev),
            max_memory_bytes: mem.iter().copied().max().unwrap_or(0),
            mean_memory_bytes: mem.iter().sum::<u64>() as f64 / n,
            memory_budget_bytes: plan.memory_budget_bytes,
            lookups: self.lookups * k,
            local_lookup_fraction: if self.served > 0.0 {
                self.local / self.served
            } else {
                0.0
            },
            forward_pair_bytes: self.pair.iter().map(|b| b * k).collect(),
        }
    }
}

/// A bitset over rows shared by the requester threads (set once, read often).
struct Touched(Vec<AtomicU64>);

impl Touched {
    fn new(rows: u32) -> Self {
        Touched(
            (0..(rows as usize).div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
    #[inline]
    fn set(&self, r: u32) {
        let (w, m) = ((r / 64) as usize, 1u64 << (r % 64));
        // Reading first keeps the hot rows' words shared between cores instead of bouncing.
        if self.0[w].load(Ordering::Relaxed) & m == 0 {
            self.0[w].fetch_or(m, Ordering::Relaxed);
        }
    }
    fn contains(&self, r: u32) -> bool {
        self.0[(r / 64) as usize].load(Ordering::Relaxed) & (1u64 << (r % 64)) != 0
    }
}

/// One step of one plan: the two all-to-alls and the replica sync.
fn step_plan(
    router: &Router,
    plan: &Plan,
    topo: &Topology,
    batch: &[Vec<Vec<u32>>],
    lookups: u64,
    acc: &mut Acc,
) {
    let n = topo.devices();
    let touched: Vec<Touched> = plan.tables.iter().map(|t| Touched::new(t.rows)).collect();
    let pulled: Vec<Pulled> = (0..n)
        .into_par_iter()
        .map(|d| {
            let mut p = Pulled {
                from: vec![0; n],
                local: 0,
                lookups: 0,
            };
            for (t, ids) in batch[d].iter().enumerate() {
                p.lookups += ids.len() as u64;
                if let Some(shards) = router.column_shards(t) {
                    for s in shards {
                        if s.device as usize != d {
                            p.from[s.device as usize] += ids.len() as u64 * 4 * s.columns as u64;
                        }
                    }
                    if shards.iter().all(|s| s.device as usize == d) {
                        p.local += ids.len() as u64;
                    }
                    continue;
                }
                let b = router.row_bytes(t);
                for &r in ids {
                    if let Some((src, replication)) = router.route(t, r, d) {
                        if replication > 0 {
                            touched[t].set(r);
                        }
                        match src {
                            Source::Local => p.local += 1,
                            Source::Device(s) => p.from[s] += b,
                        }
                    }
                }
            }
            p
        })
        .collect();
    // The forward all-to-all moves pair[s][d] bytes from s to d; the backward the reverse.
    let mut pair = vec![0u64; n * n];
    for (d, p) in pulled.iter().enumerate() {
        acc.local += p.local as f64;
        for (s, &b) in p.from.iter().enumerate() {
            pair[s * n + d] = b;
        }
    }
    acc.lookups += lookups as f64;
    acc.served += pulled.iter().map(|p| p.lookups).sum::<u64>() as f64;
    for (i, &b) in pair.iter().enumerate() {
        acc.pair[i] += b as f64;
    }
    let forward = all_to_all_seconds(topo, &pair, false, acc);
    let backward = all_to_all_seconds(topo, &pair, true, acc);
    acc.forward_s += forward;
    acc.backward_s += backward;
    acc.sync_s += sync_seconds(router, plan, topo, &touched, acc);
}

/// The slowest device's α-β time of one all-to-all (`transpose`: the backward direction), and
/// its bytes added to the per-tier and per-device totals.
fn all_to_all_seconds(topo: &Topology, pair: &[u64], transpose: bool, acc: &mut Acc) -> f64 {
    let n = topo.devices();
    let bytes = |s: usize, d: usize| {
        if transpose {
            pair[d * n + s]
        } else {
            pair[s * n + d]
        }
    };
    let mut slowest = 0f64;
    for dev in 0..n {
        // [intra, inter] × [sent, received] bytes and messages.
        let (mut b, mut m) = ([[0u64; 2]; 2], [[0u64; 2]; 2]);
        for peer in 0..n {
            let tier = match topo.tier(dev, peer) {
                TierKind::Local => continue,
                TierKind::IntraHost => 0,
                TierKind::InterHost => 1,
            };
            for (dir, x) in [bytes(dev, peer), bytes(peer, dev)].into_iter().enumerate() {
                b[tier][dir] += x;
                m[tier][dir] += u64::from(x > 0);
            }
        }
        acc.intra_a2a += b[0][0] as f64;
        acc.inter_a2a += b[1][0] as f64;
        acc.device_bytes[dev] += (b[0][0] + b[0][1] + b[1][0] + b[1][1]) as f64;
        let t = topo
            .intra_host
            .seconds(m[0][0].max(m[0][1]), b[0][0].max(b[0][1]))
            + topo
                .inter_host
                .seconds(m[1][0].max(m[1][1]), b[1][0].max(b[1][1]));
        slowest = slowest.max(t);
    }
    slowest
}

/// The slowest device's time to all-reduce the gradients of the replicated rows touched in the
/// step: a hierarchical ring all-reduce for global replicas and a ring over the `H` holders for
/// each local slice of host replicas; bytes added to the totals.
fn sync_seconds(
    router: &Router,
    plan: &Plan,
    topo: &Topology,
    touched: &[Touched],
    acc: &mut Acc,
) -> f64 {
    let (n, g, h) = (topo.devices(), topo.devices_per_host, topo.hosts);
    let (mut global_bytes, mut host_bytes) = (0u64, vec![0u64; g]);
    for (t, tp) in plan.tables.iter().enumerate() {
        let b = router.row_bytes(t);
        if let super::plan::Layout::Rows(l) = &tp.layout {
            global_bytes += l
                .replicated
                .iter()
                .filter(|&&r| touched[t].contains(r))
                .count() as u64
                * b;
            for (&r, &j) in l.host_replicated_rows.iter().zip(&l.host_replicated_local) {
                if touched[t].contains(r) {
                    host_bytes[j as usize] += b;
                }
            }
        }
    }
    let ring = |p: usize, bytes: f64| 2.0 * (p as f64 - 1.0) / p as f64 * bytes;
    let mut slowest = 0f64;
    for dev in 0..n {
        let (mut intra, mut inter, mut secs) = (0f64, 0f64, 0f64);
        if global_bytes > 0 {
            // Reduce-scatter and all-gather inside the host, all-reduce of a 1/G slice across.
            let a = ring(g, global_bytes as f64);
            let e = ring(h, global_bytes as f64 / g as f64);
            intra += a;
            inter += e;
            if g > 1 {
                secs += topo.intra_host.seconds(2 * (g as u64 - 1), a as u64);
            }
            if h > 1 {
                secs += topo.inter_host.seconds(2 * (h as u64 - 1), e as u64);
            }
        }
        let hb = host_bytes[topo.local_of(dev)];
        if hb > 0 && h > 1 {
            let e = ring(h, hb as f64);
            inter += e;
            secs += topo.inter_host.seconds(2 * (h as u64 - 1), e as u64);
        }
        acc.intra_sync += intra;
        acc.inter_sync += inter;
        // A ring sends and receives the same amount.
        acc.device_bytes[dev] += 2.0 * (intra + inter);
        slowest = slowest.max(secs);
    }
    slowest
}
