//! Embedding kernels on the CPU: pooled lookup and the fused backward + optimizer.
//!
//! The backward walks the batch's unique-row map (CSR): each unique row sums the gradients of the
//! bags that read it, in batch order, and is updated once. Unique rows are strictly increasing,
//! which lets the table be split into disjoint mutable ranges, one per rayon task — safe Rust,
//! no atomics, the same result for any thread count.

use super::simd::{AddRows, SumRows, write_blocks};
use crate::device::{DeviceError, KernelId, Pooling};
use crate::hostmem::prefetch;
use multiversion::multiversion;
use rayon::prelude::*;

/// Unique rows handled by one rayon task in the backward.
const ROWS_PER_TASK: usize = 256;
/// Bags pooled by one rayon task in the forward.
const BAGS_PER_TASK: usize = 32;
/// How many bags ahead the forward prefetches rows: enough independent cache misses in flight
/// to cover DRAM latency (one bag's sums take less time than one miss).
const PREFETCH_BAGS: usize = 4;

fn check_len(
    kernel: &'static str,
    what: &str,
    have: usize,
    need: usize,
) -> Result<(), DeviceError> {
    if have < need {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: format!("`{what}` holds {have} elements, the shapes need {need}"),
        });
    }
    Ok(())
}

/// Elements a strided per-bag tensor needs.
fn strided_len(bags: usize, stride: usize, offset: usize, dim: usize) -> usize {
    if bags == 0 {
        0
    } else {
        (bags - 1) * stride + offset + dim
    }
}

fn check_offsets(kernel: &'static str, offsets: &[u32], nnz: usize) -> Result<(), DeviceError> {
    let bad = |message: String| Err(DeviceError::InvalidArgument { kernel, message });
    if offsets.first().copied().unwrap_or(0) != 0 {
        return bad(format!("offsets[0] is {}, expected 0", offsets[0]));
    }
    if let Some(w) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return bad(format!("offsets decrease at bag {w}"));
    }
    let last = offsets.last().copied().unwrap_or(0) as usize;
    if last > nnz {
        return bad(format!(
            "offsets end at {last} but only {nnz} indices were given"
        ));
    }
    Ok(())
}

/// Pooled lookup: `out[b * out_stride + out_offset ..][..dim] = pool(table rows of bag b)`.
///
/// `offsets` has one entry more than there are bags. An index `>= rows` is an error (nothing is
/// read past the table); an empty bag pools to zeros.
#[allow(clippy::too_many_arguments)]
pub fn bag_forward(
    table: &[f32],
    rows: u32,
    dim: usize,
    indices: &[u32],
    offsets: &[u32],
    pooling: Pooling,
    out: &mut [f32],
    out_stride: usize,
    out_offset: usize,
) -> Result<(), DeviceError> {
    const K: &str = KernelId::BagForward.name();
    check_offsets(K, offsets, indices.len())?;
    let bags = offsets.len().saturating_sub(1);
    check_len(K, "table", table.len(), rows as usize * dim)?;
    let out_len = strided_len(bags, out_stride, out_offset, dim);
    check_len(K, "out", out.len(), out_len)?;
    let nnz = offsets.last().copied().unwrap_or(0) as usize;
    if let Some(p) = indices[..nnz].iter().position(|&i| i >= rows) {
        return Err(DeviceError::IndexOutOfRange {
            kernel: K,
            index: indices[p],
            position: p,
            rows,
        });
    }
    if bags == 0 {
        return Ok(());
    }
    let mean = pooling == Pooling::Mean;
    out[..out_len]
        .par_chunks_mut(out_stride * BAGS_PER_TASK)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first = task * BAGS_PER_TASK;
            let count = BAGS_PER_TASK.min(bags - first);
            pool_bags(
                table, dim, indices, offsets, first, count, chunk, out_stride, out_offset, mean,
            );
        });
    Ok(())
}

