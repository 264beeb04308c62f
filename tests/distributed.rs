//! Training across processes (`mpirun -np N rowflow train --distributed`, feature `mpi`): the
//! final tables and dense weights equal a single-process run of the same global batches — bit
//! for bit with the dense layers frozen (`--lr 0 --embedding-lr X`), within a stated tolerance
//! when the all-reduced dense gradients feed back into everything; ranks with no samples or no
//! ids; a killed, hung or missing rank ends the job with an error within the timeout; ranks with
//! other settings are refused. Each test skips without MPI unless `ROWFLOW_REQUIRE_MPI=1`.

mod common;

use common::mpi::{Job, alone, compare, mpirun, ready, strings};
use std::path::Path;
use std::time::Duration;

/// Relative tolerance when the dense gradients are all-reduced: each rank sums its slice, then
/// the engine sums the ranks, so a weight's update differs from the single-process sum by
/// rounding (≈ 1e-8 measured after 12 steps); 1e-6 leaves room, and is 1000× below any change
/// a wrong gradient would make.
const TOL: f64 = 1e-6;
const LIMIT: Duration = Duration::from_secs(120);

/// The run every test varies: 8 tables of 1000 rows, 12 steps of 64 samples, one thread.
fn base(extra: &[&str]) -> Vec<String> {
    let defaults = [
        ("--steps", "12"),
        ("--batch-size", "64"),
        ("--table-rows", "1000"),
        ("--eval-every", "0"),
        ("--compute-threads", "1"),
    ];
    let mut a = strings(&["train", "--backend", "cpu"]);
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            a.extend([flag.to_string(), value.to_string()]);
        }
    }
    a.extend(strings(extra));
    a
}

fn with_save(mut args: Vec<String>, dir: &Path) -> Vec<String> {
    args.extend(["--save".into(), dir.display().to_string()]);
    args
}

fn distributed(n: usize, extra: &[&str], dir: &Path) -> Job {
    let mut flags = vec!["--distributed"];
    flags.extend(extra);
    mpirun(&[(n, with_save(base(&flags), dir))], &[], LIMIT).ok()
}

fn single(extra: &[&str], dir: &Path) -> Job {
    alone(&with_save(base(extra), dir)).ok()
}

/// A config of bags of 3 rows, mean-pooled (written into `dir`): pooling scales each lookup's
/// gradient by its bag's length, which travels with the ids.
fn bags_config(dir: &Path) -> String {
    let path = dir.join("bags.toml");
    std::fs::write(
        &path,
        "[synthetic]\npooling_factor = 3\n[model]\npooling = \"mean\"\n",
    )
    .unwrap();
    path.display().to_string()
}

/// Dense layers frozen, embeddings trained.
const FROZEN: [&str; 4] = ["--lr", "0", "--embedding-lr", "0.05"];

/// Tables, and with frozen dense layers everything but the dense layers' Adagrad sums.
fn frozen_exact(name: &str) -> bool {
    name.starts_with("table.") || !name.ends_with(".adagrad")
}

#[test]
fn frozen_dense_row_and_table_wise_equal_one_process_exactly() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bags = bags_config(dir.path());
    let mut frozen = FROZEN.to_vec();
    frozen.extend(["--config", &bags]);
    let want = dir.path().join("single");
    single(&frozen, &want);
    for n in [2, 3, 4] {
        for sharding in ["row-wise", "table-wise"] {
            let got = dir.path().join(format!("{sharding}-{n}"));
            let mut flags = frozen.to_vec();
            flags.extend(["--sharding", sharding]);
            distributed(n, &flags, &got);
            let worst = compare(&want, &got, frozen_exact, TOL);
            eprintln!("{n} ranks, {sharding}: tables exact, dense Adagrad sums within {worst:.1e}");
        }
    }
}

#[test]
fn trained_dense_layers_agree_within_tolerance() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let want = dir.path().join("single");
    single(&[], &want);
    for (n, sharding) in [
        (2, "row-wise"),
        (3, "row-wise"),
        (4, "row-wise"),
        (3, "table-wise"),
    ] {
        let got = dir.path().join(format!("{sharding}-{n}"));
        distributed(n, &["--sharding", sharding], &got);
        let worst = compare(&want, &got, |_| false, TOL);
        eprintln!("{n} ranks, {sharding}: every tensor within {worst:.1e}");
    }
}

