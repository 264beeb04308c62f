//! Kernel arguments: buffers plus shapes, shared by every backend.
//!
//! Each struct names the kernel it feeds (`shaders/NAME.wgsl`, `kernels/NAME.cu`, CPU `NAME`).
//! Shapes are element counts; every f32/u32 tensor is row-major and dense unless a stride is
//! given. `validate` checks that the buffers are large enough for the shapes and that no output
//! is also an input, so that every backend rejects the same bad launches with the same message
//! before touching memory.

use super::DeviceError;
use crate::precision::{Precision, Rounding};
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

/// Activation applied after a bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x`.
    Identity,
}

/// An update rule: the one optimizer enum, named in configs (`"sgd"`, `"adagrad"`) and applied
/// by the kernels (`dense_update`, the fused embedding backwards).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Optimizer {
    /// Plain stochastic gradient descent: `w -= lr * g`.
    Sgd,
    /// Adagrad: `s += g²; w -= lr * g / (sqrt(s) + eps)`, element-wise for dense parameters and
    /// row-wise (one accumulator per row, `g²` averaged over the row) for embeddings, as FBGEMM
    /// does.
    Adagrad,
}

/// An optimizer with Adagrad's constants (which SGD ignores).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerRule {
    /// SGD or Adagrad.
    pub optimizer: Optimizer,
    /// Adagrad's denominator term.
    pub eps: f32,
    /// The value Adagrad's accumulators start at (filled in by whoever allocates them).
    pub init: f32,
}

impl OptimizerRule {
    /// Whether the rule keeps per-parameter (or per-row) state.
    pub fn has_state(&self) -> bool {
        self.optimizer == Optimizer::Adagrad
    }
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

/// Arguments of `gemm`: `C = alpha * op(A) * op(B) + beta * C`, all row-major, where `op(A)` is
/// `m × k` (`A` is stored `k × m` when `trans_a`) and `op(B)` is `k × n`.
pub struct Gemm<'a, B> {
    /// Left operand.
    pub a: &'a B,
    /// Right operand.
    pub b: &'a B,
    /// Output `m × n`; must not be `a` or `b`.
    pub c: &'a B,
    /// Rows of `C`.
    pub m: u32,
    /// Columns of `C`.
    pub n: u32,
    /// Inner dimension.
    pub k: u32,
    /// Use `Aᵀ`.
    pub trans_a: bool,
    /// Use `Bᵀ`.
    pub trans_b: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the previous `C` (0 overwrites, ignoring what was there).
    pub beta: f32,
}

/// Arguments of `bias_act_forward`: `x[r, c] = act(x[r, c] + bias[c])` in place.
pub struct BiasActForward<'a, B> {
    /// `[rows, cols]` f32, in place.
    pub x: &'a B,
    /// `[cols]` f32.
    pub bias: &'a B,
    /// Rows (batch).
    pub rows: u32,
    /// Columns (features).
    pub cols: u32,
    /// Activation.
    pub act: Activation,
}

/// Arguments of `bias_act_backward`: `dy[r, c] *= act'(y[r, c])` in place, then
/// `dbias[c] = sum_r dy[r, c]` (overwritten, rows summed in order).
pub struct BiasActBackward<'a, B> {
    /// `[rows, cols]` f32: the forward's output (post-activation).
    pub y: &'a B,
    /// `[rows, cols]` f32: gradient of the output, replaced by the gradient of the pre-activation.
    pub dy: &'a B,
    /// `[cols]` f32 output.
    pub dbias: &'a B,
    /// Rows (batch).
    pub rows: u32,
    /// Columns (features).
    pub cols: u32,
    /// Activation used in the forward.
    pub act: Activation,
}

/// The logistic function, stable for large `|z|`: what `bce_loss` applies to the logits, and
/// what turns a model's logits into click probabilities on the host.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Width of the interaction output for `tables` embedding vectors of size `dim`: the dense vector
/// itself plus one dot per pair of the `tables + 1` vectors.
pub fn interaction_width(tables: u32, dim: u32) -> u32 {
    dim + (tables + 1) * tables / 2
}

