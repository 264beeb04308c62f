// interaction_backward: gradient of interaction_forward with respect to its inputs
// (ddense and demb are overwritten). With v_0 = dense[b], v_t = emb[b, t - 1] and
// s(i, j) = dout[b, dim + i * (i - 1) / 2 + j], the gradient of v_vi is
//   [vi == 0] * dout[b, 0..dim] + sum over pairs (i, j), j < i, of
//   s(i, j) * v_j if i == vi, plus s(i, j) * v_i if j == vi,
// accumulated in the CPU's pair order (i = 1..=tables, j = 0..i-1).
// Bindings: 0 uniform Params (dynamic offset), 1 dense (read, [batch, dim]),
//           2 emb (read, [batch, tables, dim]), 3 dout (read, [batch, width]),
//           4 ddense (read_write, [batch, dim]), 5 demb (read_write, [batch, tables, dim]).
// Dispatch: one invocation per (b, vi, d), vi in 0..=tables, linear index
//           (b * (tables + 1) + vi) * dim + d; workgroup size 64, workgroups split over x and y.

struct Params {
    batch: u32,
    tables: u32,
    dim: u32,
    width: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dense: array<f32>;
@group(0) @binding(2) var<storage, read> emb: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> ddense: array<f32>;
@group(0) @binding(5) var<storage, read_write> demb: array<f32>;

// Element d of vector t of sample b.
fn vec_at(b: u32, t: u32, d: u32) -> f32 {
    if t == 0u {
        return dense[b * p.dim + d];
    }
    return emb[(b * p.tables + t - 1u) * p.dim + d];
}

fn pair(i: u32, j: u32) -> u32 {
    return i * (i - 1u) / 2u + j;
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let nvec = p.tables + 1u;
    if idx >= p.batch * nvec * p.dim {
        return;
    }
    let d = idx % p.dim;
    let rest = idx / p.dim;
    let vi = rest % nvec;
    let b = rest / nvec;
    let g_row = b * p.width;

    var g = 0.0;
    if vi == 0u {
        g = dout[g_row + d];
    }
    // Of the pairs (i, j) in the CPU's order, only those with i == vi (all j < vi, met first,
    // at i = vi) and then those with j == vi (i = vi + 1 ..= tables) touch v_vi: visiting just
    // them keeps the order of the additions and costs O(tables) instead of O(tables^2).
    for (var j = 0u; j < vi; j++) {
        g += dout[g_row + p.dim + pair(vi, j)] * vec_at(b, j, d);
    }
    for (var i = vi + 1u; i <= p.tables; i++) {
        g += dout[g_row + p.dim + pair(i, vi)] * vec_at(b, i, d);
    }

    if vi == 0u {
        ddense[b * p.dim + d] = g;
    } else {
        demb[(b * p.tables + vi - 1u) * p.dim + d] = g;
    }
}
