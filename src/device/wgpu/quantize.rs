//! Host side of `shaders/dequantize_rows.wgsl` and `shaders/quantize_rows.wgsl`: one pass per
//! window of the cache (and its per-slot state), as for embedding tables. Both kernels bind and
//! pass the same things but in their own order, so one function runs the passes of either.

use super::buffer::Bind;
use super::window::{row_windows, whole, wholes};
use super::{Grid, WgpuBuffer, WgpuDevice};
use crate::device::{DequantizeRows, DeviceError, KernelId, QuantizeRows, RowMove};
use crate::precision::Rounding;

pub(super) fn dequantize_rows(
    dev: &WgpuDevice,
    a: &DequantizeRows<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    let m = &a.moved;
    let named = [("packed", m.packed), ("slots", m.slots)];
    let grid = Grid::over(m.rows as u64 * m.dim as u64);
    row_passes(
        dev,
        KernelId::DequantizeRows,
        m,
        &named,
        &[],
        grid,
        |b, cache, staged, state| [b[0], b[1], cache, staged, state],
    )
}

pub(super) fn quantize_rows(
    dev: &WgpuDevice,
    a: &QuantizeRows<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    let m = &a.moved;
    let named = [
        ("slots", m.slots),
        ("row_ids", a.row_ids),
        ("packed", m.packed),
    ];
    let stochastic = (a.rounding == Rounding::Stochastic) as u32;
    let extra = [stochastic, a.seed, a.step];
    let grid = Grid::Linear(m.rows as u64);
    row_passes(
        dev,
        KernelId::QuantizeRows,
        m,
        &named,
        &extra,
        grid,
        |b, cache, staged, state| [cache, b[0], b[1], b[2], state, staged],
    )
}

/// Runs `k` on `m` once per window of the cache (nothing when no row moves). Its bindings are
/// `order(named, cache window, staged state, cache state window)`, where `named` are its other
/// buffers bound whole and the device's two stand-ins take the state's places when no state
/// moves; its parameters are the shape words, the window's, the state's, then `extra`.
fn row_passes<'a, const N: usize>(
    dev: &'a WgpuDevice,
    k: KernelId,
    m: &'a RowMove<'a, WgpuBuffer>,
    named: &[(&str, &'a WgpuBuffer)],
    extra: &[u32],
    grid: Grid,
    order: impl Fn(&[Bind<'a>], Bind<'a>, Bind<'a>, Bind<'a>) -> [Bind<'a>; N],
) -> Result<(), DeviceError> {
    if m.rows == 0 {
        return Ok(());
    }
    let named = wholes(dev, k, named)?;
    let (staged, cache_state) = m.state_or(&dev.dummy);
    let staged = whole(dev, k, "staged state", staged)?;
    let state = m.state.as_ref().map(|s| s.cache_state);
    let (slots, dim) = (m.cache_rows as u64, m.dim as u64);
    for (w, s) in row_windows(dev, k, m.cache, state, slots, 4 * dim)? {
        let state_bind = match s {
            Some(s) => s.bind(cache_state),
            None => whole(dev, k, "dummy", cache_state)?,
        };
        let mut params = m.shape_words().to_vec();
        params.extend([
            w.lo as u32,
            w.hi as u32,
            w.base as u32,
            m.state.is_some() as u32,
            s.map_or(0, |s| s.base as u32),
        ]);
        params.extend_from_slice(extra);
        let binds = order(&named, w.bind(m.cache), staged, state_bind);
        dev.launch(k, &params, &binds, grid)?;
    }
    Ok(())
}