/// Pools bags `first .. first + count` into `out` (which starts at bag `first`). While pooling a
/// bag it prefetches the rows of the next, so the next bag's random reads overlap this one's sums.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
fn pool_bags(
    table: &[f32],
    dim: usize,
    indices: &[u32],
    offsets: &[u32],
    first: usize,
    count: usize,
    out: &mut [f32],
    stride: usize,
    off: usize,
    mean: bool,
) {
    let bag_rows = |b: usize| &indices[offsets[b] as usize..offsets[b + 1] as usize];
    let bags = offsets.len() - 1;
    let prefetch_bag = |b: usize| {
        if b < bags {
            for &r in bag_rows(b) {
                prefetch(&table[r as usize * dim..][..dim]);
            }
        }
    };
    for b in first..first + PREFETCH_BAGS {
        prefetch_bag(b);
    }
    for j in 0..count {
        let b = first + j;
        prefetch_bag(b + PREFETCH_BAGS);
        let rows = bag_rows(b);
        let o = &mut out[j * stride + off..][..dim];
        let rows_of_bag = || rows.iter().map(|&r| r as usize);
        let sum = AddRows {
            table,
            width: dim,
            offset: 0,
            rows: rows_of_bag,
        };
        write_blocks(o, &sum);
        if mean && !rows.is_empty() {
            let inv = 1.0 / rows.len() as f32;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

/// What the fused backward reads, as slices: the batch's unique-row map (CSR, see
/// [`RowGradMap`](crate::device::RowGradMap)), its bag offsets and the gradient of the forward's
/// output: [`BagBackward`](crate::device::BagBackward)'s inputs on the host.
#[derive(Clone, Copy)]
pub struct BagGrads<'a> {
    /// `[unique]` row ids, strictly increasing.
    pub unique_rows: &'a [u32],
    /// `[unique + 1]` offsets into `bag_ids`.
    pub row_starts: &'a [u32],
    /// The bag of each occurrence, grouped by row, in batch order.
    pub bag_ids: &'a [u32],
    /// `[bags + 1]` bag offsets (mean pooling divides by each bag's length).
    pub offsets: &'a [u32],
    /// Sum or mean: must match the forward.
    pub pooling: Pooling,
    /// Gradient of the forward's output, bag `b` at `b * grad_stride + grad_offset`.
    pub grad: &'a [f32],
    /// Elements between consecutive bags in `grad`.
    pub grad_stride: usize,
    /// Element offset of this table's vector inside a bag's gradient row.
    pub grad_offset: usize,
}

impl BagGrads<'_> {
    /// Checks the offsets, the map and the gradient against each other and against a table of
    /// `rows × dim` values held in `table_len`.
    fn check(
        &self,
        kernel: &'static str,
        rows: u32,
        dim: usize,
        table_len: usize,
    ) -> Result<(), DeviceError> {
        check_offsets(kernel, self.offsets, usize::MAX)?;
        let bags = self.offsets.len().saturating_sub(1);
        let (unique_rows, row_starts, bag_ids) = (self.unique_rows, self.row_starts, self.bag_ids);
        let bad = |message: String| Err(DeviceError::InvalidArgument { kernel, message });
        if row_starts.len() != unique_rows.len() + 1 {
            return bad(format!(
                "{} row_starts for {} unique rows",
                row_starts.len(),
                unique_rows.len()
            ));
        }
        check_offsets(kernel, row_starts, bag_ids.len())?;
        if let Some(w) = unique_rows.windows(2).position(|w| w[1] <= w[0]) {
            return bad(format!(
                "unique_rows are not strictly increasing at position {}",
                w + 1
            ));
        }
        // Strictly increasing: only the last row can be past the table.
        if let Some(&r) = unique_rows.last()
            && r >= rows
        {
            return Err(DeviceError::IndexOutOfRange {
                kernel,
                index: r,
                position: unique_rows.len() - 1,
                rows,
            });
        }
        check_len(kernel, "table", table_len, rows as usize * dim)?;
        let grad_len = strided_len(bags, self.grad_stride, self.grad_offset, dim);
        check_len(kernel, "grad", self.grad.len(), grad_len)?;
        let used = *row_starts.last().unwrap_or(&0) as usize;
        if let Some(p) = bag_ids[..used].iter().position(|&b| b as usize >= bags) {
            return bad(format!(
                "bag_ids[{p}] = {} but there are {bags} bags",
                bag_ids[p]
            ));
        }
        Ok(())
    }

    /// Writes into `acc` (`dim` long) the gradient of unique row `u`: the sum of the gradients
    /// of the bags that read it, in batch order (each scaled by 1/len for mean pooling).
    #[inline(always)]
    fn row_gradient(&self, acc: &mut [f32], u: usize) {
        let bags = &self.bag_ids[self.row_starts[u] as usize..self.row_starts[u + 1] as usize];
        // A gradient row of bag b is "row b" of `grad` seen as a table of width `grad_stride`.
        let (g, s, o) = (self.grad, self.grad_stride, self.grad_offset);
        match self.pooling {
            Pooling::Sum => {
                let rows = || bags.iter().map(|&b| b as usize);
                write_blocks(
                    acc,
                    &AddRows {
                        table: g,
                        width: s,
                        offset: o,
                        rows,
                    },
                );
            }
            Pooling::Mean => {
                // A bag that reads this row has at least one index.
                let offsets = self.offsets;
                let rows = || {
                    bags.iter().map(|&b| {
                        let b = b as usize;
                        (b, 1.0 / (offsets[b + 1] - offsets[b]) as f32)
                    })
                };
                write_blocks(
                    acc,
                    &SumRows {
                        table: g,
                        width: s,
                        offset: o,
                        rows,
                    },
                );
            }
        }
    }
}

/// Splits `data` (`width` values per row) into one mutable slice per task, each covering the
/// rows from the task's first to its last unique row. Needs strictly increasing `unique_rows`.
fn split_by_task<'a>(
    mut data: &'a mut [f32],
    width: usize,
    unique_rows: &[u32],
) -> Vec<&'a mut [f32]> {
    let mut parts = Vec::with_capacity(unique_rows.len().div_ceil(ROWS_PER_TASK));
    let mut base = 0usize; // first row of `data`
    for group in unique_rows.chunks(ROWS_PER_TASK) {
        let first = group[0] as usize;
        let last = group[group.len() - 1] as usize;
        let rest = std::mem::take(&mut data);
        let (_, from_first) = rest.split_at_mut((first - base) * width);
        let (part, after) = from_first.split_at_mut((last + 1 - first) * width);
        parts.push(part);
        data = after;
        base = last + 1;
    }
    parts
}

