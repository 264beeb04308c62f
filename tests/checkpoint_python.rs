//! A checkpoint opens in PyTorch's world: PyPI's `safetensors` (numpy API) reads
//! `model.safetensors` and finds the tensors, types, shapes and values the manifest lists.
//! The interpreter is `ROWFLOW_PYTHON` (set by `.ci/test`) or `python3`; without `safetensors`
//! the test is skipped with a message, unless `ROWFLOW_REQUIRE_PYTHON=1`.

mod common;

use rowflow::checkpoint::{Checkpoint, TENSORS_FILE, Values, save};
use std::process::Command;

/// The interpreter with PyPI's `safetensors`, or `None` (skipped) where it is not required.
fn python() -> Option<String> {
    let python = std::env::var("ROWFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import safetensors.numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        let msg = format!("{python} has no `safetensors` (pip install safetensors numpy)");
        assert!(std::env::var("ROWFLOW_REQUIRE_PYTHON").is_err(), "{msg}");
        eprintln!("skipped: {msg}");
        return None;
    }
    Some(python)
}

/// Runs `script` with `args`; it must print `ok`.
fn run_ok(python: &str, script: &str, args: &[&str]) {
    let o = Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success() && out.trim() == "ok", "{out}\n{err}");
}

#[test]
fn python_safetensors_reads_a_trained_models_documented_tensors() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::cli::tiny_config(dir.path());
    let ckpt = dir.path().join("ck");
    let o = common::cli::train_cpu(
        Some(&cfg),
        &[
            "--steps",
            "5",
            "--policy",
            "lru",
            "--precision",
            "int8",
            "--cache-rows",
            "2400",
            "--representation",
            "hybrid",
            "--dhe-features",
            "2",
            "--dhe-k",
            "16",
            "--save",
            ckpt.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The README's names and shapes: 8 tables of 1,000 rows, D = 16, bottom 13-64-16, top
    // 64-32-1 after a 9+16-vector interaction, INT8 rows of 16 codes + scale and bias (6 words),
    // a 16-128-16 decoder for feature 2, Adagrad everywhere, caches of 300 slots.
    let script = r#"
import json, sys
from safetensors.numpy import load_file
t = load_file(sys.argv[1] + "/model.safetensors")
m = json.load(open(sys.argv[1] + "/manifest.json"))
assert m["format_version"] == 1 and m["step"] == 5, m
assert sorted(e["name"] for e in m["tensors"]) == sorted(t), "manifest lists every tensor"
def has(name, dtype, shape):
    assert name in t, (name, sorted(t))
    assert t[name].dtype.name == dtype and t[name].shape == shape, (name, t[name].dtype, t[name].shape)
has("bottom.layer0.weight", "float32", (64, 13))
has("bottom.layer0.weight.adagrad", "float32", (64, 13))
has("bottom.layer1.bias", "float32", (16,))
has("top.layer0.weight", "float32", (64, 16 + 9 * 10 // 2))
has("dhe.2.layer0.weight", "float32", (128, 16))
has("dhe.2.layer1.bias", "float32", (16,))
has("table.7.store", "uint32", (1000, 6))
has("table.7.store_adagrad", "float32", (1000,))
has("table.0.cache.weight", "float32", (300, 16))
has("table.0.cache.slot_row", "uint32", (300,))
has("table.0.cache.last_use", "int64", (300,))
has("table.0.cache.dirty", "uint8", (300,))
has("embeddings.tick", "int64", (1,))
assert not any(k.startswith("dhe.0.") for k in t), "only feature 2 has a DHE"
print("ok")
"#;
    run_ok(&python, script, &[ckpt.to_str().unwrap()]);
}

#[test]
fn python_safetensors_reads_a_checkpoint() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    let mut c = Checkpoint {
        step: 5,
        ..Checkpoint::default()
    };
    c.insert(
        "tables.0.weight",
        vec![2, 3],
        Values::F32(vec![0.5, -1.0, 2.0, 3.25, 0.0, -0.125]),
    );
    c.insert(
        "cache.0.slots",
        vec![3],
        Values::U32(vec![7, 0, 4_000_000_000]),
    );
    save(&path, &c).unwrap();
    let script = r#"
import sys
from safetensors.numpy import load_file
t = load_file(sys.argv[1])
w, s = t["tables.0.weight"], t["cache.0.slots"]
assert sorted(t) == ["cache.0.slots", "tables.0.weight"], sorted(t)
assert w.dtype.name == "float32" and w.shape == (2, 3), (w.dtype, w.shape)
assert s.dtype.name == "uint32" and s.shape == (3,), (s.dtype, s.shape)
assert w.tolist() == [[0.5, -1.0, 2.0], [3.25, 0.0, -0.125]], w.tolist()
assert s.tolist() == [7, 0, 4000000000], s.tolist()
print("ok")
"#;
    run_ok(
        &python,
        script,
        &[path.join(TENSORS_FILE).to_str().unwrap()],
    );
}
