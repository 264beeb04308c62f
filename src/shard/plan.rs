//! A placement of every row (or column slice) of every table, the planner that made it, its
//! compact file form, and the [`Router`] that answers "who holds this row for this requester".

use super::ShardError;
use super::topology::{TableSpec, Topology};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The plan file's format version.
pub const PLAN_FORMAT: u32 = 1;

/// Where every table lives, for one topology and budget. Saved as one JSON object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// The planner that made it.
    pub planner: PlannerKind,
    /// Hosts of the topology it was made for.
    pub hosts: usize,
    /// Devices per host of that topology.
    pub devices_per_host: usize,
    /// The per-device memory budget it respects, in bytes.
    pub memory_budget_bytes: u64,
    /// One entry per table, in table order.
    pub tables: Vec<TablePlan>,
}

named_enum! {
    /// A sharding planner.
    pub enum PlannerKind as "kebab-case" {
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
}

/// One table's placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablePlan {
    /// Rows of the table.
    pub rows: u32,
    /// Embedding dimension.
    pub dim: usize,
    /// How its rows are spread.
    pub layout: Layout,
}

/// How one table is spread over devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Layout {
    /// Column slices, each holding every row (column-wise sharding).
    Columns {
        /// Slices in column order, covering `0..dim` exactly once.
        shards: Vec<ColumnShard>,
    },
    /// Whole rows (every other planner).
    Rows(RowLayout),
}

/// One column slice of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnShard {
    /// The device holding it.
    pub device: u32,
    /// First column.
    pub first_column: usize,
    /// Columns in the slice.
    pub columns: usize,
}

/// Rows of one table: explicit lists first (replicated, host-replicated, pinned), then
/// contiguous ranges for every row not listed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowLayout {
    /// Sorted, contiguous ranges covering `0..rows`: row `r` of `[start, end)` lives on `device`
    /// unless a list below names it.
    pub ranges: Vec<RowRange>,
    /// Rows with a copy on every device.
    pub replicated: Vec<u32>,
    /// Rows with one copy per host, on the device of that host given by the same position of
    /// `host_replicated_local`.
    pub host_replicated_rows: Vec<u32>,
    /// Local device index (inside each host) of each host-replicated row.
    pub host_replicated_local: Vec<u32>,
    /// Rows placed on one device, overriding the ranges.
    pub pinned_rows: Vec<u32>,
    /// The device of each pinned row.
    pub pinned_devices: Vec<u32>,
}

/// Rows `start .. end` on `device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRange {
    /// First row.
    pub start: u32,
    /// One past the last row.
    pub end: u32,
    /// The device.
    pub device: u32,
}

/// Where a requester reads a row from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Its own memory (a replica or its own shard): no traffic.
    Local,
    /// Another device (whole row); gradients go back to it.
    Device(usize),
}

/// Routing code for a row with a copy on every device.
const GLOBAL: u16 = 0xFFFF;
/// Routing code bit for a host replica; the low 15 bits are the local device index.
const HOST: u16 = 0x8000;

/// One table's routing: an owner code per row, or column slices.
#[derive(Clone, Debug)]
enum Route {
    Owners(Vec<u16>),
    Columns(Vec<ColumnShard>),
}

/// A validated plan as lookup tables: the source of any row for any requester in O(1).
#[derive(Clone, Debug)]
pub struct Router {
    devices_per_host: usize,
    devices: usize,
    routes: Vec<Route>,
    row_bytes: Vec<u64>,
    rows: Vec<u32>,
}

