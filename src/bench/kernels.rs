//! `rowflow bench kernels`: every kernel of the `Device` trait at a realistic size, plus a plain
//! memory copy (the bandwidth ceiling) and the whole embedding part of a training step.
//!
//! Each row is the median of `--reps` timed runs after two warm-up runs; every run ends with
//! `synchronize`. `bytes` counts the logical traffic of one run (documented per kernel below),
//! so `gbps = bytes / seconds / 1e9` compares kernels with the copy.

use super::kernels_dense::dense_rows;
use super::{BenchRow, Workload, median, print_rows, time_with};
use crate::data::RowMap;
use crate::data::{Batch, Dataset};
use crate::device::{Device, DeviceError, DeviceExt, Optimizer, OptimizerRule, Pooling};
use crate::embedding::{EmbeddingError, EmbeddingSettings, EmbeddingTables, Placement, Residency};
use rayon::prelude::*;
use std::time::Instant;

/// Options of `rowflow bench kernels`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelBenchOptions {
    /// One JSON line per kernel instead of a table.
    pub json: bool,
    /// The lookups the embedding kernels run on (their sizes set the dense kernels' too).
    pub workload: Workload,
    /// Timed runs per kernel (the median is reported).
    pub reps: usize,
    /// Size of the copied buffer for the `copy` row, in MiB.
    pub copy_mib: usize,
}

impl Default for KernelBenchOptions {
    fn default() -> Self {
        KernelBenchOptions {
            json: false,
            workload: Workload {
                tables: 8,
                rows: 1_000_000,
                dim: 64,
                batch_size: 2048,
                pooling: 20,
                alpha: 1.05,
                seed: 1,
            },
            reps: 15,
            copy_mib: 512,
        }
    }
}

/// Validates the options, with messages naming the flag.
fn check(args: &KernelBenchOptions) -> Result<(), anyhow::Error> {
    args.workload.check()?;
    if args.reps < 3 {
        anyhow::bail!("--reps is out of range: expected at least 3");
    }
    if args.copy_mib == 0 {
        anyhow::bail!("--copy-mib is out of range: expected at least 1");
    }
    Ok(())
}

