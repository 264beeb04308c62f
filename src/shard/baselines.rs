//! TorchRec's four baselines, and [`make_plan`], which makes any planner's plan (the baselines
//! here, FlexShard in [`super::flexshard`]) and checks it against the memory budget.
//!
//! Each baseline places every row exactly once. Row-wise spreads every table over all devices;
//! table-wise, table-row-wise and column-wise place tables largest first, each table (or column
//! slice) on the device or host holding the fewest bytes so far. A layout that does not fit the
//! budget is [`ShardError::Infeasible`], as TorchRec's planner drops a sharding option that
//! violates a storage constraint.

use super::ShardError;
use super::blocks::{row_blocks, row_wise};
use super::flexshard::{Objective, flexshard};
use super::plan::{ColumnShard, Layout, PLAN_FORMAT, Plan, PlannerKind, Router, TablePlan};
use super::profile::AccessProfile;
use super::topology::{TableSpec, Topology, validate_tables};

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
        PlannerKind::RowWise => row_wise(tables, topo.devices()),
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
            flexshard(topo, tables, budget_bytes, profile, objective)?
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

/// Every table's layout from `place(t)`, called for the tables largest first (ties by index),
/// the order greedy placement uses; the layouts come back in table order.
fn largest_first(
    tables: &[TableSpec],
    mut place: impl FnMut(usize) -> Result<Layout, ShardError>,
) -> Result<Vec<Layout>, ShardError> {
    let mut order: Vec<usize> = (0..tables.len()).collect();
    order.sort_by(|&a, &b| tables[b].bytes().cmp(&tables[a].bytes()).then(a.cmp(&b)));
    let mut out = vec![None; tables.len()];
    for t in order {
        out[t] = Some(place(t)?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// The index of the smallest value (the first on ties).
fn argmin(v: &[u64]) -> usize {
    v.iter()
        .enumerate()
        .min_by_key(|(i, m)| (**m, *i))
        .map_or(0, |x| x.0)
}

/// TorchRec TW: each table whole on one device.
fn table_wise(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
) -> Result<Vec<Layout>, ShardError> {
    let mut mem = vec![0u64; topo.devices()];
    largest_first(tables, |t| {
        let d = argmin(&mem);
        let bytes = tables[t].bytes();
        if mem[d] + bytes > budget {
            return Err(ShardError::Infeasible {
                planner: PlannerKind::TableWise.name(),
                reason: format!(
                    "table {t} ({bytes} bytes) fits on no device: the emptiest has {} of its \
                     {budget} bytes free; shard it by rows or columns, or raise \
                     --memory-budget-factor",
                    budget - mem[d]
                ),
            });
        }
        mem[d] += bytes;
        // The whole table is one block.
        Ok(row_blocks(tables[t].rows, d, 1))
    })
}

/// TorchRec TWRW: each table on one host, row-wise over its devices.
fn table_row_wise(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
) -> Result<Vec<Layout>, ShardError> {
    let g = topo.devices_per_host;
    let mut host_mem = vec![0u64; topo.hosts];
    largest_first(tables, |t| {
        let h = argmin(&host_mem);
        let per_device = (tables[t].rows as u64).div_ceil(g as u64) * tables[t].row_bytes();
        // Blocks are filled from the host's first device, which therefore holds the most.
        let used = host_mem[h].div_ceil(g as u64);
        if used + per_device > budget {
            return Err(ShardError::Infeasible {
                planner: PlannerKind::TableRowWise.name(),
                reason: format!(
                    "table {t} needs {per_device} bytes on each device of a host, and the \
                     emptiest host's devices have {} of {budget} bytes free; raise \
                     --memory-budget-factor or use row-wise sharding",
                    budget.saturating_sub(used)
                ),
            });
        }
        host_mem[h] += per_device * g as u64;
        Ok(row_blocks(tables[t].rows, topo.device(h, 0), g))
    })
}

/// TorchRec CW: each table in column slices of all its rows.
fn column_wise(
    topo: &Topology,
    tables: &[TableSpec],
    budget: u64,
) -> Result<Vec<Layout>, ShardError> {
    let n = topo.devices();
    let total: u64 = tables.iter().map(TableSpec::bytes).sum();
    let mut mem = vec![0u64; n];
    largest_first(tables, |t| {
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
                    planner: PlannerKind::ColumnWise.name(),
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
        Ok(Layout::Columns { shards })
    })
}
