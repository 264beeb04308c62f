//! The FlexShard planner (`flexshard`), for an [`AccessProfile`] of expected lookups per row and step:
//!
//! 1. Every row has a tier: a single copy, a host replica (one copy per host, on the same local
//!    device of every host), or a global replica (a copy on every device). For each tier the
//!    planner computes the expected communication time of the row per step, summed over devices:
//!    the forward and backward all-to-all bytes (requesters are uniform over devices, so a single
//!    copy is remote for `(n−1)/n` of the lookups, of which `(n−G)/n` cross hosts; a host replica
//!    is remote for `(G−1)/G`, always inside the host; a global replica is local) plus the
//!    all-reduce of its gradient when the row is touched in the step (probability
//!    `1 − e^(−c)` for `c` expected lookups): `2(H−1)` row transfers across hosts for either kind
//!    of replica and `2H(G−1)` inside hosts for a global one (see the module docs of
//!    [`crate::shard`]).
//! 2. Upgrades (single → host, host → global, or single → global where that is better per byte)
//!    are taken greedily by time saved per byte of extra memory, only while the saving is
//!    positive and the slack memory (`budget × devices − all rows once`) lasts.
//! 3. Host replicas go to the local device with the least replica memory; the hottest remaining
//!    single-copy rows (at least `n/8` expected lookups per step and 8× the table's mean) are
//!    pinned to the device with the least expected traffic that still has room
//!    (longest-processing-time first); every other row is placed in contiguous ranges that fill
//!    each device's remaining memory evenly.

use super::ShardError;
use super::blocks::row_wise;
use super::plan::{Layout, RowLayout, RowRange};
use super::profile::AccessProfile;
use super::topology::{TableSpec, Topology};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

named_enum! {
    /// What FlexShard's planner minimises.
    #[derive(Default)]
    pub enum Objective as "kebab-case" {
        /// All communication: both all-to-alls and the replica gradient all-reduce (the default).
        #[default]
        Total,
        /// The all-to-alls only, as the FlexShard paper reports traffic: replicas look free to the
        /// planner (the simulator still charges their all-reduce), so it spends all the slack.
        AllToAll,
    }
}

/// Tiers of a row: one copy, one copy per host, a copy on every device.
const SINGLE: u8 = 0;
const HOST: u8 = 1;
const GLOBAL: u8 = 2;

/// The planner's expected-cost model: communication seconds per step, summed over devices.
struct CostModel {
    n: f64,
    g: f64,
    h: f64,
    /// Seconds per byte inside a host and across hosts.
    intra_s: f64,
    inter_s: f64,
    /// Weight of the replica gradient all-reduce (1: counted; 0: all-to-all only).
    sync: f64,
}

impl CostModel {
    fn new(topo: &Topology, objective: Objective) -> Self {
        CostModel {
            sync: match objective {
                Objective::Total => 1.0,
                Objective::AllToAll => 0.0,
            },
            n: topo.devices() as f64,
            g: topo.devices_per_host as f64,
            h: topo.hosts as f64,
            intra_s: 1.0 / (topo.intra_host.gbps * 1e9),
            inter_s: 1.0 / (topo.inter_host.gbps * 1e9),
        }
    }

    /// Expected seconds of a row with `c` lookups per step and `b` bytes, in `tier`.
    fn seconds(&self, tier: u8, c: f64, b: f64) -> f64 {
        let (n, g, h) = (self.n, self.g, self.h);
        let touched = self.sync * (1.0 - (-c).exp());
        match tier {
            SINGLE => 2.0 * c * b * ((g - 1.0) / n * self.intra_s + (n - g) / n * self.inter_s),
            HOST => {
                2.0 * c * b * (g - 1.0) / g * self.intra_s
                    + touched * 2.0 * (h - 1.0) * b * self.inter_s
            }
            _ => {
                touched
                    * (2.0 * h * (g - 1.0) * b * self.intra_s + 2.0 * (h - 1.0) * b * self.inter_s)
            }
        }
    }

    /// Bytes a row of `b` bytes occupies over the whole cluster in `tier`.
    fn memory(&self, tier: u8, b: f64) -> f64 {
        match tier {
            SINGLE => b,
            HOST => self.h * b,
            _ => self.n * b,
        }
    }
}

/// A row the profile saw at least once per step.
struct Candidate {
    t: usize,
    row: u32,
    lookups: f64,
    tier: u8,
    /// Hot enough to balance explicitly if it stays a single copy.
    pin: bool,
}

