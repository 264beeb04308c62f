//! The `rowflow` binary: bad input gives a clear error and a failure exit code, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rowflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rowflow"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a clean failure: exit code 1, the message on stderr, and no panic.
fn fails_with(o: &Output, needle: &str) -> String {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// A small synthetic configuration written to `dir`.
fn tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        "batch_size = 64\neval_every = 0\ntable_rows = 1000\n[synthetic]\ntrain_samples = 2000\ntest_samples = 500\n",
    )
    .unwrap();
    path
}

/// A valid Criteo line: label, 13 integers, 26 hex values.
fn criteo_line(i: usize) -> String {
    let mut f = vec![(i % 2).to_string()];
    f.extend((0..13).map(|k| ((i * 7 + k) % 50).to_string()));
    f.extend((0..26).map(|c| format!("{:08x}", (i * 31 + c * 7) % 97)));
    f.join("\t")
}

fn criteo_file(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("sample.tsv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn train_writes_summary_and_one_telemetry_line_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, telemetry) = (dir.path().join("s.json"), dir.path().join("t.jsonl"));
    let cfg = tiny_config(dir.path());
    let o = rowflow(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--backend",
        "cpu",
        "--summary-json",
        summary.to_str().unwrap(),
        "--telemetry",
        telemetry.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    for key in [
        "backend",
        "steps",
        "samples",
        "samples_per_sec",
        "test_auc",
        "test_logloss",
        "teacher_auc",
        "skipped_lines",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}: {s}");
    }
    assert_eq!(s["backend"], "cpu");
    assert_eq!(s["steps"], 2000 / 64);
    assert_eq!(s["skipped_lines"], 0);
    assert!(s["teacher_auc"].as_f64().is_some());
    let snaps = rowflow::telemetry::read_jsonl(&telemetry).unwrap();
    assert_eq!(snaps.len(), 2000 / 64);
    assert!(
        snaps
            .iter()
            .enumerate()
            .all(|(i, s)| s.schema == 1 && s.step == i as u64 + 1)
    );
    assert!(
        snaps.last().unwrap().test_auc.is_some(),
        "the last step evaluates"
    );
    assert!(
        snaps[0].hotness.is_none() && snaps[0].link_gbps.is_none(),
        "absent fields are null"
    );
}

#[test]
fn malformed_line_fails_before_training_with_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..50).map(criteo_line).collect();
    lines[6] = lines[6]
        .replacen("\t", "\tx", 1)
        .replacen("\tx", "\t4.5x", 1); // I1 = "4.5x…"
    let path = criteo_file(dir.path(), &lines);
    let o = rowflow(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        path.to_str().unwrap(),
        "--batch-size",
        "8",
    ]);
    let err = fails_with(
        &o,
        &format!("{}:7: field I1: expected an integer", path.display()),
    );
    assert!(!err.contains("step"), "no training started: {err}");
}

#[test]
fn skip_bad_lines_trains_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..60).map(criteo_line).collect();
    lines[3] = "2\tbad".into();
    lines[40] = lines[40].replace("\t0000", "\tzz00");
    let path = criteo_file(dir.path(), &lines);
    let summary = dir.path().join("s.json");
    let o = rowflow(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        path.to_str().unwrap(),
        "--batch-size",
        "8",
        "--skip-bad-lines",
        "--summary-json",
        summary.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out} {err}");
    assert!(err.contains("skipped 2 malformed lines"), "{err}");
    assert!(err.contains(&format!("{}:4:", path.display())), "{err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["skipped_lines"], 2);
    assert_eq!(s["teacher_auc"], serde_json::Value::Null);
    assert_eq!(s["test_samples"], 12, "20% of the 58 valid lines");
}

#[test]
fn batch_size_zero_names_the_batch_size() {
    fails_with(
        &rowflow(&["train", "--batch-size", "0"]),
        "batch_size (--batch-size)",
    );
}

