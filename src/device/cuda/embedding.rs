//! Host side of `kernels/bag_forward.cu` and `kernels/bag_backward_{sgd,adagrad}.cu`: one warp
//! per bag (forward) or per unique row (backward), arguments in the order of each kernel's C
//! signature.

use super::launch::{Word::*, Work};
use super::{CudaBuffer, CudaDevice};
use crate::device::{BagBackward, BagForward, Device, DeviceError, KernelId, Pooling};

pub(super) fn bag_forward(
    dev: &CudaDevice,
    a: &BagForward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    let (s, out) = (&a.shape, &a.out);
    let bufs = [a.table, a.indices, a.offsets, out.buffer];
    let mean = (s.pooling == Pooling::Mean) as u32;
    // The index buffer's length bounds the offsets the kernel follows (see the kernel).
    let indices_len = words_in(dev, a.indices);
    let words = [
        s.dim,
        s.bags,
        out.stride,
        out.offset,
        mean,
        s.rows,
        indices_len,
    ]
    .map(U32);
    let work = Work::Warps(s.bags as u64);
    dev.launch(KernelId::BagForward, work, &bufs, &words)
}

/// The 32-bit words `buf` holds (at most `u32::MAX`: kernels index with 32 bits).
fn words_in(dev: &CudaDevice, buf: &CudaBuffer) -> u32 {
    (dev.buffer_bytes(buf) / 4).min(u32::MAX as u64) as u32
}

/// `bag_backward_sgd` (`adagrad` is `None`) or `bag_backward_adagrad` (Adagrad's per-row state
/// and `eps`).
pub(super) fn bag_backward(
    dev: &CudaDevice,
    a: &BagBackward<'_, CudaBuffer>,
    adagrad: Option<(&CudaBuffer, f32)>,
) -> Result<(), DeviceError> {
    if a.updates_nothing() {
        return Ok(());
    }
    let (m, s, grad) = (&a.map, &a.shape, &a.grad);
    let mut bufs = vec![
        a.table,
        m.unique_rows,
        m.row_starts,
        m.bag_ids,
        a.offsets,
        grad.buffer,
    ];
    // Adagrad's kernel takes the state right after the buffers SGD's takes.
    bufs.extend(adagrad.map(|(state, _)| state));
    let mean = (s.pooling == Pooling::Mean) as u32;
    let eps = adagrad.map_or(0.0, |(_, eps)| eps);
    let words = [
        U32(s.dim),
        U32(m.unique),
        U32(grad.stride),
        U32(grad.offset),
        U32(mean),
        F32(a.lr),
        F32(eps),
        U32(s.rows),
        U32(s.bags),
        U32(words_in(dev, m.bag_ids)),
    ];
    let kernel = KernelId::bag_backward(adagrad.is_some());
    dev.launch(kernel, Work::Warps(m.unique as u64), &bufs, &words)
}
