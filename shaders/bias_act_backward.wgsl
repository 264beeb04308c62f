// bias_act_backward: dy[r, c] *= act'(y[r, c]) in place (act 1, ReLU: 0 where y <= 0; act 2,
// sigmoid: y (1 − y); act 3, Mish: y holds the pre-activation z, and the factor is
// t + z (1 − t²) σ(z) with t = tanh(softplus(z)), as the CPU's `mish_grad`; act 0, identity: 1),
// then dbias[c] = sum over r of dy[r, c].
// A workgroup owns 16 adjacent columns (so each row's 16 words are read together) and splits
// their rows over 16 lanes: lane l sums rows l, l + 16, l + 32, … in increasing order, then the
// lanes' partial sums are added in a fixed tree (8, 4, 2, 1 apart). The order is the same on
// every run (deterministic, no atomics); it differs from the CPU's row order only within f32
// rounding. A batch of B rows takes B / 16 steps per invocation instead of B.
// Bindings: 0 uniform Params (dynamic offset), 1 y (read, [rows, cols]),
//           2 dy (read_write, [rows, cols]), 3 dbias (read_write, [cols]).
// Dispatch: one workgroup of 256 invocations per 16 columns; workgroups split over x and y.

struct Params {
    rows: u32,
    cols: u32,
    act: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;

const COLS: u32 = 16u;
const LANES: u32 = 16u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let block = wid.x + wid.y * nwg.x;
    let cx = li % COLS;
    let lane = li / COLS;
    let c = block * COLS + cx;
    var acc = 0.0;
    if c < p.cols {
        for (var r = lane; r < p.rows; r += LANES) {
            let idx = r * p.cols + c;
            var v = dy[idx];
            // `<=` as on the CPU; a NaN y keeps its gradient there too.
            if p.act == 1u && y[idx] <= 0.0 {
                v = 0.0;
                dy[idx] = 0.0;
            } else if p.act == 2u {
                let s = y[idx];
                v = v * (s * (1.0 - s));
                dy[idx] = v;
            } else if p.act == 3u {
                v = v * mish_grad(y[idx]);
                dy[idx] = v;
            }
            acc += v;
        }
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s / 2u) {
        if lane < s {
            partial[li] = partial[li] + partial[li + s * COLS];
        }
        workgroupBarrier();
    }
    if lane == 0u && c < p.cols {
        dbias[c] = partial[cx];
    }
}

// Mish's derivative at the pre-activation z, as the CPU's `mish_grad`.
fn mish_grad(z: f32) -> f32 {
    let t = tanh(max(z, 0.0) + log(1.0 + exp(-abs(z))));
    var s: f32;
    if z >= 0.0 {
        s = 1.0 / (1.0 + exp(-z));
    } else {
        let e = exp(z);
        s = e / (1.0 + e);
    }
    return t + z * (1.0 - t * t) * s;
}
