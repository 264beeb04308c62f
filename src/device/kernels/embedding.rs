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

/// Arguments of `bag_forward`: `out[b * out_stride + out_offset + d] = pool(table[idx, d])` over
/// the indices `indices[offsets[b] .. offsets[b + 1]]` of bag `b`.
pub struct BagForward<'a, B> {
    /// `[rows, dim]` f32.
    pub table: &'a B,
    /// Rows in `table` (indices must be below it).
    pub rows: u32,
    /// Embedding dimension.
    pub dim: u32,
    /// `[offsets[bags]]` u32 row indices.
    pub indices: &'a B,
    /// `[bags + 1]` u32, non-decreasing, `offsets[0] == 0`.
    pub offsets: &'a B,
    /// Number of bags.
    pub bags: u32,
    /// Sum or mean.
    pub pooling: Pooling,
    /// f32 output, at least `(bags - 1) * out_stride + out_offset + dim` elements.
    pub out: &'a B,
    /// Elements between consecutive bags in `out` (e.g. `tables * dim`).
    pub out_stride: u32,
    /// Element offset of this table's vector inside a bag's output row (e.g. `t * dim`).
    pub out_offset: u32,
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
    /// Rows in `table`.
    pub rows: u32,
    /// Embedding dimension.
    pub dim: u32,
    /// The batch's unique-row map.
    pub map: RowGradMap<'a, B>,
    /// The batch's bag offsets `[bags + 1]` (mean pooling divides by each bag's length).
    pub offsets: &'a B,
    /// Number of bags.
    pub bags: u32,
    /// Sum or mean: must match the forward.
    pub pooling: Pooling,
    /// f32 gradient of the forward output, same layout as `BagForward::out`.
    pub grad: &'a B,
    /// Elements between consecutive bags in `grad`.
    pub grad_stride: u32,
    /// Element offset of this table's vector inside a bag's gradient row.
    pub grad_offset: u32,
    /// Learning rate.
    pub lr: f32,
}

impl<B> BagForward<'_, B> {
    /// Checks buffer sizes against the shapes (the index count is checked by the kernel, which
    /// reads it from `offsets`).
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::BagForward.name();
        nonzero(K, "dim", self.dim)?;
        need(
            K,
            "table",
            bytes(self.table),
            self.rows as u64 * self.dim as u64,
        )?;
        need(K, "offsets", bytes(self.offsets), self.bags as u64 + 1)?;
        strided(
            K,
            "out",
            bytes(self.out),
            self.bags,
            self.out_stride,
            self.out_offset,
            self.dim,
        )?;
        distinct(K, self.out, &[self.table, self.indices, self.offsets])
    }
}

/// Checks a per-bag tensor of `dim` values at `offset` inside rows of `stride` elements.
fn strided(
    kernel: &'static str,
    what: &str,
    bytes: u64,
    bags: u32,
    stride: u32,
    offset: u32,
    dim: u32,
) -> Result<(), DeviceError> {
    if offset as u64 + dim as u64 > stride as u64 {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: format!("`{what}` offset {offset} + dim {dim} exceeds the stride {stride}"),
        });
    }
    if bags == 0 {
        return Ok(());
    }
    need(
        kernel,
        what,
        bytes,
        (bags as u64 - 1) * stride as u64 + offset as u64 + dim as u64,
    )
}

impl<B> BagBackward<'_, B> {
    /// Checks buffer sizes against the shapes, and Adagrad's per-row `state` (`None` for SGD).
    pub fn validate(
        &self,
        kernel: &'static str,
        state: Option<&B>,
        bytes: impl Fn(&B) -> u64,
    ) -> Result<(), DeviceError> {
        nonzero(kernel, "dim", self.dim)?;
        need(
            kernel,
            "table",
            bytes(self.table),
            self.rows as u64 * self.dim as u64,
        )?;
        need(kernel, "offsets", bytes(self.offsets), self.bags as u64 + 1)?;
        need(
            kernel,
            "unique_rows",
            bytes(self.map.unique_rows),
            self.map.unique as u64,
        )?;
        need(
            kernel,
            "row_starts",
            bytes(self.map.row_starts),
            self.map.unique as u64 + 1,
        )?;
        strided(
            kernel,
            "grad",
            bytes(self.grad),
            self.bags,
            self.grad_stride,
            self.grad_offset,
            self.dim,
        )?;
        let m = &self.map;
        let inputs = [
            m.unique_rows,
            m.row_starts,
            m.bag_ids,
            self.offsets,
            self.grad,
        ];
        distinct(kernel, self.table, &inputs)?;
        if let Some(state) = state {
            if bytes(state) / 4 < self.rows as u64 {
                return Err(DeviceError::InvalidArgument {
                    kernel,
                    message: format!("`state` holds fewer than the table's {} rows", self.rows),
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
        self.map.unique == 0 || self.rows == 0
    }
}
