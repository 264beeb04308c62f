// interaction_forward: DLRM dot interaction. With v_0 = dense[b] and v_t = emb[b, t - 1],
//   out[b] = [v_0, dot(v_i, v_j) for i in 1..=tables for j in 0..i]   (width = dim + pairs).
// Dots use the CPU's scheme (src/device/cpu/simd.rs `dot`): eight partial sums over the
// first dim / 8 * 8 terms, combined ((a0+a4)+(a1+a5))+((a2+a6)+(a3+a7)), then the tail in order.
// Bindings: 0 uniform Params (dynamic offset), 1 dense (read, [batch, dim]),
//           2 emb (read, [batch, tables, dim]), 3 out (read_write, [batch, width]).
// Dispatch: one invocation per output element, linear index b * width + c over batch * width;
//           workgroup size 64, workgroups split over x and y.

struct Params {
    batch: u32,
    tables: u32,
    dim: u32,
    width: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dense: array<f32>;
@group(0) @binding(2) var<storage, read> emb: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Element d of vector t of sample b.
fn vec_at(b: u32, t: u32, d: u32) -> f32 {
    if t == 0u {
        return dense[b * p.dim + d];
    }
    return emb[(b * p.tables + t - 1u) * p.dim + d];
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= p.batch * p.width {
        return;
    }
    let b = idx / p.width;
    let c = idx % p.width;
    if c < p.dim {
        out[idx] = dense[b * p.dim + c];
        return;
    }
    // Pair q = i * (i - 1) / 2 + j: walk the rows of the triangle (at most `tables` steps)
    // rather than invert with a sqrt that f32 rounding could put one row off.
    let q = c - p.dim;
    var i = 1u;
    var first = 0u;
    while q >= first + i {
        first += i;
        i++;
    }
    let j = q - first;

    // acc_lo holds partial sums 0..3, acc_hi 4..7: lane k of both gets the terms d = k mod 8.
    var acc_lo = vec4<f32>(0.0);
    var acc_hi = vec4<f32>(0.0);
    let n8 = p.dim / 8u * 8u;
    for (var d = 0u; d < n8; d += 8u) {
        let xi_lo = vec4<f32>(vec_at(b, i, d), vec_at(b, i, d + 1u), vec_at(b, i, d + 2u), vec_at(b, i, d + 3u));
        let xi_hi = vec4<f32>(vec_at(b, i, d + 4u), vec_at(b, i, d + 5u), vec_at(b, i, d + 6u), vec_at(b, i, d + 7u));
        let xj_lo = vec4<f32>(vec_at(b, j, d), vec_at(b, j, d + 1u), vec_at(b, j, d + 2u), vec_at(b, j, d + 3u));
        let xj_hi = vec4<f32>(vec_at(b, j, d + 4u), vec_at(b, j, d + 5u), vec_at(b, j, d + 6u), vec_at(b, j, d + 7u));
        acc_lo += xi_lo * xj_lo;
        acc_hi += xi_hi * xj_hi;
    }
    // (a0 + a4, a1 + a5, a2 + a6, a3 + a7), then the CPU's pairing.
    let h = acc_lo + acc_hi;
    var s = (h.x + h.y) + (h.z + h.w);
    for (var d = n8; d < p.dim; d++) {
        s += vec_at(b, i, d) * vec_at(b, j, d);
    }
    out[idx] = s;
}
