// bias_act_forward: x[r, c] = act(x[r, c] + bias[c]) in place; act is the identity (act = 0),
// ReLU (1), the sigmoid (2, in the stable form of the CPU's `sigmoid`) or Mish (3,
// z · tanh(softplus(z)), softplus as the CPU's `softplus`).
// Bindings: 0 uniform Params (dynamic offset), 1 x (read_write, [rows, cols]), 2 bias (read, [cols]).
// Dispatch: one invocation per element, linear index over rows * cols; workgroup size 64,
//           workgroups split over x and y.

struct Params {
    rows: u32,
    cols: u32,
    act: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.rows * p.cols {
        return;
    }
    let z = x[i] + bias[i % p.cols];
    if p.act == 1u {
        x[i] = max(z, 0.0);
    } else if p.act == 2u {
        x[i] = sigmoid(z);
    } else if p.act == 3u {
        x[i] = z * tanh(softplus(z));
    } else {
        x[i] = z;
    }
}

// ln(1 + e^z) with no overflow, as the CPU's `softplus`.
fn softplus(z: f32) -> f32 {
    return max(z, 0.0) + log(1.0 + exp(-abs(z)));
}

// The logistic function, with no overflow of exp for either sign (as the CPU's `sigmoid`).
fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        return 1.0 / (1.0 + exp(-z));
    }
    let e = exp(z);
    return e / (1.0 + e);
}
