// gemm: C = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is m x k (A is stored k x m
// when trans_a != 0), op(B) is k x n (B is stored n x k when trans_b != 0), C is m x n.
// With beta == 0 the old C is not read, so it may hold anything (NaN included).
// Each workgroup computes one 16 x 16 tile of C, staging 16 x 16 tiles of op(A) and op(B) in
// shared memory. Every element sums over k in increasing order (tile by tile, and t = 0..15
// inside a tile), one fixed order whatever the dispatch.
// Bindings: 0 uniform Params (dynamic offset), 1 a (read), 2 b (read), 3 c (read_write).
// Dispatch: workgroup size (16, 16); workgroup x = column tile, y = row tile. The tile's first
// row is row_base + wid.y * 16: the host splits an m over 65535 tiles into several dispatches.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    alpha: f32,
    beta: f32,
    row_base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 16u;

// tile_a[i][t] = op(A)[row0 + i, k0 + t]; tile_b[t][j] = op(B)[k0 + t, col0 + j].
var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row0 = p.row_base + wid.y * TILE;
    let col0 = wid.x * TILE;
    let row = row0 + lid.y;
    let col = col0 + lid.x;
    let ntiles = (p.k + TILE - 1u) / TILE;

    var acc = 0.0;
    for (var kt = 0u; kt < ntiles; kt++) {
        let k0 = kt * TILE;
        // Loads: consecutive lid.x read consecutive words in either storage order, so the
        // transposed cases swap which index lid.x walks. Out of range loads stage 0.
        if p.trans_a == 0u {
            // A[i, t] at a[i * k + t]: lid.x walks t.
            let i = row0 + lid.y;
            let t = k0 + lid.x;
            var v = 0.0;
            if i < p.m && t < p.k {
                v = a[i * p.k + t];
            }
            tile_a[lid.y][lid.x] = v;
        } else {
            // A stored k x m, op(A)[i, t] at a[t * m + i]: lid.x walks i.
            let i = row0 + lid.x;
            let t = k0 + lid.y;
            var v = 0.0;
            if i < p.m && t < p.k {
                v = a[t * p.m + i];
            }
            tile_a[lid.x][lid.y] = v;
        }
        if p.trans_b == 0u {
            // B[t, j] at b[t * n + j]: lid.x walks j.
            let t = k0 + lid.y;
            let j = col0 + lid.x;
            var v = 0.0;
            if t < p.k && j < p.n {
                v = b[t * p.n + j];
            }
            tile_b[lid.y][lid.x] = v;
        } else {
            // B stored n x k, op(B)[t, j] at b[j * k + t]: lid.x walks t.
            let t = k0 + lid.x;
            let j = col0 + lid.y;
            var v = 0.0;
            if t < p.k && j < p.n {
                v = b[j * p.k + t];
            }
            tile_b[lid.x][lid.y] = v;
        }
        workgroupBarrier();
        for (var t = 0u; t < TILE; t++) {
            acc += tile_a[lid.y][t] * tile_b[t][lid.x];
        }
        workgroupBarrier();
    }

    if row < p.m && col < p.n {
        let o = row * p.n + col;
        if p.beta == 0.0 {
            c[o] = p.alpha * acc;
        } else {
            c[o] = p.alpha * acc + p.beta * c[o];
        }
    }
}