/// FlexShard's layouts; falls back to no replication, then to row-wise blocks, when the
/// placement cannot fill the devices exactly (rows of different sizes at a tight budget).
pub(crate) fn flexshard(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
    profile: &AccessProfile,
    objective: Objective,
) -> Result<Vec<Layout>, ShardError> {
    let mut cands: Vec<Candidate> = Vec::new();
    for (t, spec) in tables.iter().enumerate() {
        // Pin rows far above the table's mean (8×) and worth one lookup per 8 devices: rows
        // whose load would unbalance a device; a uniform table's sampling noise stays below.
        let mean = profile.table_lookups_per_step(t) / spec.rows as f64;
        let pin_min = (8.0 * mean).max(topo.devices() as f64 / 8.0).max(1.0);
        for (row, lookups) in profile.hot_rows(t, 1.0) {
            cands.push(Candidate {
                t,
                row,
                lookups,
                tier: SINGLE,
                pin: lookups >= pin_min,
            });
        }
    }
    cands.sort_by(|a, b| {
        b.lookups
            .total_cmp(&a.lookups)
            .then(a.t.cmp(&b.t))
            .then(a.row.cmp(&b.row))
    });
    choose_tiers(topo, tables, budget, objective, &mut cands);
    if let Ok(l) = place(topo, tables, budget, &cands) {
        return Ok(l);
    }
    cands.iter_mut().for_each(|c| c.tier = SINGLE);
    match place(topo, tables, budget, &cands) {
        Ok(l) => Ok(l),
        Err(_) => Ok(row_wise(tables, topo.devices())),
    }
}

