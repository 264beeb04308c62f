// quantize_rows: packs FP32 cache slots into the host store's row layouts, one warp per row.
// packed row i (words i * row_words ..) = quantize(cache[slots[i] * dim ..][..dim]) for i < rows,
// rounded to nearest (stochastic == 0) or stochastically with the noise
// rounding_uniform(seed, step, row_ids[i], column); staged_state[i] = cache_state[slots[i]] when
// has_state != 0. Bit for bit as quantize_row of src/embedding/precision.rs, including the row
// min / max (NaNs skipped; when the extreme is a zero present with both signs, the sign the CPU's
// 16-lane scan meets first), the `half` crate's f32 -> f16 (nearest even, NaN payload kept with
// the quiet bit), f16_floor / f16_ceil / stochastic f16 rounding, and NaN -> level 0.
// format: 0 FP32 (word c is the value's bits), 1 FP16 (element c in bits 16 * (c % 2) of word
// c / 2), 2 INT8 (word 0 scale f32, word 1 bias f32, element c in byte c % 4 of word 2 + c / 4),
// 3 INT4 (word 0 = scale f16 | bias f16 << 16, element c in nibble c % 8 of word 1 + c / 8);
// row_words = Precision::row_words(dim); every word of the row is written, padding bits 0.
// The float arithmetic is inline PTX (add/sub/mul/div .rn, cvt.rn.f16.f32, cvt.f32.f16,
// cvt.rmi, none with .ftz) and comparisons are done on the bits, so the result depends on no
// compile flag (-ftz, -prec-div, -fmad, --use_fast_math). A slot >= cache_rows is skipped (that
// packed row and its staged state are left untouched). cache_state / staged_state are not touched
// when has_state == 0 (they may then be any pointer, e.g. null); row_ids is read only when
// stochastic != 0.
// Args: cache (f32 [cache_rows*dim]), slots (u32 [rows]), row_ids (u32 [rows]), packed (u32 [rows*row_words], written), cache_state (f32 [cache_rows]), staged_state (f32 [rows], written), rows (u32), dim (u32), row_words (u32), format (u32: 0 FP32, 1 FP16, 2 INT8, 3 INT4), has_state (u32, 0/1), stochastic (u32, 0 nearest / 1 stochastic), seed (u32), step (u32), cache_rows (u32)
// Launch: block 256 threads (8 warps; any multiple of 32 works); grid ceil(rows / 8) blocks in x, may be capped (grid-stride over rows); one warp per row; no shared memory.

#define FULL_MASK 0xffffffffu
#define F32_INF 0x7F800000u
#define F32_NEG_INF 0xFF800000u
#define F16_ONE 0x3C00u
#define F16_MAX_F32 0x477FE000u // 65504 as f32 bits

// ---------------------------------------------------------------- exact float operations