/// One task of the fused backward: the unique rows `group` (the ones from `first_unique` on),
/// whose table rows are `part` (starting at row `group[0]`) and whose accumulators are `state`
/// (Adagrad; `None` for SGD).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
fn update_rows<'g>(
    part: &mut [f32],
    mut state: Option<&mut [f32]>,
    group: &[u32],
    first_unique: usize,
    dim: usize,
    grads: &BagGrads<'g>,
    lr: f32,
    eps: f32,
    acc: &mut [f32],
) {
    let base = group[0] as usize;
    for (j, &r) in group.iter().enumerate() {
        if let Some(&ahead) = group.get(j + 2) {
            let ahead = ahead as usize - base;
            prefetch(&part[ahead * dim..][..dim]);
            if let Some(st) = state.as_deref() {
                prefetch(std::slice::from_ref(&st[ahead]));
            }
        }
        grads.row_gradient(acc, first_unique + j);
        let local = r as usize - base;
        let w = &mut part[local * dim..][..dim];
        let step = match state.as_deref_mut() {
            None => lr,
            Some(st) => {
                let g2 = acc.iter().map(|g| g * g).sum::<f32>() / dim as f32;
                st[local] += g2;
                lr / (st[local].sqrt() + eps)
            }
        };
        w.iter_mut()
            .zip(acc.iter())
            .for_each(|(w, g)| *w -= step * g);
    }
}

/// Fused embedding backward + SGD: `table[r] -= lr * sum of the gradients of the bags reading r`.
pub fn bag_backward_sgd(
    table: &mut [f32],
    rows: u32,
    dim: usize,
    grads: &BagGrads<'_>,
    lr: f32,
) -> Result<(), DeviceError> {
    grads.apply(table, None, rows, dim, lr, 0.0)
}