impl Router {
    /// Checks `plan` and builds its routing tables; the error says what is wrong.
    pub fn new(plan: &Plan) -> Result<Router, String> {
        let topo = Topology::with_default_links(plan.hosts, plan.devices_per_host)
            .map_err(|e| e.to_string())?;
        let n = topo.devices();
        let g = topo.devices_per_host;
        let mut routes = Vec::with_capacity(plan.tables.len());
        for (t, tp) in plan.tables.iter().enumerate() {
            if tp.rows == 0 || tp.dim == 0 {
                return Err(format!("table {t}: rows and dim must be at least 1"));
            }
            match &tp.layout {
                Layout::Columns { shards } => {
                    let mut next = 0;
                    for s in shards {
                        device_exists(t, s.device, n)?;
                        if s.first_column != next || s.columns == 0 {
                            return Err(format!(
                                "table {t}: column slices must cover 0..{} in order",
                                tp.dim
                            ));
                        }
                        next += s.columns;
                    }
                    if next != tp.dim {
                        return Err(format!(
                            "table {t}: column slices cover {next} of {} columns",
                            tp.dim
                        ));
                    }
                    routes.push(Route::Columns(shards.clone()));
                }
                Layout::Rows(l) => routes.push(Route::Owners(owners(t, tp.rows, l, n, g)?)),
            }
        }
        Ok(Router {
            devices_per_host: g,
            devices: n,
            routes,
            row_bytes: plan.tables.iter().map(|t| 4 * t.dim as u64).collect(),
            rows: plan.tables.iter().map(|t| t.rows).collect(),
        })
    }

    /// Number of devices.
    pub fn devices(&self) -> usize {
        self.devices
    }

    /// Bytes of one row of table `t`.
    pub fn row_bytes(&self, t: usize) -> u64 {
        self.row_bytes[t]
    }

    /// The column slices of table `t` when it is column-sharded.
    pub fn column_shards(&self, t: usize) -> Option<&[ColumnShard]> {
        match &self.routes[t] {
            Route::Columns(s) => Some(s),
            Route::Owners(_) => None,
        }
    }

    /// Where `requester` reads row `r` of a row-sharded table `t` (None for a column-sharded
    /// table).
    #[inline]
    pub fn source(&self, t: usize, r: u32, requester: usize) -> Option<Source> {
        self.route(t, r, requester).map(|x| x.0)
    }

    /// Where `requester` reads row `r` of a row-sharded table `t`, with the row's replication
    /// (0: a single copy, 1: one copy per host, 2: a copy on every device); None for a
    /// column-sharded table.
    #[inline]
    pub fn route(&self, t: usize, r: u32, requester: usize) -> Option<(Source, u8)> {
        let Route::Owners(o) = &self.routes[t] else {
            return None;
        };
        let code = o[r as usize];
        let (d, replication) = if code == GLOBAL {
            return Some((Source::Local, 2));
        } else if code & HOST != 0 {
            let host = requester / self.devices_per_host;
            (host * self.devices_per_host + (code & !HOST) as usize, 1)
        } else {
            (code as usize, 0)
        };
        let source = if d == requester {
            Source::Local
        } else {
            Source::Device(d)
        };
        Some((source, replication))
    }

    /// The local device index of a host-replicated row.
    pub fn host_local(&self, t: usize, r: u32) -> Option<usize> {
        match &self.routes[t] {
            Route::Owners(o) if o[r as usize] != GLOBAL && o[r as usize] & HOST != 0 => {
                Some((o[r as usize] & !HOST) as usize)
            }
            _ => None,
        }
    }

    /// Bytes of embedding rows held by each device.
    pub fn memory_per_device(&self) -> Vec<u64> {
        let (n, g) = (self.devices, self.devices_per_host);
        let mut mem = vec![0u64; n];
        for (t, route) in self.routes.iter().enumerate() {
            let b = self.row_bytes[t];
            match route {
                Route::Columns(shards) => {
                    for s in shards {
                        mem[s.device as usize] += self.rows[t] as u64 * 4 * s.columns as u64;
                    }
                }
                Route::Owners(o) => {
                    let mut per_code = vec![0u64; n];
                    let (mut global, mut host) = (0u64, vec![0u64; g]);
                    for &c in o {
                        if c == GLOBAL {
                            global += 1;
                        } else if c & HOST != 0 {
                            host[(c & !HOST) as usize] += 1;
                        } else {
                            per_code[c as usize] += 1;
                        }
                    }
                    for (d, m) in mem.iter_mut().enumerate() {
                        *m += b * (per_code[d] + global + host[d % g]);
                    }
                }
            }
        }
        mem
    }
}

