// bce_loss: sigmoid + binary cross-entropy per sample, in the stable form
//   loss = max(z, 0) - z * y + log1p(exp(-|z|)),   dlogits = scale * (sigmoid(z) - y).
// WGSL has no log1p and log(1 + x) loses everything below 2^-24 (a confident right answer's
// whole loss), so log1p(x) for x in [0, 1] is evaluated as 2 * atanh(x / (2 + x)) by its series:
// w = x / (2 + x) <= 1/3, and the terms up to w^15 leave a truncation below 2e-9 relative.
// Bindings: 0 uniform Params (dynamic offset), 1 logits (read), 2 labels (read),
//           3 loss (read_write), 4 dlogits (read_write), all [batch].
// Dispatch: one invocation per sample, linear index over batch; workgroup size 64,
//           workgroups split over x and y.

struct Params {
    batch: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

// log(1 + x) for x in [0, 1], accurate to a few ulp relative (see the header).
fn log1p_unit(x: f32) -> f32 {
    let w = x / (2.0 + x);
    let w2 = w * w;
    let series = 1.0 + w2 * (1.0 / 3.0 + w2 * (1.0 / 5.0 + w2 * (1.0 / 7.0 + w2 * (1.0 / 9.0
        + w2 * (1.0 / 11.0 + w2 * (1.0 / 13.0 + w2 * (1.0 / 15.0)))))));
    return 2.0 * w * series;
}

// The logistic function, with no overflow of exp for either sign (as the CPU's `sigmoid`).
fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        return 1.0 / (1.0 + exp(-z));
    }
    let e = exp(z);
    return e / (1.0 + e);
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.batch {
        return;
    }
    let z = logits[i];
    let y = labels[i];
    loss[i] = max(z, 0.0) - z * y + log1p_unit(exp(-abs(z)));
    dlogits[i] = p.scale * (sigmoid(z) - y);
}
