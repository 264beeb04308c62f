//! Embedding kernels on the CPU: pooled lookup and the fused backward + optimizer.
//!
//! The backward walks the batch's unique-row map (CSR): each unique row sums the gradients of the
//! bags that read it, in batch order, and is updated once. Unique rows are strictly increasing,
//! which lets the table be split into disjoint mutable ranges, one per rayon task — safe Rust,
//! no atomics, the same result for any thread count.

use super::simd::{add_rows_block, for_each_block, sum_rows_block};
use crate::device::{DeviceError, Pooling};
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
    const K: &str = "bag_forward";
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
        let it = || rows.iter().map(|&r| r as usize);
        for_each_block(dim, |col, width| match width {
            64 => o[col..col + 64].copy_from_slice(&add_rows_block::<64>(table, dim, col, it())),
            32 => o[col..col + 32].copy_from_slice(&add_rows_block::<32>(table, dim, col, it())),
            16 => o[col..col + 16].copy_from_slice(&add_rows_block::<16>(table, dim, col, it())),
            8 => o[col..col + 8].copy_from_slice(&add_rows_block::<8>(table, dim, col, it())),
            _ => o[col] = add_rows_block::<1>(table, dim, col, it())[0],
        });
        if mean && !rows.is_empty() {
            let inv = 1.0 / rows.len() as f32;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

/// Checks a unique-row map against the table and gradient it will be applied with.
#[allow(clippy::too_many_arguments)]
fn check_map(
    kernel: &'static str,
    rows: u32,
    dim: usize,
    table_len: usize,
    grad_len: usize,
    grad_stride: usize,
    grad_offset: usize,
    unique_rows: &[u32],
    row_starts: &[u32],
    bag_ids: &[u32],
    bags: usize,
) -> Result<(), DeviceError> {
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
    check_len(
        kernel,
        "grad",
        grad_len,
        strided_len(bags, grad_stride, grad_offset, dim),
    )?;
    let used = *row_starts.last().unwrap_or(&0) as usize;
    if let Some(p) = bag_ids[..used].iter().position(|&b| b as usize >= bags) {
        return bad(format!(
            "bag_ids[{p}] = {} but there are {bags} bags",
            bag_ids[p]
        ));
    }
    Ok(())
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

/// Writes into `acc` (`dim` long) the gradient of unique row `u`: the sum of the gradients of
/// the bags that read it, in batch order (each scaled by 1/len for mean pooling).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_gradient(
    acc: &mut [f32],
    u: usize,
    row_starts: &[u32],
    bag_ids: &[u32],
    offsets: &[u32],
    pooling: Pooling,
    grad: &[f32],
    grad_stride: usize,
    grad_offset: usize,
) {
    let bags = &bag_ids[row_starts[u] as usize..row_starts[u + 1] as usize];
    // A gradient row of bag b is "row b" of `grad` seen as a table of width `grad_stride`.
    let (g, s, o) = (grad, grad_stride, grad_offset);
    match pooling {
        Pooling::Sum => {
            let it = || bags.iter().map(|&b| b as usize);
            for_each_block(acc.len(), |col, width| match width {
                64 => {
                    acc[col..col + 64].copy_from_slice(&add_rows_block::<64>(g, s, o + col, it()))
                }
                32 => {
                    acc[col..col + 32].copy_from_slice(&add_rows_block::<32>(g, s, o + col, it()))
                }
                16 => {
                    acc[col..col + 16].copy_from_slice(&add_rows_block::<16>(g, s, o + col, it()))
                }
                8 => acc[col..col + 8].copy_from_slice(&add_rows_block::<8>(g, s, o + col, it())),
                _ => acc[col] = add_rows_block::<1>(g, s, o + col, it())[0],
            });
        }
        Pooling::Mean => {
            // A bag that reads this row has at least one index.
            let it = || {
                bags.iter().map(|&b| {
                    let b = b as usize;
                    (b, 1.0 / (offsets[b + 1] - offsets[b]) as f32)
                })
            };
            for_each_block(acc.len(), |col, width| match width {
                64 => {
                    acc[col..col + 64].copy_from_slice(&sum_rows_block::<64>(g, s, o + col, it()))
                }
                32 => {
                    acc[col..col + 32].copy_from_slice(&sum_rows_block::<32>(g, s, o + col, it()))
                }
                16 => {
                    acc[col..col + 16].copy_from_slice(&sum_rows_block::<16>(g, s, o + col, it()))
                }
                8 => acc[col..col + 8].copy_from_slice(&sum_rows_block::<8>(g, s, o + col, it())),
                _ => acc[col] = sum_rows_block::<1>(g, s, o + col, it())[0],
            });
        }
    }
}

/// One task of the fused backward: the unique rows `group` (the `task`-th group), whose table
/// rows are `part` (starting at row `group[0]`) and whose accumulators are `state` (Adagrad).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
fn update_rows(
    part: &mut [f32],
    mut state: Option<&mut [f32]>,
    group: &[u32],
    first_unique: usize,
    dim: usize,
    row_starts: &[u32],
    bag_ids: &[u32],
    offsets: &[u32],
    pooling: Pooling,
    grad: &[f32],
    grad_stride: usize,
    grad_offset: usize,
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
        let u = first_unique + j;
        row_gradient(
            acc,
            u,
            row_starts,
            bag_ids,
            offsets,
            pooling,
            grad,
            grad_stride,
            grad_offset,
        );
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
#[allow(clippy::too_many_arguments)]
pub fn bag_backward_sgd(
    table: &mut [f32],
    rows: u32,
    dim: usize,
    unique_rows: &[u32],
    row_starts: &[u32],
    bag_ids: &[u32],
    offsets: &[u32],
    pooling: Pooling,
    grad: &[f32],
    grad_stride: usize,
    grad_offset: usize,
    lr: f32,
) -> Result<(), DeviceError> {
    const K: &str = "bag_backward_sgd";
    check_offsets(K, offsets, usize::MAX)?;
    let bags = offsets.len().saturating_sub(1);
    let (tl, gl) = (table.len(), grad.len());
    check_map(
        K,
        rows,
        dim,
        tl,
        gl,
        grad_stride,
        grad_offset,
        unique_rows,
        row_starts,
        bag_ids,
        bags,
    )?;
    let parts = split_by_task(table, dim, unique_rows);
    parts
        .into_par_iter()
        .zip(unique_rows.par_chunks(ROWS_PER_TASK))
        .enumerate()
        .for_each_init(
            || vec![0f32; dim],
            |acc, (task, (part, group))| {
                let u0 = task * ROWS_PER_TASK;
                let (s, o) = (grad_stride, grad_offset);
                let m = (row_starts, bag_ids, offsets);
                update_rows(
                    part, None, group, u0, dim, m.0, m.1, m.2, pooling, grad, s, o, lr, 0.0, acc,
                );
            },
        );
    Ok(())
}

/// Fused embedding backward + row-wise Adagrad (FBGEMM's rule): with `g` the row's summed
/// gradient, `state[r] += mean(g²)`, then `table[r] -= lr * g / (sqrt(state[r]) + eps)`.
#[allow(clippy::too_many_arguments)]
pub fn bag_backward_adagrad(
    table: &mut [f32],
    state: &mut [f32],
    rows: u32,
    dim: usize,
    unique_rows: &[u32],
    row_starts: &[u32],
    bag_ids: &[u32],
    offsets: &[u32],
    pooling: Pooling,
    grad: &[f32],
    grad_stride: usize,
    grad_offset: usize,
    lr: f32,
    eps: f32,
) -> Result<(), DeviceError> {
    const K: &str = "bag_backward_adagrad";
    check_offsets(K, offsets, usize::MAX)?;
    let bags = offsets.len().saturating_sub(1);
    let (tl, gl) = (table.len(), grad.len());
    check_map(
        K,
        rows,
        dim,
        tl,
        gl,
        grad_stride,
        grad_offset,
        unique_rows,
        row_starts,
        bag_ids,
        bags,
    )?;
    check_len(K, "state", state.len(), rows as usize)?;
    let parts = split_by_task(table, dim, unique_rows);
    let states = split_by_task(state, 1, unique_rows);
    parts
        .into_par_iter()
        .zip(states)
        .zip(unique_rows.par_chunks(ROWS_PER_TASK))
        .enumerate()
        .for_each_init(
            || vec![0f32; dim],
            |acc, (task, ((part, st), group))| {
                let u0 = task * ROWS_PER_TASK;
                let (s, o) = (grad_stride, grad_offset);
                let m = (row_starts, bag_ids, offsets);
                update_rows(
                    part,
                    Some(st),
                    group,
                    u0,
                    dim,
                    m.0,
                    m.1,
                    m.2,
                    pooling,
                    grad,
                    s,
                    o,
                    lr,
                    eps,
                    acc,
                );
            },
        );
    Ok(())
}