/// The owner code of every row of a row layout, checking the layout.
fn owners(t: usize, rows: u32, l: &RowLayout, n: usize, g: usize) -> Result<Vec<u16>, String> {
    const UNSET: u16 = 0xFFFE;
    let mut o = vec![UNSET; rows as usize];
    let mut next = 0u32;
    for r in &l.ranges {
        if r.start != next || r.end <= r.start || r.end > rows {
            return Err(format!(
                "table {t}: ranges must be sorted, non-empty and cover 0..{rows} without gaps \
                 (found {}..{} after row {next})",
                r.start, r.end
            ));
        }
        device_exists(t, r.device, n)?;
        o[r.start as usize..r.end as usize].fill(r.device as u16);
        next = r.end;
    }
    if next != rows {
        return Err(format!("table {t}: ranges cover {next} of {rows} rows"));
    }
    let mut listed = vec![false; rows as usize];
    let mut set = |r: u32, code: u16, what: &str| -> Result<(), String> {
        if r >= rows {
            return Err(format!(
                "table {t}: {what} row {r} is out of range ({rows} rows)"
            ));
        }
        if std::mem::replace(&mut listed[r as usize], true) {
            return Err(format!("table {t}: row {r} is listed twice"));
        }
        o[r as usize] = code;
        Ok(())
    };
    for &r in &l.replicated {
        set(r, GLOBAL, "replicated")?;
    }
    for (r, j) in paired(
        t,
        &l.host_replicated_rows,
        &l.host_replicated_local,
        "host_replicated_rows and _local",
    )? {
        if j as usize >= g {
            return Err(format!(
                "table {t}: local device {j} does not exist ({g} per host)"
            ));
        }
        set(r, HOST | j as u16, "host-replicated")?;
    }
    for (r, d) in paired(
        t,
        &l.pinned_rows,
        &l.pinned_devices,
        "pinned_rows and pinned_devices",
    )? {
        device_exists(t, d, n)?;
        set(r, d as u16, "pinned")?;
    }
    Ok(o)
}

/// Fails unless device `d`, named in table `t`'s layout, is one of the `n` devices.
fn device_exists(t: usize, d: u32, n: usize) -> Result<(), String> {
    if (d as usize) < n {
        Ok(())
    } else {
        Err(format!(
            "table {t}: device {d} does not exist ({n} devices)"
        ))
    }
}

/// The entries of two parallel lists of table `t`'s row layout (a row and its device), which
/// must be equally long; `names` names both lists in the error.
fn paired<'a>(
    t: usize,
    rows: &'a [u32],
    devices: &'a [u32],
    names: &str,
) -> Result<impl Iterator<Item = (u32, u32)> + 'a, String> {
    if rows.len() != devices.len() {
        return Err(format!("table {t}: {names} differ in length"));
    }
    Ok(rows.iter().copied().zip(devices.iter().copied()))
}

impl Plan {
    /// The tables it places.
    pub fn table_specs(&self) -> Vec<TableSpec> {
        self.tables
            .iter()
            .map(|t| TableSpec {
                rows: t.rows,
                dim: t.dim,
            })
            .collect()
    }

    /// Bytes held by each device (rows of every table, every replica, column slices).
    pub fn memory_per_device(&self) -> Result<Vec<u64>, String> {
        Ok(Router::new(self)?.memory_per_device())
    }

    /// Writes the plan as one JSON object.
    pub fn save(&self, path: &Path) -> Result<(), ShardError> {
        let io = |source| ShardError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_string(self).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(path, text + "\n").map_err(io)
    }

    /// Reads and checks a plan written by [`Plan::save`].
    pub fn load(path: &Path) -> Result<Plan, ShardError> {
        let text = std::fs::read_to_string(path).map_err(|source| ShardError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |message: String| ShardError::PlanFile {
            path: path.to_path_buf(),
            message,
        };
        let plan: Plan = serde_json::from_str(&text)
            .map_err(|e| bad(format!("line {} column {}: {e}", e.line(), e.column())))?;
        if plan.format != PLAN_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this build reads format {PLAN_FORMAT})",
                plan.format
            )));
        }
        let mem = plan.memory_per_device().map_err(bad)?;
        if let Some((d, m)) = mem
            .iter()
            .enumerate()
            .find(|(_, m)| **m > plan.memory_budget_bytes)
        {
            return Err(bad(format!(
                "device {d} holds {m} bytes, over the plan's budget of {} bytes",
                plan.memory_budget_bytes
            )));
        }
        Ok(plan)
    }
}