static __device__ __forceinline__ float add_rn(float a, float b)
{
    float r;
    asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

static __device__ __forceinline__ float sub_rn(float a, float b)
{
    float r;
    asm("sub.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

static __device__ __forceinline__ float mul_rn(float a, float b)
{
    float r;
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

// IEEE division, correctly rounded (as the CPU's), whatever -prec-div says.
static __device__ __forceinline__ float div_rn(float a, float b)
{
    float r;
    asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

static __device__ __forceinline__ float floor_f32(float a)
{
    float r;
    asm("cvt.rmi.f32.f32 %0, %1;" : "=f"(r) : "f"(a));
    return r;
}

static __device__ __forceinline__ bool is_nan32(unsigned int b)
{
    return (b & 0x7FFFFFFFu) > F32_INF;
}

// Unsigned key with the order of the non-NaN f32 values; -0 and +0 share one key (equal values).
static __device__ __forceinline__ unsigned int value_key(unsigned int b)
{
    if ((b & 0x7FFFFFFFu) == 0u) b = 0u;
    return (b >> 31) != 0u ? ~b : (b | 0x80000000u);
}

// a < b as IEEE compares (false when either is NaN, -0 == +0), on the bits: no flush to zero.
static __device__ __forceinline__ bool lt32(unsigned int a, unsigned int b)
{
    return !is_nan32(a) && !is_nan32(b) && value_key(a) < value_key(b);
}

// ---------------------------------------------------------------- f16 (the `half` crate's bits)

// half::f16::from_f32: nearest even (PTX cvt.rn, IEEE), NaN payload kept with the quiet bit set.
static __device__ __forceinline__ unsigned int f32_to_f16(unsigned int b)
{
    if (is_nan32(b)) {
        return ((b >> 16) & 0x8000u) | 0x7C00u | 0x0200u | ((b & 0x007FFFFFu) >> 13);
    }
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(__uint_as_float(b)));
    return h;
}

// half::f16::to_f32: exact; a NaN keeps its payload with the quiet bit set.
static __device__ __forceinline__ unsigned int f16_to_f32(unsigned int h)
{
    h &= 0xFFFFu;
    if ((h & 0x7C00u) == 0x7C00u && (h & 0x03FFu) != 0u) {
        return ((h & 0x8000u) << 16) | 0x7FC00000u | ((h & 0x03FFu) << 13);
    }
    const unsigned short hs = (unsigned short)h;
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(hs));
    return __float_as_uint(f);
}

static __device__ __forceinline__ bool is_nan16(unsigned int h)
{
    return (h & 0x7FFFu) > 0x7C00u;
}

static __device__ __forceinline__ unsigned int f16_next_up(unsigned int h)
{
    if (is_nan16(h) || h == 0x7C00u) return h;
    if (h == 0x8000u || h == 0u) return 1u;
    if ((h & 0x8000u) == 0u) return h + 1u;
    return h - 1u;
}

static __device__ __forceinline__ unsigned int f16_next_down(unsigned int h)
{
    return f16_next_up(h ^ 0x8000u) ^ 0x8000u;
}

// x.max(-65504).min(65504) as Rust computes it: a NaN becomes -65504.
static __device__ __forceinline__ unsigned int clamp_f16_range_maxmin(unsigned int x)
{
    if (is_nan32(x)) return F16_MAX_F32 | 0x80000000u;
    if ((x & 0x7FFFFFFFu) > F16_MAX_F32) return (x & 0x80000000u) | F16_MAX_F32;
    return x;
}

// x.clamp(-65504, 65504): a NaN stays NaN.
static __device__ __forceinline__ unsigned int clamp_f16_range(unsigned int x)
{
    if (!is_nan32(x) && (x & 0x7FFFFFFFu) > F16_MAX_F32) return (x & 0x80000000u) | F16_MAX_F32;
    return x;
}

// precision.rs f16_floor: toward -inf.
static __device__ __forceinline__ unsigned int f16_floor(unsigned int x)
{
    const unsigned int h = f32_to_f16(clamp_f16_range_maxmin(x));
    return lt32(x, f16_to_f32(h)) ? f16_next_down(h) : h;
}

// precision.rs f16_ceil: toward +inf.
static __device__ __forceinline__ unsigned int f16_ceil(unsigned int x)
{
    const unsigned int h = f32_to_f16(clamp_f16_range_maxmin(x));
    return lt32(f16_to_f32(h), x) ? f16_next_up(h) : h;
}

// precision.rs f16_round: nearest even, or (stochastic) the f16 neighbour above with
// probability equal to the distance from the one below, chosen by u.
static __device__ __forceinline__ unsigned int f16_round(unsigned int xb, bool stochastic, float u)
{
    const unsigned int x = clamp_f16_range(xb);
    const unsigned int h = f32_to_f16(x);
    if (!stochastic || is_nan32(x)) return h;
    const unsigned int back = f16_to_f32(h);
    if (back == x) return h; // same sign as x: equal bits are equal values
    unsigned int lo = h;
    unsigned int hi = h;
    if (lt32(back, x)) {
        hi = f16_next_up(h);
    } else {
        lo = f16_next_down(h);
    }
    const float l = __uint_as_float(f16_to_f32(lo));
    const float r = __uint_as_float(f16_to_f32(hi));
    const float frac = div_rn(sub_rn(__uint_as_float(x), l), sub_rn(r, l));
    return lt32(__float_as_uint(u), __float_as_uint(frac)) ? hi : lo;
}

// ---------------------------------------------------------------- rounding noise

// precision.rs pcg_hash (32-bit wrapping arithmetic).
static __device__ __forceinline__ unsigned int pcg_hash(unsigned int v)
{
    const unsigned int state = v * 747796405u + 2891336453u;
    const unsigned int word = ((state >> ((state >> 28) + 4u)) ^ state) * 277803737u;
    return (word >> 22) ^ word;
}

// precision.rs uniform_at: rounding_uniform(seed, step, row, col) from the row's key
// pcg(pcg(pcg(seed) ^ step) ^ row); 24 bits, exact in f32.
static __device__ __forceinline__ float noise(unsigned int key, unsigned int col)
{
    return mul_rn((float)(pcg_hash(key ^ col) >> 8), 1.0f / 16777216.0f);
}

// precision.rs pack_levels: clamp(floor((x - bias) / scale + u), 0, levels) as u32 (NaN: 0).
static __device__ __forceinline__ unsigned int level(float x, float scale, float bias,
                                                     unsigned int levels, float u)
{
    const float q = floor_f32(add_rn(div_rn(sub_rn(x, bias), scale), u));
    const unsigned int qb = __float_as_uint(q);
    if (is_nan32(qb) || (qb >> 31) != 0u) return 0u; // NaN, negative, -0
    // q is +0, a whole number or +inf: non-negative floats order as their bits.
    if (qb > __float_as_uint((float)levels)) return levels;
    return (unsigned int)q;
}

// ---------------------------------------------------------------- row extremes

// The CPU's `extremes` scans 16 lanes (lane c % 16 over the first dim / 16 * 16 columns, in
// order), folds the lanes 0..15 in order, then the remainder columns; `x < lo` keeps the earlier
// of two equal values. This is the rank of column c in that scan (a permutation of 0 .. dim), so
// "smallest value, then smallest rank" picks the very element the CPU keeps (it matters only for
// the sign of a zero).
static __device__ __forceinline__ unsigned int scan_rank(unsigned int c, unsigned int n16)
{
    return c < n16 ? (c & 15u) * (n16 >> 4) + (c >> 4) : c;
}

extern "C" __global__ void quantize_rows(const float* __restrict__ cache,
                                         const unsigned int* __restrict__ slots,
                                         const unsigned int* __restrict__ row_ids,
                                         unsigned int* __restrict__ packed,
                                         const float* __restrict__ cache_state,
                                         float* __restrict__ staged_state,
                                         unsigned int rows,
                                         unsigned int dim,
                                         unsigned int row_words,
                                         unsigned int format,
                                         unsigned int has_state,
                                         unsigned int stochastic,
                                         unsigned int seed,
                                         unsigned int step,
                                         unsigned int cache_rows)
{
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned long long first_warp =
        ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const unsigned long long warps = ((unsigned long long)gridDim.x * blockDim.x) >> 5;
    const bool sto = stochastic != 0u;
    const unsigned int seed_key = pcg_hash(seed) ^ step;

    for (unsigned long long i = first_warp; i < rows; i += warps) {
        // Warp-uniform from here on.
        const unsigned int s = slots[i];
        if (s >= cache_rows) continue;
        const float* __restrict__ src = cache + (unsigned long long)s * dim;
        unsigned int* __restrict__ out = packed + i * row_words;
        const unsigned int key = sto ? pcg_hash(pcg_hash(seed_key) ^ row_ids[i]) : 0u;

        if (format == 0u) {
            for (unsigned long long w = lane; w < row_words; w += 32) {
                out[w] = w < dim ? __float_as_uint(src[w]) : 0u;
            }
        } else if (format == 1u) {
            for (unsigned long long w = lane; w < row_words; w += 32) {
                unsigned int word = 0u;
#pragma unroll
                for (unsigned int k = 0; k < 2u; ++k) {
                    const unsigned long long c = 2ull * w + k;
                    if (c < dim) {
                        const float u = sto ? noise(key, (unsigned int)c) : 0.0f;
                        word |= f16_round(__float_as_uint(src[c]), sto, u) << (16u * k);
                    }
                }
                out[w] = word;
            }
        } else {
            // Row min / max over the non-NaN values as 64-bit keys (value key, then scan rank);
            // the winner's bits travel with its key. No value: +inf / -inf, as the CPU.
            const unsigned int n16 = dim & ~15u;
            unsigned long long klo = ~0ull;
            unsigned long long khi = 0ull;
            unsigned int blo = F32_INF;
            unsigned int bhi = F32_NEG_INF;
            for (unsigned long long c = lane; c < dim; c += 32) {
                const unsigned int b = __float_as_uint(src[c]);
                if (is_nan32(b)) continue;
                const unsigned long long vk = (unsigned long long)value_key(b) << 32;
                const unsigned int rank = scan_rank((unsigned int)c, n16);
                const unsigned long long kl = vk | rank;
                const unsigned long long kh = vk | (0xFFFFFFFFu - rank);
                if (kl < klo) {
                    klo = kl;
                    blo = b;
                }
                if (kh > khi) {
                    khi = kh;
                    bhi = b;
                }
            }
#pragma unroll
            for (int m = 16; m > 0; m >>= 1) {
                const unsigned long long okl = __shfl_xor_sync(FULL_MASK, klo, m);
                const unsigned int obl = __shfl_xor_sync(FULL_MASK, blo, m);
                const unsigned long long okh = __shfl_xor_sync(FULL_MASK, khi, m);
                const unsigned int obh = __shfl_xor_sync(FULL_MASK, bhi, m);
                if (okl < klo) {
                    klo = okl;
                    blo = obl;
                }
                if (okh > khi) {
                    khi = okh;
                    bhi = obh;
                }
            }

            float scale = 1.0f;
            float bias = __uint_as_float(blo);
            unsigned int levels;
            unsigned int per_word;
            unsigned int bits;
            unsigned int header;
            if (format == 2u) {
                if (lt32(blo, bhi)) {
                    scale = div_rn(sub_rn(__uint_as_float(bhi), __uint_as_float(blo)), 255.0f);
                }
                if (lane == 0u) {
                    out[0] = __float_as_uint(scale);
                    out[1] = blo;
                }
                levels = 255u;
                per_word = 4u;
                bits = 8u;
                header = 2u;
            } else {
                // INT4: the bias rounded down to f16, then the scale reaching the maximum from
                // it, rounded up to f16.
                const unsigned int b16 = f16_floor(blo);
                bias = __uint_as_float(f16_to_f32(b16));
                const unsigned int span = __float_as_uint(sub_rn(__uint_as_float(bhi), bias));
                unsigned int s16 = F16_ONE;
                if (!is_nan32(span) && (span >> 31) == 0u && span != 0u) { // span > 0
                    s16 = f16_ceil(__float_as_uint(div_rn(__uint_as_float(span), 15.0f)));
                }
                scale = __uint_as_float(f16_to_f32(s16));
                if (lane == 0u) {
                    out[0] = s16 | (b16 << 16);
                }
                levels = 15u;
                per_word = 8u;
                bits = 4u;
                header = 1u;
            }
            for (unsigned long long w = lane; w + header < row_words; w += 32) {
                unsigned int word = 0u;
                for (unsigned int k = 0; k < per_word; ++k) {
                    const unsigned long long c = (unsigned long long)per_word * w + k;
                    if (c < dim) {
                        const float u = sto ? noise(key, (unsigned int)c) : 0.5f;
                        word |= level(src[c], scale, bias, levels, u) << (bits * k);
                    }
                }
                out[header + w] = word;
            }
        }

        if (has_state != 0u && lane == 0u) {
            staged_state[i] = cache_state[s];
        }
    }
}
