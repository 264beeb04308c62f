//! Sharding planners and the traffic simulator: hand-computed 2 hosts × 2 devices cases for every
//! planner, the default workload's must-show ratios, budgets, determinism and clear errors.

use rowflow::data::sequence::{LengthDistribution, SequenceGenerator, SequenceOptions};
use rowflow::shard::compare::{
    PlannerRow, ProfileOptions, ShardPlanOptions, plan_and_simulate, profile_workload,
};
use rowflow::shard::plan::{Layout, PLAN_FORMAT, RowLayout, RowRange, TablePlan};
use rowflow::shard::{
    AccessProfile, Plan, PlanStats, PlannerKind, ShardError, TableSpec, Topology, make_plan,
    memory_budget_bytes, replay,
};
use std::process::Command;

/// The default workload's must-show ratios, budgets, determinism, plan files and the CLI.
#[path = "shard/workload.rs"]
mod workload;

/// Bytes of one row in the small cases (D = 8, FP32).
const ROW: f64 = 32.0;

fn topo22() -> Topology {
    Topology::with_default_links(2, 2).unwrap()
}

/// Two tables of 4 rows, D = 8.
fn small_tables() -> Vec<TableSpec> {
    vec![TableSpec { rows: 4, dim: 8 }; 2]
}

/// α-β seconds of one device's phase with the default links (2 µs, 300 GB/s inside a host;
/// 10 µs, 25 GB/s across hosts).
fn secs(intra_msgs: f64, intra_bytes: f64, inter_msgs: f64, inter_bytes: f64) -> f64 {
    intra_msgs * 2e-6 + intra_bytes / 300e9 + inter_msgs * 10e-6 + inter_bytes / 25e9
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1e-12),
        "{what}: got {got}, want {want}"
    );
}

/// One step in which every device looks up rows 0, 1, 2, 3 of table 0 once.
fn every_device_reads_table0() -> Vec<Vec<Vec<Vec<u32>>>> {
    vec![(0..4).map(|_| vec![vec![0, 1, 2, 3], vec![]]).collect()]
}

fn run_small(kind: PlannerKind, profile: Option<&AccessProfile>) -> (Plan, PlanStats) {
    let topo = topo22();
    let tables = small_tables();
    let budget = memory_budget_bytes(&topo, &tables, 2.0).unwrap();
    assert_eq!(budget, 128, "2 × (one 32-byte row of each table)");
    let plan = make_plan(kind, &topo, &tables, budget, profile).unwrap();
    let stats = replay(&[&plan], &topo, &every_device_reads_table0(), false)
        .unwrap()
        .remove(0);
    (plan, stats)
}

/// Checks the figures every small case reports.
#[allow(clippy::too_many_arguments)]
fn check(
    s: &PlanStats,
    intra: f64,
    inter: f64,
    latency: f64,
    max_dev: f64,
    mean_dev: f64,
    local: f64,
) {
    close("intra_host_bytes", s.intra_host_bytes, intra);
    close("inter_host_bytes", s.inter_host_bytes, inter);
    close("comm_latency_s", s.comm_latency_s, latency);
    close("max_device_bytes", s.max_device_bytes, max_dev);
    close("mean_device_bytes", s.mean_device_bytes, mean_dev);
    close(
        "load_imbalance",
        s.load_imbalance.unwrap(),
        max_dev / mean_dev,
    );
    close("local_lookup_fraction", s.local_lookup_fraction, local);
    assert!(s.max_memory_bytes <= s.memory_budget_bytes);
}

#[test]
fn row_wise_two_by_two_matches_hand_computed_costs() {
    // Row i on device i: each requester reads 1 row inside its host and 2 across hosts; each
    // owner sends the same. Forward and backward mirror each other.
    let (_, s) = run_small(PlannerKind::RowWise, None);
    let phase = secs(1.0, ROW, 2.0, 2.0 * ROW);
    check(
        &s,
        2.0 * 4.0 * ROW,
        2.0 * 4.0 * 2.0 * ROW,
        2.0 * phase,
        12.0 * ROW,
        12.0 * ROW,
        0.25,
    );
}

