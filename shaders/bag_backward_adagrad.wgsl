// bag_backward_adagrad: fused embedding backward + row-wise Adagrad (FBGEMM's rule) over one
// window of the table and of its accumulators.
//   g = sum, in batch order, of the output gradients of the bags reading row r (each scaled by
//   1/len for mean pooling); state[r] += sum_d(g_d^2) / dim; table[r] -= lr * g / (sqrt(state[r]) + eps).
// Each unique row is owned by one workgroup; sum_d(g_d^2) is reduced in shared memory in a fixed
// tree order, so the result does not depend on scheduling. No atomics.
// Bindings: 0 uniform Params (dynamic offset), 1 table (read_write, window: row r at word
//           (r - row_lo) * dim + table_base), 2 unique_rows, 3 row_starts (unique + 1),
//           4 bag_ids, 5 offsets (bags + 1), 6 grad (all read),
//           7 state (read_write, window: row r's accumulator at word (r - row_lo) + state_base).
// Dispatch: one workgroup of 64 per unique row, linear workgroup index wid.x + wid.y * nwg.x;
//           thread t handles columns t, t + 64, ...

struct Params {
    dim: u32,
    unique: u32,
    grad_stride: u32,
    grad_offset: u32,
    row_lo: u32,
    row_hi: u32,
    table_base: u32,
    mean: u32,
    lr: f32,
    eps: f32,
    state_base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> table: array<f32>;
@group(0) @binding(2) var<storage, read> unique_rows: array<u32>;
@group(0) @binding(3) var<storage, read> row_starts: array<u32>;
@group(0) @binding(4) var<storage, read> bag_ids: array<u32>;
@group(0) @binding(5) var<storage, read> offsets: array<u32>;
@group(0) @binding(6) var<storage, read> grad: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;

const WG: u32 = 64u;

var<workgroup> partial: array<f32, WG>;
var<workgroup> step_shared: f32;

// Column d of unique row u's gradient, summed over its bags in batch order.
fn row_grad(u: u32, d: u32) -> f32 {
    var g = 0.0;
    let end = row_starts[u + 1u];
    for (var k = row_starts[u]; k < end; k++) {
        let b = bag_ids[k];
        let v = grad[b * p.grad_stride + p.grad_offset + d];
        if p.mean != 0u {
            // A bag that reads the row has at least one index: no division by zero.
            g += (1.0 / f32(offsets[b + 1u] - offsets[b])) * v;
        } else {
            g += v;
        }
    }
    return g;
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = lid.x;
    let u = wid.x + wid.y * nwg.x;
    // Same value in every thread of the workgroup; guards the work, never the barriers.
    var live = u < p.unique;
    var r = 0u;
    if live {
        r = unique_rows[u];
        live = r >= p.row_lo && r < p.row_hi;
    }

    // This thread's share of sum_d g_d^2, its columns in increasing order.
    var sq = 0.0;
    if live {
        for (var d = t; d < p.dim; d += WG) {
            let g = row_grad(u, d);
            sq += g * g;
        }
    }
    partial[t] = sq;
    workgroupBarrier();
    // Fixed tree: partial[t] += partial[t + s] for s = 32, 16, ..., 1.
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if t < s {
            partial[t] += partial[t + s];
        }
        workgroupBarrier();
    }

    // Thread 0 alone reads and writes the accumulator.
    if live && t == 0u {
        let si = (r - p.row_lo) + p.state_base;
        let new_state = state[si] + partial[0] / f32(p.dim);
        state[si] = new_state;
        step_shared = p.lr / (sqrt(new_state) + p.eps);
    }
    workgroupBarrier();

    if live {
        let step = step_shared;
        let w = (r - p.row_lo) * p.dim + p.table_base;
        // g is recomputed rather than kept: dim has no bound, so a per-thread array would need one.
        for (var d = t; d < p.dim; d += WG) {
            table[w + d] = table[w + d] - step * row_grad(u, d);
        }
    }
}
