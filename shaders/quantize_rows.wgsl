// quantize_rows: packs cache slots into the host store's row layouts, matching quantize_row of
// src/embedding/precision.rs bit for bit:
//   packed row i = quantize(cache slot slots[i]), rounded to nearest or stochastically with the
//   noise rounding_uniform(seed, step, row_ids[i], column);
//   staged_state[i] = cache_state[slots[i]] when has_state.
// format (the precision; `precision` is a reserved word in WGSL): 0 FP32 (the value's bits),
//   1 FP16 (element c in bits 16 * (c % 2) of word c / 2), 2 INT8 (word 0 scale f32, word 1
//   bias f32, element c in byte c % 4 of word 2 + c / 4), 3 INT4 (word 0 = scale f16 | bias f16
//   << 16, element c in nibble c % 8 of word 1 + c / 8). Padding bits are 0.
// What the CPU does with the `half` crate or with a float division is done here with integer
// operations (f32 -> f16 to nearest even, f16 -> f32, next_up / next_down, floor, ceil, and a
// correctly rounded f32 division), so the result depends neither on the GPU's division accuracy
// (WGSL allows 2.5 ulp) nor on its f16 support: the remaining float operations are exact
// conversions and comparisons, floor, and single additions and subtractions, which WGSL rounds
// correctly. Caveats: a GPU may flush f32 subnormals to zero in those additions; when a row's
// minimum is a zero present with both signs, the bias is -0 here where the CPU's f32::min may
// give either (the decoded values are equal); NaN inputs are skipped by min / max as on the CPU,
// but NaN payloads are not matched.
// Bindings: 0 uniform Params (dynamic offset), 1 cache (read; window: slot s at word
//           (s - slot_lo) * dim + cache_base), 2 slots (read, u32), 3 row_ids (read, u32),
//           4 packed (read_write, u32, rows * row_words), 5 cache_state (read; window: slot s at
//           (s - slot_lo) + state_base), 6 staged_state (read_write, rows).
// Dispatch: one workgroup of 64 per packed row, linear workgroup index wid.x + wid.y * nwg.x.
//           Rows past `rows` and slots outside [slot_lo, slot_hi) are left untouched. Thread t
//           writes payload words t, t + 64, ... of the row whole (no atomics); thread 0 the header.

