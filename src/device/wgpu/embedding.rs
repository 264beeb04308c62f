//! Host side of the WGSL embedding kernels (`shaders/bag_forward.wgsl`,
//! `shaders/bag_backward_{sgd,adagrad}.wgsl`): checks, bindings with the table (and Adagrad's
//! state) in windows, parameters and dispatch shapes. The parameter words follow each shader's
//! `Params` struct, field by field.

use super::window::{Window, row_windows, wholes};
use super::{Grid, WgpuBuffer, WgpuDevice};
use crate::device::{BagBackward, BagForward, DeviceError, KernelId, Pooling};

pub(super) fn bag_forward(
    dev: &WgpuDevice,
    a: &BagForward<'_, WgpuBuffer>,
) -> Result<(), DeviceError> {
    const K: KernelId = KernelId::BagForward;
    let s = &a.shape;
    if s.bags == 0 {
        return Ok(());
    }
    let rest = wholes(
        dev,
        K,
        &[
            ("indices", a.indices),
            ("offsets", a.offsets),
            ("out", a.out.buffer),
        ],
    )?;
    let (rows, row_bytes) = (s.rows as u64, 4 * s.dim as u64);
    let mean = (s.pooling == Pooling::Mean) as u32;
    // A table without rows still runs one pass: it writes the (empty) bags' zeros.
    let windows = match rows {
        0 => vec![Window::EMPTY],
        _ => row_windows(dev, K, a.table, None, rows, row_bytes)?
            .into_iter()
            .map(|(w, _)| w)
            .collect(),
    };
    // One pass per window of the table; later passes add to the first's output.
    for (pass, w) in windows.into_iter().enumerate() {
        let params = [
            s.dim,
            s.bags,
            a.out.stride,
            a.out.offset,
            w.lo as u32,
            w.hi as u32,
            w.base as u32,
            mean,
            (pass > 0) as u32,
        ];
        let mut binds = vec![w.bind(a.table)];
        binds.extend_from_slice(&rest);
        dev.launch(K, &params, &binds, Grid::over(s.bags as u64 * s.dim as u64))?;
    }
    Ok(())
}

/// `bag_backward_sgd` (`adagrad` is `None`) or `bag_backward_adagrad` (Adagrad's per-row state
/// and `eps`).
pub(super) fn bag_backward(
    dev: &WgpuDevice,
    a: &BagBackward<'_, WgpuBuffer>,
    adagrad: Option<(&WgpuBuffer, f32)>,
) -> Result<(), DeviceError> {
    let kernel = KernelId::bag_backward(adagrad.is_some());
    let state = adagrad.map(|(state, _)| state);
    if a.updates_nothing() {
        return Ok(());
    }
    let (m, shape) = (&a.map, &a.shape);
    let named = [
        ("unique_rows", m.unique_rows),
        ("row_starts", m.row_starts),
        ("bag_ids", m.bag_ids),
        ("offsets", a.offsets),
        ("grad", a.grad.buffer),
    ];
    let rest = wholes(dev, kernel, &named)?;
    let (rows, row_bytes) = (shape.rows as u64, 4 * shape.dim as u64);
    let eps = adagrad.map_or(0.0, |(_, e)| e);
    let mean = (shape.pooling == Pooling::Mean) as u32;
    for (t, s) in row_windows(dev, kernel, a.table, state, rows, row_bytes)? {
        let params = [
            shape.dim,
            m.unique,
            a.grad.stride,
            a.grad.offset,
            t.lo as u32,
            t.hi as u32,
            t.base as u32,
            mean,
            a.lr.to_bits(),
            eps.to_bits(),
            s.map_or(0, |s| s.base as u32),
        ];
        let mut binds = vec![t.bind(a.table)];
        binds.extend_from_slice(&rest);
        if let (Some(state), Some(s)) = (state, s) {
            binds.push(s.bind(state));
        }
        dev.launch(kernel, &params, &binds, Grid::Linear(m.unique as u64))?;
    }
    Ok(())
}
