//! Checkpoints of whole runs: a run saved mid-way and resumed equals the run never
//! interrupted (all rows on the device, an LRU cache over an INT8 store, the lookahead pipeline
//! over an INT8 store, a hybrid with DHE features), and bad checkpoints are refused by name or
//! fall back to the previous one.

mod common;

use common::cli::{fails_with, read_json, tiny_config, train_cpu};
use rowflow::config::{Fractions, RunConfig, TableRows};
use rowflow::device::DeviceExt;
use rowflow::device::cpu::CpuDevice;
use rowflow::embedding::Policy;
use rowflow::model::Representation;
use rowflow::precision::{Precision, Rounding};
use rowflow::train::{Faults, TrainSummary, open_dataset, train_model};
use std::ops::ControlFlow;
use std::path::Path;

const STEPS: u64 = 60;

fn config(policy: Policy, representation: Representation) -> RunConfig {
    let mut c = RunConfig {
        steps: Some(STEPS),
        batch_size: 64,
        eval_every: 25,
        hotness_every: 0,
        table_rows: TableRows::One(2000),
        policy,
        precision: Precision::Int8,
        rounding: Rounding::Stochastic,
        cache_fraction: Some(Fractions::One(0.15)),
        lookahead: 4,
        seed: 5,
        ..Default::default()
    };
    if policy == Policy::AllOnDevice {
        (c.precision, c.cache_fraction) = (Precision::Fp32, None);
    }
    if policy == Policy::Lookahead {
        // A cache that holds the window's rows: the planner never shortens its window, whose
        // outcome would depend on when earlier steps finish (resumed or not).
        c.cache_fraction = Some(Fractions::One(0.5));
    }
    c.synthetic.train_samples = 3000;
    c.synthetic.test_samples = 500;
    c.model.representation = representation;
    c.model.dhe.k = 16;
    c
}

/// Trains `cfg` on a fresh CPU device, stopping after step `stop` (the run goes on to the step
/// already launched, as a killed process would not — its checkpoint is what counts); returns
/// the summary and every weight.
fn run(cfg: &RunConfig, stop: u64) -> (TrainSummary, Vec<f32>) {
    let dev = CpuDevice::new();
    let data = open_dataset(cfg).unwrap();
    let mut on_step = |s: &rowflow::telemetry::Snapshot| match s.step >= stop {
        true => ControlFlow::Break(()),
        false => ControlFlow::Continue(()),
    };
    let (summary, model) =
        train_model(&dev, cfg, data.as_ref(), &Faults::default(), &mut on_step).unwrap();
    let mut w = Vec::new();
    for t in 0..model.embeddings().tables() {
        w.extend(model.embeddings().read_table(&dev, t).unwrap());
    }
    for p in model.dense_params() {
        w.extend(dev.read_f32(p.value, 0..p.len).unwrap());
    }
    (summary, w)
}

fn saved_and_resumed_equals_uninterrupted(policy: Policy, representation: Representation) {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let cfg = config(policy, representation);
    let (whole, want) = run(&cfg, u64::MAX);
    assert_eq!(whole.start_step, 0);
    // Saved every 20 steps and "killed" after step 30: the checkpoint holds step 20.
    let mut first = cfg.clone();
    (first.save, first.save_every) = (Some(ckpt.clone()), 20);
    run(&first, 30);
    let mut second = cfg.clone();
    second.resume = Some(ckpt.clone());
    let (resumed, got) = run(&second, u64::MAX);
    assert_eq!(resumed.start_step, 20);
    assert_eq!(resumed.steps, STEPS);
    assert_eq!(got.len(), want.len());
    let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(
        differ, 0,
        "{policy:?} {representation:?}: {differ} weights differ"
    );
    assert_eq!(resumed.test_auc, whole.test_auc);
    assert_eq!(whole.window_shrinks.unwrap_or(0), 0);
    assert_eq!(resumed.window_shrinks.unwrap_or(0), 0);
    assert_eq!(resumed.test_logloss, whole.test_logloss);
}

#[test]
fn all_on_device_resumes_exactly() {
    saved_and_resumed_equals_uninterrupted(Policy::AllOnDevice, Representation::Table);
}

