//! The wgpu backend's own checks: every shader validates offline (no GPU needed), a broken
//! shader is reported with its file and naga's message, a missing adapter is a clear error, a
//! failed download leaves later ones working, steady training creates no buffers and submits
//! its work in batches, and the host records a step while the device runs the one before.

mod common;

use rowflow::config::RunConfig;
use rowflow::device::wgpu::pipelines::{compile, validate_wgsl};
use rowflow::device::{Device, DeviceError, DeviceExt, KernelId};
use rowflow::embedding::Policy;
use rowflow::train::{open_dataset, train};
use std::path::Path;
use std::process::Command;

#[test]
fn every_shader_file_parses_and_validates_with_naga() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let source = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Err(e) = validate_wgsl(&format!("shaders/{name}"), &source) {
                panic!("{e}");
            }
            checked.push(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    // Every kernel has its shader, and every shader is a kernel (one name, three implementations).
    let mut kernels: Vec<&str> = KernelId::ALL.iter().map(|k| k.name()).collect();
    kernels.sort();
    checked.sort();
    assert_eq!(checked, kernels);
}

#[test]
fn the_embedded_sources_are_the_files() {
    for k in KernelId::ALL {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("shaders/{}.wgsl", k.name()));
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            k.wgsl(),
            "{}",
            k.name()
        );
    }
}

#[test]
fn a_broken_shader_names_its_file_and_the_naga_error() {
    let broken = KernelId::Gemm.wgsl().replacen("fn main", "fn main(", 1);
    let e = validate_wgsl("shaders/gemm.wgsl", &broken).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DeviceError::ShaderCompile { .. }));
    assert!(
        text.starts_with("shaders/gemm.wgsl does not compile:"),
        "{text}"
    );
    assert!(
        text.contains("shaders/gemm.wgsl:"),
        "naga's message points into the file: {text}"
    );
    // A shader that parses but does not validate (an f32 atomic needs a capability we do not ask).
    let invalid = "@group(0) @binding(0) var<storage, read_write> x: atomic<f32>;\n\
                   @compute @workgroup_size(1) fn main() { atomicAdd(&x, 1.0); }";
    let text = validate_wgsl("shaders/bad.wgsl", invalid)
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with("shaders/bad.wgsl does not compile:"),
        "{text}"
    );
}

#[test]
fn a_broken_shader_fails_device_compilation_without_a_panic() {
    let Some(dev) = common::wgpu_device() else {
        return;
    };
    let broken = KernelId::BceLoss
        .wgsl()
        .replace("@compute", "@compute @compute");
    match compile(dev.raw_device(), KernelId::BceLoss, &broken) {
        Err(DeviceError::ShaderCompile { shader, message }) => {
            assert_eq!(shader, "shaders/bce_loss.wgsl");
            assert!(!message.is_empty());
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a broken shader compiled"),
    }
}

#[test]
fn no_matching_adapter_is_a_clear_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_rowflow"))
        .args(["train", "--backend", "wgpu", "--steps", "1"])
        .env("WGPU_ADAPTER_NAME", "no-such-adapter-anywhere")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("backend `wgpu` is unavailable"), "{err}");
    assert!(
        err.contains("no-such-adapter-anywhere") || err.contains("no wgpu adapter"),
        "{err}"
    );
}

#[test]
fn a_failed_download_does_not_poison_later_ones() {
    let Some(dev) = common::wgpu_device() else {
        return;
    };
    let data: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
    let good = dev.alloc(256).unwrap();
    dev.upload(&good, 0, &data).unwrap();
    // Submitted work that fails validation takes its whole batch with it: let the upload land.
    dev.synchronize().unwrap();
    let lost = dev.alloc(256).unwrap();
    lost.destroy();
    let mut out = vec![0u8; 256];
    assert!(
        dev.download(&lost, 0, &mut out).is_err(),
        "a destroyed buffer reads back"
    );
    for _ in 0..3 {
        out.fill(0);
        dev.download(&good, 0, &mut out).unwrap();
        assert_eq!(out, data);
    }
}

#[test]
fn reads_in_flight_cross_buffer_parts_and_a_failed_one_leaves_the_next_working() {
    let Some(dev) = common::wgpu_device_with(rowflow::device::wgpu::WgpuOptions {
        max_buffer_bytes: Some(1024),
        ..Default::default()
    }) else {
        return;
    };
    // 2,000 words in parts of 256 (a readback, like any buffer, is at most one part).
    let words: Vec<u32> = (0..2_000).collect();
    let src = dev.buffer_from_u32(&words).unwrap();
    let mut rb = dev.alloc_readback(1024).unwrap();
    for start in [100, 700, 1_500] {
        dev.read_async(&src, 4 * start as u64, 1024, &mut rb)
            .unwrap();
        let mut got = vec![0u32; 256];
        dev.finish_read(&mut rb, bytemuck::cast_slice_mut(&mut got))
            .unwrap();
        assert_eq!(got, words[start..start + 256], "from word {start}");
    }
    let lost = dev.alloc(256).unwrap();
    lost.destroy();
    dev.read_async(&lost, 0, 256, &mut rb).unwrap();
    assert!(
        dev.finish_read(&mut rb, &mut [0u8; 256]).is_err(),
        "a destroyed buffer reads back"
    );
    for _ in 0..3 {
        dev.read_async(&src, 4000, 1024, &mut rb).unwrap();
        let mut got = vec![0u32; 256];
        dev.finish_read(&mut rb, bytemuck::cast_slice_mut(&mut got))
            .unwrap();
        assert_eq!(got, words[1000..1256]);
    }
}

