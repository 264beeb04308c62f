//! Dense kernels on the CPU: bias + activation, DLRM dot interaction, BCE loss, optimizers.
//!
//! Work is split over whole rows (samples) or contiguous element ranges; every reduction runs in
//! a fixed order inside one task, so results do not depend on the thread count.

use super::simd::dot;
use crate::device::kernels::sigmoid;
use crate::device::{Activation, DeviceError, Optimizer};
use multiversion::multiversion;
use rayon::prelude::*;

/// Elements per rayon task for element-wise work: small tensors stay on one thread.
const ELEMS_PER_TASK: usize = 1 << 14;

fn rows_per_task(cols: usize) -> usize {
    (ELEMS_PER_TASK / cols.max(1)).max(1)
}

/// In place: `x[r, c] = act(x[r, c] + bias[c])` for `x` of `bias.len()` columns.
pub fn bias_act_forward(x: &mut [f32], bias: &[f32], act: Activation) {
    let cols = bias.len();
    if cols == 0 {
        return;
    }
    x.par_chunks_mut(cols * rows_per_task(cols))
        .for_each(|block| {
            for row in block.chunks_exact_mut(cols) {
                for (v, b) in row.iter_mut().zip(bias) {
                    let z = *v + *b;
                    *v = match act {
                        Activation::Relu => z.max(0.0),
                        Activation::Identity => z,
                    };
                }
            }
        });
}

/// In place: `dy *= act'(y)` (ReLU's derivative is 0 where `y <= 0`), then
/// `dbias[c] = sum over rows r of dy[r, c]`, rows summed in order.
pub fn bias_act_backward(y: &[f32], dy: &mut [f32], dbias: &mut [f32], act: Activation) {
    let cols = dbias.len();
    if cols == 0 {
        return;
    }
    if act == Activation::Relu {
        dy.par_chunks_mut(ELEMS_PER_TASK)
            .zip(y.par_chunks(ELEMS_PER_TASK))
            .for_each(|(d, y)| {
                d.iter_mut().zip(y).for_each(|(d, y)| {
                    if *y <= 0.0 {
                        *d = 0.0
                    }
                })
            });
    }
    // Column blocks in parallel; each column's sum runs over rows in order.
    const COLS_PER_TASK: usize = 16;
    let dy = &*dy;
    dbias
        .par_chunks_mut(COLS_PER_TASK)
        .enumerate()
        .for_each(|(blk, out)| {
            let c0 = blk * COLS_PER_TASK;
            out.fill(0.0);
            for row in dy.chunks_exact(cols) {
                for (o, v) in out.iter_mut().zip(&row[c0..]) {
                    *o += *v;
                }
            }
        });
}

/// Index of the dot `(i, j)`, `j < i`, among the pairwise dots.
fn pair_index(i: usize, j: usize) -> usize {
    i * (i - 1) / 2 + j
}

/// Samples per rayon task in the interaction kernels.
const SAMPLES_PER_TASK: usize = 16;

/// The `i`-th vector of sample `b`: the dense vector for `i = 0`, else table `i - 1`'s.
#[inline(always)]
fn vector<'a>(
    dense: &'a [f32],
    emb: &'a [f32],
    b: usize,
    i: usize,
    tables: usize,
    dim: usize,
) -> &'a [f32] {
    if i == 0 {
        &dense[b * dim..][..dim]
    } else {
        &emb[(b * tables + i - 1) * dim..][..dim]
    }
}