struct Params {
    rows: u32,
    dim: u32,
    row_words: u32,
    format: u32,
    slot_lo: u32,
    slot_hi: u32,
    cache_base: u32,
    has_state: u32,
    state_base: u32,
    stochastic: u32,
    seed: u32,
    step: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cache: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read> row_ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> packed: array<u32>;
@group(0) @binding(5) var<storage, read> cache_state: array<f32>;
@group(0) @binding(6) var<storage, read_write> staged_state: array<f32>;

const WG: u32 = 64u;
const F32_INF: u32 = 0x7F800000u;
const F16_ONE: u32 = 0x3C00u;
const F16_MAX: u32 = 0x477FE000u; // 65504 as f32 bits

// Row minimum and maximum, as order keys (see f32_key).
var<workgroup> red_lo: array<u32, WG>;
var<workgroup> red_hi: array<u32, WG>;

// ---------------------------------------------------------------- f32 / f16 bit helpers

fn is_nan32(b: u32) -> bool {
    return (b & 0x7FFFFFFFu) > F32_INF;
}

fn is_nan16(h: u32) -> bool {
    return (h & 0x7FFFu) > 0x7C00u;
}

// Unsigned key with the order of the non-NaN f32 values (-0 below +0).
fn f32_key(b: u32) -> u32 {
    if (b >> 31u) != 0u {
        return ~b;
    }
    return b | 0x80000000u;
}

fn key_f32(k: u32) -> u32 {
    if (k >> 31u) != 0u {
        return k & 0x7FFFFFFFu;
    }
    return ~k;
}

// a < b for non-NaN f32 bits of the same sign.
fn lt_same_sign(a: u32, b: u32) -> bool {
    if (a >> 31u) != 0u {
        return a > b;
    }
    return a < b;
}

// half::f16::from_f32 (round to nearest even, subnormals, overflow to infinity, NaN quieted).
fn f32_to_f16(x: u32) -> u32 {
    let sign = (x >> 16u) & 0x8000u;
    let exp = x & 0x7F800000u;
    let man = x & 0x007FFFFFu;
    if exp == 0x7F800000u {
        return sign | 0x7C00u | select(0u, 0x0200u, man != 0u) | (man >> 13u);
    }
    let half_exp = i32(exp >> 23u) - 127 + 15;
    if half_exp >= 0x1F {
        return sign | 0x7C00u;
    }
    if half_exp <= 0 {
        if 14 - half_exp > 24 {
            return sign;
        }
        let m = man | 0x00800000u;
        var half_man = m >> u32(14 - half_exp);
        let round_bit = 1u << u32(13 - half_exp);
        // Round up when above the tie, or at the tie with an odd result.
        if (m & round_bit) != 0u && (m & (3u * round_bit - 1u)) != 0u {
            half_man += 1u;
        }
        return sign | half_man;
    }
    let h = sign | (u32(half_exp) << 10u) | (man >> 13u);
    if (man & 0x1000u) != 0u && (man & 0x2FFFu) != 0u {
        return h + 1u; // a carry into the exponent is right, up to infinity
    }
    return h;
}

// half::f16::to_f32 (exact; NaN quieted).
fn f16_to_f32(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = h & 0x7C00u;
    let man = h & 0x03FFu;
    if (h & 0x7FFFu) == 0u {
        return sign;
    }
    if exp == 0x7C00u {
        if man == 0u {
            return sign | 0x7F800000u;
        }
        return sign | 0x7FC00000u | (man << 13u);
    }
    if exp == 0u {
        // Subnormal: normalize.
        let e = countLeadingZeros(man) - 16u - 6u;
        return sign | ((127u - 15u - e) << 23u) | ((man << (14u + e)) & 0x007FFFFFu);
    }
    return sign | (((exp >> 10u) + 112u) << 23u) | (man << 13u);
}

fn f16_next_up(h: u32) -> u32 {
    if is_nan16(h) || h == 0x7C00u {
        return h;
    }
    if h == 0x8000u || h == 0u {
        return 1u;
    }
    if (h & 0x8000u) == 0u {
        return h + 1u;
    }
    return h - 1u;
}

fn f16_next_down(h: u32) -> u32 {
    return f16_next_up(h ^ 0x8000u) ^ 0x8000u;
}

// x.max(-65504).min(65504) as Rust computes it: NaN becomes -65504.
fn clamp_f16_range_maxmin(x: u32) -> u32 {
    if is_nan32(x) {
        return F16_MAX | 0x80000000u;
    }
    if (x & 0x7FFFFFFFu) > F16_MAX {
        return (x & 0x80000000u) | F16_MAX;
    }
    return x;
}

// x.clamp(-65504, 65504): NaN stays NaN.
fn clamp_f16_range(x: u32) -> u32 {
    if !is_nan32(x) && (x & 0x7FFFFFFFu) > F16_MAX {
        return (x & 0x80000000u) | F16_MAX;
    }
    return x;
}

// precision.rs f16_floor: x (f32 bits) to f16 bits rounded toward -inf (below -65504: -inf).
fn f16_floor(x: u32) -> u32 {
    let h = f32_to_f16(clamp_f16_range_maxmin(x));
    // h and x have the same sign, unless x is NaN (then no float comparison holds).
    if !is_nan32(x) && lt_same_sign(x, f16_to_f32(h)) {
        return f16_next_down(h);
    }
    return h;
}

// precision.rs f16_ceil: x (f32 bits) to f16 bits rounded toward +inf (above 65504: +inf).
fn f16_ceil(x: u32) -> u32 {
    let h = f32_to_f16(clamp_f16_range_maxmin(x));
    if !is_nan32(x) && lt_same_sign(f16_to_f32(h), x) {
        return f16_next_up(h);
    }
    return h;
}

// precision.rs f16_round: nearest even, or (stochastic) the f16 neighbour above with probability
// equal to the distance from the one below, chosen by u.
fn f16_round(xb: u32, stochastic: bool, u: f32) -> u32 {
    let x = clamp_f16_range(xb);
    let h = f32_to_f16(x);
    if !stochastic || is_nan32(x) {
        return h;
    }
    let back = f16_to_f32(h);
    if back == x {
        return h; // same sign: equal bits are equal values
    }
    var lo = h;
    var hi = h;
    if lt_same_sign(back, x) {
        hi = f16_next_up(h);
    } else {
        lo = f16_next_down(h);
    }
    let l = bitcast<f32>(f16_to_f32(lo));
    let r = bitcast<f32>(f16_to_f32(hi));
    if u < div_rn(bitcast<f32>(x) - l, r - l) {
        return hi;
    }
    return lo;
}

// ---------------------------------------------------------------- correctly rounded division

// Bits of the non-negative f32 nearest to (sig + f) * 2^e2, ties to even, where sig != 0 and
// 0 < f < 1 exactly when sticky (callers give at least one bit below the result's last bit
// whenever sticky is set).
fn round_f32(sig: u32, e2: i32, sticky: bool) -> u32 {
    let n = 32 - i32(countLeadingZeros(sig));
    let e = n - 1 + e2 + 127; // biased exponent if the result is normal
    if e >= 255 {
        return F32_INF;
    }
    // Bits of sig below the result's last place: 24 significant bits, or down to 2^-149.
    var sh = n - 24;
    if e < 1 {
        sh = -149 - e2;
    }
    var m = 0u;
    if sh <= 0 {
        m = sig << u32(-sh);
    } else if sh <= 32 {
        m = select(sig >> u32(sh), 0u, sh == 32);
        let guard = (sig >> u32(sh - 1)) & 1u;
        let rest = sig & ((1u << u32(sh - 1)) - 1u);
        if guard != 0u && (rest != 0u || sticky || (m & 1u) != 0u) {
            m += 1u;
        }
    } // else below half the smallest subnormal: 0
    if e >= 1 {
        // m in [2^23, 2^24]: its leading bit (or carry) completes the exponent, up to infinity.
        return (u32(e - 1) << 23u) + m;
    }
    return m; // subnormal (or, after a carry, the smallest normal)
}

// a / b rounded to nearest even as IEEE 754 (and the CPU) divide, with integer operations only.
fn div_rn(a: f32, b: f32) -> f32 {
    let ab = bitcast<u32>(a);
    let bb = bitcast<u32>(b);
    let sign = (ab ^ bb) & 0x80000000u;
    let aa = ab & 0x7FFFFFFFu;
    let ba = bb & 0x7FFFFFFFu;
    if aa > F32_INF || ba > F32_INF || (aa == F32_INF && ba == F32_INF) || (aa == 0u && ba == 0u) {
        return bitcast<f32>(0x7FC00000u);
    }
    if aa == F32_INF || ba == 0u {
        return bitcast<f32>(sign | F32_INF);
    }
    if ba == F32_INF || aa == 0u {
        return bitcast<f32>(sign);
    }
    // Significands with the leading bit at 2^23; a = ma * 2^(ea - 150), b = mb * 2^(eb - 150).
    var ma = aa & 0x007FFFFFu;
    var ea = i32(aa >> 23u);
    if ea == 0 {
        let s = countLeadingZeros(ma) - 8u;
        ma = ma << s;
        ea = 1 - i32(s);
    } else {
        ma = ma | 0x00800000u;
    }
    var mb = ba & 0x007FFFFFu;
    var eb = i32(ba >> 23u);
    if eb == 0 {
        let s = countLeadingZeros(mb) - 8u;
        mb = mb << s;
        eb = 1 - i32(s);
    } else {
        mb = mb | 0x00800000u;
    }
    var r = ma;
    var e2 = ea - eb;
    if r < mb {
        r = r << 1u;
        e2 -= 1;
    }
    // r / mb in [1, 2): 26 quotient bits by restoring division, then the remainder as sticky.
    var q = 0u;
    for (var k = 0u; k < 26u; k++) {
        q = q << 1u;
        if r >= mb {
            r -= mb;
            q |= 1u;
        }
        r = r << 1u;
    }
    return bitcast<f32>(sign | round_f32(q, e2 - 25, r != 0u));
}

// ---------------------------------------------------------------- rounding noise

fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// rounding_uniform(seed, step, row, col) given key = pcg(pcg(pcg(seed) ^ step) ^ row).
fn noise(key: u32, col: u32) -> f32 {
    let h = pcg_hash(key ^ col);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

// precision.rs level: floor((x - bias) / scale + 0.5) (or + u), clamped to 0 ..= levels; NaN: 0.
fn level(x: f32, scale: f32, bias: f32, levels: u32, stochastic: bool, u: f32) -> u32 {
    let v = div_rn(x - bias, scale);
    let q = floor(v + select(0.5, u, stochastic));
    let qb = bitcast<u32>(q);
    if is_nan32(qb) || (qb >> 31u) != 0u {
        return 0u; // NaN, negative, -0
    }
    if q > f32(levels) {
        return levels;
    }
    return u32(q);
}

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = lid.x;
    let i = wid.x + wid.y * nwg.x;
    // Same value in every thread of the workgroup; guards the work, never the barriers.
    var live = i < p.rows;
    var s = 0u;
    if live {
        s = slots[i];
        live = s >= p.slot_lo && s < p.slot_hi;
    }
    let base = (s - p.slot_lo) * p.dim + p.cache_base;
    let integer = p.format >= 2u;

    // Row min / max over the non-NaN values (as f32::min / max skip NaN), as order keys.
    var klo = f32_key(F32_INF);
    var khi = f32_key(F32_INF | 0x80000000u);
    if live && integer {
        for (var c = t; c < p.dim; c += WG) {
            let xb = bitcast<u32>(cache[base + c]);
            if !is_nan32(xb) {
                klo = min(klo, f32_key(xb));
                khi = max(khi, f32_key(xb));
            }
        }
    }
    red_lo[t] = klo;
    red_hi[t] = khi;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        if t < h {
            red_lo[t] = min(red_lo[t], red_lo[t + h]);
            red_hi[t] = max(red_hi[t], red_hi[t + h]);
        }
        workgroupBarrier();
    }
    if !live {
        return; // after the last barrier
    }
    let lo_b = key_f32(red_lo[0]);
    let hi_b = key_f32(red_hi[0]);
    let lo = bitcast<f32>(lo_b);
    let hi = bitcast<f32>(hi_b);

