//! `embedding_bytes` is what is really allocated: measured by a counting global allocator (every
//! host vector, hash map and — on the CPU backend — device buffer goes through it) and by the
//! CPU device's own count of live buffers. No formula stands in for either side.

use rowflow::data::RowMap;
use rowflow::data::synthetic::{SyntheticDataset, SyntheticOptions};
use rowflow::data::{Batch, Dataset};
use rowflow::device::Optimizer;
use rowflow::device::cpu::CpuDevice;
use rowflow::device::{Device, OptimizerRule, Pooling};
use rowflow::embedding::{EmbeddingSettings, EmbeddingTables, Placement, Policy, Residency};
use rowflow::precision::{Precision, Rounding};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn embedding_bytes_equals_what_is_really_allocated() {
    let rows = [20_000u32, 3_000, 500];
    let opts = SyntheticOptions {
        tables: 3,
        train_samples: 20 * 128,
        test_samples: 2,
        ..Default::default()
    };
    let data = SyntheticDataset::new(&opts, &rows, 5).unwrap();
    let mut batches = Vec::new();
    let mut stream = data.open_train().unwrap();
    for _ in 0..20 {
        let mut b = Batch::new(13, 3);
        stream.next_batch(128, &mut b).unwrap();
        let maps: Vec<RowMap> = b.sparse.iter().map(RowMap::from_bags).collect();
        batches.push((b, maps));
    }
    let dev = CpuDevice::new();
    for (policy, precision, optimizer) in [
        (Policy::AllOnDevice, Precision::Fp32, Optimizer::Adagrad),
        (Policy::Lru, Precision::Int8, Optimizer::Sgd),
        (Policy::Lfu, Precision::Int4, Optimizer::Adagrad),
        (Policy::HostOnly, Precision::Fp16, Optimizer::Sgd),
    ] {
        let settings = EmbeddingSettings {
            dim: 24,
            pooling: Pooling::Sum,
            rule: OptimizerRule {
                optimizer,
                eps: 1e-8,
                init: 0.0,
            },
            init_scale: 0.05,
        };
        let placement = Placement {
            policy,
            precision,
            rounding: Rounding::Stochastic,
            cache_rows: vec![1000, 600, 300],
        };
        let (host_before, dev_before) = (LIVE.load(Ordering::SeqCst), dev.allocated_bytes());
        let mut emb =
            EmbeddingTables::new(&dev, &rows, settings, placement.clone(), 128, 9).unwrap();
        // The gradient the backward reads and the output evaluation pools into are the
        // model's, not the embeddings'.
        let (grad, pooled) = (
            dev.alloc(4 * 128 * 3 * 24).unwrap(),
            dev.alloc(4 * 128 * 3 * 24).unwrap(),
        );
        let grad_bytes = 2 * 4 * 128 * 3 * 24;
        // Train a little so caches fill, evict and grow their transfer buffers.
        for (b, maps) in &batches {
            emb.prepare_batch(&dev, &b.sparse, maps, Residency::OnDemand)
                .unwrap();
            emb.backward(&dev, &grad, 0.01).unwrap();
            emb.finish_step(&dev).unwrap();
            // Evaluation reads through the cache into its own buffer.
            emb.forward_eval(&dev, &b.sparse, &pooled).unwrap();
        }
        let everything = (LIVE.load(Ordering::SeqCst) - host_before) as u64 - grad_bytes;
        let device = dev.allocated_bytes() - dev_before - grad_bytes;
        // Device side: exactly the buffers the tables report.
        assert_eq!(device, emb.device_bytes(&dev), "{policy:?}: device buffers");
        // Everything: on the CPU backend device buffers are host memory too, so the allocator
        // sees both. What it sees beyond the reported bytes is bookkeeping (the Vec of tables,
        // struct headers, small scratch), a few KiB at most.
        let reported =
            emb.embedding_bytes(&dev) + emb.batch_input_bytes() + emb.batch_scratch_bytes();
        assert!(
            everything >= reported && everything - reported < 16 << 10,
            "{policy:?}: allocator saw {everything} bytes, embedding_bytes + batch buffers = {reported}"
        );
        match policy {
            Policy::AllOnDevice => assert_eq!(emb.host_store_bytes(), None),
            _ => assert!(
                emb.host_store_bytes().unwrap()
                    >= rows
                        .iter()
                        .map(|&r| r as u64 * precision.row_bytes(24) as u64)
                        .sum::<u64>()
            ),
        }
        drop(emb);
        drop((grad, pooled));
        assert_eq!(
            dev.allocated_bytes(),
            dev_before,
            "{policy:?}: every device buffer is freed"
        );
    }
}