#[test]
fn the_host_records_a_step_while_the_device_runs_the_one_before() {
    let Some(dev) = common::wgpu_device() else {
        return;
    };
    let mut cfg = RunConfig {
        backend: rowflow::device::BackendChoice::Wgpu,
        steps: Some(40),
        eval_every: 0,
        ..RunConfig::default()
    };
    cfg.synthetic.test_samples = 2000;
    let data = open_dataset(&cfg).unwrap();
    let mut overlapped = Vec::new();
    let summary = train(&dev, &cfg, data.as_ref(), &mut |s| {
        overlapped.push(s.overlapped)
    })
    .unwrap();
    // Step 1 has no step before it; after it, lavapipe runs a step (tens of milliseconds)
    // while the host records the next (a few). Scheduling noise may cost a few steps.
    assert!(!overlapped[0]);
    let share = overlapped.iter().filter(|&&o| o).count() as f64 / overlapped.len() as f64;
    assert!(
        share >= 0.5,
        "host and device overlapped in {share} of steps"
    );
    assert_eq!(summary.overlap_fraction, share);
    // The CPU's kernels finish as they return: nothing is ever in flight.
    let cpu = rowflow::device::cpu::CpuDevice::new();
    let s = train(&cpu, &cfg, data.as_ref(), &mut |s| assert!(!s.overlapped)).unwrap();
    assert_eq!(s.overlap_fraction, 0.0);
}

#[test]
fn training_submits_in_batches_and_creates_no_buffers_once_steady() {
    let Some(dev) = common::wgpu_device() else {
        return;
    };
    // Lookahead's staging sets and victim buffers still grow now and then when a batch fetches
    // more rows than any before (to what it needs plus a quarter), so only its submissions are
    // held to the bound here.
    for policy in [Policy::Lru, Policy::Lookahead] {
        let mut cfg = RunConfig {
            backend: rowflow::device::BackendChoice::Wgpu,
            steps: Some(40),
            batch_size: 64,
            eval_every: 0,
            policy,
            precision: rowflow::precision::Precision::Int8,
            cache_fraction: Some(rowflow::config::Fractions::One(0.25)),
            table_rows: rowflow::config::TableRows::One(2000),
            ..RunConfig::default()
        };
        cfg.synthetic.tables = 2;
        cfg.synthetic.train_samples = 20_000;
        cfg.synthetic.test_samples = 1000;
        cfg.model.dim = 8;
        let data = open_dataset(&cfg).unwrap();
        let mut at = Vec::new();
        train(&dev, &cfg, data.as_ref(), &mut |s| {
            if s.step == 10 || s.step == 30 {
                at.push(dev.stats());
            }
        })
        .unwrap();
        let (a, b) = (at[0], at[1]);
        if policy == Policy::Lru {
            assert_eq!(
                b.buffers_created, a.buffers_created,
                "{policy}: buffers created between steps 10 and 30"
            );
        }
        let per_step = (b.submits - a.submits) as f64 / 20.0;
        // One submission per host round trip: the loss, and per table at most a victims'
        // packed rows and their optimizer state (the write-back stage's downloads, or LRU's
        // own); plus at most one more a step when the parameter ring's 1,024 slots wrap (how
        // often depends on how the stages' timing interleaves). Launches and uploads never
        // submit on their own: they made ~150 submissions a step.
        let tables = cfg.synthetic.tables as f64;
        assert!(
            per_step <= 1.0 + 2.0 * tables + 1.0,
            "{policy}: {per_step} submissions per step"
        );
        eprintln!("{policy}: {per_step} submissions per step");
    }
}

#[test]
fn check_fails_naming_a_deliberately_broken_kernel() {
    // bag_forward that pools one row too few (compiles, runs, and is wrong).
    let broken: &'static str = Box::leak(
        KernelId::BagForward
            .wgsl()
            .replacen("acc += table[", "acc += 0.5 * table[", 1)
            .into_boxed_str(),
    );
    assert_ne!(
        broken,
        KernelId::BagForward.wgsl(),
        "the shader was changed"
    );
    let Some(dev) = common::wgpu_device_with(rowflow::device::wgpu::WgpuOptions {
        replace_shader: Some((KernelId::BagForward, broken)),
        ..Default::default()
    }) else {
        return;
    };
    let mut ck = rowflow::check::Checker::new("wgpu", 11);
    rowflow::check::run(&dev, &mut ck, true);
    let failed: Vec<&str> = ck
        .verdicts()
        .iter()
        .filter(|v| !v.pass)
        .map(|v| v.kernel.as_str())
        .collect();
    assert!(failed.contains(&"bag_forward"), "{failed:?}");
    let bf = ck
        .verdicts()
        .iter()
        .find(|v| v.kernel == "bag_forward")
        .unwrap();
    assert!(
        bf.failure.as_ref().unwrap().starts_with("bag_forward"),
        "{bf:?}"
    );
    // The other kernels still pass (training fails too: it pools through bag_forward).
    for v in ck.verdicts() {
        if !["bag_forward", "training", "lookahead"].contains(&v.kernel.as_str()) {
            assert!(v.pass, "{v:?}");
        }
    }
}
