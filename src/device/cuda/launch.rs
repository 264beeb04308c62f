//! Host side of every `kernels/*.cu`: the same shape checks as every backend, then one launch
//! with the arguments in the order of the kernel's C signature (listed in [`signature`], which a
//! test compares against the PTX NVRTC produces, so a mismatch is caught without a GPU).

use super::compile::{CudaKernel, ParamKind};
use super::{Arg, CudaBuffer, CudaDevice};
use crate::device::kernels::interaction_width;
use crate::device::{
    Activation, BagBackward, BagForward, BceLoss, BiasActBackward, BiasActForward, DenseUpdate,
    DequantizeRows, DeviceError, Gemm, InteractionBackward, InteractionForward, Optimizer, Pooling,
    QuantizeRows,
};
use crate::precision::Rounding;

/// Threads per block of every kernel.
const BLOCK: u32 = 256;
/// Warps per block, for the kernels that give each bag, row or unique row one warp.
const WARPS: u64 = (BLOCK / 32) as u64;

use ParamKind::{F32, Ptr, U32};

/// The parameters of `kernel`'s entry point, in order: what `CudaDevice::launch` checks every
/// launch against and the NVRTC test checks every compiled kernel against.
pub fn signature(kernel: CudaKernel) -> &'static [ParamKind] {
    match kernel {
        CudaKernel::BagForward => &[Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, U32],
        CudaKernel::BagBackwardSgd => &[
            Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, F32, F32, U32, U32,
        ],
        CudaKernel::BagBackwardAdagrad => &[
            Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, F32, F32, U32, U32,
        ],
        CudaKernel::DequantizeRows => &[Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, U32],
        CudaKernel::QuantizeRows => &[
            Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32, U32, U32, U32, U32, U32,
        ],
        CudaKernel::BiasActForward => &[Ptr, Ptr, U32, U32, U32],
        CudaKernel::BiasActBackward => &[Ptr, Ptr, Ptr, U32, U32, U32],
        CudaKernel::InteractionForward => &[Ptr, Ptr, Ptr, U32, U32, U32, U32],
        CudaKernel::InteractionBackward => &[Ptr, Ptr, Ptr, Ptr, Ptr, U32, U32, U32, U32],
        CudaKernel::BceLoss => &[Ptr, Ptr, Ptr, Ptr, U32, F32],
        CudaKernel::DenseUpdate => &[Ptr, Ptr, Ptr, U32, F32, U32, F32],
    }
}

/// Checks `args` against the kernel's signature (a launcher bug, reported rather than run).
pub(super) fn check_signature(kernel: CudaKernel, args: &[Arg<'_>]) -> Result<(), DeviceError> {
    let kinds: Vec<ParamKind> = args
        .iter()
        .map(|a| match a {
            Arg::Buf(_) => Ptr,
            Arg::U32(_) => U32,
            Arg::F32(_) => F32,
        })
        .collect();
    if kinds != signature(kernel) {
        return Err(DeviceError::InvalidArgument {
            kernel: kernel.name(),
            message: format!(
                "the launcher passes {kinds:?}, the kernel takes {:?}",
                signature(kernel)
            ),
        });
    }
    Ok(())
}

fn invalid(kernel: &'static str, message: String) -> DeviceError {
    DeviceError::InvalidArgument { kernel, message }
}

/// Blocks for `items` items of `per_block` each.
fn blocks(items: u64, per_block: u64) -> u64 {
    items.div_ceil(per_block)
}

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
    dev.launch(
        CudaKernel::BagForward,
        blocks(a.bags as u64, WARPS),
        BLOCK,
        &args,
    )
}

pub(super) fn bag_backward(
    dev: &CudaDevice,
    a: &BagBackward<'_, CudaBuffer>,
    adagrad: Option<(&CudaBuffer, f32)>,
) -> Result<(), DeviceError> {
    let (k, kernel) = match adagrad {
        Some(_) => ("bag_backward_adagrad", CudaKernel::BagBackwardAdagrad),
        None => ("bag_backward_sgd", CudaKernel::BagBackwardSgd),
    };
    a.validate(k, adagrad.map(|(state, _)| state), |b| b.bytes)?;
    let m = &a.map;
    if m.unique == 0 || a.rows == 0 {
        return Ok(());
    }
    let mut args = vec![
        Arg::Buf(a.table),
        Arg::Buf(m.unique_rows),
        Arg::Buf(m.row_starts),
        Arg::Buf(m.bag_ids),
        Arg::Buf(a.offsets),
        Arg::Buf(a.grad),
    ];
    if let Some((state, _)) = adagrad {
        args.push(Arg::Buf(state));
    }
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
    dev.launch(kernel, blocks(m.unique as u64, WARPS), BLOCK, &args)
}

pub(super) fn dequantize_rows(
    dev: &CudaDevice,
    a: &DequantizeRows<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    if a.rows == 0 {
        return Ok(());
    }
    // Without state the kernel never touches its state pointers; they still need addresses.
    let (staged, cache_state) = match &a.state {
        Some(st) => (st.staged, st.cache_state),
        None => (&dev.dummy[0], &dev.dummy[1]),
    };
    let args = [
        Arg::Buf(a.packed),
        Arg::Buf(a.slots),
        Arg::Buf(a.cache),
        Arg::Buf(staged),
        Arg::Buf(cache_state),
        Arg::U32(a.rows),
        Arg::U32(a.dim),
        Arg::U32(a.precision.row_words(a.dim as usize) as u32),
        Arg::U32(a.precision.code()),
        Arg::U32(a.state.is_some() as u32),
        Arg::U32(a.cache_rows),
    ];
    dev.launch(
        CudaKernel::DequantizeRows,
        blocks(a.rows as u64, WARPS),
        BLOCK,
        &args,
    )
}

