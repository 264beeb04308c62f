// dequantize_rows: expands packed host-store rows into FP32 cache slots, matching
// dequantize_row of src/embedding/precision.rs bit for bit:
//   cache slot slots[i] = dequantize(packed row i);
//   cache_state[slots[i]] = staged_state[i] when has_state.
// format (the precision; `precision` is a reserved word in WGSL): 0 FP32 (the value's bits),
//   1 FP16 (element c in bits 16 * (c % 2) of word c / 2), 2 INT8 (word 0 scale f32, word 1
//   bias f32, element c in byte c % 4 of word 2 + c / 4), 3 INT4 (word 0 = scale f16 | bias f16
//   << 16, element c in nibble c % 8 of word 1 + c / 8); an integer level q decodes to
//   q * scale + bias.
// f16 values are widened with integer operations (exact, subnormals included, whatever the GPU's
// f16 support). The product q * scale is also formed with integer operations, rounded to nearest
// even: a float multiply followed by an add may be contracted into a fused multiply-add by the
// shader compiler (SPIR-V, MSL and HLSL all allow it, and a temporary does not prevent it), which
// the CPU never does. So the only float operation is the final addition, which WGSL rounds
// correctly; a GPU may still flush f32 subnormals to zero in it.
// Bindings: 0 uniform Params (dynamic offset), 1 packed (read, u32, rows * row_words),
//           2 slots (read, u32), 3 cache (read_write; window: slot s at word
//           (s - slot_lo) * dim + cache_base), 4 staged_state (read, rows),
//           5 cache_state (read_write; window: slot s at (s - slot_lo) + state_base).
// Dispatch: one invocation per (row, column), linear index i * dim + c over rows * dim;
//           workgroup size 64, workgroups split over x and y. Slots outside [slot_lo, slot_hi)
//           are skipped.

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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> cache: array<f32>;
@group(0) @binding(4) var<storage, read> staged_state: array<f32>;
@group(0) @binding(5) var<storage, read_write> cache_state: array<f32>;

const F32_INF: u32 = 0x7F800000u;

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

// Bits of the non-negative f32 nearest to sig * 2^e2, ties to even (sig != 0).
fn round_f32(sig: u32, e2: i32) -> u32 {
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
        if guard != 0u && (rest != 0u || (m & 1u) != 0u) {
            m += 1u;
        }
    } // else below half the smallest subnormal: 0
    if e >= 1 {
        // m in [2^23, 2^24]: its leading bit (or carry) completes the exponent, up to infinity.
        return (u32(e - 1) << 23u) + m;
    }
    return m; // subnormal (or, after a carry, the smallest normal)
}

// Bits of f32(q) * scale rounded to nearest even, q < 2^8, without a float multiply.
fn mul_level(q: u32, scale: u32) -> u32 {
    let sign = scale & 0x80000000u;
    let ex = (scale >> 23u) & 0xFFu;
    if ex == 0xFFu {
        return bitcast<u32>(f32(q) * bitcast<f32>(scale)); // infinity or NaN: nothing to round
    }
    var m = scale & 0x007FFFFFu;
    var e = 1;
    if ex != 0u {
        m = m | 0x00800000u;
        e = i32(ex);
    }
    let sig = q * m; // < 2^32
    if sig == 0u {
        return sign;
    }
    return sign | round_f32(sig, e - 150);
}

// q * scale + bias as the CPU computes it: a rounded product, then a rounded sum.
fn affine(q: u32, scale: u32, bias: u32) -> u32 {
    let prod = bitcast<f32>(mul_level(q, scale));
    return bitcast<u32>(prod + bitcast<f32>(bias));
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= p.rows * p.dim {
        return;
    }
    let i = idx / p.dim;
    let c = idx % p.dim;
    let s = slots[i];
    if s < p.slot_lo || s >= p.slot_hi {
        return;
    }
    let row = i * p.row_words;
    var v = 0u;
    if p.format == 0u {
        v = packed[row + c];
    } else if p.format == 1u {
        v = f16_to_f32((packed[row + c / 2u] >> (16u * (c % 2u))) & 0xFFFFu);
    } else if p.format == 2u {
        let q = (packed[row + 2u + c / 4u] >> (8u * (c % 4u))) & 0xFFu;
        v = affine(q, packed[row], packed[row + 1u]);
    } else {
        let h = packed[row];
        let q = (packed[row + 1u + c / 8u] >> (4u * (c % 8u))) & 0xFu;
        v = affine(q, f16_to_f32(h & 0xFFFFu), f16_to_f32(h >> 16u));
    }
    cache[(s - p.slot_lo) * p.dim + p.cache_base + c] = bitcast<f32>(v);
    if p.has_state != 0u && c == 0u {
        cache_state[(s - p.slot_lo) + p.state_base] = staged_state[i];
    }
}
