//! A checkpoint opens in PyTorch's world: PyPI's `safetensors` (numpy API) reads
//! `model.safetensors` and finds the tensors, types, shapes and values the manifest lists.
//! The interpreter is `ROWFLOW_PYTHON` (set by `.ci/test`) or `python3`; without `safetensors`
//! the test is skipped with a message, unless `ROWFLOW_REQUIRE_PYTHON=1`.

use rowflow::checkpoint::{Checkpoint, TENSORS_FILE, Values, save};
use std::process::Command;

#[test]
fn python_safetensors_reads_a_checkpoint() {
    let python = std::env::var("ROWFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import safetensors.numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        let msg = format!("{python} has no `safetensors` (pip install safetensors numpy)");
        assert!(std::env::var("ROWFLOW_REQUIRE_PYTHON").is_err(), "{msg}");
        eprintln!("skipped: {msg}");
        return;
    }
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
    let o = Command::new(&python)
        .args(["-c", script, path.join(TENSORS_FILE).to_str().unwrap()])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success() && out.trim() == "ok", "{out}\n{err}");
}
