// bag_backward_adagrad: fused embedding backward + row-wise Adagrad (FBGEMM's rule), one warp
// per unique row.
// For each unique row u with r = unique_rows[u] < rows: g = sum over k in row_starts[u] ..
// row_starts[u + 1], in that order (batch order, starting from +0), of
// grad[bag_ids[k] * grad_stride + grad_offset + d], each term times 1 / len(bag) (a rounded
// reciprocal, len = offsets[b + 1] - offsets[b]) when mean != 0; then
// state[r] += (sum_d g_d^2) / dim; step = lr / (sqrt(state[r]) + eps); table[r * dim + d] -= step * g_d.
// Each unique row is owned by one warp: deterministic, no atomics. g, the state update and the
// table update round exactly as the CPU (no FMA contraction: __fmul_rn / __fadd_rn / __fdiv_rn /
// __fsqrt_rn); sum_d g_d^2 is reduced in a fixed order (per lane, then a xor-butterfly over the
// warp) that differs from the CPU's sequential sum, so state and table agree with the CPU to
// float-summation tolerance, not bit for bit. A row r >= rows is skipped, and so is an occurrence
// whose bag id is >= bags; row_starts past occurrences (bag_ids' length) are clamped to it.
// unique_rows must hold distinct rows (the CSR map's rows are strictly
// increasing), else two warps would race on one row. Lanes own columns: float4 loads and stores
// when dim % 4 == 0 and table is 16-byte aligned, float4 gradient loads when also grad is 16-byte
// aligned and grad_stride, grad_offset are multiples of 4; scalar otherwise (checked in the
// kernel). The row's gradient is kept in registers for dim <= 512 and recomputed beyond.
// Args: table (f32 [rows*dim], updated), unique_rows (u32 [unique]), row_starts (u32 [unique+1]), bag_ids (u32 [row_starts[unique]]), offsets (u32 [bags+1]), grad (f32 [(bags-1)*grad_stride+grad_offset+dim]), state (f32 [rows], updated), dim (u32), unique (u32), grad_stride (u32), grad_offset (u32), mean (u32, 0 sum / 1 mean), lr (f32), eps (f32), rows (u32), bags (u32), occurrences (u32)
// Launch: block 256 threads (8 warps; any multiple of 32 works); grid ceil(unique / 8) blocks in x, may be capped (grid-stride over unique rows); one warp per unique row; no shared memory.

#include "embedding_rows.cuh"

// Chunks of 128 columns whose gradient stays in registers between the two passes.
#define CACHED 4

static __device__ __forceinline__ float sq4(float s, float4 g)
{
    s = __fadd_rn(s, __fmul_rn(g.x, g.x));
    s = __fadd_rn(s, __fmul_rn(g.y, g.y));
    s = __fadd_rn(s, __fmul_rn(g.z, g.z));
    return __fadd_rn(s, __fmul_rn(g.w, g.w));
}

// x -= step * g (the product rounded, then the difference, as the CPU).
static __device__ __forceinline__ float4 descend4(float4 x, float step, float4 g)
{
    x.x = __fsub_rn(x.x, __fmul_rn(step, g.x));
    x.y = __fsub_rn(x.y, __fmul_rn(step, g.y));
    x.z = __fsub_rn(x.z, __fmul_rn(step, g.z));
    x.w = __fsub_rn(x.w, __fmul_rn(step, g.w));
    return x;
}

extern "C" __global__ void bag_backward_adagrad(float* __restrict__ table,
                                                const unsigned int* __restrict__ unique_rows,
                                                const unsigned int* __restrict__ row_starts,
                                                const unsigned int* __restrict__ bag_ids,
                                                const unsigned int* __restrict__ offsets,
                                                const float* __restrict__ grad,
                                                float* __restrict__ state,
                                                unsigned int dim,
                                                unsigned int unique,
                                                unsigned int grad_stride,
                                                unsigned int grad_offset,
                                                unsigned int mean,
                                                float lr,
                                                float eps,
                                                unsigned int rows,
                                                unsigned int bags,
                                                unsigned int occurrences)
{
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned long long first_warp =
        ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const unsigned long long warps = ((unsigned long long)gridDim.x * blockDim.x) >> 5;

    if (dim == 0u) return; // rejected by validate; would make state / 0 a NaN
    const bool vmap = (dim & 3u) == 0u;
    const bool tv = vmap && aligned16(table);
    const bool gv = vmap && aligned16(grad) && (grad_stride & 3u) == 0u && (grad_offset & 3u) == 0u;

    for (unsigned long long u = first_warp; u < unique; u += warps) {
        // Warp-uniform from here on.
        const unsigned int r = unique_rows[u];
        if (r >= rows) continue;
        // Clamped to bag_ids' length: a corrupt map reads nothing outside the buffer.
        const unsigned int ks = min(row_starts[u], occurrences);
        const unsigned int ke = min(row_starts[u + 1], occurrences);
        const unsigned long long w = (unsigned long long)r * dim;

        // Pass 1: the gradient, and this lane's share of sum_d g_d^2 (its columns in order).
        float4 gc[CACHED];
        float sq = 0.0f;
#pragma unroll
        for (int j = 0; j < CACHED; ++j) {
            gc[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            const unsigned long long c0 = 128ull * j;
            if (c0 < dim) {
                gc[j] = row_grad4(bag_ids, offsets, grad, ks, ke, grad_stride, grad_offset, mean,
                                  bags, c0, lane, dim, vmap, gv);
                sq = sq4(sq, gc[j]);
            }
        }
        for (unsigned long long c0 = 128ull * CACHED; c0 < dim; c0 += 128) {
            const float4 g = row_grad4(bag_ids, offsets, grad, ks, ke, grad_stride, grad_offset,
                                       mean, bags, c0, lane, dim, vmap, gv);
            sq = sq4(sq, g);
        }
        // Fixed butterfly: every lane ends with the same bits (a + b == b + a).
#pragma unroll
        for (int m = 16; m > 0; m >>= 1) {
            sq = __fadd_rn(sq, __shfl_xor_sync(FULL_MASK, sq, m));
        }

        // The accumulator, as the CPU: state += mean(g^2); step = lr / (sqrt(state) + eps).
        const float s = __fadd_rn(state[r], __fdiv_rn(sq, (float)dim));
        const float step = __fdiv_rn(lr, __fadd_rn(__fsqrt_rn(s), eps));
        __syncwarp();
        if (lane == 0) state[r] = s;

        // Pass 2: the update.
#pragma unroll
        for (int j = 0; j < CACHED; ++j) {
            const unsigned long long c0 = 128ull * j;
            if (c0 < dim) {
                const float4 x = load4(table, w, c0, lane, dim, vmap, tv);
                store4(table, w, c0, lane, dim, vmap, tv, descend4(x, step, gc[j]));
            }
        }
        for (unsigned long long c0 = 128ull * CACHED; c0 < dim; c0 += 128) {
            const float4 g = row_grad4(bag_ids, offsets, grad, ks, ke, grad_stride, grad_offset,
                                       mean, bags, c0, lane, dim, vmap, gv);
            const float4 x = load4(table, w, c0, lane, dim, vmap, tv);
            store4(table, w, c0, lane, dim, vmap, tv, descend4(x, step, g));
        }
    }
}
