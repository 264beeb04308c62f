//! The cluster's shape and links, the tables to place, and the per-device memory budget.

use super::ShardError;
use crate::bounds::Min;
use serde::{Deserialize, Serialize};

/// One tier of the network: the link every device uses to reach peers of that tier.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    /// Bandwidth per device, in 10^9 bytes per second (β).
    pub gbps: f64,
    /// Latency of one message, in seconds (α).
    pub latency_s: f64,
}

impl Tier {
    /// Seconds to send `messages` messages carrying `bytes` bytes in all over this tier.
    pub fn seconds(&self, messages: u64, bytes: u64) -> f64 {
        messages as f64 * self.latency_s + bytes as f64 / (self.gbps * 1e9)
    }
}

/// Where a peer sits relative to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierKind {
    /// The same device: no traffic.
    Local,
    /// Another device of the same host.
    IntraHost,
    /// A device of another host.
    InterHost,
}

/// `hosts × devices_per_host` devices; device `d` is device `d % devices_per_host` of host
/// `d / devices_per_host`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Hosts (at least 1).
    pub hosts: usize,
    /// Devices per host (at least 1).
    pub devices_per_host: usize,
    /// The link between devices of one host (NVLink-class: 300 GB/s, 2 µs by default).
    pub intra_host: Tier,
    /// The link between hosts (a NIC per device: 25 GB/s, 10 µs by default).
    pub inter_host: Tier,
    /// Memory a device can give to embedding rows, in bytes (`None`: unlimited, only the budget
    /// factor limits a plan).
    pub device_memory_bytes: Option<u64>,
}

/// Device ids are stored in 15 bits in routing tables (the top bit marks host replicas).
pub const MAX_DEVICES: usize = 0x7FFF;

impl Topology {
    /// A validated topology.
    pub fn new(
        hosts: usize,
        devices_per_host: usize,
        intra_host: Tier,
        inter_host: Tier,
        device_memory_bytes: Option<u64>,
    ) -> Result<Self, ShardError> {
        let t = Topology {
            hosts,
            devices_per_host,
            intra_host,
            inter_host,
            device_memory_bytes,
        };
        t.validate()?;
        Ok(t)
    }

    /// The default links: intra-host 300 GB/s and 2 µs, inter-host 25 GB/s and 10 µs.
    pub fn with_default_links(hosts: usize, devices_per_host: usize) -> Result<Self, ShardError> {
        Topology::new(
            hosts,
            devices_per_host,
            Tier {
                gbps: 300.0,
                latency_s: 2e-6,
            },
            Tier {
                gbps: 25.0,
                latency_s: 10e-6,
            },
            None,
        )
    }

    /// Checks every field; the error names the flag to change.
    pub fn validate(&self) -> Result<(), ShardError> {
        let bad = |m: String| Err(ShardError::Topology(m));
        if self.hosts == 0 {
            return bad("--hosts is 0; a cluster needs at least 1 host".into());
        }
        if self.devices_per_host == 0 {
            return bad("--devices-per-host is 0; each host needs at least 1 device".into());
        }
        match self.hosts.checked_mul(self.devices_per_host) {
            Some(n) if n <= MAX_DEVICES => {}
            _ => {
                return bad(format!(
                    "{} hosts × {} devices is more than the {MAX_DEVICES} devices a plan can \
                     address; use fewer",
                    self.hosts, self.devices_per_host
                ));
            }
        }
        for (name, tier) in [
            ("intra-host", self.intra_host),
            ("inter-host", self.inter_host),
        ] {
            Min::Above(0.0)
                .check(&format!("--{name}-gbps"), tier.gbps)
                .map_err(ShardError::Topology)?;
            Min::AtLeast(0.0)
                .check(&format!("the {name} latency (s)"), tier.latency_s)
                .map_err(ShardError::Topology)?;
        }
        if self.device_memory_bytes == Some(0) {
            return bad("the device memory is 0 bytes; give each device some memory".into());
        }
        Ok(())
    }

    /// Number of devices.
    pub fn devices(&self) -> usize {
        self.hosts * self.devices_per_host
    }

    /// The host of device `d`.
    pub fn host_of(&self, d: usize) -> usize {
        d / self.devices_per_host
    }

    /// The index of device `d` inside its host.
    pub fn local_of(&self, d: usize) -> usize {
        d % self.devices_per_host
    }

