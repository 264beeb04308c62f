// bias_act_backward: dy[r, c] *= act'(y[r, c]) in place (ReLU's derivative is 0 where y <= 0,
// when relu != 0), then dbias[c] = sum over r of dy[r, c], rows summed in increasing order.
// One invocation owns a whole column, so the sum has the CPU's order and needs no atomics;
// neighbouring invocations read neighbouring words of each row.
// Bindings: 0 uniform Params (dynamic offset), 1 y (read, [rows, cols]),
//           2 dy (read_write, [rows, cols]), 3 dbias (read_write, [cols]).
// Dispatch: one invocation per column, linear index over cols; workgroup size 64,
//           workgroups split over x and y.

struct Params {
    rows: u32,
    cols: u32,
    relu: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = gid.x + gid.y * nwg.x * 64u;
    if c >= p.cols {
        return;
    }
    var acc = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let idx = r * p.cols + c;
        var v = dy[idx];
        // `<=` as on the CPU; a NaN y keeps its gradient there too.
        if p.relu != 0u && y[idx] <= 0.0 {
            v = 0.0;
            dy[idx] = 0.0;
        }
        acc += v;
    }
    dbias[c] = acc;
}
