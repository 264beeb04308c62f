//! The `rowflow` binary: bad input gives a clear error and a failure exit code, never a panic.

mod common;

use common::cli::*;

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

#[test]
fn train_says_how_it_split_the_threads_and_checks_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, summary) = (tiny_config(dir.path()), dir.path().join("s.json"));
    let summary_flag = summary.to_str().unwrap();
    let o = train_cpu(
        Some(&cfg),
        &[
            "--compute-threads",
            "1",
            "--loader-threads",
            "2",
            "--summary-json",
            summary_flag,
        ],
    );
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("threads: 2 preparing batches, 1 computing"),
        "{err}"
    );
    let s = read_json(&summary);
    assert_eq!(
        (&s["compute_threads"], &s["loader_threads"]),
        (&1.into(), &2.into())
    );
    fails_with(
        &train_cpu(Some(&cfg), &["--compute-threads", "0"]),
        "--compute-threads",
    );
}

#[test]
fn profile_kernels_reports_each_kernels_time_on_the_cpu_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, summary) = (tiny_config(dir.path()), dir.path().join("s.json"));
    let summary_flag = summary.to_str().unwrap();
    let o = train_cpu(
        Some(&cfg),
        &["--profile-kernels", "--summary-json", summary_flag],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("ms / step") && out.contains("bag_forward"),
        "{out}"
    );
    let s = read_json(&summary);
    let profile = s["kernel_profile"].as_array().unwrap();
    let steps = s["steps"].as_u64().unwrap();
    let launches = |k: &str| {
        profile
            .iter()
            .find(|p| p["kernel"] == k)
            .map(|p| p["launches"].as_u64().unwrap())
    };
    // One forward per table per step (8 tables), plus the evaluation's.
    assert!(launches("bag_forward").unwrap() >= 8 * steps, "{profile:?}");
    assert!(launches("gemm").unwrap() > steps, "{profile:?}");
    assert!(
        profile
            .iter()
            .all(|p| p["seconds"].as_f64().unwrap() >= 0.0)
    );
    // Without the flag: null.
    let o = train_cpu(Some(&cfg), &["--summary-json", summary_flag]);
    assert!(o.status.success());
    let s = read_json(&summary);
    assert!(s["kernel_profile"].is_null(), "{s}");
}
