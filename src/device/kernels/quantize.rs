//! Arguments of the kernels that move rows between the packed host format and FP32 cache slots:
//! `dequantize_rows` (host → cache) and `quantize_rows` (cache → host).

use super::{DeviceError, KernelId, distinct, need, nonzero};
use crate::precision::{Precision, Rounding};

/// Optimizer state travelling with rows between a device cache and the host: one f32 per row.
pub struct StateRows<'a, B> {
    /// `[cache_rows]` f32: the cache's per-slot state.
    pub cache_state: &'a B,
    /// `[rows]` f32: the staged state, one per moved row.
    pub staged: &'a B,
}

/// What `dequantize_rows` and `quantize_rows` share: the same buffers play the same roles in
/// both directions (only which side is written differs), so one size check and one launcher per
/// backend serve both. `rows` packed rows move between the packed side and the cache slots
/// `slots`.
pub struct RowMove<'a, B> {
    /// `[rows × row_words]` u32: the packed side (layouts in `embedding::precision`); the input
    /// of `dequantize_rows`, the output of `quantize_rows`.
    pub packed: &'a B,
    /// `[rows]` u32: the cache slot of each row.
    pub slots: &'a B,
    /// `[cache_rows × dim]` f32: the cache side; the output of `dequantize_rows`, the input of
    /// `quantize_rows`.
    pub cache: &'a B,
    /// Slots in the cache.
    pub cache_rows: u32,
    /// Rows moved.
    pub rows: u32,
    /// Values per row.
    pub dim: u32,
    /// Layout of the packed rows.
    pub precision: Precision,
    /// Optimizer state moving along, if any.
    pub state: Option<StateRows<'a, B>>,
}

/// Arguments of `dequantize_rows`: packed rows staged from the host store are expanded into FP32
/// cache slots, `cache[slots[i]] = dequantize(packed row i)` (and their optimizer state, when
/// given, `cache_state[slots[i]] = staged[i]`).
pub struct DequantizeRows<'a, B> {
    /// The rows to expand, their slots, and the state moving along.
    pub moved: RowMove<'a, B>,
}

/// Arguments of `quantize_rows`: cache slots are packed for the host store,
/// `packed row i = quantize(cache[slots[i]])`, rounding with noise keyed by
/// `(seed, step, row_ids[i], column)` (and `staged[i] = cache_state[slots[i]]` when given).
pub struct QuantizeRows<'a, B> {
    /// The rows to pack, their slots, and the state moving along.
    pub moved: RowMove<'a, B>,
    /// `[rows]` u32: each row's id in its table (the rounding noise key).
    pub row_ids: &'a B,
    /// Nearest or stochastic.
    pub rounding: Rounding,
    /// Noise seed.
    pub seed: u32,
    /// Noise step (the training step).
    pub step: u32,
}

impl<B> DequantizeRows<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: KernelId = KernelId::DequantizeRows;
        let m = &self.moved;
        m.check(K, &bytes, &[])?;
        distinct(K.name(), m.cache, &[m.packed, m.slots])?;
        if let Some(s) = &m.state {
            distinct(
                K.name(),
                s.cache_state,
                &[m.packed, m.slots, m.cache, s.staged],
            )?;
        }
        Ok(())
    }
}

impl<B> QuantizeRows<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: KernelId = KernelId::QuantizeRows;
        let m = &self.moved;
        m.check(K, &bytes, &[("row_ids", self.row_ids)])?;
        distinct(K.name(), m.packed, &[m.cache, m.slots, self.row_ids])?;
        if let Some(s) = &m.state {
            distinct(
                K.name(),
                s.staged,
                &[m.cache, m.slots, self.row_ids, m.packed, s.cache_state],
            )?;
        }
        Ok(())
    }
}

impl<'a, B> RowMove<'a, B> {
    /// The words both kernels take first after their buffers: rows, dim, words per packed row,
    /// and the packed format's code.
    pub(crate) fn shape_words(&self) -> [u32; 4] {
        let words = self.precision.row_words(self.dim as usize) as u32;
        [self.rows, self.dim, words, self.precision.code()]
    }

    /// The state buffers to pass, `(staged, cache_state)`: the given ones, or the device's two
    /// stand-ins when no state moves. The kernels then touch neither, but a binding or a pointer
    /// argument still needs a buffer; two, so that one buffer is never bound twice in a launch.
    pub(crate) fn state_or<'d>(&self, dummies: &'d [B; 2]) -> (&'d B, &'d B)
    where
        'a: 'd,
    {
        match &self.state {
            Some(s) => (s.staged, s.cache_state),
            None => (&dummies[0], &dummies[1]),
        }
    }

    /// Checks the shared buffers' sizes against the shapes for `kernel`, in the order the
    /// messages report them: `dim`, `packed`, `slots`, then `row_inputs` (other `[rows]`
    /// inputs), `cache` and the state.
    fn check(
        &self,
        kernel: KernelId,
        bytes: &impl Fn(&B) -> u64,
        row_inputs: &[(&str, &B)],
    ) -> Result<(), DeviceError> {
        let k = kernel.name();
        nonzero(k, "dim", self.dim)?;
        let (n, d) = (self.rows as u64, self.dim as u64);
        let words = self.precision.row_words(d as usize) as u64;
        need(k, "packed", bytes(self.packed), n * words)?;
        need(k, "slots", bytes(self.slots), n)?;
        for (what, buffer) in row_inputs {
            need(k, what, bytes(buffer), n)?;
        }
        need(k, "cache", bytes(self.cache), self.cache_rows as u64 * d)?;
        if let Some(s) = &self.state {
            need(
                k,
                "cache_state",
                bytes(s.cache_state),
                self.cache_rows as u64,
            )?;
            need(k, "staged state", bytes(s.staged), n)?;
        }
        Ok(())
    }
}
