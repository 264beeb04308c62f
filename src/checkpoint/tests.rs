use super::*;

fn sample() -> Checkpoint {
    let mut c = Checkpoint {
        step: 1234,
        config: serde_json::json!({"seed": 7, "model": {"dim": 4}}),
        ..Checkpoint::default()
    };
    c.insert(
        "tables.0.weight",
        vec![3, 4],
        Values::F32((0..12).map(|i| i as f32 * 0.5 - 1.0).collect()),
    );
    c.insert("cache.0.slots", vec![5], Values::U32(vec![4, 0, 3, 2, 1]));
    c.insert(
        "store.0.packed",
        vec![6],
        Values::U8(vec![1, 2, 3, 250, 251, 252]),
    );
    c.insert("position", vec![2], Values::I64(vec![-1, i64::MAX]));
    c
}

#[test]
fn a_saved_checkpoint_loads_equal_and_replaces_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    let mut c = sample();
    save(&path, &c).unwrap();
    assert_eq!(load(&path).unwrap(), c);
    c.step += 1;
    c.insert("extra", vec![1], Values::F32(vec![9.0]));
    save(&path, &c).unwrap();
    assert_eq!(load(&path).unwrap(), c);
    assert!(!sibling(&path, ".old").exists() && !sibling(&path, ".tmp").exists());
    let m: Manifest =
        serde_json::from_str(&std::fs::read_to_string(path.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(m.format_version, FORMAT_VERSION);
    assert_eq!(m.step, 1235);
    let names: Vec<&str> = m.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cache.0.slots",
            "extra",
            "position",
            "store.0.packed",
            "tables.0.weight"
        ]
    );
    assert_eq!(m.tensors[4].dtype, "F32");
    assert_eq!(m.tensors[4].shape, [3, 4]);
}

#[test]
fn a_save_killed_midway_leaves_the_previous_checkpoint_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    let c = sample();
    save(&path, &c).unwrap();
    // Killed while writing: a partial DIR.tmp is never read.
    let tmp = sibling(&path, ".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(TENSORS_FILE), b"partial").unwrap();
    assert_eq!(load(&path).unwrap(), c);
    // Killed between the renames: DIR moved to DIR.old, the new one not yet in place.
    std::fs::rename(&path, sibling(&path, ".old")).unwrap();
    assert_eq!(load(&path).unwrap(), c);
    // The next save cleans up and replaces it.
    save(&path, &c).unwrap();
    assert_eq!(load(&path).unwrap(), c);
    assert!(!tmp.exists() && !sibling(&path, ".old").exists());
}

#[test]
fn truncated_foreign_and_mismatched_checkpoints_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    let c = sample();
    save(&path, &c).unwrap();
    // A shape this run does not expect: both shapes and the tensor named.
    let loaded = load(&path).unwrap();
    let e = loaded
        .f32("tables.0.weight", &[3, 8])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tables.0.weight") && e.contains("[3, 4]") && e.contains("[3, 8]"),
        "{e}"
    );
    let e = loaded
        .u32("tables.0.weight", &[3, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("F32") && e.contains("U32"), "{e}");
    let e = loaded.f32("nope", &[1]).unwrap_err().to_string();
    assert!(e.contains("no tensor `nope`"), "{e}");
    assert_eq!(loaded.f32("tables.0.weight", &[3, 4]).unwrap()[1], -0.5);
    // Truncated tensors file.
    let file = path.join(TENSORS_FILE);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(e.contains(TENSORS_FILE) && e.contains("truncated"), "{e}");
    // Another format version.
    save(&path, &c).unwrap();
    let mpath = path.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&mpath)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(&mpath, text).unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.contains("format version 99") && e.contains("reads version 1"),
        "{e}"
    );
    // Not a checkpoint at all.
    let e = load(dir.path()).unwrap_err().to_string();
    assert!(e.contains(MANIFEST_FILE), "{e}");
}
