// bag_forward: pooled (sum or mean) embedding lookup, one warp per bag.
// out[b * out_stride + out_offset + d] = pool over k in offsets[b] .. offsets[b + 1] of
// table[indices[k] * dim + d], for d < dim. The rows are summed in index order (k ascending,
// starting from +0), as the CPU does, so sums match it bit for bit; mean multiplies the sum by
// 1 / len (a rounded reciprocal, as the CPU), an empty bag pools to zeros. An index >= rows is
// skipped (nothing outside the table is read). Offsets must be non-decreasing (a bag whose end
// is below its start is empty); offsets past indices_len (the index buffer's length) are clamped
// to it, so a corrupt map reads nothing outside the buffer and cannot fault the context. Lanes own columns: float4 loads when dim % 4 == 0 and table is
// 16-byte aligned, float4 stores when also out, out_stride and out_offset are 16-byte / 4-element
// aligned, scalar otherwise (checked in the kernel). Products that could be contracted into FMAs
// use __fmul_rn / __fadd_rn; no dependence on -fmad, -prec-div or -ftz.
// Args: table (f32 [rows*dim]), indices (u32 [offsets[bags]]), offsets (u32 [bags+1]), out (f32, written), dim (u32), bags (u32), out_stride (u32), out_offset (u32), mean (u32, 0 sum / 1 mean), rows (u32), indices_len (u32)
// Launch: block 256 threads (8 warps; any multiple of 32 works); grid ceil(bags / 8) blocks in x, may be capped (grid-stride over bags); one warp per bag; no shared memory.

#include "embedding_rows.cuh"

// Rows gathered per inner step: independent loads in flight before their ordered additions.
#define UNROLL 8

extern "C" __global__ void bag_forward(const float* __restrict__ table,
                                       const unsigned int* __restrict__ indices,
                                       const unsigned int* __restrict__ offsets,
                                       float* __restrict__ out,
                                       unsigned int dim,
                                       unsigned int bags,
                                       unsigned int out_stride,
                                       unsigned int out_offset,
                                       unsigned int mean,
                                       unsigned int rows,
                                       unsigned int indices_len)
{
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned long long first_warp =
        ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const unsigned long long warps = ((unsigned long long)gridDim.x * blockDim.x) >> 5;

    const bool vmap = (dim & 3u) == 0u;
    const bool vld = vmap && aligned16(table);
    const bool vst = vmap && aligned16(out) && (out_stride & 3u) == 0u && (out_offset & 3u) == 0u;

    for (unsigned long long b = first_warp; b < bags; b += warps) {
        // Warp-uniform from here on: every lane takes the same branches around the shuffles.
        const unsigned int start = min(offsets[b], indices_len);
        const unsigned int end = min(offsets[b + 1], indices_len);
        const unsigned int len = end > start ? end - start : 0u;
        const unsigned long long o = b * out_stride + out_offset;
        float inv = 1.0f;
        if (mean != 0u && len > 0u) {
            inv = __fdiv_rn(1.0f, (float)len);
        }

        for (unsigned long long c0 = 0; c0 < dim; c0 += 128) {
            float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            for (unsigned int kb = 0; kb < len; kb += 32u) {
                // The lanes load 32 indices at once, then broadcast them one by one in order.
                const unsigned int n = min(32u, len - kb);
                const unsigned int mine = lane < n ? indices[(unsigned long long)start + kb + lane] : 0u;
                unsigned int t = 0;
                for (; t + UNROLL <= n; t += UNROLL) {
                    unsigned int r[UNROLL];
                    float4 v[UNROLL];
#pragma unroll
                    for (int q = 0; q < UNROLL; ++q) {
                        r[q] = __shfl_sync(FULL_MASK, mine, t + q);
                    }
#pragma unroll
                    for (int q = 0; q < UNROLL; ++q) {
                        v[q] = r[q] < rows
                                   ? load4(table, (unsigned long long)r[q] * dim, c0, lane, dim, vmap, vld)
                                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                    }
#pragma unroll
                    for (int q = 0; q < UNROLL; ++q) {
                        if (r[q] < rows) acc = add4(acc, v[q]);
                    }
                }
                for (; t < n; ++t) {
                    const unsigned int r = __shfl_sync(FULL_MASK, mine, t);
                    if (r < rows) {
                        acc = add4(acc, load4(table, (unsigned long long)r * dim, c0, lane, dim, vmap, vld));
                    }
                }
            }
            if (mean != 0u && len > 0u) {
                acc.x = __fmul_rn(acc.x, inv);
                acc.y = __fmul_rn(acc.y, inv);
                acc.z = __fmul_rn(acc.z, inv);
                acc.w = __fmul_rn(acc.w, inv);
            }
            store4(out, o, c0, lane, dim, vmap, vst, acc);
        }
    }
}
