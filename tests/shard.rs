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

/// The options `rowflow shard plan` gets from these flags (the ones the tests use).
fn args(flags: &[&str]) -> ShardPlanOptions {
    let mut o = ShardPlanOptions::default();
    let mut it = flags.iter();
    while let Some(&flag) = it.next() {
        if flag == "--uniform" {
            o.uniform = true;
            continue;
        }
        let v = *it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag {
            "--hosts" => o.hosts = v.parse().unwrap(),
            "--devices-per-host" => o.devices_per_host = v.parse().unwrap(),
            "--memory-budget-factor" => o.memory_budget_factor = v.parse().unwrap(),
            "--objective" => o.objective = v.parse().unwrap(),
            "--planners" => o.planners = v.split(',').map(|p| p.parse().unwrap()).collect(),
            "--rows" => o.rows = v.parse().unwrap(),
            "--samples-per-device" => o.samples_per_device = v.parse().unwrap(),
            "--save" => o.save = Some(v.into()),
            "--seed" => o.seed = v.parse().unwrap(),
            "--steps" => o.steps = v.parse().unwrap(),
            "--device-memory-gib" => o.device_memory_gib = Some(v.parse().unwrap()),
            other => panic!("the test's flag mapper does not know {other}"),
        }
    }
    o
}

fn row(rows: &[PlannerRow], kind: PlannerKind) -> &PlanStats {
    rows.iter()
        .find(|r| r.planner == kind)
        .and_then(|r| r.detail.as_ref())
        .unwrap_or_else(|| panic!("{} is infeasible", kind.name()))
}

#[test]
fn default_workload_8x8_factor_2_flexshard_cuts_latency_and_inter_host_traffic() {
    // The default workload (4 × 1M rows, D=64, α=1.05, mean length 100, 512 samples per device),
    // one simulated step to keep the test short.
    let f = [
        "--hosts",
        "8",
        "--devices-per-host",
        "8",
        "--memory-budget-factor",
        "2",
    ];
    let mut flags = f.to_vec();
    flags.extend(["--steps", "1", "--planners", "row-wise,flexshard"]);
    let rows = plan_and_simulate(&args(&flags)).unwrap();
    let (rw, fx) = (
        row(&rows, PlannerKind::RowWise),
        row(&rows, PlannerKind::FlexShard),
    );
    let latency = rw.comm_latency_s / fx.comm_latency_s;
    let a2a = 1.0 - fx.inter_host_all_to_all_bytes / rw.inter_host_all_to_all_bytes;
    let total = 1.0 - fx.inter_host_bytes / rw.inter_host_bytes;
    println!("latency {latency:.2}x lower; inter-host all-to-all {a2a:.3} fewer, total {total:.3}");
    assert!(latency >= 4.0, "latency only {latency:.2}x lower");
    // Counting the replicas' gradient all-reduce, the cheapest plan saves ~75% (BENCHMARKS.md).
    assert!(total >= 0.70, "inter-host bytes only {total:.3} fewer");
    assert!(a2a >= 0.75, "inter-host all-to-all only {a2a:.3} fewer");
    // Planning for the all-to-all alone (the paper's metric) spends all the slack on replicas.
    flags.extend(["--objective", "all-to-all"]);
    let rows = plan_and_simulate(&args(&flags)).unwrap();
    let fx2 = row(&rows, PlannerKind::FlexShard);
    let a2a2 = 1.0 - fx2.inter_host_all_to_all_bytes / rw.inter_host_all_to_all_bytes;
    println!("objective all-to-all: inter-host all-to-all {a2a2:.3} fewer");
    assert!(a2a2 >= 0.85, "all-to-all objective: only {a2a2:.3} fewer");
    assert!(fx2.max_memory_bytes <= fx2.memory_budget_bytes);
}

