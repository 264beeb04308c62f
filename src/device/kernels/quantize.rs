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

/// Arguments of `dequantize_rows`: packed rows staged from the host store are expanded into FP32
/// cache slots, `cache[slots[i]] = dequantize(packed row i)` (and their optimizer state, when
/// given, `cache_state[slots[i]] = staged[i]`).
pub struct DequantizeRows<'a, B> {
    /// `[rows × row_words]` u32: the packed rows (layouts in `embedding::precision`).
    pub packed: &'a B,
    /// `[rows]` u32: destination slot of each row.
    pub slots: &'a B,
    /// Rows to expand.
    pub rows: u32,
    /// Values per row.
    pub dim: u32,
    /// Layout of the packed rows.
    pub precision: Precision,
    /// `[cache_rows × dim]` f32: the cache.
    pub cache: &'a B,
    /// Slots in the cache.
    pub cache_rows: u32,
    /// Optimizer state to move along, if any.
    pub state: Option<StateRows<'a, B>>,
}

/// Arguments of `quantize_rows`: cache slots are packed for the host store,
/// `packed row i = quantize(cache[slots[i]])`, rounding with noise keyed by
/// `(seed, step, row_ids[i], column)` (and `staged[i] = cache_state[slots[i]]` when given).
pub struct QuantizeRows<'a, B> {
    /// `[cache_rows × dim]` f32: the cache.
    pub cache: &'a B,
    /// Slots in the cache.
    pub cache_rows: u32,
    /// `[rows]` u32: source slot of each row.
    pub slots: &'a B,
    /// `[rows]` u32: each row's id in its table (the rounding noise key).
    pub row_ids: &'a B,
    /// Rows to pack.
    pub rows: u32,
    /// Values per row.
    pub dim: u32,
    /// Layout to pack into.
    pub precision: Precision,
    /// Nearest or stochastic.
    pub rounding: Rounding,
    /// Noise seed.
    pub seed: u32,
    /// Noise step (the training step).
    pub step: u32,
    /// `[rows × row_words]` u32 output.
    pub packed: &'a B,
    /// Optimizer state to move along, if any.
    pub state: Option<StateRows<'a, B>>,
}

impl<B> DequantizeRows<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::DequantizeRows.name();
        self.row_move().check(&bytes, &[])?;
        distinct(K, self.cache, &[self.packed, self.slots])?;
        if let Some(s) = &self.state {
            distinct(
                K,
                s.cache_state,
                &[self.packed, self.slots, self.cache, s.staged],
            )?;
        }
        Ok(())
    }
}

impl<B> QuantizeRows<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::QuantizeRows.name();
        self.row_move()
            .check(&bytes, &[("row_ids", self.row_ids)])?;
        distinct(K, self.packed, &[self.cache, self.slots, self.row_ids])?;
        if let Some(s) = &self.state {
            distinct(
                K,
                s.staged,
                &[
                    self.cache,
                    self.slots,
                    self.row_ids,
                    self.packed,
                    s.cache_state,
                ],
            )?;
        }
        Ok(())
    }
}

/// What `dequantize_rows` and `quantize_rows` share, borrowed from either: the same buffers play
/// the same roles in both directions (only which side is written differs), so one size check
/// and one launcher per backend serve both.
pub(crate) struct RowMove<'s, B> {
    /// Which of the two kernels.
    pub kernel: KernelId,
    /// `[rows × row_words]` u32: the packed side.
    pub packed: &'s B,
    /// `[rows]` u32: the cache slot of each row.
    pub slots: &'s B,
    /// `[cache_rows × dim]` f32: the cache side.
    pub cache: &'s B,
    /// Slots in the cache.
    pub cache_rows: u32,
    /// Rows moved.
    pub rows: u32,
    /// Values per row.
    pub dim: u32,
    /// Layout of the packed rows.
    pub precision: Precision,
    /// Optimizer state moving along, if any.
    pub state: Option<&'s StateRows<'s, B>>,
}

/// Writes `row_move` once for both argument structs, whose shared fields have the same names.
macro_rules! row_move {
    ($($args:ident),*) => {$(
        impl<B> $args<'_, B> {
            /// The part of these arguments that both row kernels share.
            pub(crate) fn row_move(&self) -> RowMove<'_, B> {
                RowMove {
                    kernel: KernelId::$args,
                    packed: self.packed,
                    slots: self.slots,
                    cache: self.cache,
                    cache_rows: self.cache_rows,
                    rows: self.rows,
                    dim: self.dim,
                    precision: self.precision,
                    state: self.state.as_ref(),
                }
            }
        }
    )*};
}
row_move!(DequantizeRows, QuantizeRows);

impl<'s, B> RowMove<'s, B> {
    /// The words both kernels take first after their buffers: rows, dim, words per packed row,
    /// and the packed format's code.
    pub fn shape_words(&self) -> [u32; 4] {
        let words = self.precision.row_words(self.dim as usize) as u32;
        [self.rows, self.dim, words, self.precision.code()]
    }

    /// The state buffers to pass, `(staged, cache_state)`: the given ones, or the device's two
    /// stand-ins when no state moves. The kernels then touch neither, but a binding or a pointer
    /// argument still needs a buffer; two, so that one buffer is never bound twice in a launch.
    pub fn state_or<'d>(&self, dummies: &'d [B; 2]) -> (&'d B, &'d B)
    where
        's: 'd,
    {
        match self.state {
            Some(s) => (s.staged, s.cache_state),
            None => (&dummies[0], &dummies[1]),
        }
    }

    /// Checks the shared buffers' sizes against the shapes, in the order the messages report
    /// them: `dim`, `packed`, `slots`, then `row_inputs` (other `[rows]` inputs), `cache` and the
    /// state.
    fn check(
        &self,
        bytes: &impl Fn(&B) -> u64,
        row_inputs: &[(&str, &B)],
    ) -> Result<(), DeviceError> {
        let k = self.kernel.name();
        nonzero(k, "dim", self.dim)?;
        let (n, d) = (self.rows as u64, self.dim as u64);
        let words = self.precision.row_words(d as usize) as u64;
        need(k, "packed", bytes(self.packed), n * words)?;
        need(k, "slots", bytes(self.slots), n)?;
        for (what, buffer) in row_inputs {
            need(k, what, bytes(buffer), n)?;
        }
        need(k, "cache", bytes(self.cache), self.cache_rows as u64 * d)?;
        if let Some(s) = self.state {
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
