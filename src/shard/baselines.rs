//! The planners: TorchRec's four baselines and FlexShard.
//!
//! **FlexShard** (`flexshard`), for an [`AccessProfile`] of expected lookups per row and step:
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
//!    pinned to the
//!    device with the least expected traffic that still has room (longest-processing-time
//!    first); every other row is placed in contiguous ranges that fill each device's remaining
//!    memory evenly.

use super::ShardError;
pub use super::flexshard::Objective;
use super::plan::{ColumnShard, Layout, PLAN_FORMAT, Plan, Router, RowLayout, RowRange, TablePlan};
use super::profile::AccessProfile;
use super::topology::{TableSpec, Topology, validate_tables};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A sharding planner.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum PlannerKind {
    /// Each table whole on one device (TorchRec TW).
    TableWise,
    /// Each table in equal contiguous row blocks over all devices (TorchRec RW).
    RowWise,
    /// Each table in column slices of all its rows (TorchRec CW).
    ColumnWise,
    /// Each table on one host, row-wise over its devices (TorchRec TWRW).
    TableRowWise,
    /// Row-level tiered replication by access probability, the rest balanced.
    #[serde(rename = "flexshard")]
    #[strum(serialize = "flexshard")]
    FlexShard,
}

impl PlannerKind {
    /// Every planner, baselines first.
    pub const ALL: [PlannerKind; 5] = [
        PlannerKind::TableWise,
        PlannerKind::RowWise,
        PlannerKind::ColumnWise,
        PlannerKind::TableRowWise,
        PlannerKind::FlexShard,
    ];

    /// The CLI and JSON spelling.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Makes `kind`'s plan of `tables` on `topo` under `budget_bytes` per device. FlexShard needs
/// the `profile`; the baselines ignore it. A layout that cannot fit is
/// [`ShardError::Infeasible`]; no returned plan exceeds the budget on any device.
pub fn make_plan(
    kind: PlannerKind,
    topo: &Topology,
    tables: &[TableSpec],
    budget_bytes: u64,
    profile: Option<&AccessProfile>,
) -> Result<Plan, ShardError> {
    make_plan_with(kind, topo, tables, budget_bytes, profile, Objective::Total)
}

/// [`make_plan`] with FlexShard's [`Objective`] chosen (the baselines ignore it).
pub fn make_plan_with(
    kind: PlannerKind,
    topo: &Topology,
    tables: &[TableSpec],
    budget_bytes: u64,
    profile: Option<&AccessProfile>,
    objective: Objective,
) -> Result<Plan, ShardError> {
    topo.validate()?;
    validate_tables(tables)?;
    let layouts = match kind {
        PlannerKind::TableWise => table_wise(topo, tables, budget_bytes)?,
        PlannerKind::RowWise => tables
            .iter()
            .map(|t| row_blocks(t.rows, 0, topo.devices()))
            .collect(),
        PlannerKind::ColumnWise => column_wise(topo, tables, budget_bytes)?,
        PlannerKind::TableRowWise => table_row_wise(topo, tables, budget_bytes)?,
        PlannerKind::FlexShard => {
            let profile = profile.ok_or_else(|| {
                ShardError::Workload("flexshard needs an access profile of sample batches".into())
            })?;
            if profile.tables() != tables.len() {
                return Err(ShardError::Workload(format!(
                    "the access profile has {} tables, the workload {}",
                    profile.tables(),
                    tables.len()
                )));
            }
            super::flexshard::flexshard(topo, tables, budget_bytes, profile, objective)?
        }
    };
    let plan = Plan {
        format: PLAN_FORMAT,
        planner: kind,
        hosts: topo.hosts,
        devices_per_host: topo.devices_per_host,
        memory_budget_bytes: budget_bytes,
        tables: tables
            .iter()
            .zip(layouts)
            .map(|(t, layout)| TablePlan {
                rows: t.rows,
                dim: t.dim,
                layout,
            })
            .collect(),
    };
    check_budget(kind, &plan)?;
    Ok(plan)
}

/// Fails when any device of `plan` holds more than the budget (or the plan is inconsistent).
pub fn check_budget(kind: PlannerKind, plan: &Plan) -> Result<(), ShardError> {
    let router = Router::new(plan).map_err(|reason| ShardError::Infeasible {
        planner: kind.name(),
        reason,
    })?;
    let mem = router.memory_per_device();
    match mem.iter().enumerate().max_by_key(|(_, m)| **m) {
        Some((d, &m)) if m > plan.memory_budget_bytes => Err(ShardError::Infeasible {
            planner: kind.name(),
            reason: format!(
                "device {d} would hold {m} bytes, over the budget of {} bytes per device; \
                 raise --memory-budget-factor or use another planner",
                plan.memory_budget_bytes
            ),
        }),
        _ => Ok(()),
    }
}

/// Rows `0..rows` in `parts` equal contiguous blocks of `⌈rows / parts⌉` on devices
/// `first, first + 1, …` (TorchRec's row-wise split; the last blocks may be short or empty).
pub(crate) fn row_blocks(rows: u32, first: usize, parts: usize) -> Layout {
    let block = (rows as u64).div_ceil(parts as u64);
    let ranges = (0..parts as u64)
        .map(|i| {
            (
                i * block,
                ((i + 1) * block).min(rows as u64),
                first + i as usize,
            )
        })
        .filter(|(s, e, _)| s < e)
        .map(|(s, e, d)| RowRange {
            start: s as u32,
            end: e as u32,
            device: d as u32,
        })
        .collect();
    Layout::Rows(RowLayout {
        ranges,
        ..Default::default()
    })
}

/// Indices of `tables` by size, largest first (ties by index), the order greedy placement uses.
fn by_size(tables: &[TableSpec]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tables.len()).collect();
    order.sort_by(|&a, &b| tables[b].bytes().cmp(&tables[a].bytes()).then(a.cmp(&b)));
    order
}