#[test]
fn out_of_range_values_name_their_key() {
    fails_with(&rowflow(&["train", "--lr", "-1"]), "invalid lr (--lr)");
    fails_with(
        &rowflow(&["train", "--test-fraction", "1.5"]),
        "test_fraction (--test-fraction)",
    );
    fails_with(&rowflow(&["train", "--table-rows", "10,20"]), "table_rows");
}

#[test]
fn missing_and_empty_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.tsv");
    fails_with(
        &rowflow(&[
            "train",
            "--backend",
            "cpu",
            "--data",
            missing.to_str().unwrap(),
        ]),
        "cannot read",
    );
    let empty = dir.path().join("empty.tsv");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        &rowflow(&[
            "train",
            "--backend",
            "cpu",
            "--data",
            empty.to_str().unwrap(),
        ]),
        "empty",
    );
}

#[test]
fn bad_config_file_points_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "lr = 0.1\n[model]\ndimension = 8\n").unwrap();
    fails_with(
        &rowflow(&["train", "--config", path.to_str().unwrap()]),
        &format!("{}:3:", path.display()),
    );
}

#[test]
fn batch_larger_than_the_data_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    fails_with(
        &rowflow(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--batch-size",
            "5000",
        ]),
        "lower --batch-size",
    );
}

#[test]
fn cuda_without_a_gpu_fails_cleanly_and_auto_falls_through() {
    let info: serde_json::Value =
        serde_json::from_str(text(&rowflow(&["info", "--json"])).0.trim()).unwrap();
    let cuda = info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "cuda")
        .cloned()
        .unwrap();
    if cuda["available"] == true {
        println!("SKIPPED: a CUDA device is present ({})", cuda["detail"]);
        return;
    }
    // The reason is in `info`, and `auto` picked something else.
    assert!(
        cuda["detail"].as_str().is_some_and(|d| d.contains("CUDA")),
        "{cuda}"
    );
    assert_ne!(info["auto"], "cuda");
    for args in [
        &["train", "--backend", "cuda", "--steps", "1"][..],
        &["bench", "kernels", "--backend", "cuda"][..],
    ] {
        let err = fails_with(&rowflow(args), "backend `cuda` is unavailable");
        assert!(
            err.contains("CUDA"),
            "the message says what is missing: {err}"
        );
    }
}

#[test]
fn info_lists_the_backends_the_adapters_and_what_auto_picks() {
    let o = rowflow(&["info", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 3);
    let cpu = backends.iter().find(|b| b["backend"] == "cpu").unwrap();
    assert_eq!(cpu["available"], true);
    for b in backends {
        assert!(
            b["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "every backend says why: {b}"
        );
    }
    assert!(["cpu", "wgpu", "cuda"].contains(&v["auto"].as_str().unwrap()));
    let adapters = v["wgpu_adapters"].as_array().unwrap();
    assert!(adapters.iter().filter(|a| a["selected"] == true).count() <= 1);
    for a in adapters {
        assert!(
            a["max_storage_buffer_binding_size"].as_u64().unwrap() > 0,
            "{a}"
        );
    }
    // A software adapter is never auto's pick: it is slower than the CPU backend.
    let wgpu = backends.iter().find(|b| b["backend"] == "wgpu").unwrap();
    if adapters
        .iter()
        .any(|a| a["selected"] == true && a["software"] == true)
    {
        assert_eq!(wgpu["auto_eligible"], false);
        assert_ne!(v["auto"], "wgpu");
    }
}

/// Backends `rowflow info` reports as available (CPU always; wgpu where an adapter exists).
fn available_backends() -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(text(&rowflow(&["info", "--json"])).0.trim()).unwrap();
    let list: Vec<String> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["available"] == true)
        .map(|b| b["backend"].as_str().unwrap().to_string())
        .collect();
    if !list.iter().any(|b| b == "wgpu") {
        if std::env::var("ROWFLOW_REQUIRE_WGPU").is_ok_and(|v| v == "1") {
            panic!("ROWFLOW_REQUIRE_WGPU=1 but rowflow info finds no wgpu adapter");
        }
        println!("SKIPPED for wgpu: no adapter");
    }
    list
}

