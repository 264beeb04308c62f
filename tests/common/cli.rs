//! Helpers for the tests that run the `rowflow` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn rowflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rowflow"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `rowflow train --backend cpu [--config CONFIG] FLAGS…`.
pub fn train_cpu(config: Option<&Path>, flags: &[&str]) -> Output {
    let mut args = vec!["train", "--backend", "cpu"];
    if let Some(c) = config {
        args.extend(["--config", c.to_str().expect("a UTF-8 path")]);
    }
    args.extend_from_slice(flags);
    rowflow(&args)
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a clean failure: exit code 1, the message on stderr, and no panic.
pub fn fails_with(o: &Output, needle: &str) -> String {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// A small synthetic configuration written to `dir`.
pub fn tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        "batch_size = 64\neval_every = 0\ntable_rows = 1000\n[synthetic]\ntrain_samples = 2000\ntest_samples = 500\n",
    )
    .unwrap();
    path
}

/// A valid Criteo line: label, 13 integers, 26 hex values.
pub fn criteo_line(i: usize) -> String {
    let mut f = vec![(i % 2).to_string()];
    f.extend((0..13).map(|k| ((i * 7 + k) % 50).to_string()));
    f.extend((0..26).map(|c| format!("{:08x}", (i * 31 + c * 7) % 97)));
    f.join("\t")
}

pub fn criteo_file(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("sample.tsv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Backends `rowflow info` reports as available (CPU always; wgpu where an adapter exists).
pub fn available_backends() -> Vec<String> {
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

/// Parses every line of `out` as one JSON value (a `--json` command's rows), naming a bad line.
pub fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The JSON document in the file at `path` (a `--summary-json` output).
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the file was written"))
        .expect("the file is JSON")
}
