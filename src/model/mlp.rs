//! A multilayer perceptron on the device: `y = act(x·Wᵀ + b)` per layer.

use super::ModelError;
use crate::device::{
    Activation, BiasActBackward, BiasActForward, BiasActShape, DenseUpdate, Device, DeviceError,
    DeviceExt, Gemm, OptimizerRule,
};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// One fully connected layer with its gradients, optimizer state and activations.
struct Layer<D: Device> {
    input: usize,
    output: usize,
    act: Activation,
    /// `[output, input]`.
    w: D::Buffer,
    /// `[output]`.
    b: D::Buffer,
    dw: D::Buffer,
    db: D::Buffer,
    /// Adagrad accumulators for `w` and `b`.
    state: Option<(D::Buffer, D::Buffer)>,
    /// `[capacity, output]` post-activation output of the last forward.
    y: D::Buffer,
    /// `[capacity, output]` gradient of `y`, turned into that of the pre-activation in backward.
    dy: D::Buffer,
    /// For an activation whose backward needs its input (Mish): `[capacity, output]`
    /// pre-activation `x·Wᵀ + b` of the last forward, and `[output]` zeros (the bias is added
    /// before the activation runs on `y`).
    pre: Option<(D::Buffer, D::Buffer)>,
}

/// A stack of layers sized for batches of up to `capacity` samples.
pub struct Mlp<D: Device> {
    layers: Vec<Layer<D>>,
    capacity: usize,
    rule: OptimizerRule,
}

/// A dense parameter tensor and its gradient, for inspection and gradient checks.
pub struct ParamRef<'a, B> {
    /// `layerN.weight` or `layerN.bias`.
    pub name: String,
    /// The values.
    pub value: &'a B,
    /// The gradient from the last backward.
    pub grad: &'a B,
    /// Adagrad's accumulators (`None` with SGD).
    pub state: Option<&'a B>,
    /// Elements.
    pub len: usize,
    /// Its shape: `[out, in]` for a weight, `[out]` for a bias.
    pub shape: Vec<usize>,
}

