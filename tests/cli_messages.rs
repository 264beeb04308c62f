//! Messages that read right: user mistakes name the table, key or file and what to do, never a
//! kernel; an OS error is said once; outputs are checked before training; a ratio reads the
//! right way round.

mod common;

use common::cli::{fails_with, rowflow, text, tiny_config, train_cpu};

#[test]
fn a_cache_too_small_names_the_table_and_the_rows_needed_not_a_kernel() {
    for policy in ["lru", "lookahead"] {
        let o = train_cpu(
            None,
            &["--policy", policy, "--cache-rows", "1", "--steps", "3"],
        );
        let err = fails_with(&o, "table 0: one batch reads");
        assert!(
            err.contains("at least") && err.contains("cache rows for this table"),
            "{policy}: {err}"
        );
        assert!(!err.contains("kernel"), "{policy}: {err}");
    }
}

#[test]
fn a_directory_as_data_says_the_os_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = rowflow(&["train", "--data", dir.path().to_str().unwrap()]);
    let err = fails_with(&o, "cannot read");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    let os = line.rsplit(": ").next().unwrap();
    assert_eq!(line.matches(os).count(), 1, "{line}");
}

#[test]
fn an_unwritable_summary_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let missing = dir.path().join("no-such-dir").join("s.json");
    let o = train_cpu(Some(&cfg), &["--summary-json", missing.to_str().unwrap()]);
    let err = fails_with(&o, "cannot write the summary");
    let (out, _) = text(&o);
    assert!(!out.contains("trained"), "training ran first: {out}");
    assert!(
        !err.contains("teacher AUC"),
        "the data was opened first: {err}"
    );
}

#[test]
fn a_failed_run_leaves_no_empty_summary_behind() {
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("s.json");
    let flags = ["--policy", "lru", "--cache-rows", "1", "--steps", "2"];
    let o = train_cpu(
        None,
        &[&flags[..], &["--summary-json", summary.to_str().unwrap()]].concat(),
    );
    fails_with(&o, "cache rows");
    assert!(
        !summary.exists(),
        "the claimed summary file was left behind"
    );
}

#[test]
fn memory_that_grows_says_more_not_less() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    // All on the device with Adagrad: the accumulators make it more than the FP32 rows.
    let o = train_cpu(Some(&cfg), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let line = out.lines().find(|l| l.starts_with("embeddings:")).unwrap();
    assert!(line.contains("x more than"), "{line}");
    assert!(!line.contains("less"), "{line}");
    // An INT8 store under a 5% cache: less.
    let flags = [
        "--policy",
        "lru",
        "--precision",
        "int8",
        "--table-rows",
        "20000",
    ];
    let o = train_cpu(Some(&cfg), &flags);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let line = out.lines().find(|l| l.starts_with("embeddings:")).unwrap();
    assert!(line.contains("x less than"), "{line}");
}

#[test]
fn flags_override_the_config_file_and_clear_what_they_replace() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        "batch_size = 64\neval_every = 0\nsteps = 7\nlr = 0.2\ntable_rows = 1000\npolicy = \"lru\"\n\
         cache_rows = 500\n[synthetic]\ntrain_samples = 640\ntest_samples = 200\n",
    )
    .unwrap();
    let summary = dir.path().join("s.json");
    let summary_flag = ["--summary-json", summary.to_str().unwrap()];
    let flags = ["--epochs", "2", "--cache-fraction", "0.25", "--seed", "9"];
    let o = train_cpu(Some(&cfg), &[&flags[..], &summary_flag].concat());
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    // --epochs replaced the file's `steps`: 2 epochs of 640 / 64 batches.
    assert_eq!(s["steps"], 20, "{s}");
    // --cache-fraction replaced the file's `cache_rows`.
    assert_eq!(s["cache_fraction"], 0.25, "{s}");
    // Flags win, the file's other keys stay.
    assert_eq!((s["seed"].as_u64(), s["lr"].as_f64()), (Some(9), Some(0.2)));
    assert_eq!(s["policy"], "lru");
}
