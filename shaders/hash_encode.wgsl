// hash_encode: a DHE's first layer. For id i (64 bits: ids[2i] low, ids[2i+1] high) and hash j
// (coeffs[2j] = a, coeffs[2j+1] = b): h = ((a·x + b) mod p) mod m, then
//   uniform:  out = f32(2h − (m − 1)) · scale            (scale = 1 / (m − 1), one rounding)
//   gaussian: Box–Muller on U = f32(h + 1) · scale over columns (2c, 2c + 1)  (scale = 1 / m)
// WGSL has no 64-bit integers: x mod p = ((hi mod p)·(2^32 mod p) + lo mod p) mod p, and every
// product mod p is taken 8 bits of one factor at a time (p < 2^23, so nothing reaches 2^32).
// The integers equal the CPU's 64-bit ones exactly; the uniform values are bit-identical.
// Bindings: 0 uniform Params (dynamic offset), 1 ids (read), 2 coeffs (read),
//           3 out (read_write) [batch × k].
// Dispatch: one invocation per (id, column pair), linear index over batch × ceil(k / 2);
//           workgroup size 64, workgroups split over x and y.

struct Params {
    batch: u32,
    k: u32,
    m: u32,
    p: u32,
    transform: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> coeffs: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// (x · y) mod p for x, y < p < 2^23: y's three bytes from the top, reducing after each step.
fn mulmod(x: u32, y: u32, p: u32) -> u32 {
    var t = 0u;
    for (var s = 0u; s < 3u; s += 1u) {
        t = (t << 8u) % p;
        t = (t + x * ((y >> (16u - 8u * s)) & 255u)) % p;
    }
    return t;
}

fn hash(xr: u32, j: u32) -> u32 {
    let a = coeffs[2u * j];
    let b = coeffs[2u * j + 1u];
    return ((mulmod(a, xr, prm.p) + b) % prm.p) % prm.m;
}

fn uniform_value(h: u32) -> f32 {
    return f32(i32(2u * h) - i32(prm.m - 1u)) * prm.scale;
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let pairs = (prm.k + 1u) / 2u;
    let t = gid.x + gid.y * nwg.x * 64u;
    if t >= prm.batch * pairs {
        return;
    }
    let i = t / pairs;
    let j0 = 2u * (t % pairs);
    let p = prm.p;
    let two32 = (0xFFFFFFFFu % p + 1u) % p;
    let xr = (mulmod(ids[2u * i + 1u] % p, two32, p) + ids[2u * i] % p) % p;
    let o = i * prm.k + j0;
    if prm.transform == 0u {
        out[o] = uniform_value(hash(xr, j0));
        if j0 + 1u < prm.k {
            out[o + 1u] = uniform_value(hash(xr, j0 + 1u));
        }
        return;
    }
    let u1 = f32(hash(xr, j0) + 1u) * prm.scale;
    let u2 = f32(hash(xr, j0 + 1u) + 1u) * prm.scale;
    let radius = sqrt(-2.0 * log(u1));
    let angle = 6.2831855 * u2;
    out[o] = radius * cos(angle);
    out[o + 1u] = radius * sin(angle);
}