#[test]
fn table_wise_two_by_two_matches_hand_computed_costs() {
    // Table 0 whole on device 0, which sends 4 rows to each of the 3 others.
    let (plan, s) = run_small(PlannerKind::TableWise, None);
    assert_eq!(plan.memory_per_device().unwrap(), vec![128, 128, 0, 0]);
    let phase = secs(1.0, 4.0 * ROW, 2.0, 8.0 * ROW);
    // Device 0 moves 12 rows per phase each way; the others 4.
    let (max_dev, mean_dev) = (2.0 * 12.0 * ROW, 2.0 * (12.0 + 3.0 * 4.0) * ROW / 4.0);
    check(
        &s,
        2.0 * 4.0 * ROW,
        2.0 * 8.0 * ROW,
        2.0 * phase,
        max_dev,
        mean_dev,
        0.25,
    );
}

#[test]
fn column_wise_two_by_two_matches_hand_computed_costs() {
    // Table 0 in two 4-column slices on devices 0 and 1; every lookup gathers 16 bytes from
    // each slice. Table 1's slices sit on devices 2 and 3.
    let (plan, s) = run_small(PlannerKind::ColumnWise, None);
    assert_eq!(plan.memory_per_device().unwrap(), vec![64; 4]);
    let half = ROW / 2.0;
    // Forward: devices 0 and 1 swap 4 half rows and each send 4 half rows to devices 2 and 3.
    let intra = 2.0 * 2.0 * 4.0 * half;
    let inter = 2.0 * 4.0 * 4.0 * half;
    let phase = secs(1.0, 4.0 * half, 2.0, 8.0 * half);
    let (d01, d23) = (2.0 * 16.0 * half, 2.0 * 8.0 * half);
    check(
        &s,
        intra,
        inter,
        2.0 * phase,
        d01,
        (2.0 * d01 + 2.0 * d23) / 4.0,
        0.0,
    );
}

#[test]
fn table_row_wise_two_by_two_matches_hand_computed_costs() {
    // Table 0 on host 0, rows 0-1 on device 0 and 2-3 on device 1; table 1 on host 1.
    let (plan, s) = run_small(PlannerKind::TableRowWise, None);
    assert_eq!(plan.memory_per_device().unwrap(), vec![64; 4]);
    let intra = 2.0 * 2.0 * 2.0 * ROW;
    let inter = 2.0 * 2.0 * 4.0 * ROW;
    let phase = secs(1.0, 2.0 * ROW, 2.0, 4.0 * ROW);
    let (d01, d23) = (2.0 * 8.0 * ROW, 2.0 * 4.0 * ROW);
    check(
        &s,
        intra,
        inter,
        2.0 * phase,
        d01,
        (2.0 * d01 + 2.0 * d23) / 4.0,
        0.25,
    );
}

/// One step in which every device reads row 0 of table 0 `times` times.
fn hot_row_step(times: usize) -> Vec<Vec<Vec<u32>>> {
    (0..4).map(|_| vec![vec![0; times], vec![]]).collect()
}

fn profile_of(steps: &[Vec<Vec<Vec<u32>>>]) -> AccessProfile {
    let mut p = AccessProfile::new(&[4, 4], 1000, 16, 16);
    for step in steps {
        for dev in step {
            for (t, ids) in dev.iter().enumerate() {
                p.record(t, ids).unwrap();
            }
        }
        p.finish_step();
    }
    p
}

