//! Host side of every WGSL kernel: checks, bindings (windows for big tables), parameters and
//! dispatch shapes. The parameter words follow each shader's `Params` struct, field by field.

use super::buffer::Bind;
use super::pipelines::Kernel;
use super::{Grid, WgpuBuffer, WgpuDevice};
use crate::device::kernels::interaction_width;
use crate::device::{
    Activation, BagBackward, BagForward, BceLoss, BiasActBackward, BiasActForward, DenseUpdate,
    DequantizeRows, DeviceError, Gemm, InteractionBackward, InteractionForward, Optimizer, Pooling,
    QuantizeRows,
};
use crate::precision::Rounding;

/// Invocations per workgroup of the 1-D kernels.
const WG: u64 = 64;
/// Tile edge of `gemm`.
const TILE: u64 = 16;

fn invalid(kernel: &'static str, message: String) -> DeviceError {
    DeviceError::InvalidArgument { kernel, message }
}

/// Binds a whole buffer, which must be one part within one binding.
fn whole<'a>(
    dev: &WgpuDevice,
    kernel: &'static str,
    what: &str,
    b: &'a WgpuBuffer,
) -> Result<Bind<'a>, DeviceError> {
    if b.parts.len() != 1 || b.bytes > dev.limits.max_binding {
        return Err(invalid(
            kernel,
            format!(
                "`{what}` is {} bytes, above this adapter's max_storage_buffer_binding_size of {} \
                 bytes (only embedding tables are split into windows); use a smaller batch",
                b.bytes, dev.limits.max_binding
            ),
        ));
    }
    Ok(Bind {
        buffer: b,
        part: 0,
        offset: 0,
        size: b.parts[0].bytes.max(4),
    })
}

/// A binding of whole rows `lo .. hi` of a row-major buffer.
#[derive(Clone, Copy, Debug)]
struct Window {
    part: usize,
    lo: u64,
    hi: u64,
    offset: u64,
    size: u64,
    /// Word index of row `lo` inside the binding.
    base: u64,
}

impl Window {
    fn bind(self, b: &WgpuBuffer) -> Bind<'_> {
        Bind {
            buffer: b,
            part: self.part,
            offset: self.offset,
            size: self.size.max(4),
        }
    }
}

/// The largest window of rows starting at row `r` (and ending by `hi`) that fits one part and
/// one binding of at most `max` bytes, its start aligned as storage bindings require.
fn window_at(
    dev: &WgpuDevice,
    kernel: &'static str,
    b: &WgpuBuffer,
    r: u64,
    hi: u64,
    row_bytes: u64,
    max: u64,
) -> Result<Window, DeviceError> {
    let start = r * row_bytes;
    let Some((part, p)) = b
        .parts
        .iter()
        .enumerate()
        .find(|(_, p)| p.first <= start && start < p.first + p.bytes.max(1))
    else {
        return Err(invalid(
            kernel,
            format!("row {r} is outside the {}-byte table", b.bytes),
        ));
    };
    if (b.parts.len() > 1 && b.row_bytes != row_bytes) || p.first % row_bytes != 0 {
        return Err(invalid(
            kernel,
            "the table was not allocated with alloc_rows for this row size".into(),
        ));
    }
    let part_hi = hi.min((p.first + p.bytes) / row_bytes);
    let align = dev.limits.binding_align;
    let offset = (start - p.first) / align * align;
    let fit = (p.first + offset + max) / row_bytes; // rows ending within the binding limit
    let end = part_hi.min(fit);
    if end <= r {
        return Err(invalid(
            kernel,
            format!(
                "one row of {row_bytes} bytes does not fit a binding of {max} bytes (max_storage_buffer_binding_size)"
            ),
        ));
    }
    Ok(Window {
        part,
        lo: r,
        hi: end,
        offset,
        size: end * row_bytes - p.first - offset,
        base: (start - p.first - offset) / 4,
    })
}

