// bias_act_forward: x[r, c] = act(x[r, c] + bias[c]) in place; act is ReLU when relu != 0,
// else the identity.
// Bindings: 0 uniform Params (dynamic offset), 1 x (read_write, [rows, cols]), 2 bias (read, [cols]).
// Dispatch: one invocation per element, linear index over rows * cols; workgroup size 64,
//           workgroups split over x and y.

struct Params {
    rows: u32,
    cols: u32,
    relu: u32,
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
    if p.relu != 0u {
        x[i] = max(z, 0.0);
    } else {
        x[i] = z;
    }
}
