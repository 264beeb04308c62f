//! Host side of `kernels/bag_forward.cu` and `kernels/bag_backward_{sgd,adagrad}.cu`: one warp
//! per bag (forward) or per unique row (backward), arguments in the order of each kernel's C
//! signature.

use super::launch::{Arg, Work};
use super::{CudaBuffer, CudaDevice};
use crate::device::{BagBackward, BagForward, DeviceError, KernelId, Pooling};

pub(super) fn bag_forward(
    dev: &CudaDevice,
    a: &BagForward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    let args = [
        Arg::Buf(a.table),
        Arg::Buf(a.indices),
        Arg::Buf(a.offsets),
        Arg::Buf(a.out),
        Arg::U32(a.dim),
        Arg::U32(a.bags),
        Arg::U32(a.out_stride),
        Arg::U32(a.out_offset),
        Arg::U32((a.pooling == Pooling::Mean) as u32),
        Arg::U32(a.rows),
    ];
    dev.launch(KernelId::BagForward, Work::Warps(a.bags as u64), &args)
}

/// `bag_backward_sgd` (`adagrad` is `None`) or `bag_backward_adagrad` (Adagrad's per-row state
/// and `eps`).
pub(super) fn bag_backward(
    dev: &CudaDevice,
    a: &BagBackward<'_, CudaBuffer>,
    adagrad: Option<(&CudaBuffer, f32)>,
) -> Result<(), DeviceError> {
    let state = adagrad.map(|(state, _)| state);
    let kernel = a.check(state, |b| b.bytes)?;
    if a.updates_nothing() {
        return Ok(());
    }
    let m = &a.map;
    let mut args = vec![
        Arg::Buf(a.table),
        Arg::Buf(m.unique_rows),
        Arg::Buf(m.row_starts),
        Arg::Buf(m.bag_ids),
        Arg::Buf(a.offsets),
        Arg::Buf(a.grad),
    ];
    // Adagrad's kernel takes the state right after the buffers SGD's takes.
    args.extend(state.map(Arg::Buf));
    args.extend([
        Arg::U32(a.dim),
        Arg::U32(m.unique),
        Arg::U32(a.grad_stride),
        Arg::U32(a.grad_offset),
        Arg::U32((a.pooling == Pooling::Mean) as u32),
        Arg::F32(a.lr),
        Arg::F32(adagrad.map_or(0.0, |(_, eps)| eps)),
        Arg::U32(a.rows),
        Arg::U32(a.bags),
    ]);
    dev.launch(kernel, Work::Warps(m.unique as u64), &args)
}