pub(super) fn bag_forward(
    dev: &WgpuDevice,
    a: &BagForward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "bag_forward";
    a.validate(|b| b.bytes)?;
    if a.bags == 0 {
        return Ok(());
    }
    let (indices, offsets, out) = (
        whole(dev, K, "indices", a.indices)?,
        whole(dev, K, "offsets", a.offsets)?,
        whole(dev, K, "out", a.out)?,
    );
    let (rows, row_bytes) = (a.rows as u64, 4 * a.dim as u64);
    let groups = (a.bags as u64 * a.dim as u64).div_ceil(WG);
    let mean = (a.pooling == Pooling::Mean) as u32;
    // One pass per window of the table; later passes add to the first's output.
    let mut r = 0;
    let mut pass = 0u32;
    loop {
        let w = if rows == 0 {
            Window {
                part: 0,
                lo: 0,
                hi: 0,
                offset: 0,
                size: 4,
                base: 0,
            }
        } else {
            window_at(dev, K, a.table, r, rows, row_bytes, dev.limits.max_binding)?
        };
        let params = [
            a.dim,
            a.bags,
            a.out_stride,
            a.out_offset,
            w.lo as u32,
            w.hi as u32,
            w.base as u32,
            mean,
            (pass > 0) as u32,
        ];
        dev.launch(
            Kernel::BagForward,
            &params,
            &[w.bind(a.table), indices, offsets, out],
            Grid::Linear(groups),
        )?;
        pass += 1;
        r = w.hi;
        if r >= rows {
            return Ok(());
        }
    }
}

pub(super) fn bag_backward(
    dev: &WgpuDevice,
    a: &BagBackward<'_, WgpuBuffer>,
    adagrad: Option<(&WgpuBuffer, f32)>,
) -> Result<(), DeviceError> {
    let (k, kernel): (&'static str, Kernel) = match adagrad {
        Some(_) => ("bag_backward_adagrad", Kernel::BagBackwardAdagrad),
        None => ("bag_backward_sgd", Kernel::BagBackwardSgd),
    };
    a.validate(k, adagrad.map(|(state, _)| state), |b| b.bytes)?;
    let m = &a.map;
    if m.unique == 0 || a.rows == 0 {
        return Ok(());
    }
    let binds = [
        whole(dev, k, "unique_rows", m.unique_rows)?,
        whole(dev, k, "row_starts", m.row_starts)?,
        whole(dev, k, "bag_ids", m.bag_ids)?,
        whole(dev, k, "offsets", a.offsets)?,
        whole(dev, k, "grad", a.grad)?,
    ];
    let (rows, row_bytes) = (a.rows as u64, 4 * a.dim as u64);
    let max = dev.limits.max_binding;
    let eps = adagrad.map_or(0.0, |(_, e)| e);
    let mean = (a.pooling == Pooling::Mean) as u32;
    let mut r = 0;
    while r < rows {
        // A window of the table, narrowed so the same rows' state fits one binding too.
        let mut t = window_at(dev, k, a.table, r, rows, row_bytes, max)?;
        let s = match adagrad {
            Some((state, _)) => {
                let s = window_at(dev, k, state, r, t.hi, 4, max)?;
                t = window_at(dev, k, a.table, r, s.hi, row_bytes, max)?;
                Some(s)
            }
            None => None,
        };
        let params = [
            a.dim,
            m.unique,
            a.grad_stride,
            a.grad_offset,
            t.lo as u32,
            t.hi as u32,
            t.base as u32,
            mean,
            a.lr.to_bits(),
            eps.to_bits(),
            s.map_or(0, |s| s.base as u32),
        ];
        let mut all = vec![t.bind(a.table)];
        all.extend_from_slice(&binds);
        if let (Some((state, _)), Some(s)) = (adagrad, s) {
            all.push(s.bind(state));
        }
        dev.launch(kernel, &params, &all, Grid::Linear(m.unique as u64))?;
        r = t.hi;
    }
    Ok(())
}

pub(super) fn gemm(dev: &WgpuDevice, a: &Gemm<'_, WgpuBuffer>) -> Result<(), DeviceError> {
    const K: &str = "gemm";
    a.validate(|b| b.bytes)?;
    let binds = [
        whole(dev, K, "a", a.a)?,
        whole(dev, K, "b", a.b)?,
        whole(dev, K, "c", a.c)?,
    ];
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
        dev.launch(
            Kernel::Gemm,
            &params,
            &binds,
            Grid::Tiles(n_tiles as u32, count as u32),
        )?;
        tile += count;
    }
    Ok(())
}