/// DLRM dot interaction: `out[b] = [dense[b], dot(v_i, v_j) for i in 1..=T for j in 0..i]`,
/// where `v_0 = dense[b]` and `v_t = emb[b, t - 1]`.
pub fn interaction_forward(
    dense: &[f32],
    emb: &[f32],
    out: &mut [f32],
    batch: usize,
    tables: usize,
    dim: usize,
) {
    let width = dim + (tables + 1) * tables / 2;
    out[..batch * width]
        .par_chunks_mut(width * SAMPLES_PER_TASK)
        .enumerate()
        .for_each(|(task, o)| {
            interact_forward_block(dense, emb, o, task * SAMPLES_PER_TASK, tables, dim);
        });
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn interact_forward_block(
    dense: &[f32],
    emb: &[f32],
    out: &mut [f32],
    first: usize,
    tables: usize,
    dim: usize,
) {
    let width = dim + (tables + 1) * tables / 2;
    for (j, o) in out.chunks_exact_mut(width).enumerate() {
        let b = first + j;
        o[..dim].copy_from_slice(vector(dense, emb, b, 0, tables, dim));
        for i in 1..=tables {
            let vi = vector(dense, emb, b, i, tables, dim);
            for jv in 0..i {
                o[dim + pair_index(i, jv)] = dot(vi, vector(dense, emb, b, jv, tables, dim));
            }
        }
    }
}

/// Gradient of [`interaction_forward`]: writes `ddense` and `demb` (both overwritten).
#[allow(clippy::too_many_arguments)]
pub fn interaction_backward(
    dense: &[f32],
    emb: &[f32],
    dout: &[f32],
    ddense: &mut [f32],
    demb: &mut [f32],
    batch: usize,
    tables: usize,
    dim: usize,
) {
    let n = SAMPLES_PER_TASK;
    ddense[..batch * dim]
        .par_chunks_mut(dim * n)
        .zip(demb[..batch * tables * dim].par_chunks_mut(tables * dim * n))
        .enumerate()
        .for_each_init(
            || vec![0f32; (tables + 1) * dim],
            |grads, (task, (dd, de))| {
                interact_backward_block(dense, emb, dout, dd, de, task * n, tables, dim, grads);
            },
        );
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
fn interact_backward_block(
    dense: &[f32],
    emb: &[f32],
    dout: &[f32],
    ddense: &mut [f32],
    demb: &mut [f32],
    first: usize,
    tables: usize,
    dim: usize,
    grads: &mut [f32],
) {
    let width = dim + (tables + 1) * tables / 2;
    for (j, (dd, de)) in ddense
        .chunks_exact_mut(dim)
        .zip(demb.chunks_exact_mut(tables * dim))
        .enumerate()
    {
        let b = first + j;
        let g = &dout[b * width..][..width];
        grads.fill(0.0);
        grads[..dim].copy_from_slice(&g[..dim]);
        for i in 1..=tables {
            let vi = vector(dense, emb, b, i, tables, dim);
            for jv in 0..i {
                let s = g[dim + pair_index(i, jv)];
                let vj = vector(dense, emb, b, jv, tables, dim);
                let (lo, hi) = grads.split_at_mut(i * dim);
                // d dot(v_i, v_j) / d v_i = v_j and vice versa; jv < i so v_j's slot is in `lo`.
                hi[..dim].iter_mut().zip(vj).for_each(|(d, v)| *d += s * v);
                lo[jv * dim..][..dim]
                    .iter_mut()
                    .zip(vi)
                    .for_each(|(d, v)| *d += s * v);
            }
        }
        dd.copy_from_slice(&grads[..dim]);
        de.copy_from_slice(&grads[dim..]);
    }
}

/// Sigmoid + binary cross-entropy per sample, in the numerically stable form
/// `max(z, 0) - z*y + ln(1 + e^-|z|)`; `dlogits = scale * (sigmoid(z) - y)`.
pub fn bce_loss(logits: &[f32], labels: &[f32], loss: &mut [f32], dlogits: &mut [f32], scale: f32) {
    for (((z, y), l), d) in logits
        .iter()
        .zip(labels)
        .zip(loss.iter_mut())
        .zip(dlogits.iter_mut())
    {
        *l = z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
        *d = scale * (sigmoid(*z) - y);
    }
}

/// One optimizer step on dense parameters; Adagrad needs `state` (same length as `param`).
pub fn dense_update(
    param: &mut [f32],
    grad: &[f32],
    state: Option<&mut [f32]>,
    lr: f32,
    optimizer: Optimizer,
    eps: f32,
) -> Result<(), DeviceError> {
    match (optimizer, state) {
        (Optimizer::Sgd, _) => {
            param
                .par_chunks_mut(ELEMS_PER_TASK)
                .zip(grad.par_chunks(ELEMS_PER_TASK))
                .for_each(|(w, g)| w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g));
            Ok(())
        }
        (Optimizer::Adagrad, Some(state)) => {
            param
                .par_chunks_mut(ELEMS_PER_TASK)
                .zip(grad.par_chunks(ELEMS_PER_TASK))
                .zip(state.par_chunks_mut(ELEMS_PER_TASK))
                .for_each(|((w, g), s)| {
                    for ((w, g), s) in w.iter_mut().zip(g).zip(s.iter_mut()) {
                        *s += g * g;
                        *w -= lr * g / (s.sqrt() + eps);
                    }
                });
            Ok(())
        }
        (Optimizer::Adagrad, None) => Err(DeviceError::InvalidArgument {
            kernel: "dense_update",
            message: "Adagrad needs a `state` buffer".into(),
        }),
    }
}