/// Arguments of `interaction_forward`. With `v_0` the dense vector and `v_1..v_T` the pooled
/// embeddings, `out[b] = [v_0, dot(v_i, v_j) for i in 1..=T for j in 0..i]` (DLRM's order).
pub struct InteractionForward<'a, B> {
    /// `[batch, dim]` f32: output of the bottom MLP.
    pub dense: &'a B,
    /// `[batch, tables, dim]` f32: pooled embeddings.
    pub emb: &'a B,
    /// `[batch, interaction_width(tables, dim)]` f32.
    pub out: &'a B,
    /// Samples.
    pub batch: u32,
    /// Embedding tables.
    pub tables: u32,
    /// Vector size.
    pub dim: u32,
}

/// Arguments of `interaction_backward`: gradients of the forward's inputs (overwritten).
pub struct InteractionBackward<'a, B> {
    /// `[batch, dim]` f32: the forward's dense input.
    pub dense: &'a B,
    /// `[batch, tables, dim]` f32: the forward's embedding input.
    pub emb: &'a B,
    /// `[batch, interaction_width(tables, dim)]` f32: gradient of the output.
    pub dout: &'a B,
    /// `[batch, dim]` f32 output.
    pub ddense: &'a B,
    /// `[batch, tables, dim]` f32 output.
    pub demb: &'a B,
    /// Samples.
    pub batch: u32,
    /// Embedding tables.
    pub tables: u32,
    /// Vector size.
    pub dim: u32,
}

/// Arguments of `bce_loss`: `loss[i] = BCE(sigmoid(logits[i]), labels[i])` and
/// `dlogits[i] = scale * (sigmoid(logits[i]) - labels[i])`.
pub struct BceLoss<'a, B> {
    /// `[batch]` f32.
    pub logits: &'a B,
    /// `[batch]` f32 in {0, 1}.
    pub labels: &'a B,
    /// `[batch]` f32 output.
    pub loss: &'a B,
    /// `[batch]` f32 output.
    pub dlogits: &'a B,
    /// Samples.
    pub batch: u32,
    /// Gradient scale, usually `1 / batch` (mean loss).
    pub scale: f32,
}

/// Arguments of `dense_update`: one optimizer step on `len` parameters.
pub struct DenseUpdate<'a, B> {
    /// `[len]` f32, updated in place.
    pub param: &'a B,
    /// `[len]` f32.
    pub grad: &'a B,
    /// `[len]` f32 Adagrad accumulator (required for Adagrad, ignored by SGD).
    pub state: Option<&'a B>,
    /// Number of parameters.
    pub len: u32,
    /// Learning rate.
    pub lr: f32,
    /// The rule.
    pub optimizer: Optimizer,
    /// Adagrad's denominator term (ignored by SGD).
    pub eps: f32,
}

/// Checks that `buffer` holds at least `elems` 32-bit elements.
fn need(kernel: &'static str, what: &str, bytes: u64, elems: u64) -> Result<(), DeviceError> {
    if bytes / 4 < elems {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: format!(
                "`{what}` holds {} elements, the shapes need {elems}",
                bytes / 4
            ),
        });
    }
    Ok(())
}

/// Rejects a launch whose output is also one of its inputs: the CPU backend locks each buffer
/// once per launch, wgpu binds it once, and CUDA's `__restrict__` pointers promise the compiler
/// that they never alias. Buffers are not `Clone`, so one buffer is one address.
pub(crate) fn distinct<B>(kernel: &'static str, out: &B, inputs: &[&B]) -> Result<(), DeviceError> {
    if inputs.iter().any(|b| std::ptr::eq(*b, out)) {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: "an output buffer is also passed as an input".into(),
        });
    }
    Ok(())
}

fn nonzero(kernel: &'static str, what: &str, v: u32) -> Result<(), DeviceError> {
    if v == 0 {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: format!("`{what}` is 0"),
        });
    }
    Ok(())
}

impl<B> BagForward<'_, B> {
    /// Checks buffer sizes against the shapes (the index count is checked by the kernel, which
    /// reads it from `offsets`).
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "bag_forward";
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

impl<B> Gemm<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "gemm";
        let (m, n, k) = (self.m as u64, self.n as u64, self.k as u64);
        need(K, "a", bytes(self.a), m * k)?;
        need(K, "b", bytes(self.b), k * n)?;
        need(K, "c", bytes(self.c), m * n)?;
        distinct(K, self.c, &[self.a, self.b])
    }
}

impl<B> BiasActForward<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "bias_act_forward";
        need(K, "x", bytes(self.x), self.rows as u64 * self.cols as u64)?;
        need(K, "bias", bytes(self.bias), self.cols as u64)?;
        distinct(K, self.x, &[self.bias])
    }
}