#[test]
fn no_planner_exceeds_the_budget_at_factors_1_to_2() {
    let topo = Topology::with_default_links(8, 8).unwrap();
    let tables = vec![
        TableSpec {
            rows: 1_000_000,
            dim: 64
        };
        4
    ];
    let opts = SequenceOptions {
        table_rows: vec![1_000_000; 4],
        zipf_alpha: 1.05,
        mean_length: 100.0,
        lengths: LengthDistribution::Uniform,
    };
    let generator = SequenceGenerator::new(&opts, 1).unwrap();
    let popts = ProfileOptions {
        samples_per_device: 256,
        steps: 1,
        exact_rows_limit: 4_000_000,
        sketch_width: 1 << 16,
        heavy_rows: 1 << 12,
    };
    let profile = profile_workload(&generator, 64, &popts).unwrap();
    for factor in [1.0, 1.25, 1.5, 2.0] {
        let budget = memory_budget_bytes(&topo, &tables, factor).unwrap();
        for kind in PlannerKind::ALL {
            match make_plan(kind, &topo, &tables, budget, Some(&profile)) {
                Ok(plan) => {
                    let mem = plan.memory_per_device().unwrap();
                    let max = mem.iter().max().copied().unwrap();
                    assert!(
                        max <= budget,
                        "{} at {factor}: {max} > {budget}",
                        kind.name()
                    );
                    let total: u64 = mem.iter().sum();
                    assert!(total >= 4 * 256_000_000, "every row is placed");
                }
                Err(ShardError::Infeasible { .. }) => assert!(
                    matches!(kind, PlannerKind::TableWise | PlannerKind::TableRowWise),
                    "{} infeasible at {factor}",
                    kind.name()
                ),
                Err(e) => panic!("{}: {e}", kind.name()),
            }
        }
    }
}

#[test]
fn flexshard_at_factor_1_matches_row_wise_traffic_and_is_no_worse_on_a_uniform_workload() {
    let small = [
        "--rows",
        "200000",
        "--samples-per-device",
        "256",
        "--steps",
        "1",
    ];
    let run = |extra: &[&str]| {
        let mut f = small.to_vec();
        f.extend(["--planners", "row-wise,flexshard"]);
        f.extend_from_slice(extra);
        let rows = plan_and_simulate(&args(&f)).unwrap();
        (
            row(&rows, PlannerKind::RowWise).clone(),
            row(&rows, PlannerKind::FlexShard).clone(),
        )
    };
    // No slack: every row once, so inter-host bytes match row-wise's up to sampling noise.
    let (rw, fx) = run(&["--memory-budget-factor", "1"]);
    assert!(
        fx.inter_host_bytes <= rw.inter_host_bytes * 1.002,
        "{fx:?} vs {rw:?}"
    );
    assert!(fx.comm_latency_s <= rw.comm_latency_s);
    // No skew: nothing to replicate.
    let (rw, fx) = run(&["--memory-budget-factor", "2", "--uniform"]);
    assert!(
        fx.inter_host_bytes <= rw.inter_host_bytes,
        "{fx:?} vs {rw:?}"
    );
    assert!(fx.comm_latency_s <= rw.comm_latency_s, "{fx:?} vs {rw:?}");
}

#[test]
fn plans_and_figures_are_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |seed: &str, name: &str| {
        let path = dir.path().join(name);
        let a = args(&[
            "--hosts",
            "2",
            "--devices-per-host",
            "4",
            "--rows",
            "50000",
            "--samples-per-device",
            "128",
            "--steps",
            "2",
            "--seed",
            seed,
            "--save",
            path.to_str().unwrap(),
        ]);
        let rows = plan_and_simulate(&a).unwrap();
        let json: Vec<String> = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        (json, Plan::load(&path).unwrap())
    };
    let (a, pa) = run("7", "a.json");
    let (b, pb) = run("7", "b.json");
    assert_eq!(a, b);
    assert_eq!(pa, pb);
    let (c, pc) = run("8", "c.json");
    assert_ne!(a, c);
    assert_ne!(pa, pc);
    assert_eq!(pa.planner, PlannerKind::FlexShard);
}

