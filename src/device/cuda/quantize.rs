//! Host side of `kernels/dequantize_rows.cu` and `kernels/quantize_rows.cu`: one warp per moved
//! row. Both take their buffers, then the same shape words, then their own words, then
//! `cache_rows`, so one function launches either.

use super::launch::{Word, Work};
use super::{CudaBuffer, CudaDevice};
use crate::device::{DequantizeRows, DeviceError, KernelId, QuantizeRows, RowMove};
use crate::precision::Rounding;

pub(super) fn dequantize_rows(
    dev: &CudaDevice,
    a: &DequantizeRows<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    let m = &a.moved;
    move_rows(
        dev,
        KernelId::DequantizeRows,
        m,
        &[],
        |staged, cache_state| [m.packed, m.slots, m.cache, staged, cache_state],
    )
}

pub(super) fn quantize_rows(
    dev: &CudaDevice,
    a: &QuantizeRows<'_, CudaBuffer>,
) -> Result<(), DeviceError> {
    let stochastic = (a.rounding == Rounding::Stochastic) as u32;
    let extra = [stochastic, a.seed, a.step];
    let m = &a.moved;
    move_rows(
        dev,
        KernelId::QuantizeRows,
        m,
        &extra,
        |staged, cache_state| [m.cache, m.slots, a.row_ids, m.packed, cache_state, staged],
    )
}

/// Launches `kernel` on `m` with the buffers `order(staged state, cache state)` (the device's two
/// stand-ins when no state moves), then the shape words, whether state moves, `extra`, and
/// `cache_rows` last: both kernels' signatures.
fn move_rows<'a, const N: usize>(
    dev: &'a CudaDevice,
    kernel: KernelId,
    m: &'a RowMove<'a, CudaBuffer>,
    extra: &[u32],
    order: impl FnOnce(&'a CudaBuffer, &'a CudaBuffer) -> [&'a CudaBuffer; N],
) -> Result<(), DeviceError> {
    if m.rows == 0 {
        return Ok(());
    }
    let (staged, cache_state) = m.state_or(&dev.dummy);
    let mut words = m.shape_words().to_vec();
    words.push(m.state.is_some() as u32);
    words.extend_from_slice(extra);
    words.push(m.cache_rows);
    let words: Vec<Word> = words.into_iter().map(Word::U32).collect();
    let bufs = order(staged, cache_state);
    dev.launch(kernel, Work::Warps(m.rows as u64), &bufs, &words)
}