/// Fused embedding backward + row-wise Adagrad (FBGEMM's rule): with `g` the row's summed
/// gradient, `state[r] += mean(g²)`, then `table[r] -= lr * g / (sqrt(state[r]) + eps)`.
pub fn bag_backward_adagrad(
    table: &mut [f32],
    state: &mut [f32],
    rows: u32,
    dim: usize,
    grads: &BagGrads<'_>,
    lr: f32,
    eps: f32,
) -> Result<(), DeviceError> {
    grads.apply(table, Some(state), rows, dim, lr, eps)
}

impl BagGrads<'_> {
    /// Both fused backwards on a `rows × dim` table: Adagrad's with its per-row `state`, SGD's
    /// (which ignores `eps`) without. Each rayon task owns the table rows (and state) of its
    /// group of unique rows.
    fn apply(
        &self,
        table: &mut [f32],
        state: Option<&mut [f32]>,
        rows: u32,
        dim: usize,
        lr: f32,
        eps: f32,
    ) -> Result<(), DeviceError> {
        let kernel = KernelId::bag_backward(state.is_some()).name();
        self.check(kernel, rows, dim, table.len())?;
        if let Some(st) = &state {
            check_len(kernel, "state", st.len(), rows as usize)?;
        }
        let parts = split_by_task(table, dim, self.unique_rows);
        let states: Vec<Option<&mut [f32]>> = match state {
            Some(st) => split_by_task(st, 1, self.unique_rows)
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..parts.len()).map(|_| None).collect(),
        };
        parts
            .into_par_iter()
            .zip(states)
            .zip(self.unique_rows.par_chunks(ROWS_PER_TASK))
            .enumerate()
            .for_each_init(
                || vec![0f32; dim],
                |acc, (task, ((part, st), group))| {
                    let u0 = task * ROWS_PER_TASK;
                    update_rows(part, st, group, u0, dim, self, lr, eps, acc);
                },
            );
        Ok(())
    }
}

/// [`Device`](crate::device::Device)'s embedding methods on the CPU: check the arguments as every
/// backend does, lock the buffers, run the kernels above.
pub(super) mod launch {
    use super::super::{CpuBuffer, CpuDevice, f32s, f32s_mut};
    use super::BagGrads;
    use crate::device::{BagBackward, BagForward, DeviceError};

    pub fn bag_forward(_: &CpuDevice, a: &BagForward<'_, CpuBuffer>) -> Result<(), DeviceError> {
        let (table, indices, offsets) = (a.table.read(), a.indices.read(), a.offsets.read());
        let mut out = a.out.buffer.write();
        let s = &a.shape;
        super::bag_forward(
            f32s(&table),
            s.rows,
            s.dim as usize,
            &indices,
            &offsets[..s.bags as usize + 1],
            s.pooling,
            f32s_mut(&mut out),
            a.out.stride as usize,
            a.out.offset as usize,
        )
    }

    /// `bag_backward_sgd` (`adagrad` is `None`) or `bag_backward_adagrad` (the per-row state and
    /// `eps`).
    pub fn bag_backward(
        _: &CpuDevice,
        a: &BagBackward<'_, CpuBuffer>,
        adagrad: Option<(&CpuBuffer, f32)>,
    ) -> Result<(), DeviceError> {
        let (m, s) = (&a.map, &a.shape);
        let (rows, starts, bags) = (m.unique_rows.read(), m.row_starts.read(), m.bag_ids.read());
        let (offsets, grad) = (a.offsets.read(), a.grad.buffer.read());
        let mut table = a.table.write();
        let mut state = adagrad.map(|(s, _)| s.write());
        let u = m.unique as usize;
        let grads = BagGrads {
            unique_rows: &rows[..u],
            row_starts: &starts[..u + 1],
            bag_ids: &bags,
            offsets: &offsets[..s.bags as usize + 1],
            pooling: s.pooling,
            grad: f32s(&grad),
            grad_stride: a.grad.stride as usize,
            grad_offset: a.grad.offset as usize,
        };
        let (dim, eps) = (s.dim as usize, adagrad.map_or(0.0, |(_, e)| e));
        let state = state.as_deref_mut().map(|s| f32s_mut(s));
        let table = f32s_mut(&mut table);
        grads.apply(table, state, s.rows, dim, a.lr, eps)
    }
}