impl<D: Device> Mlp<D> {
    /// Layers `sizes[0] → sizes[1] → …`; ReLU after each hidden layer, `last` after the last.
    /// Weights are Xavier-normal and biases N(0, 1/out), as in the DLRM reference.
    pub fn new(
        dev: &D,
        sizes: &[usize],
        last: Activation,
        capacity: usize,
        rule: OptimizerRule,
        rng: &mut impl Rng,
    ) -> Result<Self, ModelError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(ModelError::LayerSizes(sizes.to_vec()));
        }
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        for (l, pair) in sizes.windows(2).enumerate() {
            let (input, output) = (pair[0], pair[1]);
            let w_std = (2.0 / (input + output) as f64).sqrt();
            let b_std = (1.0 / output as f64).sqrt();
            let w: Vec<f32> = sample_normal(rng, w_std, input * output);
            let b: Vec<f32> = sample_normal(rng, b_std, output);
            let state = match rule.has_state() {
                true => Some((
                    dev.buffer_from_f32(&vec![rule.init; input * output])?,
                    dev.buffer_from_f32(&vec![rule.init; output])?,
                )),
                false => None,
            };
            let act = if l + 2 == sizes.len() {
                last
            } else {
                Activation::Relu
            };
            let pre = match act.needs_pre_activation() {
                true => Some((
                    dev.alloc_elems(capacity * output)?,
                    dev.buffer_from_f32(&vec![0.0; output])?,
                )),
                false => None,
            };
            layers.push(Layer {
                input,
                output,
                act,
                pre,
                w: dev.buffer_from_f32(&w)?,
                b: dev.buffer_from_f32(&b)?,
                dw: dev.alloc_elems(input * output)?,
                db: dev.alloc_elems(output)?,
                state,
                y: dev.alloc_elems(capacity * output)?,
                dy: dev.alloc_elems(capacity * output)?,
            });
        }
        Ok(Mlp {
            layers,
            capacity,
            rule,
        })
    }

    /// Makes room for batches of up to `capacity` samples: the activations grow, the weights and
    /// their state stay.
    pub fn reserve(&mut self, dev: &D, capacity: usize) -> Result<(), DeviceError> {
        if capacity <= self.capacity {
            return Ok(());
        }
        for l in &mut self.layers {
            l.y = dev.alloc_elems(capacity * l.output)?;
            l.dy = dev.alloc_elems(capacity * l.output)?;
            if let Some((pre, _)) = &mut l.pre {
                *pre = dev.alloc_elems(capacity * l.output)?;
            }
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Forward floating-point operations per sample: two per multiply-add of the weights
    /// (biases and activations not counted).
    pub fn flops_per_sample(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| 2 * (l.input * l.output) as u64)
            .sum()
    }

    fn check_batch(&self, batch: usize) -> Result<(), ModelError> {
        if batch > self.capacity {
            return Err(ModelError::BatchSize {
                samples: batch,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Forward pass of `batch` samples of `x` (`[batch, sizes[0]]`); the result is in
    /// [`Mlp::output`].
    pub fn forward(&self, dev: &D, x: &D::Buffer, batch: usize) -> Result<(), ModelError> {
        self.check_batch(batch)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let input = if l == 0 { x } else { &self.layers[l - 1].y };
            // y = x · Wᵀ
            let shape = (batch, layer.output, layer.input);
            matmul(dev, (input, false), (&layer.w, true), &layer.y, shape)?;
            let bias_act = |x: &D::Buffer, bias: &D::Buffer, act: Activation| {
                dev.bias_act_forward(&BiasActForward {
                    x,
                    bias,
                    shape: BiasActShape {
                        rows: batch as u32,
                        cols: layer.output as u32,
                        act,
                    },
                })
            };
            match &layer.pre {
                None => bias_act(&layer.y, &layer.b, layer.act)?,
                // Keep `x·Wᵀ + b` for the backward, then activate a copy of it.
                Some((pre, zeros)) => {
                    bias_act(&layer.y, &layer.b, Activation::Identity)?;
                    let bytes = (batch * layer.output * 4) as u64;
                    dev.copy_buffer(&layer.y, 0, pre, 0, bytes)?;
                    bias_act(&layer.y, zeros, layer.act)?;
                }
            }
        }
        Ok(())
    }

    /// The last layer's output `[batch, out]` after [`Mlp::forward`].
    pub fn output(&self) -> &D::Buffer {
        self.layers
            .last()
            .map(|l| &l.y)
            .expect("an MLP has at least one layer")
    }

    /// Where the caller writes the gradient of [`Mlp::output`] before [`Mlp::backward`].
    pub fn output_grad(&self) -> &D::Buffer {
        self.layers
            .last()
            .map(|l| &l.dy)
            .expect("an MLP has at least one layer")
    }

    /// Backward pass: from the gradient in [`Mlp::output_grad`], computes every weight and bias
    /// gradient and, when `dx` is given, the gradient of the input `x` (`[batch, sizes[0]]`).
    pub fn backward(
        &self,
        dev: &D,
        x: &D::Buffer,
        dx: Option<&D::Buffer>,
        batch: usize,
    ) -> Result<(), ModelError> {
        self.check_batch(batch)?;
        for l in (0..self.layers.len()).rev() {
            let layer = &self.layers[l];
            dev.bias_act_backward(&BiasActBackward {
                y: layer.pre.as_ref().map_or(&layer.y, |(pre, _)| pre),
                dy: &layer.dy,
                dbias: &layer.db,
                shape: BiasActShape {
                    rows: batch as u32,
                    cols: layer.output as u32,
                    act: layer.act,
                },
            })?;
            let input = if l == 0 { x } else { &self.layers[l - 1].y };
            // dW = dyᵀ · x
            let shape = (layer.output, layer.input, batch);
            matmul(dev, (&layer.dy, true), (input, false), &layer.dw, shape)?;
            let target = if l == 0 {
                dx
            } else {
                Some(&self.layers[l - 1].dy)
            };
            if let Some(target) = target {
                // dx = dy · W
                let shape = (batch, layer.input, layer.output);
                matmul(dev, (&layer.dy, false), (&layer.w, false), target, shape)?;
            }
        }
        Ok(())
    }

    /// One optimizer step on every weight and bias from the last backward's gradients.
    pub fn update(&self, dev: &D, lr: f32) -> Result<(), DeviceError> {
        for layer in &self.layers {
            let (sw, sb) = match &layer.state {
                Some((sw, sb)) => (Some(sw), Some(sb)),
                None => (None, None),
            };
            for (param, grad, state, len) in [
                (&layer.w, &layer.dw, sw, layer.input * layer.output),
                (&layer.b, &layer.db, sb, layer.output),
            ] {
                dev.dense_update(&DenseUpdate {
                    param,
                    grad,
                    state,
                    len: len as u32,
                    lr,
                    optimizer: self.rule.optimizer,
                    eps: self.rule.eps,
                })?;
            }
        }
        Ok(())
    }

    /// Every weight and bias with its gradient, in layer order.
    pub fn params(&self) -> Vec<ParamRef<'_, D::Buffer>> {
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            out.push(ParamRef {
                name: format!("layer{l}.weight"),
                value: &layer.w,
                grad: &layer.dw,
                state: layer.state.as_ref().map(|(w, _)| w),
                len: layer.input * layer.output,
                shape: vec![layer.output, layer.input],
            });
            out.push(ParamRef {
                name: format!("layer{l}.bias"),
                value: &layer.b,
                grad: &layer.db,
                state: layer.state.as_ref().map(|(_, b)| b),
                len: layer.output,
                shape: vec![layer.output],
            });
        }
        out
    }

    /// Device bytes of weights, gradients, optimizer state and activations.
    pub fn device_bytes(&self, dev: &D) -> u64 {
        self.layers
            .iter()
            .map(|l| {
                [&l.w, &l.b, &l.dw, &l.db, &l.y, &l.dy]
                    .iter()
                    .map(|b| dev.buffer_bytes(b))
                    .sum::<u64>()
                    + [&l.state, &l.pre]
                        .into_iter()
                        .flatten()
                        .map(|(a, b)| dev.buffer_bytes(a) + dev.buffer_bytes(b))
                        .sum::<u64>()
            })
            .sum()
    }
}

/// `c = op(a) · op(b)`, `m × n` with inner dimension `k` (`(m, n, k)`); each operand with
/// whether it is transposed.
fn matmul<D: Device>(
    dev: &D,
    (a, trans_a): (&D::Buffer, bool),
    (b, trans_b): (&D::Buffer, bool),
    c: &D::Buffer,
    (m, n, k): (usize, usize, usize),
) -> Result<(), DeviceError> {
    dev.gemm(&Gemm {
        a,
        b,
        c,
        m: m as u32,
        n: n as u32,
        k: k as u32,
        trans_a,
        trans_b,
        alpha: 1.0,
        beta: 0.0,
    })
}

fn sample_normal(rng: &mut impl Rng, std: f64, n: usize) -> Vec<f32> {
    // std > 0 always (sizes are validated ≥ 1), so Normal::new cannot fail; fall back to 0s.
    match Normal::new(0.0, std) {
        Ok(dist) => (0..n).map(|_| dist.sample(rng) as f32).collect(),
        Err(_) => vec![0.0; n],
    }
}
