//! Dense kernels on the CPU: GEMM, bias + activation, DLRM dot interaction, BCE loss, optimizers.
//!
//! Work is split over whole rows (samples) or contiguous element ranges; every reduction runs in
//! a fixed order inside one task, so results do not depend on the thread count. `gemm` is
//! `matrixmultiply`'s packed SIMD kernels, split over rows of `C` with rayon: splitting only over
//! rows keeps every element's k-summation exactly as in a single call, so results are
//! bit-identical whatever the thread count.

use super::simd::dot;
use crate::device::kernels::{mish, mish_grad, sigmoid};
use crate::device::{Activation, DeviceError, KernelId, Optimizer};
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
                        Activation::Sigmoid => sigmoid(z),
                        Activation::Mish => mish(z),
                    };
                }
            }
        });
}

/// In place: `dy *= act'(y)` (ReLU's derivative is 0 where `y <= 0`; for Mish `y` is the
/// pre-activation), then `dbias[c] = sum over rows r of dy[r, c]`, rows summed in order.
pub fn bias_act_backward(y: &[f32], dy: &mut [f32], dbias: &mut [f32], act: Activation) {
    let cols = dbias.len();
    if cols == 0 {
        return;
    }
    match act {
        Activation::Relu => dy
            .par_chunks_mut(ELEMS_PER_TASK)
            .zip(y.par_chunks(ELEMS_PER_TASK))
            .for_each(|(d, y)| {
                d.iter_mut().zip(y).for_each(|(d, y)| {
                    if *y <= 0.0 {
                        *d = 0.0
                    }
                })
            }),
        // σ' = y (1 − y), rounded as the shaders do: 1 − y, then · y, then · dy.
        Activation::Sigmoid => dy
            .par_chunks_mut(ELEMS_PER_TASK)
            .zip(y.par_chunks(ELEMS_PER_TASK))
            .for_each(|(d, y)| d.iter_mut().zip(y).for_each(|(d, y)| *d *= *y * (1.0 - *y))),
        Activation::Mish => dy
            .par_chunks_mut(ELEMS_PER_TASK)
            .zip(y.par_chunks(ELEMS_PER_TASK))
            .for_each(|(d, z)| d.iter_mut().zip(z).for_each(|(d, z)| *d *= mish_grad(*z))),
        Activation::Identity => {}
    }
    // Column blocks in parallel; each column's sum runs over rows in order.
    const COLS_PER_TASK: usize = 16;
    let dy = &*dy;
    dbias
        .par_chunks_mut(COLS_PER_TASK)
        .enumerate()
        .for_each(|(blk, out)| {
            let c0 = blk * COLS_PER_TASK;
            if let Ok(out) = <&mut [f32; COLS_PER_TASK]>::try_from(&mut *out) {
                // A full block: a fixed-width accumulator the compiler keeps in registers.
                let mut acc = [0f32; COLS_PER_TASK];
                for row in dy.chunks_exact(cols) {
                    for (a, v) in acc.iter_mut().zip(&row[c0..c0 + COLS_PER_TASK]) {
                        *a += *v;
                    }
                }
                *out = acc;
                return;
            }
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

/// The vectors the interaction combines for each sample: the dense vector, then one per table.
#[derive(Clone, Copy)]
struct Vectors<'a> {
    /// `[batch, dim]`.
    dense: &'a [f32],
    /// `[batch, tables, dim]`.
    emb: &'a [f32],
    tables: usize,
    dim: usize,
}

impl<'a> Vectors<'a> {
    fn new(dense: &'a [f32], emb: &'a [f32], tables: usize, dim: usize) -> Self {
        Vectors {
            dense,
            emb,
            tables,
            dim,
        }
    }

    /// The `i`-th vector of sample `b`: the dense vector for `i = 0`, else table `i - 1`'s.
    #[inline(always)]
    fn get(&self, b: usize, i: usize) -> &'a [f32] {
        let dim = self.dim;
        if i == 0 {
            &self.dense[b * dim..][..dim]
        } else {
            &self.emb[(b * self.tables + i - 1) * dim..][..dim]
        }
    }

    /// Width of one sample's output: the dense vector and the pairwise dots.
    fn width(&self) -> usize {
        self.dim + (self.tables + 1) * self.tables / 2
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
    let vectors = Vectors::new(dense, emb, tables, dim);
    let width = vectors.width();
    out[..batch * width]
        .par_chunks_mut(width * SAMPLES_PER_TASK)
        .enumerate()
        .for_each(|(task, o)| interact_forward_block(vectors, o, task * SAMPLES_PER_TASK));
}

/// Interaction outputs of the samples from `first` on, one per `width` values of `out`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn interact_forward_block<'a>(vectors: Vectors<'a>, out: &mut [f32], first: usize) {
    let (tables, dim) = (vectors.tables, vectors.dim);
    for (j, o) in out.chunks_exact_mut(vectors.width()).enumerate() {
        let b = first + j;
        o[..dim].copy_from_slice(vectors.get(b, 0));
        for i in 1..=tables {
            let vi = vectors.get(b, i);
            for jv in 0..i {
                o[dim + pair_index(i, jv)] = dot(vi, vectors.get(b, jv));
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
    let vectors = Vectors::new(dense, emb, tables, dim);
    let n = SAMPLES_PER_TASK;
    ddense[..batch * dim]
        .par_chunks_mut(dim * n)
        .zip(demb[..batch * tables * dim].par_chunks_mut(tables * dim * n))
        .enumerate()
        .for_each_init(
            || vec![0f32; (tables + 1) * dim],
            |grads, (task, (dd, de))| {
                interact_backward_block(vectors, dout, dd, de, task * n, grads)
            },
        );
}

/// Gradients of the samples from `first` on, one per `dim` values of `ddense`; `grads` is
/// scratch for one sample's `(tables + 1) * dim` gradients.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn interact_backward_block<'a>(
    vectors: Vectors<'a>,
    dout: &[f32],
    ddense: &mut [f32],
    demb: &mut [f32],
    first: usize,
    grads: &mut [f32],
) {
    let (tables, dim, width) = (vectors.tables, vectors.dim, vectors.width());
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
            let vi = vectors.get(b, i);
            for jv in 0..i {
                let s = g[dim + pair_index(i, jv)];
                let vj = vectors.get(b, jv);
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
            kernel: KernelId::DenseUpdate.name(),
            message: "Adagrad needs a `state` buffer".into(),
        }),
    }
}

/// Below this many multiply-adds a single call beats the cost of splitting.
const PARALLEL_MACS: usize = 1 << 16;

/// `c = alpha * op(a) * op(b) + beta * c`, row-major; `op(a)` is `m × k`, `op(b)` is `k × n`,
/// `c` is exactly `m × n`. `a` is stored `k × m` when `trans_a`, `b` is stored `n × k` when
/// `trans_b`. With `beta == 0` the previous contents of `c` are ignored (even NaN).
#[allow(clippy::too_many_arguments)]
#[allow(unsafe_code)] // matrixmultiply takes raw pointers and strides (FFI-like).
pub fn gemm(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    beta: f32,
) -> Result<(), DeviceError> {
    if a.len() < m * k || b.len() < k * n || c.len() != m * n {
        return Err(DeviceError::InvalidArgument {
            kernel: KernelId::Gemm.name(),
            message: format!(
                "m={m} n={n} k={k} need a ≥ {}, b ≥ {}, c = {} elements; got {}, {}, {}",
                m * k,
                k * n,
                m * n,
                a.len(),
                b.len(),
                c.len()
            ),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // matrixmultiply handles k = 0, but be explicit: C = beta * C.
        for x in c.iter_mut() {
            *x = if beta == 0.0 { 0.0 } else { beta * *x };
        }
        return Ok(());
    }
    let (rsa, csa) = if trans_a {
        (1isize, m as isize)
    } else {
        (k as isize, 1isize)
    };
    let (rsb, csb) = if trans_b {
        (1isize, k as isize)
    } else {
        (n as isize, 1isize)
    };
    // Element (i, 0) of op(A) for the first row of a block starting at row i.
    let a_row = |i: usize| if trans_a { i } else { i * k };
    let call = |i0: usize, rows: usize, c_block: &mut [f32]| {
        debug_assert_eq!(c_block.len(), rows * n);
        // SAFETY: op(A) rows i0..i0+rows address a[a_row(i0) + r*rsa + l*csa] for r < rows,
        // l < k, all below m*k <= a.len() (checked above); op(B) addresses b[l*rsb + j*csb] below
        // k*n <= b.len(); C addresses c_block[r*n + j] below rows*n == c_block.len(). Strides of
        // C are (n, 1), so no two elements of C alias. The slices outlive the call.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                alpha,
                a.as_ptr().add(a_row(i0)),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                beta,
                c_block.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    };
    let threads = rayon::current_num_threads();
    if m * n * k < PARALLEL_MACS || threads == 1 || m < 16 {
        call(0, m, c);
        return Ok(());
    }
    // Blocks of whole rows, a multiple of 8 (the microkernel's height), about 4 per thread.
    let rows_per_block = m.div_ceil(4 * threads).next_multiple_of(8);
    c.par_chunks_mut(rows_per_block * n)
        .enumerate()
        .for_each(|(blk, c_block)| {
            let i0 = blk * rows_per_block;
            call(i0, c_block.len() / n, c_block);
        });
    Ok(())
}

/// [`Device`](crate::device::Device)'s dense methods on the CPU: check the arguments as every
/// backend does, lock the buffers, run the kernels above.
pub(super) mod launch {
    use super::super::{CpuBuffer, CpuDevice, f32s, f32s_mut};
    use crate::device::{
        BceLoss, BiasActBackward, BiasActForward, DenseUpdate, DeviceError, Gemm,
        InteractionBackward, InteractionForward,
    };

    pub fn gemm(_: &CpuDevice, a: &Gemm<'_, CpuBuffer>) -> Result<(), DeviceError> {
        let (x, y) = (a.a.read(), a.b.read());
        let mut c = a.c.write();
        let (m, n, k) = (a.m as usize, a.n as usize, a.k as usize);
        super::gemm(
            f32s(&x),
            f32s(&y),
            &mut f32s_mut(&mut c)[..m * n],
            m,
            n,
            k,
            a.trans_a,
            a.trans_b,
            a.alpha,
            a.beta,
        )
    }

    pub fn bias_act_forward(
        _: &CpuDevice,
        a: &BiasActForward<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        let bias = a.bias.read();
        let mut x = a.x.write();
        let s = &a.shape;
        let (r, c) = (s.rows as usize, s.cols as usize);
        super::bias_act_forward(&mut f32s_mut(&mut x)[..r * c], &f32s(&bias)[..c], s.act);
        Ok(())
    }

    pub fn bias_act_backward(
        _: &CpuDevice,
        a: &BiasActBackward<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        let y = a.y.read();
        let (mut dy, mut db) = (a.dy.write(), a.dbias.write());
        let s = &a.shape;
        let (r, c) = (s.rows as usize, s.cols as usize);
        super::bias_act_backward(
            &f32s(&y)[..r * c],
            &mut f32s_mut(&mut dy)[..r * c],
            &mut f32s_mut(&mut db)[..c],
            s.act,
        );
        Ok(())
    }

    pub fn interaction_forward(
        _: &CpuDevice,
        a: &InteractionForward<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        let (dense, emb) = (a.dense.read(), a.emb.read());
        let mut out = a.out.write();
        let s = &a.shape;
        let (b, t, d) = (s.batch as usize, s.tables as usize, s.dim as usize);
        super::interaction_forward(f32s(&dense), f32s(&emb), f32s_mut(&mut out), b, t, d);
        Ok(())
    }

    pub fn interaction_backward(
        _: &CpuDevice,
        a: &InteractionBackward<'_, CpuBuffer>,
    ) -> Result<(), DeviceError> {
        let (dense, emb, dout) = (a.dense.read(), a.emb.read(), a.dout.read());
        let (mut dd, mut de) = (a.ddense.write(), a.demb.write());
        let s = &a.shape;
        let (b, t, d) = (s.batch as usize, s.tables as usize, s.dim as usize);
        let (ddense, demb) = (f32s_mut(&mut dd), f32s_mut(&mut de));
        super::interaction_backward(f32s(&dense), f32s(&emb), f32s(&dout), ddense, demb, b, t, d);
        Ok(())
    }

    pub fn bce_loss(_: &CpuDevice, a: &BceLoss<'_, CpuBuffer>) -> Result<(), DeviceError> {
        let (z, y) = (a.logits.read(), a.labels.read());
        let (mut loss, mut dz) = (a.loss.write(), a.dlogits.write());
        let n = a.batch as usize;
        super::bce_loss(
            &f32s(&z)[..n],
            &f32s(&y)[..n],
            &mut f32s_mut(&mut loss)[..n],
            &mut f32s_mut(&mut dz)[..n],
            a.scale,
        );
        Ok(())
    }

    pub fn dense_update(_: &CpuDevice, a: &DenseUpdate<'_, CpuBuffer>) -> Result<(), DeviceError> {
        let n = a.len as usize;
        let grad = a.grad.read();
        let mut param = a.param.write();
        let mut state = a.state.map(|s| s.write());
        let state = state.as_deref_mut().map(|s| &mut f32s_mut(s)[..n]);
        let param = &mut f32s_mut(&mut param)[..n];
        super::dense_update(param, &f32s(&grad)[..n], state, a.lr, a.optimizer, a.eps)
    }
}
