//! Arguments of the embedding kernels: `bag_forward` and the fused `bag_backward_sgd` /
//! `bag_backward_adagrad`.

use super::{DeviceError, KernelId, distinct, need, nonzero};
use serde::{Deserialize, Serialize};

/// How the rows of a bag are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Sum of the bag's rows.
    #[default]
    Sum,
    /// Mean of the bag's rows (an empty bag pools to zero).
    Mean,
}

/// The shape both embedding kernels take: a `[rows, dim]` table pooled into `bags` bags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BagShape {
    /// Rows in the table (indices must be below it).
    pub rows: u32,
    /// Embedding dimension.
    pub dim: u32,
    /// Number of bags.
    pub bags: u32,
    /// Sum or mean (the backward's must match the forward's).
    pub pooling: Pooling,
}

impl BagShape {
    /// Checks `dim` and the sizes of the `[rows, dim]` table and the `[bags + 1]` offsets, in
    /// that order.
    fn check<B>(
        &self,
        kernel: &'static str,
        bytes: &impl Fn(&B) -> u64,
        table: &B,
        offsets: &B,
    ) -> Result<(), DeviceError> {
        nonzero(kernel, "dim", self.dim)?;
        need(
            kernel,
            "table",
            bytes(table),
            self.rows as u64 * self.dim as u64,
        )?;
        need(kernel, "offsets", bytes(offsets), self.bags as u64 + 1)
    }
}

/// A per-bag f32 tensor of `dim` values at `offset` inside rows of `stride` elements: bag `b`'s
/// values are `buffer[b * stride + offset ..][..dim]` (one table's slice of a batch's rows).
pub struct Strided<'a, B> {
    /// At least `(bags - 1) * stride + offset + dim` elements.
    pub buffer: &'a B,
    /// Elements between consecutive bags (e.g. `tables * dim`).
    pub stride: u32,
    /// Element offset of this table's vector inside a bag's row (e.g. `t * dim`).
    pub offset: u32,
}

impl<'a, B> Strided<'a, B> {
    /// A tensor of one packed `dim`-vector per bag: stride `dim`, offset 0.
    pub fn packed(buffer: &'a B, dim: u32) -> Self {
        Strided {
            buffer,
            stride: dim,
            offset: 0,
        }
    }

    /// Checks that `dim` values fit inside the stride at the offset, and that the buffer (`what`
    /// in messages) holds `bags` rows.
    fn check(
        &self,
        kernel: &'static str,
        what: &str,
        bytes: &impl Fn(&B) -> u64,
        bags: u32,
        dim: u32,
    ) -> Result<(), DeviceError> {
        let (stride, offset) = (self.stride, self.offset);
        if offset as u64 + dim as u64 > stride as u64 {
            return Err(DeviceError::InvalidArgument {
                kernel,
                message: format!(
                    "`{what}` offset {offset} + dim {dim} exceeds the stride {stride}"
                ),
            });
        }
        if bags == 0 {
            return Ok(());
        }
        need(
            kernel,
            what,
            bytes(self.buffer),
            (bags as u64 - 1) * stride as u64 + offset as u64 + dim as u64,
        )
    }
}

/// Arguments of `bag_forward`: `out[b * stride + offset + d] = pool(table[idx, d])` over the
/// indices `indices[offsets[b] .. offsets[b + 1]]` of bag `b`.
pub struct BagForward<'a, B> {
    /// `[rows, dim]` f32.
    pub table: &'a B,
    /// `[offsets[bags]]` u32 row indices.
    pub indices: &'a B,
    /// `[bags + 1]` u32, non-decreasing, `offsets[0] == 0`.
    pub offsets: &'a B,
    /// Table rows, dimension, bags and pooling.
    pub shape: BagShape,
    /// The pooled output.
    pub out: Strided<'a, B>,
}

/// The batch's unique-row map in CSR form (built on the host, see `embedding::RowMap`): unique
/// row `u` is read by the bags `bag_ids[row_starts[u] .. row_starts[u + 1]]`. It lets each unique
/// row be reduced and updated by one worker in a fixed order: deterministic, no float atomics.
pub struct RowGradMap<'a, B> {
    /// `[unique]` u32 row ids, strictly increasing.
    pub unique_rows: &'a B,
    /// `[unique + 1]` u32 offsets into `bag_ids`.
    pub row_starts: &'a B,
    /// `[row_starts[unique]]` u32 bag index of each occurrence, grouped by row, in batch order.
    pub bag_ids: &'a B,
    /// Number of unique rows.
    pub unique: u32,
}

/// Arguments of `bag_backward_sgd` and `bag_backward_adagrad`: for each unique row, the sum of
/// the output gradients of the bags that read it (scaled by 1/len for mean pooling, counted once
/// per occurrence) is applied to the row by the optimizer.
pub struct BagBackward<'a, B> {
    /// `[rows, dim]` f32, updated in place.
    pub table: &'a B,
    /// The batch's unique-row map.
    pub map: RowGradMap<'a, B>,
    /// The batch's bag offsets `[bags + 1]` (mean pooling divides by each bag's length).
    pub offsets: &'a B,
    /// Table rows, dimension, bags and pooling: must match the forward.
    pub shape: BagShape,
    /// Gradient of the forward output, same layout as `BagForward::out`.
    pub grad: Strided<'a, B>,
    /// Learning rate.
    pub lr: f32,
}

impl<B> BagForward<'_, B> {
    /// Checks buffer sizes against the shapes (the index count is checked by the kernel, which
    /// reads it from `offsets`).
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::BagForward.name();
        let s = &self.shape;
        s.check(K, &bytes, self.table, self.offsets)?;
        self.out.check(K, "out", &bytes, s.bags, s.dim)?;
        distinct(
            K,
            self.out.buffer,
            &[self.table, self.indices, self.offsets],
        )
    }
}

impl<B> BagBackward<'_, B> {
    /// Checks buffer sizes against the shapes, and Adagrad's per-row `state` (`None` for SGD).
    pub fn validate(
        &self,
        kernel: &'static str,
        state: Option<&B>,
        bytes: impl Fn(&B) -> u64,
    ) -> Result<(), DeviceError> {
        let (s, m) = (&self.shape, &self.map);
        s.check(kernel, &bytes, self.table, self.offsets)?;
        need(kernel, "unique_rows", bytes(m.unique_rows), m.unique as u64)?;
        need(
            kernel,
            "row_starts",
            bytes(m.row_starts),
            m.unique as u64 + 1,
        )?;
        self.grad.check(kernel, "grad", &bytes, s.bags, s.dim)?;
        let inputs = [
            m.unique_rows,
            m.row_starts,
            m.bag_ids,
            self.offsets,
            self.grad.buffer,
        ];
        distinct(kernel, self.table, &inputs)?;
        if let Some(state) = state {
            if bytes(state) / 4 < s.rows as u64 {
                return Err(DeviceError::InvalidArgument {
                    kernel,
                    message: format!("`state` holds fewer than the table's {} rows", s.rows),
                });
            }
            distinct(kernel, state, &inputs)?;
            distinct(kernel, state, &[self.table])?;
        }
        Ok(())
    }
}

impl<B> BagBackward<'_, B> {
    /// Whether the launch has nothing to update (no unique row, or a table without rows), so a
    /// GPU backend launches nothing.
    pub(crate) fn updates_nothing(&self) -> bool {
        self.map.unique == 0 || self.shape.rows == 0
    }
}