    let stochastic = p.stochastic != 0u;
    var key = 0u;
    if stochastic {
        key = pcg_hash(pcg_hash(pcg_hash(p.seed) ^ p.step) ^ row_ids[i]);
    }
    let out = i * p.row_words;

    if p.format == 0u {
        for (var c = t; c < p.dim; c += WG) {
            packed[out + c] = bitcast<u32>(cache[base + c]);
        }
    } else if p.format == 1u {
        for (var w = t; w < p.row_words; w += WG) {
            var word = 0u;
            for (var k = 0u; k < 2u; k++) {
                let c = 2u * w + k;
                if c < p.dim {
                    var u = 0.0;
                    if stochastic {
                        u = noise(key, c);
                    }
                    word |= f16_round(bitcast<u32>(cache[base + c]), stochastic, u) << (16u * k);
                }
            }
            packed[out + w] = word;
        }
    } else {
        var scale = 1.0;
        var bias = lo;
        var levels = 255u;
        var per_word = 4u;
        var bits = 8u;
        var header = 2u;
        if p.format == 2u {
            if hi > lo {
                scale = div_rn(hi - lo, 255.0);
            }
            if t == 0u {
                packed[out] = bitcast<u32>(scale);
                packed[out + 1u] = lo_b;
            }
        } else {
            // INT4: the bias rounded down to f16, then the scale reaching the maximum from it,
            // rounded up to f16.
            let b16 = f16_floor(lo_b);
            bias = bitcast<f32>(f16_to_f32(b16));
            let span = bitcast<u32>(hi - bias);
            var s16 = F16_ONE;
            if !is_nan32(span) && (span >> 31u) == 0u && span != 0u {
                s16 = f16_ceil(bitcast<u32>(div_rn(bitcast<f32>(span), 15.0)));
            }
            scale = bitcast<f32>(f16_to_f32(s16));
            if t == 0u {
                packed[out] = s16 | (b16 << 16u);
            }
            levels = 15u;
            per_word = 8u;
            bits = 4u;
            header = 1u;
        }
        for (var w = t; w + header < p.row_words; w += WG) {
            var word = 0u;
            for (var k = 0u; k < per_word; k++) {
                let c = per_word * w + k;
                if c < p.dim {
                    var u = 0.0;
                    if stochastic {
                        u = noise(key, c);
                    }
                    let q = level(cache[base + c], scale, bias, levels, stochastic, u);
                    word |= q << (bits * k);
                }
            }
            packed[out + header + w] = word;
        }
    }

    if p.has_state != 0u && t == 0u {
        staged_state[i] = cache_state[(s - p.slot_lo) + p.state_base];
    }
}
