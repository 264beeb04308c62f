// dense_update: one optimizer step on len dense parameters.
//   SGD (adagrad == 0):  w -= lr * g.
//   Adagrad (adagrad != 0), element-wise accumulator: s += g * g; w -= lr * g / (sqrt(s) + eps).
// Bindings: 0 uniform Params (dynamic offset), 1 param (read_write), 2 grad (read),
//           3 state (read_write; for SGD the host binds a dummy buffer, never touched).
// Dispatch: one invocation per parameter, linear index over len; workgroup size 64,
//           workgroups split over x and y.

struct Params {
    len: u32,
    lr: f32,
    adagrad: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.len {
        return;
    }
    let g = grad[i];
    if p.adagrad == 0u {
        param[i] = param[i] - p.lr * g;
    } else {
        let s = state[i] + g * g;
        state[i] = s;
        param[i] = param[i] - p.lr * g / (sqrt(s) + p.eps);
    }
}