pub(super) fn bias_act_forward(
    dev: &WgpuDevice,
    a: &BiasActForward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "bias_act_forward";
    a.validate(|b| b.bytes)?;
    let binds = [whole(dev, K, "x", a.x)?, whole(dev, K, "bias", a.bias)?];
    let params = [a.rows, a.cols, (a.act == Activation::Relu) as u32];
    dev.launch(
        Kernel::BiasActForward,
        &params,
        &binds,
        Grid::Linear((a.rows as u64 * a.cols as u64).div_ceil(WG)),
    )
}

pub(super) fn bias_act_backward(
    dev: &WgpuDevice,
    a: &BiasActBackward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "bias_act_backward";
    a.validate(|b| b.bytes)?;
    let binds = [
        whole(dev, K, "y", a.y)?,
        whole(dev, K, "dy", a.dy)?,
        whole(dev, K, "dbias", a.dbias)?,
    ];
    let params = [a.rows, a.cols, (a.act == Activation::Relu) as u32];
    dev.launch(
        Kernel::BiasActBackward,
        &params,
        &binds,
        Grid::Linear((a.cols as u64).div_ceil(WG)),
    )
}

pub(super) fn interaction_forward(
    dev: &WgpuDevice,
    a: &InteractionForward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "interaction_forward";
    a.validate(|b| b.bytes)?;
    let binds = [
        whole(dev, K, "dense", a.dense)?,
        whole(dev, K, "emb", a.emb)?,
        whole(dev, K, "out", a.out)?,
    ];
    let width = interaction_width(a.tables, a.dim);
    let params = [a.batch, a.tables, a.dim, width];
    dev.launch(
        Kernel::InteractionForward,
        &params,
        &binds,
        Grid::Linear((a.batch as u64 * width as u64).div_ceil(WG)),
    )
}

pub(super) fn interaction_backward(
    dev: &WgpuDevice,
    a: &InteractionBackward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "interaction_backward";
    a.validate(|b| b.bytes)?;
    let binds = [
        whole(dev, K, "dense", a.dense)?,
        whole(dev, K, "emb", a.emb)?,
        whole(dev, K, "dout", a.dout)?,
        whole(dev, K, "ddense", a.ddense)?,
        whole(dev, K, "demb", a.demb)?,
    ];
    let width = interaction_width(a.tables, a.dim);
    let params = [a.batch, a.tables, a.dim, width];
    let n = a.batch as u64 * (a.tables as u64 + 1) * a.dim as u64;
    dev.launch(
        Kernel::InteractionBackward,
        &params,
        &binds,
        Grid::Linear(n.div_ceil(WG)),
    )
}

pub(super) fn bce_loss(dev: &WgpuDevice, a: &BceLoss<'_, WgpuBuffer>) -> Result<(), DeviceError> {
    const K: &str = "bce_loss";
    a.validate(|b| b.bytes)?;
    let binds = [
        whole(dev, K, "logits", a.logits)?,
        whole(dev, K, "labels", a.labels)?,
        whole(dev, K, "loss", a.loss)?,
        whole(dev, K, "dlogits", a.dlogits)?,
    ];
    dev.launch(
        Kernel::BceLoss,
        &[a.batch, a.scale.to_bits()],
        &binds,
        Grid::Linear((a.batch as u64).div_ceil(WG)),
    )
}

pub(super) fn dense_update(
    dev: &WgpuDevice,
    a: &DenseUpdate<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "dense_update";
    a.validate(|b| b.bytes)?;
    let (adagrad, eps, state) = match (a.optimizer, a.state) {
        (Optimizer::Adagrad, Some(s)) => (1u32, a.eps, s),
        // SGD binds a dummy in the state slot; `validate` already rejected Adagrad without state.
        _ => (0, 0.0, &dev.dummy),
    };
    let binds = [
        whole(dev, K, "param", a.param)?,
        whole(dev, K, "grad", a.grad)?,
        whole(dev, K, "state", state)?,
    ];
    let params = [a.len, a.lr.to_bits(), adagrad, eps.to_bits()];
    dev.launch(
        Kernel::DenseUpdate,
        &params,
        &binds,
        Grid::Linear((a.len as u64).div_ceil(WG)),
    )
}