impl<B> BiasActBackward<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "bias_act_backward";
        let n = self.rows as u64 * self.cols as u64;
        need(K, "y", bytes(self.y), n)?;
        need(K, "dy", bytes(self.dy), n)?;
        need(K, "dbias", bytes(self.dbias), self.cols as u64)?;
        distinct(K, self.dy, &[self.y, self.dbias])?;
        distinct(K, self.dbias, &[self.y])
    }
}

impl<B> InteractionForward<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "interaction_forward";
        let b = self.batch as u64;
        need(K, "dense", bytes(self.dense), b * self.dim as u64)?;
        need(
            K,
            "emb",
            bytes(self.emb),
            b * self.tables as u64 * self.dim as u64,
        )?;
        need(
            K,
            "out",
            bytes(self.out),
            b * interaction_width(self.tables, self.dim) as u64,
        )?;
        distinct(K, self.out, &[self.dense, self.emb])
    }
}

impl<B> InteractionBackward<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "interaction_backward";
        let b = self.batch as u64;
        let emb = b * self.tables as u64 * self.dim as u64;
        need(K, "dense", bytes(self.dense), b * self.dim as u64)?;
        need(K, "emb", bytes(self.emb), emb)?;
        need(
            K,
            "dout",
            bytes(self.dout),
            b * interaction_width(self.tables, self.dim) as u64,
        )?;
        need(K, "ddense", bytes(self.ddense), b * self.dim as u64)?;
        need(K, "demb", bytes(self.demb), emb)?;
        distinct(
            K,
            self.ddense,
            &[self.dense, self.emb, self.dout, self.demb],
        )?;
        distinct(K, self.demb, &[self.dense, self.emb, self.dout])
    }
}

impl<B> BceLoss<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "bce_loss";
        let b = self.batch as u64;
        need(K, "logits", bytes(self.logits), b)?;
        need(K, "labels", bytes(self.labels), b)?;
        need(K, "loss", bytes(self.loss), b)?;
        need(K, "dlogits", bytes(self.dlogits), b)?;
        distinct(K, self.loss, &[self.logits, self.labels, self.dlogits])?;
        distinct(K, self.dlogits, &[self.logits, self.labels])
    }
}

impl<B> DenseUpdate<'_, B> {
    /// Checks buffer sizes against the shapes, and that Adagrad has its state.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = "dense_update";
        let n = self.len as u64;
        need(K, "param", bytes(self.param), n)?;
        need(K, "grad", bytes(self.grad), n)?;
        distinct(K, self.param, &[self.grad])?;
        if let Some(s) = self.state {
            distinct(K, s, &[self.grad, self.param])?;
        }
        match (self.optimizer, self.state) {
            (Optimizer::Adagrad, None) => Err(DeviceError::InvalidArgument {
                kernel: K,
                message: "Adagrad needs a `state` buffer".into(),
            }),
            (Optimizer::Adagrad, Some(s)) => need(K, "state", bytes(s), n),
            (Optimizer::Sgd, _) => Ok(()),
        }
    }
}

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
        const K: &str = "dequantize_rows";
        nonzero(K, "dim", self.dim)?;
        let (n, d) = (self.rows as u64, self.dim as u64);
        need(
            K,
            "packed",
            bytes(self.packed),
            n * self.precision.row_words(d as usize) as u64,
        )?;
        need(K, "slots", bytes(self.slots), n)?;
        need(K, "cache", bytes(self.cache), self.cache_rows as u64 * d)?;
        if let Some(s) = &self.state {
            need(
                K,
                "cache_state",
                bytes(s.cache_state),
                self.cache_rows as u64,
            )?;
            need(K, "staged state", bytes(s.staged), n)?;
        }
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
        const K: &str = "quantize_rows";
        nonzero(K, "dim", self.dim)?;
        let (n, d) = (self.rows as u64, self.dim as u64);
        need(
            K,
            "packed",
            bytes(self.packed),
            n * self.precision.row_words(d as usize) as u64,
        )?;
        need(K, "slots", bytes(self.slots), n)?;
        need(K, "row_ids", bytes(self.row_ids), n)?;
        need(K, "cache", bytes(self.cache), self.cache_rows as u64 * d)?;
        if let Some(s) = &self.state {
            need(
                K,
                "cache_state",
                bytes(s.cache_state),
                self.cache_rows as u64,
            )?;
            need(K, "staged state", bytes(s.staged), n)?;
        }
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