pub(super) fn quantize_rows(
    dev: &CudaDevice,
    a: &QuantizeRows<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    if a.rows == 0 {
        return Ok(());
    }
    let (cache_state, staged) = match &a.state {
        Some(st) => (st.cache_state, st.staged),
        None => (&dev.dummy[0], &dev.dummy[1]),
    };
    let args = [
        Arg::Buf(a.cache),
        Arg::Buf(a.slots),
        Arg::Buf(a.row_ids),
        Arg::Buf(a.packed),
        Arg::Buf(cache_state),
        Arg::Buf(staged),
        Arg::U32(a.rows),
        Arg::U32(a.dim),
        Arg::U32(a.precision.row_words(a.dim as usize) as u32),
        Arg::U32(a.precision.code()),
        Arg::U32(a.state.is_some() as u32),
        Arg::U32((a.rounding == Rounding::Stochastic) as u32),
        Arg::U32(a.seed),
        Arg::U32(a.step),
        Arg::U32(a.cache_rows),
    ];
    dev.launch(
        CudaKernel::QuantizeRows,
        blocks(a.rows as u64, WARPS),
        BLOCK,
        &args,
    )
}

pub(super) fn gemm(dev: &CudaDevice, a: &Gemm<'_, CudaBuffer>) -> Result<(), DeviceError> {
    super::gemm::gemm(dev, a)
}

pub(super) fn bias_act_forward(
    dev: &CudaDevice,
    a: &BiasActForward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    let args = [
        Arg::Buf(a.x),
        Arg::Buf(a.bias),
        Arg::U32(a.rows),
        Arg::U32(a.cols),
        Arg::U32((a.act == Activation::Relu) as u32),
    ];
    let n = a.rows as u64 * a.cols as u64;
    dev.launch(
        CudaKernel::BiasActForward,
        blocks(n, BLOCK as u64),
        BLOCK,
        &args,
    )
}

pub(super) fn bias_act_backward(
    dev: &CudaDevice,
    a: &BiasActBackward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    let args = [
        Arg::Buf(a.y),
        Arg::Buf(a.dy),
        Arg::Buf(a.dbias),
        Arg::U32(a.rows),
        Arg::U32(a.cols),
        Arg::U32((a.act == Activation::Relu) as u32),
    ];
    dev.launch(
        CudaKernel::BiasActBackward,
        blocks(a.cols as u64, BLOCK as u64),
        BLOCK,
        &args,
    )
}

pub(super) fn interaction_forward(
    dev: &CudaDevice,
    a: &InteractionForward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    let width = interaction_width(a.tables, a.dim);
    let args = [
        Arg::Buf(a.dense),
        Arg::Buf(a.emb),
        Arg::Buf(a.out),
        Arg::U32(a.batch),
        Arg::U32(a.tables),
        Arg::U32(a.dim),
        Arg::U32(width),
    ];
    dev.launch(
        CudaKernel::InteractionForward,
        blocks(a.batch as u64 * width as u64, BLOCK as u64),
        BLOCK,
        &args,
    )
}

pub(super) fn interaction_backward(
    dev: &CudaDevice,
    a: &InteractionBackward<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    let width = interaction_width(a.tables, a.dim);
    let args = [
        Arg::Buf(a.dense),
        Arg::Buf(a.emb),
        Arg::Buf(a.dout),
        Arg::Buf(a.ddense),
        Arg::Buf(a.demb),
        Arg::U32(a.batch),
        Arg::U32(a.tables),
        Arg::U32(a.dim),
        Arg::U32(width),
    ];
    let n = a.batch as u64 * (a.tables as u64 + 1) * a.dim as u64;
    dev.launch(
        CudaKernel::InteractionBackward,
        blocks(n, BLOCK as u64),
        BLOCK,
        &args,
    )
}

pub(super) fn bce_loss(dev: &CudaDevice, a: &BceLoss<'_, CudaBuffer>) -> Result<(), DeviceError> {
    a.validate(|b| b.bytes)?;
    let args = [
        Arg::Buf(a.logits),
        Arg::Buf(a.labels),
        Arg::Buf(a.loss),
        Arg::Buf(a.dlogits),
        Arg::U32(a.batch),
        Arg::F32(a.scale),
    ];
    dev.launch(
        CudaKernel::BceLoss,
        blocks(a.batch as u64, BLOCK as u64),
        BLOCK,
        &args,
    )
}

pub(super) fn dense_update(
    dev: &CudaDevice,
    a: &DenseUpdate<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "dense_update";
    a.validate(|b| b.bytes)?;
    let (adagrad, eps, state) = match (a.optimizer, a.state) {
        (Optimizer::Adagrad, Some(s)) => (1, a.eps, s),
        (Optimizer::Adagrad, None) => {
            return Err(invalid(K, "Adagrad needs a `state` buffer".into()));
        }
        (Optimizer::Sgd, _) => (0, 0.0, &dev.dummy[0]),
    };
    let args = [
        Arg::Buf(a.param),
        Arg::Buf(a.grad),
        Arg::Buf(state),
        Arg::U32(a.len),
        Arg::F32(a.lr),
        Arg::U32(adagrad),
        Arg::F32(eps),
    ];
    dev.launch(
        CudaKernel::DenseUpdate,
        blocks(a.len as u64, BLOCK as u64),
        BLOCK,
        &args,
    )
}
