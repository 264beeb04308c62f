//! Host side of the WGSL dense kernels (`gemm`, `bias_act_*`, `interaction_*`, `bce_loss`,
//! `dense_update`): checks, whole-buffer bindings, parameters and dispatch shapes. The parameter
//! words follow each shader's `Params` struct, field by field.

use super::window::{invalid, wholes};
use super::{Grid, WgpuBuffer, WgpuDevice};
use crate::device::{
    BceLoss, BiasActBackward, BiasActForward, DenseUpdate, DeviceError, Gemm, InteractionBackward,
    InteractionForward, KernelId,
};

/// Tile edge of `gemm`.
const TILE: u64 = 16;

pub(super) fn gemm(dev: &WgpuDevice, a: &Gemm<'_, WgpuBuffer>) -> Result<(), DeviceError> {
    const K: KernelId = KernelId::Gemm;
    let binds = wholes(dev, K, &[("a", a.a), ("b", a.b), ("c", a.c)])?;
    let (m_tiles, n_tiles) = ((a.m as u64).div_ceil(TILE), (a.n as u64).div_ceil(TILE));
    let max = dev.limits.max_groups as u64;
    if n_tiles > max {
        return Err(invalid(
            K,
            format!(
                "n = {} needs {n_tiles} column tiles, above the adapter's {max}",
                a.n
            ),
        ));
    }
    // Rows beyond one dispatch's reach go to further dispatches, offset by `row_base`.
    let mut tile = 0;
    while tile < m_tiles {
        let count = (m_tiles - tile).min(max);
        let params = [
            a.m,
            a.n,
            a.k,
            a.trans_a as u32,
            a.trans_b as u32,
            a.alpha.to_bits(),
            a.beta.to_bits(),
            (tile * TILE) as u32,
        ];
        let grid = Grid::Tiles(n_tiles as u32, count as u32);
        dev.launch(K, &params, &binds, grid)?;
        tile += count;
    }
    Ok(())
}

pub(super) fn bias_act_forward(
    dev: &WgpuDevice,
    a: &BiasActForward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    let buffers = [("x", a.x), ("bias", a.bias)];
    let threads = a.shape.elems();
    launch_whole(
        dev,
        KernelId::BiasActForward,
        &buffers,
        threads,
        &a.shape.words(),
    )
}

pub(super) fn bias_act_backward(
    dev: &WgpuDevice,
    a: &BiasActBackward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    let buffers = [("y", a.y), ("dy", a.dy), ("dbias", a.dbias)];
    // One workgroup per 16 columns (the shader splits their rows over 16 lanes); `launch_whole`
    // counts 64 threads per workgroup.
    let threads = (a.shape.cols as u64).div_ceil(16) * 64;
    launch_whole(
        dev,
        KernelId::BiasActBackward,
        &buffers,
        threads,
        &a.shape.words(),
    )
}

pub(super) fn interaction_forward(
    dev: &WgpuDevice,
    a: &InteractionForward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    let buffers = [("dense", a.dense), ("emb", a.emb), ("out", a.out)];
    let threads = a.shape.out_len();
    launch_whole(
        dev,
        KernelId::InteractionForward,
        &buffers,
        threads,
        &a.shape.words(),
    )
}

pub(super) fn interaction_backward(
    dev: &WgpuDevice,
    a: &InteractionBackward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    let buffers = [
        ("dense", a.dense),
        ("emb", a.emb),
        ("dout", a.dout),
        ("ddense", a.ddense),
        ("demb", a.demb),
    ];
    // One thread per gradient element, of `ddense` and `demb` together.
    let threads = a.shape.dense_len() + a.shape.emb_len();
    launch_whole(
        dev,
        KernelId::InteractionBackward,
        &buffers,
        threads,
        &a.shape.words(),
    )
}

pub(super) fn bce_loss(dev: &WgpuDevice, a: &BceLoss<'_, WgpuBuffer>) -> Result<(), DeviceError> {
    let buffers = [
        ("logits", a.logits),
        ("labels", a.labels),
        ("loss", a.loss),
        ("dlogits", a.dlogits),
    ];
    let params = [a.batch, a.scale.to_bits()];
    launch_whole(dev, KernelId::BceLoss, &buffers, a.batch as u64, &params)
}

pub(super) fn dense_update(
    dev: &WgpuDevice,
    a: &DenseUpdate<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    // `validate` rejected Adagrad without state; SGD binds a stand-in in the state's slot.
    let (adagrad, eps, state) = a.rule_or(&dev.dummy[0]);
    let buffers = [("param", a.param), ("grad", a.grad), ("state", state)];
    let params = [a.len, a.lr.to_bits(), adagrad, eps.to_bits()];
    launch_whole(dev, KernelId::DenseUpdate, &buffers, a.len as u64, &params)
}

/// Launches `kernel` over `threads` threads, with whole-buffer bindings of `buffers` (in the
/// shader's binding order) and the shader's parameter words `params`.
pub(super) fn launch_whole(
    dev: &WgpuDevice,
    kernel: KernelId,
    buffers: &[(&str, &WgpuBuffer)],
    threads: u64,
    params: &[u32],
) -> Result<(), DeviceError> {
    let binds = wholes(dev, kernel, buffers)?;
    dev.launch(kernel, params, &binds, Grid::over(threads))
}
