//! Moving rows between the packed host format and FP32 cache slots, on the CPU: the reference
//! `quantize_row` / `dequantize_row` of `embedding::precision`, rows in rayon tasks of
//! [`ROWS_PER_TASK`], prefetched a few rows ahead.

use crate::device::{DeviceError, KernelId};
use crate::hostmem::prefetch;
use crate::precision::{NoiseKey, Precision, Rounding, dequantize_row, quantize_row};
use rayon::prelude::*;

fn invalid(kernel: &'static str, message: String) -> DeviceError {
    DeviceError::InvalidArgument { kernel, message }
}

/// Rows per rayon task of the row kernels.
const ROWS_PER_TASK: usize = 64;
/// How many rows ahead the row kernels prefetch: cache rows sit at random addresses, and
/// reading them one after another would pay a memory latency per row.
const PREFETCH: usize = 4;

/// Checks that every slot is below `cache_rows` and that none repeats; returns the row indices
/// in increasing slot order.
fn slot_order(
    kernel: &'static str,
    slots: &[u32],
    cache_rows: u32,
) -> Result<Vec<u32>, DeviceError> {
    if let Some(p) = slots.iter().position(|&s| s >= cache_rows) {
        return Err(DeviceError::IndexOutOfRange {
            kernel,
            index: slots[p],
            position: p,
            rows: cache_rows,
        });
    }
    let mut order: Vec<u32> = (0..slots.len() as u32).collect();
    radsort::sort_by_key(&mut order, |&i| slots[i as usize]);
    if let Some(w) = order
        .windows(2)
        .find(|w| slots[w[0] as usize] == slots[w[1] as usize])
    {
        return Err(invalid(
            kernel,
            format!("slot {} is written twice", slots[w[0] as usize]),
        ));
    }
    Ok(order)
}

/// `cache[slots[i]] = dequantize(packed row i)`; with `state = (staged, cache_state)`, also
/// `cache_state[slots[i]] = staged[i]`. Slots must be distinct and below `cache_rows`.
pub fn dequantize_rows(
    packed: &[u32],
    slots: &[u32],
    dim: usize,
    precision: Precision,
    cache: &mut [f32],
    cache_rows: u32,
    state: Option<(&[f32], &mut [f32])>,
) -> Result<(), DeviceError> {
    const K: &str = KernelId::DequantizeRows.name();
    let words = precision.row_words(dim);
    let order = slot_order(K, slots, cache_rows)?;
    // Split the cache into the distinct destination rows, in slot order, so rayon can fill them.
    let mut dests: Vec<(&mut [f32], u32)> = Vec::with_capacity(order.len());
    let mut rest = &mut cache[..cache_rows as usize * dim];
    let mut base = 0usize;
    for &i in &order {
        let s = slots[i as usize] as usize;
        let tail = std::mem::take(&mut rest);
        let (_, from) = tail.split_at_mut((s - base) * dim);
        let (row, after) = from.split_at_mut(dim);
        dests.push((row, i));
        rest = after;
        base = s + 1;
    }
    dests.par_chunks_mut(ROWS_PER_TASK).for_each(|chunk| {
        for k in 0..chunk.len() {
            if let Some((ahead, _)) = chunk.get(k + PREFETCH) {
                prefetch(ahead);
            }
            let (row, i) = &mut chunk[k];
            let i = *i as usize;
            dequantize_row(precision, &packed[i * words..(i + 1) * words], row);
        }
    });
    if let Some((staged, cache_state)) = state {
        for (i, &s) in slots.iter().enumerate() {
            cache_state[s as usize] = staged[i];
        }
    }
    Ok(())
}

/// `packed row i = quantize(cache[slots[i]])` with noise keyed by `(seed, step, row_ids[i], c)`
/// for stochastic rounding; with `state = (cache_state, staged)`, also
/// `staged[i] = cache_state[slots[i]]`.
#[allow(clippy::too_many_arguments)]
pub fn quantize_rows(
    cache: &[f32],
    cache_rows: u32,
    slots: &[u32],
    row_ids: &[u32],
    dim: usize,
    precision: Precision,
    rounding: Rounding,
    seed: u32,
    step: u32,
    packed: &mut [u32],
    state: Option<(&[f32], &mut [f32])>,
) -> Result<(), DeviceError> {
    const K: &str = KernelId::QuantizeRows.name();
    if let Some(p) = slots.iter().position(|&s| s >= cache_rows) {
        return Err(DeviceError::IndexOutOfRange {
            kernel: K,
            index: slots[p],
            position: p,
            rows: cache_rows,
        });
    }
    let words = precision.row_words(dim);
    let row = |s: u32| &cache[s as usize * dim..(s as usize + 1) * dim];
    packed[..slots.len() * words]
        .par_chunks_mut(words * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, outs)| {
            let first = task * ROWS_PER_TASK;
            for (k, out) in outs.chunks_mut(words).enumerate() {
                let i = first + k;
                if let Some(&ahead) = slots
                    .get(i + PREFETCH)
                    .filter(|_| k + PREFETCH < ROWS_PER_TASK)
                {
                    prefetch(row(ahead));
                }
                let noise = (rounding == Rounding::Stochastic).then_some(NoiseKey {
                    seed,
                    step,
                    row: row_ids[i],
                });
                quantize_row(precision, row(slots[i]), out, noise);
            }
        });
    if let Some((cache_state, staged)) = state {
        for (i, &s) in slots.iter().enumerate() {
            staged[i] = cache_state[s as usize];
        }
    }
    Ok(())
}

/// [`Device`](crate::device::Device)'s row moves on the CPU: check the arguments as every backend
/// does, lock the buffers, run the kernels above.
pub(super) mod launch {
    use super::super::{CpuBuffer, CpuDevice, f32s, f32s_mut};
    use crate::device::{DequantizeRows, DeviceError, QuantizeRows};

    pub fn dequantize_rows(
        _: &CpuDevice,
        DequantizeRows { moved: a }: &DequantizeRows<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        let n = a.rows as usize;
        let (packed, slots) = (a.packed.read(), a.slots.read());
        let mut cache = a.cache.write();
        // The staged state is read, the cache's written.
        let staged = a.state.as_ref().map(|s| s.staged.read());
        let mut cache_state = a.state.as_ref().map(|s| s.cache_state.write());
        let state = staged.as_deref().map(|s| &f32s(s)[..n]);
        let state = state.zip(cache_state.as_deref_mut().map(|s| f32s_mut(s)));
        let (d, p) = (a.dim as usize, a.precision);
        let packed = &packed[..n * p.row_words(d)];
        let cache = f32s_mut(&mut cache);
        super::dequantize_rows(packed, &slots[..n], d, p, cache, a.cache_rows, state)
    }

    pub fn quantize_rows(
        _: &CpuDevice,
        a: &QuantizeRows<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        let m = &a.moved;
        let n = m.rows as usize;
        let (cache, slots, ids) = (m.cache.read(), m.slots.read(), a.row_ids.read());
        let mut packed = m.packed.write();
        // The cache's state is read, the staged written.
        let cache_state = m.state.as_ref().map(|s| s.cache_state.read());
        let mut staged = m.state.as_ref().map(|s| s.staged.write());
        let state = cache_state.as_deref().map(|s| f32s(s));
        let state = state.zip(staged.as_deref_mut().map(|s| &mut f32s_mut(s)[..n]));
        super::quantize_rows(
            f32s(&cache),
            m.cache_rows,
            &slots[..n],
            &ids[..n],
            m.dim as usize,
            m.precision,
            a.rounding,
            a.seed,
            a.step,
            &mut packed[..],
            state,
        )
    }
}
