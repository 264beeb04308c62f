//! Shared test helpers: seeded random inputs (printed seed, `ROWFLOW_SEED` replays), tolerance
//! checks, and the location of the shared real data.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cli;
pub mod mpi;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use std::path::PathBuf;

/// A fresh seed per run (printed so a failure can be replayed), or `ROWFLOW_SEED`.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("ROWFLOW_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    println!("{test}: seed {seed} (replay with ROWFLOW_SEED={seed})");
    seed
}

/// A deterministic generator for `seed`.
pub fn rng(seed: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed)
}

/// `n` values uniform in `[-1, 1)`.
pub fn uniform(rng: &mut Pcg64Mcg, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Asserts `|got - want| <= rel * scale + abs` element-wise, where `scale[i]` is the magnitude
/// of the terms that produced `want[i]` (so summation-order differences are tolerated in
/// proportion to what was summed).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], scale: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (*g as f64 - w).abs();
        assert!(
            err <= rel * s + abs,
            "{what}[{i}]: got {g}, want {w} (error {err:.3e} > {rel:e}·{s:.3e} + {abs:e})"
        );
    }
}

/// The shared real Criteo sample, or `None` (with a printed reason) when it is absent;
/// `ROWFLOW_REQUIRE_SHARED_DATA=1` turns the absence into a failure.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("ROWFLOW_REQUIRE_SHARED_DATA").is_ok_and(|v| v == "1") {
        panic!(
            "{} is missing and ROWFLOW_REQUIRE_SHARED_DATA=1",
            path.display()
        );
    }
    println!(
        "SKIPPED: {} not found (the shared data lives beside the repository)",
        path.display()
    );
    None
}

/// The wgpu device the environment selects (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`), with its
/// adapter printed; `None` with a printed reason when there is none, unless
/// `ROWFLOW_REQUIRE_WGPU=1`, which turns the absence into a failure.
pub fn wgpu_device() -> Option<rowflow::device::wgpu::WgpuDevice> {
    wgpu_device_with(Default::default())
}

/// [`wgpu_device`] with limit overrides (to exercise windows and split buffers on small data).
pub fn wgpu_device_with(
    options: rowflow::device::wgpu::WgpuOptions,
) -> Option<rowflow::device::wgpu::WgpuDevice> {
    use rowflow::device::Device;
    match rowflow::device::wgpu::WgpuDevice::with_options(options) {
        Ok(dev) => {
            println!("adapter: {}", dev.info().name);
            Some(dev)
        }
        Err(e) if std::env::var("ROWFLOW_REQUIRE_WGPU").is_ok_and(|v| v == "1") => {
            panic!("ROWFLOW_REQUIRE_WGPU=1 but no wgpu device: {e}")
        }
        Err(e) => {
            println!("SKIPPED: no wgpu device: {e}");
            None
        }
    }
}

/// GPU 0 through CUDA, with its name printed; `None` with a printed reason when there is no
/// driver or device (the CUDA parity tests then skip: they need a real GPU, and run on the
/// device machine whenever one is lent).
pub fn cuda_device() -> Option<rowflow::device::cuda::CudaDevice> {
    use rowflow::device::Device;
    match rowflow::device::cuda::CudaDevice::new() {
        Ok(dev) => {
            println!("CUDA device: {}", dev.info().name);
            Some(dev)
        }
        Err(e) => {
            println!("SKIPPED: no CUDA device: {e}");
            None
        }
    }
}
