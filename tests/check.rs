//! `rowflow check` as a user runs it: the CPU and wgpu (lavapipe in CI) pass, the output is one
//! JSON object per kernel, and an absent backend is listed with the reason.

mod common;

use std::process::Command;

fn check(backend: &str) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rowflow"))
        .args([
            "check",
            "--backend",
            backend,
            "--quick",
            "--json",
            "--seed",
            "5",
        ])
        .output()
        .unwrap();
    let lines = common::cli::json_lines(&String::from_utf8_lossy(&o.stdout));
    (
        o.status.code(),
        lines,
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn kernels(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines.iter().filter(|v| v.get("kernel").is_some()).collect()
}

#[test]
fn check_passes_on_the_cpu_with_one_line_per_kernel() {
    let (code, lines, err) = check("cpu");
    assert_eq!(code, Some(0), "{err}");
    let k = kernels(&lines);
    for name in [
        "bag_forward",
        "gemm",
        "quantize_rows+dequantize_rows",
        "training",
        "lookahead",
    ] {
        assert!(k.iter().any(|v| v["kernel"] == name), "no {name} line");
    }
    assert!(k.iter().all(|v| v["pass"] == true && v["backend"] == "cpu"));
}

#[test]
fn check_passes_on_wgpu() {
    if common::wgpu_device().is_none() {
        return;
    }
    let (code, lines, err) = check("wgpu");
    assert_eq!(code, Some(0), "{err}");
    let k = kernels(&lines);
    assert!(k.len() >= 14, "{lines:?}");
    assert!(
        k.iter()
            .all(|v| v["pass"] == true && v["backend"] == "wgpu")
    );
    assert!(lines[0]["device"].as_str().is_some_and(|d| !d.is_empty()));
}

#[test]
fn check_all_lists_an_absent_backend_with_the_reason() {
    let (code, lines, err) = check("all");
    assert_eq!(code, Some(0), "{err}");
    for v in lines.iter().filter(|v| v["available"] == false) {
        assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    }
    assert!(
        lines
            .iter()
            .any(|v| v["backend"] == "cpu" && v["available"] == true)
    );
}
