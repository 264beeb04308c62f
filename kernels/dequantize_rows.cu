// dequantize_rows: expands packed host-store rows into FP32 cache slots, one warp per row.
// cache[slots[i] * dim + c] = dequantize(packed row i)[c] for i < rows, c < dim, and
// cache_state[slots[i]] = staged_state[i] when has_state != 0; bit for bit as dequantize_row of
// src/embedding/precision.rs. format: 0 FP32 (word c is the value's bits), 1 FP16 (element c in
// bits 16 * (c % 2) of word c / 2), 2 INT8 (word 0 scale f32, word 1 bias f32, element c in byte
// c % 4 of word 2 + c / 4), 3 INT4 (word 0 = scale f16 | bias f16 << 16, element c in nibble
// c % 8 of word 1 + c / 8); a level q decodes to q * scale + bias, the product and the sum each
// rounded to nearest even (no FMA). Row i starts at word i * row_words of packed
// (row_words = Precision::row_words(dim)). f16 widening is exact (PTX cvt.f32.f16, subnormals
// included) and a NaN f16 widens as the `half` crate does (quiet bit set, payload kept). The float
// arithmetic is inline PTX (add.rn / mul.rn without .ftz), so the result does not depend on
// -ftz, -fmad or --use_fast_math. A slot >= cache_rows is skipped (that row is left untouched).
// Slots must be distinct, else two warps write one slot. staged_state / cache_state are not
// touched when has_state == 0 (they may then be any pointer, e.g. null).
// Args: packed (u32 [rows*row_words]), slots (u32 [rows]), cache (f32 [cache_rows*dim], written), staged_state (f32 [rows]), cache_state (f32 [cache_rows], written), rows (u32), dim (u32), row_words (u32), format (u32: 0 FP32, 1 FP16, 2 INT8, 3 INT4), has_state (u32, 0/1), cache_rows (u32)
// Launch: block 256 threads (8 warps; any multiple of 32 works); grid ceil(rows / 8) blocks in x, may be capped (grid-stride over rows); one warp per row; no shared memory.

static __device__ __forceinline__ float add_rn(float a, float b)
{
    float r;
    asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

static __device__ __forceinline__ float mul_rn(float a, float b)
{
    float r;
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

// half::f16::to_f32: exact; a NaN keeps its payload with the quiet bit set.
static __device__ __forceinline__ float f16_to_f32(unsigned int h)
{
    h &= 0xFFFFu;
    if ((h & 0x7C00u) == 0x7C00u && (h & 0x03FFu) != 0u) {
        return __uint_as_float(((h & 0x8000u) << 16) | 0x7FC00000u | ((h & 0x03FFu) << 13));
    }
    const unsigned short hs = (unsigned short)h;
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(hs));
    return f;
}

static __device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0ull;
}

// Element c of a packed row starting at `row` (scale and bias already decoded for the integer
// formats).
static __device__ __forceinline__ float decode(const unsigned int* __restrict__ row, unsigned int format,
                                               unsigned long long c, float scale, float bias)
{
    if (format == 0u) {
        return __uint_as_float(row[c]);
    } else if (format == 1u) {
        return f16_to_f32(row[c >> 1] >> (16u * (unsigned int)(c & 1ull)));
    } else if (format == 2u) {
        const unsigned int q = (row[2ull + (c >> 2)] >> (8u * (unsigned int)(c & 3ull))) & 0xFFu;
        return add_rn(mul_rn((float)q, scale), bias);
    } else {
        const unsigned int q = (row[1ull + (c >> 3)] >> (4u * (unsigned int)(c & 7ull))) & 0xFu;
        return add_rn(mul_rn((float)q, scale), bias);
    }
}

extern "C" __global__ void dequantize_rows(const unsigned int* __restrict__ packed,
                                           const unsigned int* __restrict__ slots,
                                           float* __restrict__ cache,
                                           const float* __restrict__ staged_state,
                                           float* __restrict__ cache_state,
                                           unsigned int rows,
                                           unsigned int dim,
                                           unsigned int row_words,
                                           unsigned int format,
                                           unsigned int has_state,
                                           unsigned int cache_rows)
{
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned long long first_warp =
        ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const unsigned long long warps = ((unsigned long long)gridDim.x * blockDim.x) >> 5;
    // Four consecutive columns per lane, stored as one float4 when the cache rows are aligned.
    const bool vmap = (dim & 3u) == 0u;
    const bool vst = vmap && aligned16(cache);

    for (unsigned long long i = first_warp; i < rows; i += warps) {
        const unsigned int s = slots[i];
        if (s >= cache_rows) continue;
        const unsigned int* __restrict__ row = packed + i * row_words;
        const unsigned long long base = (unsigned long long)s * dim;
        float scale = 1.0f;
        float bias = 0.0f;
        if (format == 2u) {
            scale = __uint_as_float(row[0]);
            bias = __uint_as_float(row[1]);
        } else if (format >= 3u) {
            scale = f16_to_f32(row[0]);
            bias = f16_to_f32(row[0] >> 16);
        }
        if (vmap) {
            for (unsigned long long c = 4ull * lane; c < dim; c += 128) {
                float4 v;
                v.x = decode(row, format, c, scale, bias);
                v.y = decode(row, format, c + 1, scale, bias);
                v.z = decode(row, format, c + 2, scale, bias);
                v.w = decode(row, format, c + 3, scale, bias);
                if (vst) {
                    *reinterpret_cast<float4*>(cache + base + c) = v;
                } else {
                    cache[base + c] = v.x;
                    cache[base + c + 1] = v.y;
                    cache[base + c + 2] = v.z;
                    cache[base + c + 3] = v.w;
                }
            }
        } else {
            for (unsigned long long c = lane; c < dim; c += 32) {
                cache[base + c] = decode(row, format, c, scale, bias);
            }
        }
        if (has_state != 0u && lane == 0u) {
            cache_state[s] = staged_state[i];
        }
    }
}
