//! The dense and row-moving rows of `rowflow bench kernels`: GEMM, bias + activation,
//! interaction, loss and optimizer at DLRM sizes, and (de)quantization of cache rows.

use super::{Workload, time};
use crate::device::{
    Activation, BceLoss, BiasActBackward, BiasActForward, BiasActShape, DenseUpdate,
    DequantizeRows, Device, DeviceError, DeviceExt, Gemm, InteractionBackward, InteractionForward,
    InteractionShape, Optimizer, QuantizeRows, RowMove,
};
use crate::precision::{Precision, Rounding};

/// Times the dense kernels and the row moves (`reps` timed runs each) at the sizes of `w`;
/// `pooled` is the embedding rows' pooled output
/// (`[B, T, D]`) the interaction reads. Each row goes to `push(kernel, seconds, bytes)`.
pub(super) fn dense_rows<D: Device>(
    dev: &D,
    w: &Workload,
    reps: usize,
    pooled: &D::Buffer,
    push: &mut impl FnMut(&str, f64, f64),
) -> Result<(), DeviceError> {
    let (t, d, b) = (w.tables, w.dim, w.batch_size);
    // Dense kernels at DLRM sizes: a 512 → 256 layer over the batch, the interaction of
    // T + 1 vectors of D, the loss over the batch, an Adagrad step over 1M parameters.
    let (k, nn) = (512usize, 256usize);
    let x = dev.buffer_from_f32(&vec![0.5f32; b * k])?;
    let w = dev.buffer_from_f32(&vec![0.01f32; nn * k])?;
    let y = dev.alloc_elems(b * nn)?;
    let secs = time(dev, reps, |_| {
        dev.gemm(&Gemm {
            a: &x,
            b: &w,
            c: &y,
            m: b as u32,
            n: nn as u32,
            k: k as u32,
            trans_a: false,
            trans_b: true,
            alpha: 1.0,
            beta: 0.0,
        })
    })?;
    push("gemm", secs, 4.0 * (b * k + nn * k + b * nn) as f64);
    let bias = dev.buffer_from_f32(&vec![0.1f32; nn])?;
    let shape = BiasActShape {
        rows: b as u32,
        cols: nn as u32,
        act: Activation::Relu,
    };
    let secs = time(dev, reps, |_| {
        dev.bias_act_forward(&BiasActForward {
            x: &y,
            bias: &bias,
            shape,
        })
    })?;
    push("bias_act_forward", secs, 4.0 * (2 * b * nn + nn) as f64);
    let dy = dev.buffer_from_f32(&vec![0.1f32; b * nn])?;
    let db = dev.alloc_elems(nn)?;
    let secs = time(dev, reps, |_| {
        dev.bias_act_backward(&BiasActBackward {
            y: &y,
            dy: &dy,
            dbias: &db,
            shape,
        })
    })?;
    push("bias_act_backward", secs, 4.0 * (3 * b * nn + nn) as f64);

    let shape = InteractionShape {
        batch: b as u32,
        tables: t as u32,
        dim: d as u32,
    };
    let width = shape.width() as usize;
    let dense = dev.buffer_from_f32(&vec![0.1f32; b * d])?;
    let inter = dev.alloc_elems(b * width)?;
    let secs = time(dev, reps, |_| {
        dev.interaction_forward(&InteractionForward {
            dense: &dense,
            emb: pooled,
            out: &inter,
            shape,
        })
    })?;
    push(
        "interaction_forward",
        secs,
        4.0 * (b * d + b * t * d + b * width) as f64,
    );
    let dinter = dev.buffer_from_f32(&vec![0.01f32; b * width])?;
    let ddense = dev.alloc_elems(b * d)?;
    let demb = dev.alloc_elems(b * t * d)?;
    let secs = time(dev, reps, |_| {
        dev.interaction_backward(&InteractionBackward {
            dense: &dense,
            emb: pooled,
            dout: &dinter,
            ddense: &ddense,
            demb: &demb,
            shape,
        })
    })?;
    push(
        "interaction_backward",
        secs,
        4.0 * (2 * (b * d + b * t * d) + b * width) as f64,
    );

    let logits = dev.buffer_from_f32(&(0..b).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>())?;
    let labels = dev.buffer_from_f32(&(0..b).map(|i| (i % 2) as f32).collect::<Vec<_>>())?;
    let (loss, dlogits) = (dev.alloc_elems(b)?, dev.alloc_elems(b)?);
    let secs = time(dev, reps, |_| {
        dev.bce_loss(&BceLoss {
            logits: &logits,
            labels: &labels,
            loss: &loss,
            dlogits: &dlogits,
            batch: b as u32,
            scale: 1.0 / b as f32,
        })
    })?;
    push("bce_loss", secs, 4.0 * 4.0 * b as f64);

    let np = 1usize << 20;
    let (param, pgrad, state) = (
        dev.buffer_from_f32(&vec![0.1f32; np])?,
        dev.buffer_from_f32(&vec![1e-3f32; np])?,
        dev.alloc_elems(np)?,
    );
    let secs = time(dev, reps, |_| {
        dev.dense_update(&DenseUpdate {
            param: &param,
            grad: &pgrad,
            state: Some(&state),
            len: np as u32,
            lr: 0.01,
            optimizer: Optimizer::Adagrad,
            eps: 1e-8,
        })
    })?;
    push("dense_update", secs, 4.0 * 5.0 * np as f64);

    // Moving rows between the packed store format and the FP32 cache: 65,536 rows, INT8,
    // stochastic rounding. Bytes: FP32 rows read or written, packed rows written or read, and
    // the slot (and row id) lists.
    let n = 1usize << 16;
    let words = Precision::Int8.row_words(d);
    let cache = dev.buffer_from_f32(
        &(0..n * d)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
            .collect::<Vec<_>>(),
    )?;
    let slots = dev.buffer_from_u32(&(0..n as u32).rev().collect::<Vec<_>>())?;
    let ids = dev.buffer_from_u32(&(0..n as u32).collect::<Vec<_>>())?;
    let packed = dev.alloc_elems(n * words)?;
    // Both directions move the same rows between the same buffers.
    let moved = || RowMove {
        packed: &packed,
        slots: &slots,
        cache: &cache,
        cache_rows: n as u32,
        rows: n as u32,
        dim: d as u32,
        precision: Precision::Int8,
        state: None,
    };
    let secs = time(dev, reps, |i| {
        dev.quantize_rows(&QuantizeRows {
            moved: moved(),
            row_ids: &ids,
            rounding: Rounding::Stochastic,
            seed: 1,
            step: i as u32,
        })
    })?;
    push(
        "quantize_rows",
        secs,
        4.0 * (n * d + n * words + 2 * n) as f64,
    );
    let secs = time(dev, reps, |_| {
        dev.dequantize_rows(&DequantizeRows { moved: moved() })
    })?;
    push(
        "dequantize_rows",
        secs,
        4.0 * (n * d + n * words + n) as f64,
    );

    Ok(())
}