    /// Device `local` of host `host`.
    pub fn device(&self, host: usize, local: usize) -> usize {
        host * self.devices_per_host + local
    }

    /// The tier between devices `a` and `b`.
    pub fn tier(&self, a: usize, b: usize) -> TierKind {
        if a == b {
            TierKind::Local
        } else if self.host_of(a) == self.host_of(b) {
            TierKind::IntraHost
        } else {
            TierKind::InterHost
        }
    }
}

/// One embedding table to place: FP32 rows of `dim` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Rows (at least 1).
    pub rows: u32,
    /// Embedding dimension (at least 1).
    pub dim: usize,
}

impl TableSpec {
    /// Bytes of one FP32 row.
    pub fn row_bytes(&self) -> u64 {
        4 * self.dim as u64
    }
    /// Bytes of the whole table.
    pub fn bytes(&self) -> u64 {
        self.rows as u64 * self.row_bytes()
    }
}

/// Checks that the tables can be placed at all.
pub fn validate_tables(tables: &[TableSpec]) -> Result<(), ShardError> {
    if tables.is_empty() {
        return Err(ShardError::Workload(
            "no tables to place; give --tables at least 1".into(),
        ));
    }
    if let Some(t) = tables.iter().position(|t| t.rows == 0 || t.dim == 0) {
        return Err(ShardError::Workload(format!(
            "table {t} has {} rows of dimension {}; both must be at least 1",
            tables[t].rows, tables[t].dim
        )));
    }
    Ok(())
}

/// The per-device memory budget in bytes: `factor ×` an even share of all rows, where a table's
/// even share is `⌈rows / devices⌉` rows (so that row-wise sharding fits at factor 1), capped
/// by the device's memory when the topology gives one.
///
/// Errors: a factor below 1 or not finite (no planner can place every row once), or a device
/// memory below the even share (the topology cannot hold the tables).
pub fn memory_budget_bytes(
    topo: &Topology,
    tables: &[TableSpec],
    factor: f64,
) -> Result<u64, ShardError> {
    topo.validate()?;
    validate_tables(tables)?;
    let n = topo.devices() as u64;
    let even: u64 = tables
        .iter()
        .map(|t| (t.rows as u64).div_ceil(n) * t.row_bytes())
        .sum();
    if !Min::AtLeast(1.0).admits(factor) {
        return Err(ShardError::Capacity(format!(
            "--memory-budget-factor {factor} gives each device less than its even share of the \
             rows ({even} bytes), so the {n} devices cannot hold every row once; use a factor ≥ 1 \
             or more devices"
        )));
    }
    let budget = (factor * even as f64).floor() as u64;
    match topo.device_memory_bytes {
        Some(mem) if mem < even => Err(ShardError::Capacity(format!(
            "each device has {mem} bytes for embeddings but the tables need {even} bytes per \
             device over {n} devices ({} bytes in all); add devices or raise the device memory",
            tables.iter().map(TableSpec::bytes).sum::<u64>()
        ))),
        Some(mem) => Ok(budget.min(mem)),
        None => Ok(budget),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_hosts() {
        let t = Topology::with_default_links(2, 2).unwrap();
        assert_eq!(t.tier(0, 0), TierKind::Local);
        assert_eq!(t.tier(0, 1), TierKind::IntraHost);
        assert_eq!(t.tier(1, 2), TierKind::InterHost);
        assert_eq!(t.device(1, 1), 3);
    }

    #[test]
    fn zero_hosts_and_small_budgets_are_errors() {
        let e = Topology::with_default_links(0, 8).unwrap_err();
        assert!(e.to_string().contains("--hosts"), "{e}");
        let t = Topology::with_default_links(2, 2).unwrap();
        let tables = [TableSpec { rows: 10, dim: 4 }];
        // ⌈10 / 4⌉ = 3 rows of 16 bytes per device.
        assert_eq!(memory_budget_bytes(&t, &tables, 1.0).unwrap(), 48);
        assert_eq!(memory_budget_bytes(&t, &tables, 1.5).unwrap(), 72);
        let e = memory_budget_bytes(&t, &tables, 0.9).unwrap_err();
        assert!(e.to_string().contains("--memory-budget-factor"), "{e}");
        let small = Topology {
            device_memory_bytes: Some(40),
            ..t
        };
        assert!(matches!(
            memory_budget_bytes(&small, &tables, 2.0),
            Err(ShardError::Capacity(_))
        ));
    }
}
