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
    const K: KernelId = KernelId::BiasActForward;
    let binds = wholes(dev, K, &[("x", a.x), ("bias", a.bias)])?;
    let params = a.shape.words();
    let grid = Grid::over(a.shape.elems());
    dev.launch(K, &params, &binds, grid)
}

pub(super) fn bias_act_backward(
    dev: &WgpuDevice,
    a: &BiasActBackward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: KernelId = KernelId::BiasActBackward;
    let binds = wholes(dev, K, &[("y", a.y), ("dy", a.dy), ("dbias", a.dbias)])?;
    let params = a.shape.words();
    dev.launch(K, &params, &binds, Grid::over(a.shape.cols as u64))
}

pub(super) fn interaction_forward(
    dev: &WgpuDevice,
    a: &InteractionForward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: KernelId = KernelId::InteractionForward;
    let binds = wholes(
        dev,
        K,
        &[("dense", a.dense), ("emb", a.emb), ("out", a.out)],
    )?;
    let params = a.shape.words();
    let grid = Grid::over(a.shape.out_len());
    dev.launch(K, &params, &binds, grid)
}

pub(super) fn interaction_backward(
    dev: &WgpuDevice,
    a: &InteractionBackward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: KernelId = KernelId::InteractionBackward;
    let binds = wholes(
        dev,
        K,
        &[
            ("dense", a.dense),
            ("emb", a.emb),
            ("dout", a.dout),
            ("ddense", a.ddense),
            ("demb", a.demb),
        ],
    )?;
    // One thread per gradient element, of `ddense` and `demb` together.
    let n = a.shape.dense_len() + a.shape.emb_len();
    dev.launch(K, &a.shape.words(), &binds, Grid::over(n))
}

pub(super) fn bce_loss(dev: &WgpuDevice, a: &BceLoss<'_, WgpuBuffer>) -> Result<(), DeviceError> {
    const K: KernelId = KernelId::BceLoss;
    let binds = wholes(
        dev,
        K,
        &[
            ("logits", a.logits),
            ("labels", a.labels),
            ("loss", a.loss),
            ("dlogits", a.dlogits),
        ],
    )?;
    let params = [a.batch, a.scale.to_bits()];
    dev.launch(K, &params, &binds, Grid::over(a.batch as u64))
}

pub(super) fn dense_update(
    dev: &WgpuDevice,
    a: &DenseUpdate<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: KernelId = KernelId::DenseUpdate;
    // `validate` rejected Adagrad without state; SGD binds a stand-in in the state's slot.
    let (adagrad, eps, state) = a.rule_or(&dev.dummy[0]);
    let binds = wholes(
        dev,
        K,
        &[("param", a.param), ("grad", a.grad), ("state", state)],
    )?;
    let params = [a.len, a.lr.to_bits(), adagrad, eps.to_bits()];
    dev.launch(K, &params, &binds, Grid::over(a.len as u64))
}
