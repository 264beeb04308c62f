//! Arguments of the dense kernels: `gemm`, `bias_act_forward/backward`,
//! `interaction_forward/backward`, `bce_loss` and `dense_update`, and the functions that define
//! their semantics on the host ([`sigmoid`], [`interaction_width`]).

use super::{DeviceError, KernelId, Optimizer, distinct, need};

/// Activation applied after a bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x`.
    Identity,
    /// `1 / (1 + e^-x)`, in the stable form of [`sigmoid`]; its derivative `y (1 − y)` is
    /// taken from the output.
    Sigmoid,
    /// `x · tanh(softplus(x))` ([`mish`]); its derivative ([`mish_grad`]) needs the
    /// pre-activation, which the backward takes in place of the output.
    Mish,
}

impl Activation {
    /// The kernels' code for it: 0 identity, 1 ReLU, 2 sigmoid, 3 Mish.
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Sigmoid => 2,
            Activation::Mish => 3,
        }
    }

    /// Whether its backward takes the pre-activation rather than the output (Mish).
    pub fn needs_pre_activation(self) -> bool {
        self == Activation::Mish
    }
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

/// The shape both bias + activation kernels take: a `[rows, cols]` matrix and its activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BiasActShape {
    /// Rows (batch).
    pub rows: u32,
    /// Columns (features).
    pub cols: u32,
    /// Activation (for the backward: the one used in the forward).
    pub act: Activation,
}

impl BiasActShape {
    /// The words both bias + activation kernels take, in their order: `[rows, cols, act]`
    /// ([`Activation::code`]).
    pub(crate) fn words(&self) -> [u32; 3] {
        [self.rows, self.cols, self.act.code()]
    }

    /// Elements of the `[rows, cols]` matrix.
    pub fn elems(&self) -> u64 {
        self.rows as u64 * self.cols as u64
    }
}

/// Arguments of `bias_act_forward`: `x[r, c] = act(x[r, c] + bias[c])` in place.
pub struct BiasActForward<'a, B> {
    /// `[rows, cols]` f32, in place.
    pub x: &'a B,
    /// `[cols]` f32.
    pub bias: &'a B,
    /// Rows, columns and activation.
    pub shape: BiasActShape,
}

/// Arguments of `bias_act_backward`: `dy[r, c] *= act'(y[r, c])` in place, then
/// `dbias[c] = sum_r dy[r, c]` (overwritten, rows summed in order).
pub struct BiasActBackward<'a, B> {
    /// `[rows, cols]` f32: the forward's output (post-activation); for
    /// [`Activation::Mish`], its input `x + bias` (pre-activation).
    pub y: &'a B,
    /// `[rows, cols]` f32: gradient of the output, replaced by the gradient of the pre-activation.
    pub dy: &'a B,
    /// `[cols]` f32 output.
    pub dbias: &'a B,
    /// Rows, columns and the forward's activation.
    pub shape: BiasActShape,
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

/// `ln(1 + e^z)` as every backend computes it: `max(z, 0) + ln(1 + e^−|z|)` (no overflow; the
/// kernels have no `log1p`, so neither does this).
pub fn softplus(z: f32) -> f32 {
    z.max(0.0) + (1.0 + (-z.abs()).exp()).ln()
}

/// Mish (Misra, 2019): `z · tanh(softplus(z))`, a smooth ReLU; a DHE decoder's output option.
pub fn mish(z: f32) -> f32 {
    z * softplus(z).tanh()
}

/// Mish's derivative at the pre-activation `z`: `t + z (1 − t²) σ(z)` with `t = tanh(softplus(z))`.
pub fn mish_grad(z: f32) -> f32 {
    let t = softplus(z).tanh();
    t + z * (1.0 - t * t) * sigmoid(z)
}

/// Width of the interaction output for `tables` embedding vectors of size `dim`: the dense vector
/// itself plus one dot per pair of the `tables + 1` vectors.
pub fn interaction_width(tables: u32, dim: u32) -> u32 {
    dim + (tables + 1) * tables / 2
}

