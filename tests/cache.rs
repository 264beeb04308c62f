//! The cached store: with an FP32 store and nearest rounding, caching must not change the math —
//! LRU, LFU and host-only training give AllOnDevice's weights, at any cache size that holds a
//! batch. Stamped out per backend.

mod common;

use rowflow::data::RowMap;
use rowflow::data::synthetic::{SyntheticDataset, SyntheticOptions};
use rowflow::data::{Batch, Dataset, Schema};
use rowflow::device::Optimizer;
use rowflow::device::cpu::CpuDevice;
use rowflow::device::{Device, DeviceExt};
use rowflow::embedding::{Placement, Policy, Residency};
use rowflow::model::{Dlrm, ModelConfig};
use rowflow::precision::{Precision, Rounding};

const ROWS: [u32; 3] = [300, 2000, 50];
const STEPS: usize = 40;
const BATCH: usize = 64;

fn batches(seed: u64) -> (Schema, Vec<(Batch, Vec<RowMap>)>) {
    let opts = SyntheticOptions {
        tables: ROWS.len(),
        train_samples: (STEPS * BATCH) as u64,
        test_samples: 2,
        drift_samples_per_rank: 50,
        ..Default::default()
    };
    let data = SyntheticDataset::new(&opts, &ROWS, seed).unwrap();
    let mut stream = data.open_train().unwrap();
    let mut out = Vec::new();
    for _ in 0..STEPS {
        let mut b = Batch::new(13, ROWS.len());
        stream.next_batch(BATCH, &mut b).unwrap();
        let maps = b.sparse.iter().map(RowMap::from_bags).collect();
        out.push((b, maps));
    }
    (data.schema().clone(), out)
}

/// Trains on the batches and returns every weight: the tables (through the store and cache),
/// then the dense parameters.
fn train<D: Device>(dev: &D, placement: Placement, optimizer: Optimizer, seed: u64) -> Vec<f32> {
    train_counting(dev, placement, optimizer, seed).0
}

/// [`train`], also returning the evictions and fetched rows counted along the way.
fn train_counting<D: Device>(
    dev: &D,
    placement: Placement,
    optimizer: Optimizer,
    seed: u64,
) -> (Vec<f32>, u64, u64) {
    let (schema, data) = batches(seed);
    let cfg = ModelConfig {
        dim: 8,
        embedding_optimizer: optimizer,
        dense_optimizer: optimizer,
        ..Default::default()
    };
    let mut model = Dlrm::new(dev, &cfg, &schema, placement, BATCH, seed).unwrap();
    let (mut evictions, mut misses) = (0, 0);
    for (b, maps) in &data {
        model
            .train_step(dev, b, maps, Residency::OnDemand, 0.05)
            .unwrap();
        for s in model.embeddings().stats() {
            evictions += s.evictions.unwrap_or(0);
            misses += s.misses;
        }
    }
    let mut w = Vec::new();
    for t in 0..ROWS.len() {
        w.extend(model.embeddings().read_table(dev, t).unwrap());
    }
    for p in model.dense_params() {
        w.extend(dev.read_f32(p.value, 0..p.len).unwrap());
    }
    (w, evictions, misses)
}

/// The largest number of unique rows one batch reads, per table.
fn minimum_cache(seed: u64) -> Vec<u32> {
    let (_, data) = batches(seed);
    (0..ROWS.len())
        .map(|t| {
            data.iter()
                .map(|(_, m)| m[t].unique() as u32)
                .max()
                .unwrap()
        })
        .collect()
}

fn caching_keeps_the_math<D: Device>(dev: &D) {
    let seed = common::seed("caching_keeps_the_math");
    let min = minimum_cache(seed);
    for optimizer in [Optimizer::Adagrad, Optimizer::Sgd] {
        let reference = train(dev, Placement::all_on_device(), optimizer, seed);
        let sizes: [Vec<u32>; 3] = [
            min.clone(),
            min.iter().zip(ROWS).map(|(&m, r)| (m + 7).min(r)).collect(),
            ROWS.to_vec(),
        ];
        for policy in [Policy::Lru, Policy::Lfu, Policy::HostOnly] {
            for cache_rows in &sizes {
                let placement = Placement {
                    policy,
                    precision: Precision::Fp32,
                    rounding: Rounding::Nearest,
                    cache_rows: cache_rows.clone(),
                };
                let (got, evictions, misses) = train_counting(dev, placement, optimizer, seed);
                assert_eq!(got.len(), reference.len());
                // The small caches really evicted and refetched rows (the test is not vacuous).
                if cache_rows == &min || policy == Policy::HostOnly {
                    assert!(
                        evictions > 0 && misses > 0,
                        "{policy:?} {cache_rows:?}: {evictions} evictions"
                    );
                }
                for (i, (a, b)) in got.iter().zip(&reference).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                        "{policy:?} cache {cache_rows:?} {optimizer:?}: weight {i} is {a}, all-on-device has {b}"
                    );
                }
            }
        }
    }
}

fn low_precision_stores_still_learn<D: Device>(dev: &D) {
    // Not equality (rounding loses information) but close: INT8 and INT4 stores with small
    // caches end near the FP32 weights after a few steps, and stochastic rounding is unbiased.
    let seed = common::seed("low_precision");
    let min = minimum_cache(seed);
    let reference = train(dev, Placement::all_on_device(), Optimizer::Sgd, seed);
    for precision in [Precision::Fp16, Precision::Int8, Precision::Int4] {
        for rounding in [Rounding::Nearest, Rounding::Stochastic] {
            let placement = Placement {
                policy: Policy::Lru,
                precision,
                rounding,
                cache_rows: min.clone(),
            };
            let got = train(dev, placement, Optimizer::Sgd, seed);
            let emb = ROWS.iter().map(|&r| r as usize * 8).sum::<usize>();
            let err: f64 = got[..emb]
                .iter()
                .zip(&reference[..emb])
                .map(|(a, b)| ((a - b) as f64).abs())
                .sum::<f64>()
                / emb as f64;
            // Initial values are uniform in ±0.05: an INT4 level is 0.1/15 ≈ 0.007.
            let bound = match precision {
                Precision::Int4 => 0.004,
                Precision::Int8 => 0.0003,
                _ => 0.0001,
            };
            assert!(err < bound, "{precision:?} {rounding:?}: mean |Δw| {err}");
        }
    }
}

macro_rules! cache_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[test]
            fn fp32_store_with_lru_lfu_or_host_only_trains_exactly_like_all_on_device() {
                if let Some(dev) = $make {
                    caching_keeps_the_math(&dev);
                }
            }
            #[test]
            fn low_precision_stores_stay_close_to_fp32_training() {
                if let Some(dev) = $make {
                    low_precision_stores_still_learn(&dev);
                }
            }
        }
    };
}

cache_tests!(cpu, Some(CpuDevice::new()));
cache_tests!(wgpu, common::wgpu_device());
cache_tests!(cuda, common::cuda_device());
