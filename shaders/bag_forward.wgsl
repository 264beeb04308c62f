// bag_forward: pooled embedding lookup over one window of the table.
//   out[b * out_stride + out_offset + d] (=|+=) pool over k in offsets[b] .. offsets[b + 1] of
//   table row indices[k], column d, for the rows inside the window [row_lo, row_hi).
// The table may be bound as a window of a larger table (rows row_lo .. row_hi, row r at word
// (r - row_lo) * dim + table_base), so a table larger than one binding is pooled in several
// passes: the first with accumulate = 0, the others with accumulate = 1. Indices outside the
// window are skipped; the pass that owns them adds them.
// Bindings: 0 uniform Params (dynamic offset), 1 table (read), 2 indices (read),
//           3 offsets (read, bags + 1), 4 out (read_write).
// Dispatch: one invocation per (bag, column), linear index b * dim + d over bags * dim;
//           workgroup size 64, workgroups split over x and y.

struct Params {
    dim: u32,
    bags: u32,
    out_stride: u32,
    out_offset: u32,
    row_lo: u32,
    row_hi: u32,
    table_base: u32,
    mean: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.bags * p.dim {
        return;
    }
    let b = i / p.dim;
    let d = i % p.dim;
    let start = offsets[b];
    let end = offsets[b + 1u];
    // Index order, as the CPU sums them.
    var acc = 0.0;
    for (var k = start; k < end; k++) {
        let r = indices[k];
        if r >= p.row_lo && r < p.row_hi {
            acc += table[(r - p.row_lo) * p.dim + p.table_base + d];
        }
    }
    // The bag's full length, not the rows in this window: every pass scales its part alike,
    // so the sum of the passes is the mean.
    if p.mean != 0u && end > start {
        acc = acc * (1.0 / f32(end - start));
    }
    let o = b * p.out_stride + p.out_offset + d;
    if p.accumulate == 0u {
        out[o] = acc;
    } else {
        out[o] += acc;
    }
}
