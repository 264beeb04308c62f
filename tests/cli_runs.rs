//! The `rowflow` binary's benchmarks and its cached and lookahead runs: every JSON field the
//! issues name, on every backend present.

mod common;

use common::cli::*;

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
        let rows = json_lines(&out);
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
fn bench_data_json_measures_each_dataset_on_each_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..400).map(criteo_line).collect();
    let file = criteo_file(dir.path(), &lines);
    let o = rowflow(&[
        "bench",
        "data",
        "--json",
        "--steps",
        "3",
        "--threads",
        "1,3",
        "--criteo",
        file.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows = json_lines(&out);
    let key = |r: &serde_json::Value| {
        (
            r["dataset"].as_str().unwrap().to_string(),
            r["threads"].as_u64().unwrap(),
        )
    };
    let got: Vec<_> = rows.iter().map(key).collect();
    let path = file.display().to_string();
    let want: Vec<(String, u64)> = ["synthetic-default", "large", path.as_str()]
        .iter()
        .flat_map(|d| [(d.to_string(), 1), (d.to_string(), 3)])
        .collect();
    assert_eq!(got, want);
    for r in &rows {
        assert_eq!(r["steps"], 3);
        assert!(r["samples_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    fails_with(&rowflow(&["bench", "data", "--threads", "0"]), "--threads");
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
    let rows = json_lines(&out);
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
    let rows = json_lines(&out);
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
