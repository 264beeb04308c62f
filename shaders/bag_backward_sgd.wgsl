// bag_backward_sgd: fused embedding backward + SGD over one window of the table.
//   For each unique row r (in [row_lo, row_hi)): table[r] -= lr * g, with g the sum, in batch
//   order, of the output gradients of the bags reading r (each scaled by 1/len for mean pooling).
// Each unique row is owned by one workgroup and sums its bags in a fixed order: deterministic,
// no atomics. Rows outside the window are left to the pass that binds their window.
// Bindings: 0 uniform Params (dynamic offset), 1 table (read_write, window: row r at word
//           (r - row_lo) * dim + table_base), 2 unique_rows, 3 row_starts (unique + 1),
//           4 bag_ids, 5 offsets (bags + 1), 6 grad (all read).
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
    // Shared layout with bag_backward_adagrad; unused here.
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
    let u = wid.x + wid.y * nwg.x;
    if u >= p.unique {
        return;
    }
    let r = unique_rows[u];
    if r < p.row_lo || r >= p.row_hi {
        return;
    }
    let w = (r - p.row_lo) * p.dim + p.table_base;
    for (var d = lid.x; d < p.dim; d += 64u) {
        table[w + d] = table[w + d] - p.lr * row_grad(u, d);
    }
}