#[test]
fn flexshard_two_by_two_replicates_the_hot_row_and_pays_its_all_reduce() {
    // 400,000 lookups of one row per step: a copy on every device saves far more than the
    // fixed latency of an all-reduce, and the slack (4 × 128 − 256 − 4 × 32 bytes) holds it.
    let step = hot_row_step(100_000);
    let profile = profile_of(std::slice::from_ref(&step));
    let topo = topo22();
    let tables = small_tables();
    let plan = make_plan(PlannerKind::FlexShard, &topo, &tables, 128, Some(&profile)).unwrap();
    let Layout::Rows(l) = &plan.tables[0].layout else {
        panic!("rows expected")
    };
    assert_eq!(l.replicated, vec![0]);
    let s = replay(&[&plan], &topo, &[step], false).unwrap().remove(0);
    // No all-to-all; the one touched replica (32 bytes) is all-reduced: a ring of 2 inside
    // each host (32 bytes each way per device), then a ring of 2 across hosts over a 16-byte
    // slice.
    close("a2a intra", s.intra_host_all_to_all_bytes, 0.0);
    close("a2a inter", s.inter_host_all_to_all_bytes, 0.0);
    let sync = secs(2.0, ROW, 2.0, ROW / 2.0);
    check(
        &s,
        4.0 * ROW,
        4.0 * ROW / 2.0,
        sync,
        2.0 * 1.5 * ROW,
        2.0 * 1.5 * ROW,
        1.0,
    );
}

#[test]
fn flexshard_keeps_the_row_wise_layout_when_replicas_cost_more_latency_than_they_save() {
    // 40 lookups per step save nanoseconds; an all-reduce costs 24 µs of message latency.
    let step = hot_row_step(10);
    let profile = profile_of(std::slice::from_ref(&step));
    let flex = make_plan(
        PlannerKind::FlexShard,
        &topo22(),
        &small_tables(),
        128,
        Some(&profile),
    )
    .unwrap();
    let rw = make_plan(PlannerKind::RowWise, &topo22(), &small_tables(), 128, None).unwrap();
    assert_eq!(flex.tables, rw.tables);
}

#[test]
fn simulator_counts_a_hand_made_tiered_plan_per_tier() {
    // Row 0 on every device, row 1 on local device 1 of each host, row 2 pinned to device 3,
    // row 3 on device 0 (the range). Every device reads rows 0..4 once.
    let plan = Plan {
        format: PLAN_FORMAT,
        planner: PlannerKind::FlexShard,
        hosts: 2,
        devices_per_host: 2,
        memory_budget_bytes: 128,
        tables: vec![TablePlan {
            rows: 4,
            dim: 8,
            layout: Layout::Rows(RowLayout {
                ranges: vec![RowRange {
                    start: 0,
                    end: 4,
                    device: 0,
                }],
                replicated: vec![0],
                host_replicated_rows: vec![1],
                host_replicated_local: vec![1],
                pinned_rows: vec![2],
                pinned_devices: vec![3],
            }),
        }],
    };
    assert_eq!(plan.memory_per_device().unwrap(), vec![64, 64, 32, 96]);
    let step: Vec<Vec<Vec<u32>>> = (0..4).map(|_| vec![vec![0, 1, 2, 3]]).collect();
    let s = replay(&[&plan], &topo22(), &[step], false)
        .unwrap()
        .remove(0);
    // Forward: row 1 → 2 intra; row 2 → 2 inter + 1 intra; row 3 → 1 intra + 2 inter.
    close("a2a intra", s.intra_host_all_to_all_bytes, 2.0 * 4.0 * ROW);
    close("a2a inter", s.inter_host_all_to_all_bytes, 2.0 * 4.0 * ROW);
    // Sync: the global row as above (4 × 32 intra, 4 × 16 inter); the host row by a ring of 2
    // across hosts on devices 1 and 3 (32 bytes each).
    close("sync intra", s.intra_host_sync_bytes, 4.0 * ROW);
    close(
        "sync inter",
        s.inter_host_sync_bytes,
        4.0 * ROW / 2.0 + 2.0 * ROW,
    );
    close("local", s.local_lookup_fraction, 0.5);
    // Device 3 is slowest in the all-to-alls (64 bytes to device 2, two peers across hosts);
    // devices 1 and 3 in the sync (both rings).
    let phase = secs(1.0, 2.0 * ROW, 2.0, 2.0 * ROW);
    let sync = secs(2.0, ROW, 2.0, ROW / 2.0) + secs(0.0, 0.0, 2.0, ROW);
    close("latency", s.comm_latency_s, 2.0 * phase + sync);
}
