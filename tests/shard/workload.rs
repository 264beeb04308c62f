//! `rowflow shard plan` on its default workload: the must-show ratios, budgets at every factor,
//! determinism for a seed, clear errors for bad topologies and plan files, and the CLI.

use super::*;

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