/// Greedy tiering: upgrades by seconds saved per byte of extra memory, within the slack.
fn choose_tiers(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
    objective: Objective,
    cands: &mut [Candidate],
) {
    let model = CostModel::new(topo, objective);
    let n = topo.devices() as u64;
    let total: u64 = tables.iter().map(TableSpec::bytes).sum();
    // Keep one largest row per device spare so the single-copy rows can always be packed.
    let max_row = tables.iter().map(TableSpec::row_bytes).max().unwrap_or(0);
    let mut slack = (budget * n).saturating_sub(total + max_row * n) as f64;
    // The best upgrade of candidate `i` from its current tier: (saving per byte, target tier).
    let best = |c: &Candidate| -> Option<(f64, u8)> {
        let b = tables[c.t].row_bytes() as f64;
        let now = model.seconds(c.tier, c.lookups, b);
        let mem = model.memory(c.tier, b);
        ((c.tier + 1)..=GLOBAL)
            .filter_map(|to| {
                let gain = now - model.seconds(to, c.lookups, b);
                let extra = model.memory(to, b) - mem;
                (gain > 0.0 && extra > 0.0).then_some((gain / extra, to))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let mut heap: MaxHeap<(Reverse<usize>, u8)> = MaxHeap::new();
    for (i, c) in cands.iter().enumerate() {
        if let Some((eff, to)) = best(c) {
            heap.push((Ord64(eff), (Reverse(i), to)));
        }
    }
    while let Some((_, (Reverse(i), to))) = heap.pop() {
        let c = &mut cands[i];
        let b = tables[c.t].row_bytes() as f64;
        let extra = model.memory(to, b) - model.memory(c.tier, b);
        if extra <= slack {
            slack -= extra;
            c.tier = to;
        } else if to == GLOBAL && c.tier == SINGLE {
            // A global copy does not fit; a host copy may.
            let gain = model.seconds(SINGLE, c.lookups, b) - model.seconds(HOST, c.lookups, b);
            let extra = model.memory(HOST, b) - b;
            if gain > 0.0 && extra > 0.0 && extra <= slack {
                heap.push((Ord64(gain / extra), (Reverse(i), HOST)));
            }
            continue;
        } else {
            continue;
        }
        if let Some((eff, to)) = best(c) {
            heap.push((Ord64(eff), (Reverse(i), to)));
        }
    }
    drop_unprofitable_tiers(topo, tables, &model, cands);
}

/// A tier of replicas costs a fixed number of all-reduce messages per step whatever it holds
/// (`2(G−1)` intra-host and `2(H−1)` inter-host for global replicas, `2(H−1)` inter-host for
/// host replicas). A tier whose rows save less time per device than that latency is emptied:
/// this is what keeps a workload without skew (where sampling noise alone makes a few rows look
/// hot) on a plain layout.
fn drop_unprofitable_tiers(
    topo: &Topology,
    tables: &[TableSpec],
    model: &CostModel,
    cands: &mut [Candidate],
) {
    let (g, h) = (topo.devices_per_host as f64, topo.hosts as f64);
    let ring = |p: f64, alpha: f64| {
        if p > 1.0 {
            2.0 * (p - 1.0) * alpha
        } else {
            0.0
        }
    };
    let fixed = [
        0.0,
        ring(h, topo.inter_host.latency_s),
        ring(g, topo.intra_host.latency_s) + ring(h, topo.inter_host.latency_s),
    ];
    for tier in [GLOBAL, HOST] {
        let saved: f64 = cands
            .iter()
            .filter(|c| c.tier == tier)
            .map(|c| {
                let b = tables[c.t].row_bytes() as f64;
                model.seconds(SINGLE, c.lookups, b) - model.seconds(tier, c.lookups, b)
            })
            .sum();
        if saved / model.n <= fixed[tier as usize] * model.sync {
            cands
                .iter_mut()
                .filter(|c| c.tier == tier)
                .for_each(|c| c.tier = SINGLE);
        }
    }
}

/// Lays out the chosen tiers: host replicas, pinned hot rows, then ranges for the rest.
fn place(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
    cands: &[Candidate],
) -> Result<Vec<Layout>, String> {
    let (n, g, h) = (topo.devices(), topo.devices_per_host, topo.hosts);
    let mut layouts: Vec<RowLayout> = vec![RowLayout::default(); tables.len()];
    let mut listed: Vec<Vec<bool>> = tables
        .iter()
        .map(|t| vec![false; t.rows as usize])
        .collect();
    let mut mem = vec![0u64; n];
    // Expected bytes each device serves per step, to balance.
    let mut load = vec![0f64; n];
    for c in cands.iter().filter(|c| c.tier == GLOBAL) {
        let b = tables[c.t].row_bytes();
        mem.iter_mut().for_each(|m| *m += b);
        layouts[c.t].replicated.push(c.row);
        listed[c.t][c.row as usize] = true;
    }
    if mem.first().is_some_and(|&m| m > budget) {
        return Err("global replicas exceed the budget".into());
    }
    for c in cands.iter().filter(|c| c.tier == HOST) {
        let b = tables[c.t].row_bytes();
        // The local device (the same on every host) with the least memory, then least load.
        let j = (0..g)
            .filter(|&j| mem[j] + b <= budget)
            .min_by(|&x, &y| mem[x].cmp(&mem[y]).then(load[x].total_cmp(&load[y])))
            .ok_or("host replicas exceed the budget")?;
        let served = c.lookups / h as f64 * b as f64 * (g - 1) as f64 / g as f64;
        for host in 0..h {
            let d = topo.device(host, j);
            mem[d] += b;
            load[d] += served;
        }
        layouts[c.t].host_replicated_rows.push(c.row);
        layouts[c.t].host_replicated_local.push(j as u32);
        listed[c.t][c.row as usize] = true;
    }
    for c in cands.iter().filter(|c| c.tier == SINGLE && c.pin) {
        let b = tables[c.t].row_bytes();
        let d = (0..n)
            .filter(|&d| mem[d] + b <= budget)
            .min_by(|&x, &y| load[x].total_cmp(&load[y]).then(mem[x].cmp(&mem[y])))
            .ok_or("pinned rows exceed the budget")?;
        mem[d] += b;
        load[d] += c.lookups * b as f64 * (n - 1) as f64 / n as f64;
        layouts[c.t].pinned_rows.push(c.row);
        layouts[c.t].pinned_devices.push(d as u32);
        listed[c.t][c.row as usize] = true;
    }
    if layouts
        .iter()
        .all(|l| l.replicated.is_empty() && l.host_replicated_rows.is_empty())
        && layouts.iter().all(|l| l.pinned_rows.is_empty())
    {
        // Nothing is hot enough to treat apart: the plain row-wise layout is as good.
        return Ok(row_wise(tables, n));
    }
    fill_ranges(tables, budget, &listed, &mut mem, &mut layouts)?;
    Ok(layouts.into_iter().map(Layout::Rows).collect())
}

/// Places every unlisted row in contiguous ranges, filling each device's free memory evenly:
/// first up to an equal leftover per device, then (if rows remain) up to the budget.
fn fill_ranges(
    tables: &[TableSpec],
    budget: u64,
    listed: &[Vec<bool>],
    mem: &mut [u64],
    layouts: &mut [RowLayout],
) -> Result<(), String> {
    let n = mem.len();
    let rest: u64 = tables
        .iter()
        .zip(listed)
        .map(|(t, l)| l.iter().filter(|x| !**x).count() as u64 * t.row_bytes())
        .sum();
    let free: u64 = mem.iter().map(|m| budget.saturating_sub(*m)).sum();
    if rest > free {
        return Err(format!("{rest} bytes of rows left but {free} bytes free"));
    }
    let leftover = (free - rest) / n as u64;
    let target: Vec<u64> = mem
        .iter()
        .map(|m| budget.saturating_sub(*m).saturating_sub(leftover))
        .collect();
    let (mut d, mut second_pass) = (0usize, false);
    let mut room = target[0];
    for (t, spec) in tables.iter().enumerate() {
        let b = spec.row_bytes();
        let mut start = 0u32;
        let mut dev = d;
        for r in 0..spec.rows {
            if listed[t][r as usize] {
                continue;
            }
            while room < b {
                d += 1;
                if d == n {
                    if second_pass {
                        return Err("rows left after every device is full".into());
                    }
                    (d, second_pass) = (0, true);
                }
                room = if second_pass {
                    budget.saturating_sub(mem[d])
                } else {
                    target[d]
                };
            }
            if d != dev {
                if r > start {
                    layouts[t].ranges.push(RowRange {
                        start,
                        end: r,
                        device: dev as u32,
                    });
                    start = r;
                }
                dev = d;
            }
            room -= b;
            mem[d] += b;
        }
        layouts[t].ranges.push(RowRange {
            start,
            end: spec.rows,
            device: dev as u32,
        });
    }
    Ok(())
}

/// An `f64` ordered by `total_cmp`, for heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ord64(f64);
impl Eq for Ord64 {}
impl PartialOrd for Ord64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ord64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A max-heap keyed by `Ord64` then by a tie-breaking key.
type MaxHeap<K> = BinaryHeap<(Ord64, K)>;