/// Windows over the cache (and its per-slot state), one pass per window, as for tables.
fn cache_windows(
    dev: &WgpuDevice,
    k: &'static str,
    cache: &WgpuBuffer,
    state: Option<&WgpuBuffer>,
    slots: u64,
    dim: u64,
) -> Result<Vec<(Window, Option<Window>)>, DeviceError> {
    let max = dev.limits.max_binding;
    let mut out = Vec::new();
    let mut r = 0;
    while r < slots {
        let mut w = window_at(dev, k, cache, r, slots, 4 * dim, max)?;
        let s = match state {
            Some(st) => {
                let s = window_at(dev, k, st, r, w.hi, 4, max)?;
                w = window_at(dev, k, cache, r, s.hi, 4 * dim, max)?;
                Some(s)
            }
            None => None,
        };
        r = w.hi;
        out.push((w, s));
    }
    Ok(out)
}

pub(super) fn dequantize_rows(
    dev: &WgpuDevice,
    a: &DequantizeRows<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "dequantize_rows";
    a.validate(|b| b.bytes)?;
    if a.rows == 0 {
        return Ok(());
    }
    let (packed, slots) = (
        whole(dev, K, "packed", a.packed)?,
        whole(dev, K, "slots", a.slots)?,
    );
    let staged = match &a.state {
        Some(st) => whole(dev, K, "staged state", st.staged)?,
        None => whole(dev, K, "dummy", &dev.dummy)?,
    };
    let words = a.precision.row_words(a.dim as usize) as u32;
    let cache_state = a.state.as_ref().map(|s| s.cache_state);
    for (w, s) in cache_windows(
        dev,
        K,
        a.cache,
        cache_state,
        a.cache_rows as u64,
        a.dim as u64,
    )? {
        let state_bind = match (cache_state, s) {
            (Some(cs), Some(s)) => s.bind(cs),
            _ => whole(dev, K, "dummy", &dev.dummy2)?,
        };
        let params = [
            a.rows,
            a.dim,
            words,
            a.precision.code(),
            w.lo as u32,
            w.hi as u32,
            w.base as u32,
            a.state.is_some() as u32,
            s.map_or(0, |s| s.base as u32),
        ];
        let binds = [packed, slots, w.bind(a.cache), staged, state_bind];
        dev.launch(
            Kernel::DequantizeRows,
            &params,
            &binds,
            Grid::Linear((a.rows as u64 * a.dim as u64).div_ceil(WG)),
        )?;
    }
    Ok(())
}

pub(super) fn quantize_rows(
    dev: &WgpuDevice,
    a: &QuantizeRows<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: &str = "quantize_rows";
    a.validate(|b| b.bytes)?;
    if a.rows == 0 {
        return Ok(());
    }
    let (slots, ids, packed) = (
        whole(dev, K, "slots", a.slots)?,
        whole(dev, K, "row_ids", a.row_ids)?,
        whole(dev, K, "packed", a.packed)?,
    );
    let staged = match &a.state {
        Some(st) => whole(dev, K, "staged state", st.staged)?,
        None => whole(dev, K, "dummy", &dev.dummy)?,
    };
    let words = a.precision.row_words(a.dim as usize) as u32;
    let cache_state = a.state.as_ref().map(|s| s.cache_state);
    for (w, s) in cache_windows(
        dev,
        K,
        a.cache,
        cache_state,
        a.cache_rows as u64,
        a.dim as u64,
    )? {
        let state_bind = match (cache_state, s) {
            (Some(cs), Some(s)) => s.bind(cs),
            _ => whole(dev, K, "dummy", &dev.dummy2)?,
        };
        let params = [
            a.rows,
            a.dim,
            words,
            a.precision.code(),
            w.lo as u32,
            w.hi as u32,
            w.base as u32,
            a.state.is_some() as u32,
            s.map_or(0, |s| s.base as u32),
            (a.rounding == Rounding::Stochastic) as u32,
            a.seed,
            a.step,
        ];
        let binds = [w.bind(a.cache), slots, ids, packed, state_bind, staged];
        dev.launch(
            Kernel::QuantizeRows,
            &params,
            &binds,
            Grid::Linear(a.rows as u64),
        )?;
    }
    Ok(())
}
