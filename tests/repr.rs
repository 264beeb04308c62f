//! Representations from the command line: table, DHE, hybrid and select runs on synthetic and
//! Criteo data, what their summaries count, and the errors for bad feature lists.

mod common;

use common::cli::{criteo_file, criteo_line, fails_with, read_json, tiny_config, train_cpu};

/// A `train` run's summary with `flags` over the tiny config (small DHEs).
fn summary(dir: &std::path::Path, name: &str, flags: &[&str]) -> serde_json::Value {
    let cfg = tiny_config(dir);
    let out = dir.join(format!("{name}.json"));
    let mut args = vec!["--steps", "20", "--dhe-k", "16", "--summary-json"];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(flags);
    let o = train_cpu(Some(&cfg), &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_json(&out)
}

#[test]
fn each_representation_trains_and_counts_its_parameters_and_flops() {
    let dir = tempfile::tempdir().unwrap();
    let table = summary(dir.path(), "table", &[]);
    let hybrid = summary(dir.path(), "hybrid", &["--representation", "hybrid"]);
    let dhe = summary(dir.path(), "dhe", &["--representation", "dhe"]);
    let select = summary(
        dir.path(),
        "select",
        &["--representation", "select", "--dhe-features", "1,3"],
    );
    // 8 tables of 1,000 rows of 16 values; a decoder 16-128-16 per DHE feature.
    let rows_bytes = 8 * 1000 * 16 * 4;
    let decoder = 16 * 128 + 128 + 128 * 16 + 16;
    let dense = table["parameter_bytes"].as_u64().unwrap() - rows_bytes;
    assert_eq!(table["representation"], "table");
    assert_eq!(table["dhe_parameters"], 0);
    assert_eq!(
        hybrid["dhe_features"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7])
    );
    assert_eq!(hybrid["dhe_parameters"], 8 * decoder);
    assert_eq!(dhe["dhe_parameters"], 8 * decoder);
    assert_eq!(select["dhe_features"], serde_json::json!([1, 3]));
    assert_eq!(select["dhe_parameters"], 2 * decoder);
    // The top MLP's input widens with the vectors (8 → 16 for hybrid), so only DHE-only
    // representations can be compared to the table exactly: no rows, same dense layers.
    assert_eq!(
        dhe["parameter_bytes"].as_u64().unwrap(),
        dense + 4 * 8 * decoder
    );
    assert_eq!(
        select["parameter_bytes"].as_u64().unwrap(),
        dense + 6 * 1000 * 16 * 4 + 4 * 2 * decoder
    );
    let flops = |v: &serde_json::Value| v["flops_per_sample"].as_f64().unwrap();
    assert!(
        flops(&dhe) > 10.0 * flops(&table),
        "a DHE computes its vectors"
    );
    assert!(flops(&hybrid) > flops(&dhe));
    for s in [&table, &hybrid, &dhe, &select] {
        let auc = s["test_auc"].as_f64().unwrap();
        assert!(auc > 0.5 && auc < 1.0, "{s}");
    }
}

#[test]
fn a_criteo_run_hashes_raw_values_with_a_cached_hybrid() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..300).map(criteo_line).collect();
    let data = criteo_file(dir.path(), &lines);
    let out = dir.path().join("s.json");
    let o = train_cpu(
        None,
        &[
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "10",
            "--batch-size",
            "16",
            "--table-rows",
            "50",
            "--policy",
            "lru",
            "--precision",
            "int8",
            "--cache-fraction",
            "0.5",
            "--representation",
            "hybrid",
            "--dhe-features",
            "0,25",
            "--dhe-k",
            "8",
            "--summary-json",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&out);
    assert_eq!(s["dhe_features"], serde_json::json!([0, 25]));
    assert!(s["test_auc"].is_number(), "{s}");
    assert!(s["hit_rate"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_feature_lists_and_sizes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let run = |flags: &[&str]| train_cpu(Some(&cfg), flags);
    fails_with(
        &run(&["--representation", "select"]),
        "needs the DHE features: --dhe-features",
    );
    fails_with(
        &run(&["--representation", "select", "--dhe-features", "8"]),
        "numbered 0 to 7",
    );
    fails_with(
        &run(&["--dhe-features", "1"]),
        "applies to `select` and `hybrid`",
    );
    fails_with(
        &run(&["--representation", "dhe", "--dhe-k", "1"]),
        "--dhe-k",
    );
    let o = run(&["--representation", "sideways"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[possible values: table, dhe, hybrid, select]"),
        "{err}"
    );
}