/// The index of the smallest value (the first on ties).
fn argmin(v: &[u64]) -> usize {
    v.iter()
        .enumerate()
        .min_by_key(|(i, m)| (**m, *i))
        .map_or(0, |x| x.0)
}

fn table_wise(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
) -> Result<Vec<Layout>, ShardError> {
    let mut mem = vec![0u64; topo.devices()];
    let mut out = vec![None; tables.len()];
    for t in by_size(tables) {
        let d = argmin(&mem);
        let bytes = tables[t].bytes();
        if mem[d] + bytes > budget {
            return Err(ShardError::Infeasible {
                planner: "table-wise",
                reason: format!(
                    "table {t} ({bytes} bytes) fits on no device: the emptiest has {} of its \
                     {budget} bytes free; shard it by rows or columns, or raise \
                     --memory-budget-factor",
                    budget - mem[d]
                ),
            });
        }
        mem[d] += bytes;
        out[t] = Some(Layout::Rows(RowLayout {
            ranges: vec![RowRange {
                start: 0,
                end: tables[t].rows,
                device: d as u32,
            }],
            ..Default::default()
        }));
    }
    Ok(out.into_iter().flatten().collect())
}

fn table_row_wise(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
) -> Result<Vec<Layout>, ShardError> {
    let g = topo.devices_per_host;
    let mut host_mem = vec![0u64; topo.hosts];
    let mut out = vec![None; tables.len()];
    for t in by_size(tables) {
        let h = argmin(&host_mem);
        let per_device = (tables[t].rows as u64).div_ceil(g as u64) * tables[t].row_bytes();
        // Blocks are filled from the host's first device, which therefore holds the most.
        let used = host_mem[h].div_ceil(g as u64);
        if used + per_device > budget {
            return Err(ShardError::Infeasible {
                planner: "table-row-wise",
                reason: format!(
                    "table {t} needs {per_device} bytes on each device of a host, and the \
                     emptiest host's devices have {} of {budget} bytes free; raise \
                     --memory-budget-factor or use row-wise sharding",
                    budget.saturating_sub(used)
                ),
            });
        }
        host_mem[h] += per_device * g as u64;
        out[t] = Some(row_blocks(tables[t].rows, topo.device(h, 0), g));
    }
    Ok(out.into_iter().flatten().collect())
}

fn column_wise(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
) -> Result<Vec<Layout>, ShardError> {
    let n = topo.devices();
    let total: u64 = tables.iter().map(TableSpec::bytes).sum();
    let mut mem = vec![0u64; n];
    let mut out = vec![None; tables.len()];
    for t in by_size(tables) {
        let spec = tables[t];
        // Slices in proportion to the table's share of the bytes, at least 4 columns each (as
        // TorchRec's smallest column shard), and dividing `dim` evenly.
        let want = ((n as f64 * spec.bytes() as f64 / total as f64).round() as usize).max(1);
        let most = (spec.dim / 4).max(1);
        let slices = (1..=want.min(most))
            .rev()
            .find(|s| spec.dim % s == 0)
            .unwrap_or(1);
        let cols = spec.dim / slices;
        let slice_bytes = spec.rows as u64 * 4 * cols as u64;
        let mut shards = Vec::with_capacity(slices);
        for i in 0..slices {
            let d = argmin(&mem);
            if mem[d] + slice_bytes > budget {
                return Err(ShardError::Infeasible {
                    planner: "column-wise",
                    reason: format!(
                        "a {cols}-column slice of table {t} ({slice_bytes} bytes) fits on no \
                         device: the emptiest has {} of {budget} bytes free; raise \
                         --memory-budget-factor or use row-wise sharding",
                        budget - mem[d]
                    ),
                });
            }
            mem[d] += slice_bytes;
            shards.push(ColumnShard {
                device: d as u32,
                first_column: i * cols,
                columns: cols,
            });
        }
        out[t] = Some(Layout::Columns { shards });
    }
    Ok(out.into_iter().flatten().collect())
}

/// An `f64` ordered by `total_cmp`, for heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Ord64(pub f64);
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
pub(crate) type MaxHeap<K> = BinaryHeap<(Ord64, K)>;