/// The shape both interaction kernels take: `batch` samples of one dense vector and `tables`
/// pooled embeddings, all of size `dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InteractionShape {
    /// Samples.
    pub batch: u32,
    /// Embedding tables.
    pub tables: u32,
    /// Vector size.
    pub dim: u32,
}

impl InteractionShape {
    /// Width of one sample's output: [`interaction_width`] of `tables` and `dim`.
    pub fn width(&self) -> u32 {
        interaction_width(self.tables, self.dim)
    }

    /// The words both interaction kernels take, in their order: `[batch, tables, dim, width]`.
    pub(crate) fn words(&self) -> [u32; 4] {
        [self.batch, self.tables, self.dim, self.width()]
    }

    /// Elements of the dense input (or its gradient), `[batch, dim]`.
    pub fn dense_len(&self) -> u64 {
        self.batch as u64 * self.dim as u64
    }

    /// Elements of the pooled embeddings (or their gradient), `[batch, tables, dim]`.
    pub fn emb_len(&self) -> u64 {
        self.batch as u64 * self.tables as u64 * self.dim as u64
    }

    /// Elements of the output (or its gradient), `[batch, width]`.
    pub fn out_len(&self) -> u64 {
        self.batch as u64 * self.width() as u64
    }

    /// Checks the inputs both kernels read, `dense` then `emb`, against the shape.
    fn check_inputs<B>(
        &self,
        kernel: &'static str,
        bytes: &impl Fn(&B) -> u64,
        dense: &B,
        emb: &B,
    ) -> Result<(), DeviceError> {
        need(kernel, "dense", bytes(dense), self.dense_len())?;
        need(kernel, "emb", bytes(emb), self.emb_len())
    }
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
    /// Samples, tables and vector size.
    pub shape: InteractionShape,
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
    /// Samples, tables and vector size.
    pub shape: InteractionShape,
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

impl<B> Gemm<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::Gemm.name();
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
        const K: &str = KernelId::BiasActForward.name();
        need(K, "x", bytes(self.x), self.shape.elems())?;
        need(K, "bias", bytes(self.bias), self.shape.cols as u64)?;
        distinct(K, self.x, &[self.bias])
    }
}

impl<B> BiasActBackward<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::BiasActBackward.name();
        let n = self.shape.elems();
        need(K, "y", bytes(self.y), n)?;
        need(K, "dy", bytes(self.dy), n)?;
        need(K, "dbias", bytes(self.dbias), self.shape.cols as u64)?;
        distinct(K, self.dy, &[self.y, self.dbias])?;
        distinct(K, self.dbias, &[self.y])
    }
}

impl<B> InteractionForward<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::InteractionForward.name();
        let s = &self.shape;
        s.check_inputs(K, &bytes, self.dense, self.emb)?;
        need(K, "out", bytes(self.out), s.out_len())?;
        distinct(K, self.out, &[self.dense, self.emb])
    }
}

impl<B> InteractionBackward<'_, B> {
    /// Checks buffer sizes against the shapes.
    pub fn validate(&self, bytes: impl Fn(&B) -> u64) -> Result<(), DeviceError> {
        const K: &str = KernelId::InteractionBackward.name();
        let s = &self.shape;
        s.check_inputs(K, &bytes, self.dense, self.emb)?;
        need(K, "dout", bytes(self.dout), s.out_len())?;
        need(K, "ddense", bytes(self.ddense), s.dense_len())?;
        need(K, "demb", bytes(self.demb), s.emb_len())?;
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
        const K: &str = KernelId::BceLoss.name();
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
        const K: &str = KernelId::DenseUpdate.name();
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

impl<'a, B> DenseUpdate<'a, B> {
    /// What a GPU kernel takes for the rule: `(adagrad, eps, state)`, with `adagrad` 1 or 0. SGD
    /// never touches the state and ignores `eps`, so it gets 0 and `dummy` in their places.
    pub(crate) fn rule_or<'d>(&self, dummy: &'d B) -> (u32, f32, &'d B)
    where
        'a: 'd,
    {
        match (self.optimizer, self.state) {
            (Optimizer::Adagrad, Some(state)) => (1, self.eps, state),
            _ => (0, 0.0, dummy),
        }
    }
}