#[test]
fn a_flexshard_plan_with_replicas_trains_as_one_process() {
    if !ready() {
        return;
    }
    // FlexShard with room to spare replicates hot rows: their gradients are summed over the
    // ranks by an all-reduce (so within TOL, not bit for bit) and applied by every holder.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let p = plan.to_str().unwrap();
    alone(&strings(&[
        "shard",
        "plan",
        "--hosts",
        "2",
        "--devices-per-host",
        "2",
        "--tables",
        "8",
        "--rows",
        "1000",
        "--dim",
        "16",
        "--samples-per-device",
        "16",
        "--mean-length",
        "4",
        "--memory-budget-factor",
        "4",
        "--objective",
        "all-to-all",
        "--save",
        p,
    ]))
    .ok();
    let want = dir.path().join("single");
    single(&[], &want);
    let (got, summary, telemetry) = (
        dir.path().join("dist"),
        dir.path().join("summary.json"),
        dir.path().join("telemetry.jsonl"),
    );
    let (s, t) = (summary.to_str().unwrap(), telemetry.to_str().unwrap());
    let flags = [
        "--shard-plan",
        p,
        "--devices-per-host",
        "2",
        "--summary-json",
        s,
    ];
    let mut flags = flags.to_vec();
    flags.extend(["--telemetry", t]);
    distributed(4, &flags, &got);
    let worst = compare(&want, &got, |_| false, TOL);
    eprintln!("flexshard, 4 ranks: every tensor within {worst:.1e}");
    let s = common::cli::read_json(&summary);
    assert_eq!(s["sharding"], "flexshard", "{s}");
    assert!(
        s["traffic"]["all_reduce"]["sync"].as_u64().unwrap() > 0,
        "no replica synced: {s}"
    );
    assert!(
        s["traffic"]["tiers"]["forward"]["inter_host"]
            .as_u64()
            .unwrap()
            > 0,
        "{s}"
    );
    let lines = common::cli::json_lines(&std::fs::read_to_string(&telemetry).unwrap());
    assert_eq!(lines.len(), 12, "one telemetry line per step");
    let last = &lines[11];
    assert_eq!(
        (last["kind"].as_str(), last["step"].as_u64()),
        (Some("distributed"), Some(12))
    );
    assert_eq!(
        last["traffic"]["per_rank"].as_array().map(Vec::len),
        Some(4),
        "{last}"
    );
    assert_eq!(
        last["traffic"]["tiers"], s["traffic"]["tiers"],
        "the last line is the summary's"
    );
    assert!(last["test_auc"].as_f64().is_some(), "{last}");
}

#[test]
fn chunked_collectives_give_the_same_run() {
    if !ready() {
        return;
    }
    // Calls capped at 64 bytes: every all-to-all and all-reduce runs in many rounds, with
    // ranks whose parts end at different rounds — the path counts past 2^31 take. The
    // all-to-alls move the same bytes (tables exact with frozen dense layers); MPI picks its
    // all-reduce algorithm by message size, so the dense sums may round differently.
    let dir = tempfile::tempdir().unwrap();
    let (whole, chunked) = (dir.path().join("whole"), dir.path().join("chunked"));
    distributed(3, &FROZEN, &whole);
    let mut flags = vec!["--distributed"];
    flags.extend(FROZEN);
    let a = base(&flags);
    mpirun(
        &[(3, with_save(a, &chunked))],
        &[("ROWFLOW_DIST_MAX_CHUNK", "64")],
        LIMIT,
    )
    .ok();
    compare(&whole, &chunked, frozen_exact, TOL);
}