#[test]
fn an_lru_int8_cache_resumes_exactly() {
    saved_and_resumed_equals_uninterrupted(Policy::Lru, Representation::Table);
}

#[test]
fn the_lookahead_pipeline_over_int8_resumes_exactly() {
    saved_and_resumed_equals_uninterrupted(Policy::Lookahead, Representation::Table);
}

#[test]
fn a_hybrid_with_a_cache_resumes_exactly() {
    saved_and_resumed_equals_uninterrupted(Policy::Lru, Representation::Hybrid);
}

fn save(cfg_path: &Path, dir: &Path, flags: &[&str]) {
    let mut args = vec!["--save", dir.to_str().unwrap()];
    args.extend_from_slice(flags);
    let o = train_cpu(Some(cfg_path), &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_save_killed_midway_falls_back_and_bad_checkpoints_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let ckpt = dir.path().join("ck");
    save(&cfg, &ckpt, &["--steps", "10"]);
    // Killed between the renames: the new checkpoint half written in ck.tmp, the previous one
    // moved to ck.old, no ck. The resume finds ck.old.
    let old = dir.path().join("ck.old");
    std::fs::rename(&ckpt, &old).unwrap();
    std::fs::create_dir(dir.path().join("ck.tmp")).unwrap();
    std::fs::write(dir.path().join("ck.tmp/model.safetensors"), b"half").unwrap();
    let summary = dir.path().join("s.json");
    let o = train_cpu(
        Some(&cfg),
        &[
            "--steps",
            "15",
            "--resume",
            ckpt.to_str().unwrap(),
            "--summary-json",
            summary.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_json(&summary)["start_step"], 10);
    std::fs::rename(&old, &ckpt).unwrap();

    let resume = |flags: &[&str]| {
        let mut args = vec!["--steps", "15", "--resume", ckpt.to_str().unwrap()];
        args.extend_from_slice(flags);
        train_cpu(Some(&cfg), &args)
    };
    // Another model size: the run's settings differ from the saved ones.
    fails_with(&resume(&["--table-rows", "500"]), "`table_rows`");
    // Not past the checkpoint's step.
    let o = train_cpu(
        Some(&cfg),
        &["--steps", "10", "--resume", ckpt.to_str().unwrap()],
    );
    fails_with(&o, "must exceed 10");
    // A tensor of another shape: named, with both shapes.
    let tensors = ckpt.join("model.safetensors");
    let bytes = std::fs::read(&tensors).unwrap();
    // The header: its length (u64, little-endian), then JSON; the shape is edited in place.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec())
        .unwrap()
        .replace(
            "\"table.0.weight\":{\"dtype\":\"F32\",\"shape\":[1000,16]",
            "\"table.0.weight\":{\"dtype\":\"F32\",\"shape\":[16,1000]",
        );
    let mut edited = bytes[..8].to_vec();
    edited.extend_from_slice(header.as_bytes());
    edited.extend_from_slice(&bytes[8 + n..]);
    assert_ne!(edited, bytes, "the header names table.0.weight as expected");
    std::fs::write(&tensors, &edited).unwrap();
    let e = fails_with(&resume(&[]), "table.0.weight");
    assert!(e.contains("[16, 1000]") && e.contains("[1000, 16]"), "{e}");
    // A truncated file.
    std::fs::write(&tensors, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&resume(&[]), "model.safetensors");
    // Another format version.
    std::fs::write(&tensors, &bytes).unwrap();
    let manifest = ckpt.join("manifest.json");
    let m = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        m.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .unwrap();
    fails_with(&resume(&[]), "format");
}

#[test]
fn eval_scores_a_saved_model_like_the_run_that_saved_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path());
    let ckpt = dir.path().join("ck");
    let s = dir.path().join("s.json");
    save(
        &cfg,
        &ckpt,
        &["--steps", "12", "--summary-json", s.to_str().unwrap()],
    );
    let trained = read_json(&s);
    let o = common::cli::rowflow(&["eval", "--model", ckpt.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["test_auc"], trained["test_auc"]);
    assert_eq!(v["test_logloss"], trained["test_logloss"]);
    assert_eq!(v["step"], 12);
    fails_with(
        &common::cli::rowflow(&["eval", "--model", dir.path().join("none").to_str().unwrap()]),
        "none",
    );
}
