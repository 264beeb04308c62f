//! The memory the low-precision stores save, pinned: `rowflow bench memory --backend cpu` on its
//! default workload reports INT8 + a 5% cache at D=128 and INT4 + a 1% cache at D=256; bytes
//! allocated do not depend on timing, so the reductions are asserted here exactly as the bench
//! measures them (same configurations, every allocated byte counted: stores, cache slots,
//! directories, transfer buffers).

use rowflow::bench::memory::MemoryBenchOptions;
use rowflow::device::cpu::CpuDevice;
use rowflow::embedding::Policy;
use rowflow::precision::{Precision, Rounding};
use rowflow::train::{open_dataset, train};

fn reduction(dim: usize, precision: Precision, fraction: f64) -> f64 {
    let options = MemoryBenchOptions::default();
    let cfg = options.run_config(
        dim,
        Policy::Lru,
        precision,
        Some(fraction),
        Some(Rounding::Stochastic),
    );
    let data = open_dataset(&cfg).unwrap();
    let s = train(&CpuDevice::new(), &cfg, data.as_ref(), &mut |_| {}).unwrap();
    println!(
        "{precision:?} + {fraction} cache at D={dim}: {} of {} bytes, {:.3}x less",
        s.embedding_bytes, s.fp32_embedding_bytes, s.memory_reduction
    );
    s.memory_reduction
}

#[test]
fn int8_with_a_5_percent_cache_at_d128_stores_3x_less_than_fp32() {
    let r = reduction(128, Precision::Int8, 0.05);
    assert!(r >= 3.0, "INT8 + 5% at D=128: {r:.3}x");
}

#[test]
fn int4_with_a_1_percent_cache_at_d256_stores_7x_less_than_fp32() {
    let r = reduction(256, Precision::Int4, 0.01);
    assert!(r >= 7.0, "INT4 + 1% at D=256: {r:.3}x");
}