#[test]
fn ranks_without_samples_or_ids_take_part() {
    if !ready() {
        return;
    }
    // Two tables over three ranks, table-wise: rank 2 owns no row and never receives an id.
    // Global batches of 2: rank 0's slice is empty, so it sends no id and computes no loss.
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.toml");
    std::fs::write(&two, "[synthetic]\ntables = 2\n").unwrap();
    let mut flags = FROZEN.to_vec();
    flags.extend([
        "--config",
        two.to_str().unwrap(),
        "--table-rows",
        "1000,700",
    ]);
    flags.extend(["--batch-size", "2"]);
    let want = dir.path().join("single");
    single(&flags, &want);
    let got = dir.path().join("dist");
    let summary = dir.path().join("summary.json");
    flags.extend([
        "--sharding",
        "table-wise",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    distributed(3, &flags, &got);
    compare(&want, &got, frozen_exact, TOL);
    let s = common::cli::read_json(&summary);
    assert_eq!(s["shard_bytes"][2], 0, "rank 2 holds no row: {s}");
    let ids = &s["traffic"]["per_rank"];
    let received: u64 = (0..3)
        .map(|r| ids[r]["sent"]["ids"][2].as_u64().unwrap())
        .sum();
    assert_eq!(received, 0, "rank 2 received ids: {s}");
    assert!(s["test_auc"].as_f64().is_some(), "{s}");
}

#[test]
fn a_killed_hung_or_missing_rank_ends_the_job_with_an_error() {
    if !ready() {
        return;
    }
    let args = base(&["--distributed", "--steps", "40", "--comm-timeout-s", "5"]);
    for (fault, says) in [
        ("kill@1:3", "exited on signal 9"),
        ("hang@2:3", "a peer process died, hung or never started"),
        ("hang@1:0", "a peer process died, hung or never started"),
    ] {
        let job = mpirun(
            &[(3, args.clone())],
            &[("ROWFLOW_DIST_FAULT", fault)],
            LIMIT,
        );
        let err = job.stderr();
        assert!(
            !job.out.status.success(),
            "{fault}: the job succeeded:\n{err}"
        );
        assert_ne!(
            job.out.status.code(),
            Some(124),
            "{fault}: timed out:\n{err}"
        );
        assert!(
            job.took < Duration::from_secs(60),
            "{fault}: {:?}:\n{err}",
            job.took
        );
        assert!(err.contains(says), "{fault}: expected {says:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{fault}:\n{err}");
        eprintln!("{fault}: ended in {:.1} s", job.took.as_secs_f64());
    }
}

#[test]
fn ranks_with_other_settings_are_refused_at_start() {
    if !ready() {
        return;
    }
    let a = base(&["--distributed"]);
    let mut b = a.clone();
    b.extend(strings(&["--lr", "0.2"]));
    let job = mpirun(&[(2, a), (1, b)], &[], LIMIT);
    assert!(!job.out.status.success());
    let err = job.stderr();
    assert!(err.contains("ranks [2] run other settings"), "{err}");
    assert!(job.took < Duration::from_secs(60), "{:?}", job.took);
}

#[test]
fn one_rank_alone_equals_one_process_exactly() {
    // No mpirun (any build): the run is the single process's, every tensor bit for bit.
    let dir = tempfile::tempdir().unwrap();
    let (want, got) = (dir.path().join("single"), dir.path().join("alone"));
    let bags = bags_config(dir.path());
    single(&["--config", &bags], &want);
    let job = alone(&with_save(
        base(&["--distributed", "--config", &bags]),
        &got,
    ))
    .ok();
    assert!(
        job.stderr().contains("without mpirun: one rank"),
        "{}",
        job.stderr()
    );
    compare(&want, &got, |_| true, 0.0);
}

#[test]
fn unsupported_settings_and_stray_flags_are_refused() {
    for (flags, says) in [
        (
            &["--sharding", "row-wise"][..],
            "--sharding shards a distributed run: add --distributed",
        ),
        (
            &["--distributed", "--policy", "lru"],
            "cached placements of a shard",
        ),
        (
            &["--distributed", "--collective", "gloo"],
            "--collective gloo: expected mpi or nccl",
        ),
        (
            &["--distributed", "--comm-timeout-s", "0"],
            "--comm-timeout-s 0 must be at least 1",
        ),
        (
            &["--distributed", "--devices-per-host", "2"],
            "do not fill hosts of --devices-per-host 2",
        ),
    ] {
        let job = alone(&base(flags));
        common::cli::fails_with(&job.out, says);
    }
}

#[test]
fn measured_exchange_bytes_equal_the_simulators() {
    if !ready() {
        return;
    }
    // The sequence workload scaled to 4 ranks (2 hosts × 2): a row-wise plan and a FlexShard
    // plan with replicas, each run for real and simulated on the same batches.
    let dir = tempfile::tempdir().unwrap();
    let workload = strings(&[
        "--hosts",
        "2",
        "--devices-per-host",
        "2",
        "--tables",
        "4",
        "--rows",
        "20000",
        "--dim",
        "16",
        "--samples-per-device",
        "64",
        "--mean-length",
        "20",
        "--steps",
        "3",
    ]);
    for planner in ["row-wise", "flexshard"] {
        let plan = dir.path().join(format!("{planner}.json"));
        let mut a = strings(&["shard", "plan"]);
        a.extend(workload.clone());
        a.extend(strings(&[
            "--memory-budget-factor",
            "4",
            "--objective",
            "all-to-all",
        ]));
        a.extend(strings(&[
            "--save-planner",
            planner,
            "--save",
            plan.to_str().unwrap(),
        ]));
        alone(&a).ok();
        let mut a = strings(&[
            "shard",
            "exchange",
            "--json",
            "--plan",
            plan.to_str().unwrap(),
        ]);
        a.extend(workload.clone());
        let job = mpirun(&[(4, a)], &[], LIMIT).ok();
        let r: serde_json::Value = serde_json::from_str(job.stdout().trim()).unwrap();
        assert_eq!(r["all_to_all_exact"], true, "{planner}: {r}");
        for tier in ["intra_host", "inter_host"] {
            let t = &r[tier];
            let f = |k: &str| t[k].as_f64().unwrap();
            assert!(f("predicted_all_to_all") > 0.0, "{planner} {tier}: {t}");
            assert_eq!(
                f("measured_all_to_all"),
                f("predicted_all_to_all"),
                "{planner} {tier}"
            );
            // The ids: 12 bytes (table, row, bag length) per remote lookup, one row of 64
            // bytes back and one gradient row out: ids = a2a × 12 / (2 × 64).
            let (ids, a2a) = (f("measured_ids") * 128.0, f("measured_all_to_all") * 12.0);
            assert!((ids - a2a).abs() <= 1e-12 * a2a, "{planner} {tier}: {t}");
            let (ring, sim) = (f("ring_model_sync"), f("predicted_sync"));
            assert!(
                (ring - sim).abs() <= 1e-9 * sim.max(1.0),
                "{planner} {tier}: {t}"
            );
            match planner {
                "row-wise" => assert_eq!((sim, f("measured_sync_keys")), (0.0, 0.0)),
                _ => assert!(sim > 0.0 && f("measured_sync_keys") > 0.0, "{t}"),
            }
        }
    }
}