#[test]
fn bench_kernels_json_has_every_kernel_on_every_backend() {
    for backend in available_backends() {
        let o = rowflow(&[
            "bench",
            "kernels",
            "--backend",
            &backend,
            "--json",
            "--tables",
            "2",
            "--rows",
            "5000",
            "--dim",
            "16",
            "--batch-size",
            "128",
            "--pooling",
            "4",
            "--reps",
            "3",
            "--copy-mib",
            "8",
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{backend}: {err}");
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let names: Vec<&str> = rows.iter().map(|r| r["kernel"].as_str().unwrap()).collect();
        for k in [
            "copy",
            "bag_forward",
            "bag_backward_sgd",
            "bag_backward_adagrad",
            "gemm",
            "bias_act_forward",
            "bias_act_backward",
            "interaction_forward",
            "interaction_backward",
            "bce_loss",
            "dense_update",
            "embedding_step_sgd",
        ] {
            assert!(names.contains(&k), "{backend}: {k} missing from {names:?}");
        }
        for r in &rows {
            assert_eq!(r["backend"], backend.as_str());
            let ok = r["seconds"].as_f64().unwrap() > 0.0 && r["bytes"].as_u64().unwrap() > 0;
            assert!(ok && r["gbps"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    fails_with(
        &rowflow(&["bench", "kernels", "--backend", "cpu", "--reps", "1"]),
        "--reps",
    );
}

#[test]
fn wgpu_and_cpu_training_agree() {
    if !available_backends().iter().any(|b| b == "wgpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let mut summaries = Vec::new();
    for backend in ["cpu", "wgpu"] {
        let path = dir.path().join(format!("{backend}.json"));
        let o = rowflow(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--backend",
            backend,
            "--summary-json",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(s["backend"], backend);
        summaries.push(s);
    }
    let f = |s: &serde_json::Value, k: &str| s[k].as_f64().unwrap();
    assert!((f(&summaries[0], "test_auc") - f(&summaries[1], "test_auc")).abs() < 0.002);
    let (a, b) = (
        f(&summaries[0], "test_logloss"),
        f(&summaries[1], "test_logloss"),
    );
    assert!((a - b).abs() < 1e-3 * a, "log loss {a} vs {b}");
}

#[test]
fn placement_flags_are_checked_and_named() {
    fails_with(&rowflow(&["train", "--precision", "int8"]), "--policy lru");
    fails_with(
        &rowflow(&["train", "--policy", "host-only", "--cache-fraction", "0.1"]),
        "host-only has no cache",
    );
    fails_with(
        &rowflow(&["train", "--policy", "lru", "--cache-fraction", "1.5"]),
        "cache_fraction (--cache-fraction)",
    );
    fails_with(
        &rowflow(&["train", "--policy", "lru", "--cache-fraction", "0"]),
        "cache_fraction (--cache-fraction)",
    );
    fails_with(
        &rowflow(&["train", "--cache-rows", "0", "--policy", "lru"]),
        "cache_rows (--cache-rows)",
    );
}

#[test]
fn a_cached_int8_run_reports_memory_traffic_and_hotness() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let (summary, telemetry) = (dir.path().join("s.json"), dir.path().join("t.jsonl"));
    let o = rowflow(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--backend",
        "cpu",
        "--policy",
        "lru",
        "--precision",
        "int8",
        "--cache-fraction",
        "0.1",
        "--table-rows",
        "5000",
        "--rounding",
        "stochastic",
        "--summary-json",
        summary.to_str().unwrap(),
        "--telemetry",
        telemetry.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["policy"], "lru");
    assert_eq!(s["precision"], "int8");
    assert_eq!(s["rounding"], "stochastic");
    let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {s}"));
    assert!((f("cache_fraction") - 0.1).abs() < 0.01);
    assert!(f("memory_reduction") > 1.0 && f("embedding_bytes") < f("fp32_embedding_bytes"));
    assert!((0.0..1.0).contains(&f("hit_rate")) && f("bytes_h2d") > 0.0 && f("bytes_d2h") > 0.0);
    let snaps = rowflow::telemetry::read_jsonl(&telemetry).unwrap();
    let last = snaps.last().unwrap();
    assert!(last.total.evictions.is_some() && last.memory.host_store_bytes.is_some());
    assert!(last.cumulative.misses > 0 && last.cumulative.hits > 0);
    let hot = last
        .hotness
        .as_ref()
        .expect("the last step reports hotness");
    assert_eq!(hot.len(), 8);
    assert!(!hot[0].top.is_empty() && !hot[0].histogram.is_empty());
    // The hottest rows of a Zipf table are in an LRU cache holding 10% of it.
    assert!(hot.iter().all(|h| h.top[0].cached), "{:?}", hot[0].top);
}

#[test]
fn bench_memory_reports_every_configuration() {
    let o = rowflow(&[
        "bench",
        "memory",
        "--backend",
        "cpu",
        "--json",
        "--dims",
        "32",
        "--fractions",
        "0.05",
        "--table-rows",
        "5000",
        "--train-samples",
        "3000",
        "--test-samples",
        "1000",
        "--batch-size",
        "32",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Baseline + int8/int4 × 1 fraction × 2 roundings + fp16 and 10% extras.
    assert_eq!(rows.len(), 1 + 4 + 2, "{out}");
    let keys = [
        "data",
        "dim",
        "precision",
        "cache_fraction",
        "rounding",
        "memory_reduction",
        "test_auc",
        "delta_auc",
        "test_logloss",
        "hit_rate",
        "bytes_per_sample",
    ];
    for r in &rows {
        for k in keys {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
    }
    assert_eq!(rows[0]["precision"], "fp32");
    assert_eq!(rows[0]["cache_fraction"], serde_json::Value::Null);
    assert_eq!(rows[0]["delta_auc"], 0.0);
    assert!(
        rows[1..]
            .iter()
            .all(|r| r["memory_reduction"].as_f64().unwrap() > 1.0)
    );
}

#[test]
fn a_lookahead_run_counts_train_hits_and_labels_its_simulated_link() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let (summary, telemetry) = (dir.path().join("s.json"), dir.path().join("t.jsonl"));
    let o = rowflow(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--backend",
        "cpu",
        "--policy",
        "lookahead",
        "--lookahead",
        "4",
        "--link-gbps",
        "16",
        "--precision",
        "int8",
        "--cache-fraction",
        "0.3",
        "--table-rows",
        "5000",
        "--summary-json",
        summary.to_str().unwrap(),
        "--telemetry",
        telemetry.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("simulated link 16 GB/s"), "{out}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["policy"], "lookahead");
    assert_eq!(s["lookahead"], 4);
    assert_eq!(s["link_gbps"], 16.0);
    assert_eq!(s["train_hit_rate"], 1.0, "{s}");
    assert!(s["window_shrinks"].as_u64().is_some(), "{s}");
    let idle = s["device_idle_fraction"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&idle), "{s}");
    // Planner-level misses happen (the cache starts cold); the train stage never misses.
    assert!(s["hit_rate"].as_f64().unwrap() < 1.0, "{s}");
    let snaps = rowflow::telemetry::read_jsonl(&telemetry).unwrap();
    let last = snaps.last().unwrap();
    assert_eq!(last.link_gbps, Some(16.0));
    let stages: Vec<&str> = last.stages.iter().map(|t| t.stage.as_str()).collect();
    for stage in ["loader", "planner", "stager", "device", "writeback"] {
        assert!(stages.contains(&stage), "{stage} missing from {stages:?}");
    }
    // Without the flag the link is off and says nothing.
    let o = rowflow(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--backend",
        "cpu",
        "--policy",
        "lookahead",
        "--cache-fraction",
        "0.3",
        "--table-rows",
        "5000",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!out.contains("simulated link"), "{out}");
    fails_with(
        &rowflow(&["train", "--policy", "lookahead", "--lookahead", "0"]),
        "lookahead (--lookahead)",
    );
}

#[test]
fn bench_pipeline_reports_every_policy_window_and_link() {
    let o = rowflow(&[
        "bench",
        "pipeline",
        "--backend",
        "cpu",
        "--json",
        "--tables",
        "2",
        "--rows",
        "20000",
        "--dim",
        "8",
        "--batch-size",
        "64",
        "--pooling",
        "4",
        "--fractions",
        "0.05",
        "--windows",
        "1,4",
        "--steps",
        "6",
        "--warmup",
        "2",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Per link (none, 16 GB/s): 2 windows + lru + lfu + host-only + all-on-device.
    assert_eq!(rows.len(), 2 * 6, "{out}");
    let keys = [
        "policy",
        "cache_fraction",
        "lookahead",
        "link_gbps",
        "samples_per_sec",
        "train_hit_rate",
        "device_idle_fraction",
        "window_shrinks",
        "step_seconds_mean",
        "busiest_stage",
        "busiest_stage_seconds_mean",
    ];
    for r in &rows {
        for k in keys {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        assert!(r["samples_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        let link = &r["link_gbps"];
        assert!(link.is_null() || link == 16.0, "{r}");
        if r["policy"] == "lookahead" {
            assert_eq!(r["train_hit_rate"], 1.0, "{r}");
            assert!(r["lookahead"].as_u64().is_some(), "{r}");
        } else {
            assert!(r["lookahead"].is_null(), "{r}");
        }
    }
    assert_eq!(rows.iter().filter(|r| r["link_gbps"] == 16.0).count(), 6);
    assert!(
        rows.iter()
            .any(|r| r["policy"] == "lru" && r["train_hit_rate"].as_f64().unwrap() < 1.0)
    );
    // The table form says which rows ran on a simulated link.
    let o = rowflow(&[
        "bench",
        "pipeline",
        "--backend",
        "cpu",
        "--tables",
        "1",
        "--rows",
        "5000",
        "--dim",
        "8",
        "--batch-size",
        "32",
        "--pooling",
        "2",
        "--fractions",
        "0.1",
        "--windows",
        "2",
        "--policies",
        "lookahead",
        "--steps",
        "3",
        "--warmup",
        "1",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("simulated link 16 GB/s"), "{out}");
}

#[test]
fn multi_hot_criteo_fields_train_as_bags_and_bad_names_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // C3 holds three values per line (field 0 is the label, 1..=13 the integers).
    let lines: Vec<String> = (0..60)
        .map(|i| {
            let mut f: Vec<String> = criteo_line(i).split('\t').map(String::from).collect();
            f[1 + 13 + 2] = format!("{:08x},{:08x},{:08x}", i % 7, i % 5 + 10, i % 3 + 20);
            f.join("\t")
        })
        .collect();
    let path = criteo_file(dir.path(), &lines);
    let p = path.to_str().unwrap();
    let telemetry = dir.path().join("t.jsonl");
    let base = [
        "train",
        "--backend",
        "cpu",
        "--data",
        p,
        "--batch-size",
        "8",
    ];
    // Read as one-hot, the list is not a hex value: the line is malformed.
    fails_with(&rowflow(&base), ":1:");
    let mut args = base.to_vec();
    args.extend([
        "--multi-hot",
        "C3",
        "--telemetry",
        telemetry.to_str().unwrap(),
    ]);
    let o = rowflow(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out} {err}");
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&telemetry)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let tables = first["tables"].as_array().unwrap();
    assert_eq!(tables[2]["lookups"], 24, "8 samples × 3 values: {first}");
    assert_eq!(tables[3]["lookups"], 8, "C4 stays one-hot");
    for bad in ["C27", "C0", "x3"] {
        let mut args = base.to_vec();
        args.extend(["--multi-hot", bad]);
        let err = fails_with(&rowflow(&args), "invalid multi_hot (--multi-hot)");
        assert!(err.contains(bad), "{err}");
    }
    fails_with(
        &rowflow(&["train", "--multi-hot", "C3", "--steps", "1"]),
        "synthetic generator has none",
    );
}