#[test]
fn bad_topologies_budgets_and_plan_files_are_clear_errors() {
    let e = plan_and_simulate(&args(&["--hosts", "0"])).unwrap_err();
    assert!(
        matches!(e, ShardError::Topology(_)) && e.to_string().contains("--hosts"),
        "{e}"
    );
    let e = plan_and_simulate(&args(&["--memory-budget-factor", "0.5"])).unwrap_err();
    assert!(matches!(e, ShardError::Capacity(_)), "{e}");
    let e = plan_and_simulate(&args(&["--device-memory-gib", "0.001"])).unwrap_err();
    assert!(
        matches!(e, ShardError::Capacity(_)) && e.to_string().contains("add devices"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, "{\"format\": 1, \"planner\": \"flexshard\"").unwrap();
    let e = Plan::load(&path).unwrap_err();
    assert!(matches!(e, ShardError::PlanFile { .. }), "{e}");
    // A well-formed file naming a device the topology lacks.
    let topo = topo22();
    let mut plan = make_plan(PlannerKind::RowWise, &topo, &small_tables(), 128, None).unwrap();
    if let Layout::Rows(l) = &mut plan.tables[0].layout {
        l.ranges[0].device = 9;
    }
    plan.save(&path).unwrap();
    let e = Plan::load(&path).unwrap_err();
    assert!(e.to_string().contains("device 9 does not exist"), "{e}");
}

#[test]
fn plan_files_with_unequal_row_lists_or_missing_devices_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let load_with = |edit: &dyn Fn(&mut RowLayout)| {
        let mut plan =
            make_plan(PlannerKind::RowWise, &topo22(), &small_tables(), 128, None).unwrap();
        if let Layout::Rows(l) = &mut plan.tables[1].layout {
            edit(l);
        }
        plan.save(&path).unwrap();
        Plan::load(&path).unwrap_err().to_string()
    };
    let e = load_with(&|l| l.pinned_rows.push(0));
    assert!(
        e.contains("table 1: pinned_rows and pinned_devices differ in length"),
        "{e}"
    );
    let e = load_with(&|l| l.host_replicated_local.push(0));
    assert!(
        e.contains("table 1: host_replicated_rows and _local differ in length"),
        "{e}"
    );
    let e = load_with(&|l| {
        l.pinned_rows.push(0);
        l.pinned_devices.push(4);
    });
    assert!(
        e.contains("table 1: device 4 does not exist (4 devices)"),
        "{e}"
    );
    let e = load_with(&|l| {
        l.host_replicated_rows.push(0);
        l.host_replicated_local.push(2);
    });
    assert!(
        e.contains("table 1: local device 2 does not exist (2 per host)"),
        "{e}"
    );
}

#[test]
fn shard_plan_cli_prints_one_json_line_per_planner_and_fails_cleanly() {
    let bin = env!("CARGO_BIN_EXE_rowflow");
    let out = Command::new(bin)
        .args([
            "shard",
            "plan",
            "--hosts",
            "2",
            "--devices-per-host",
            "2",
            "--rows",
            "20000",
        ])
        .args(["--samples-per-device", "64", "--steps", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            for key in [
                "intra_host_bytes",
                "inter_host_bytes",
                "comm_latency_s",
                "max_device_bytes",
                "mean_device_bytes",
                "load_imbalance",
            ] {
                assert!(v.get(key).is_some(), "{key} missing in {l}");
            }
            v["planner"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "table-wise",
            "row-wise",
            "column-wise",
            "table-row-wise",
            "flexshard"
        ]
    );
    let out = Command::new(bin)
        .args(["shard", "plan", "--hosts", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--hosts") && !err.contains("panicked"),
        "{err}"
    );
}