/// Runs the benchmark on `dev` and prints a table or JSON lines; returns the rows.
pub fn run_kernel_bench<D: Device>(
    dev: &D,
    args: &KernelBenchOptions,
) -> Result<Vec<BenchRow>, anyhow::Error> {
    check(args)?;
    let w = &args.workload;
    let (t, e, d, b, l) = (w.tables, w.rows, w.dim, w.batch_size, w.pooling);
    let backend = dev.info().backend;
    let mut rows = Vec::new();
    let mut push = |kernel: &str, seconds: f64, bytes: f64| {
        rows.push(BenchRow::new(kernel, backend, seconds, bytes));
    };

    // copy: the bandwidth ceiling of this machine (read + written bytes). Its runs alternate
    // with bag_forward's below, so both medians come from the same stretch of time: memory
    // bandwidth on a shared machine drifts from one minute to the next.
    let copy_bytes = (args.copy_mib as u64) << 20;
    let (copy_src, copy_dst) = (dev.alloc(copy_bytes)?, dev.alloc(copy_bytes)?);
    let copy = || -> Result<f64, DeviceError> {
        let t0 = Instant::now();
        dev.copy_buffer(&copy_src, 0, &copy_dst, 0, copy_bytes)?;
        dev.synchronize()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let mut copy_times = Vec::new();

    // Batches of real Zipf lookups from the synthetic generator, one per timed run.
    let data = w.dataset((b * (args.reps + 2)) as u64, 2)?;
    let mut stream = data.open_train()?;
    let mut batches = Vec::new();
    for _ in 0..args.reps.min(8) {
        let mut batch = Batch::new(data.options().dense_features, t);
        stream.next_batch(b, &mut batch)?;
        let maps: Vec<RowMap> = batch.sparse.iter().map(RowMap::from_bags).collect();
        batches.push((batch, maps));
    }
    let pick = |i: usize| &batches[i % batches.len()];

    // The same tables, all on the device, for each optimizer timed.
    let tables = |optimizer| {
        let settings = EmbeddingSettings {
            dim: d,
            pooling: Pooling::Sum,
            rule: OptimizerRule {
                optimizer,
                eps: 1e-8,
                init: 0.0,
            },
            init_scale: 0.05,
        };
        EmbeddingTables::new(
            dev,
            &vec![e; t],
            settings,
            Placement::all_on_device(),
            b,
            w.seed,
        )
    };
    let mut sgd = tables(Optimizer::Sgd)?;
    let pooled = dev.alloc_elems(b * t * d)?;
    let grad = dev.buffer_from_f32(&vec![1e-3f32; b * t * d])?;

    // Logical bytes per batch: rows read, pooled output, indices and offsets.
    let nnz = (b * t * l) as f64;
    let row_bytes = 4.0 * d as f64;
    let index_bytes = 4.0 * nnz + 4.0 * (t * (b + 1)) as f64;
    let fwd_bytes = nnz * row_bytes + (b * t) as f64 * row_bytes + index_bytes;
    let unique: f64 = batches
        .iter()
        .map(|(_, m)| m.iter().map(|m| m.unique()).sum::<usize>() as f64)
        .sum::<f64>()
        / batches.len() as f64;
    // Backward: each occurrence reads its bag's gradient, each unique row is read and written,
    // plus the map (unique rows, starts, bag ids) and the offsets.
    let map_bytes = 4.0 * (2.0 * unique + nnz) + 4.0 * (t * (b + 1)) as f64;
    let bwd_bytes = nnz * row_bytes + 2.0 * unique * row_bytes + map_bytes;

    // Stage each batch once so the embedding kernels see fresh indices per run.
    let mut staged = usize::MAX;
    let stage = |tables: &mut EmbeddingTables<D>,
                 i: usize,
                 staged: &mut usize|
     -> Result<(), EmbeddingError> {
        let idx = i % batches.len();
        if *staged != idx {
            let (batch, maps) = pick(idx);
            tables.prepare_batch(dev, &batch.sparse, maps, Residency::OnDemand)?;
            *staged = idx;
        }
        Ok(())
    };
    // Staging is outside the timed kernels: do it first, then time forward alone per batch.
    let mut fwd_times = Vec::new();
    for i in 0..args.reps + 2 {
        let copy_s = copy()?;
        // The copy streamed a gigabyte through the caches: warm them again with the previous
        // batch, as a training step would find them, before timing this one.
        stage(&mut sgd, i + batches.len() - 1, &mut staged)?;
        sgd.forward(dev, &pooled)?;
        stage(&mut sgd, i, &mut staged)?;
        let t0 = Instant::now();
        sgd.forward(dev, &pooled)?;
        dev.synchronize()?;
        if i >= 2 {
            fwd_times.push(t0.elapsed().as_secs_f64());
            copy_times.push(copy_s);
        }
    }
    push("copy", median(&mut copy_times), 2.0 * copy_bytes as f64);
    drop((copy_src, copy_dst));

    // upload: packed rows from ordinary host memory to the device, as the cache's fetches do,
    // next to the page-locked copy ceiling where the backend has a host↔device link (CUDA).
    let upload_bytes = copy_bytes.min(64 << 20);
    let packed: Vec<u8> = (0..upload_bytes).map(|i| (i * 131 % 251) as u8).collect();
    let upload_dst = dev.alloc(upload_bytes)?;
    let (mut upload_times, mut pinned_times) = (Vec::new(), Vec::new());
    for i in 0..args.reps + 1 {
        dev.synchronize()?;
        let t0 = Instant::now();
        dev.upload(&upload_dst, 0, &packed)?;
        dev.synchronize()?;
        let upload_s = t0.elapsed().as_secs_f64();
        let pinned_s = dev.time_pinned_upload(&upload_dst, upload_bytes)?;
        if i >= 1 {
            upload_times.push(upload_s);
            pinned_times.extend(pinned_s);
        }
    }
    push("upload", median(&mut upload_times), upload_bytes as f64);
    if !pinned_times.is_empty() {
        push(
            "pinned_upload",
            median(&mut pinned_times),
            upload_bytes as f64,
        );
    }
    drop((packed, upload_dst));
    push("bag_forward", median(&mut fwd_times), fwd_bytes);

    // The fused backward alone, each batch staged (untimed) before its runs.
    let time_backward = |tables: EmbeddingTables<D>| {
        let mut staged = usize::MAX;
        let tables = std::cell::RefCell::new(tables);
        let secs = time_with(
            dev,
            args.reps,
            |i| stage(&mut tables.borrow_mut(), i, &mut staged),
            |_| tables.borrow().backward(dev, &grad, 0.01),
        )?;
        Ok::<_, EmbeddingError>((secs, tables.into_inner()))
    };
    let (secs, mut sgd) = time_backward(sgd)?;
    push("bag_backward_sgd", secs, bwd_bytes);

    // The embedding part of a training step as training runs it: build the unique-row maps,
    // upload the batch, forward, fused backward + SGD.
    let mut maps: Vec<RowMap> = vec![RowMap::new(); t];
    let step = |i: usize| -> Result<(), EmbeddingError> {
        let (batch, _) = pick(i);
        maps.par_iter_mut()
            .zip(&batch.sparse)
            .for_each(|(m, bags)| m.build(bags));
        sgd.prepare_batch(dev, &batch.sparse, &maps, Residency::OnDemand)?;
        sgd.forward(dev, &pooled)?;
        sgd.backward(dev, &grad, 0.01)
    };
    let secs = time_with(dev, args.reps, |_| Ok(()), step)?;
    push(
        "embedding_step_sgd",
        secs,
        fwd_bytes + bwd_bytes + index_bytes,
    );
    drop(sgd);

    let (secs, ada) = time_backward(tables(Optimizer::Adagrad)?)?;
    // Adagrad also reads and writes one f32 of state per unique row.
    push("bag_backward_adagrad", secs, bwd_bytes + 8.0 * unique);
    drop(ada);

    dense_rows(dev, &args.workload, args.reps, &pooled, &mut push)?;

    print_rows(&rows, args.json);
    Ok(rows)
}
