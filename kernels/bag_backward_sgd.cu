// bag_backward_sgd: fused embedding backward + SGD, one warp per unique row.
// For each unique row u with r = unique_rows[u] < rows: g = sum over k in row_starts[u] ..
// row_starts[u + 1], in that order (batch order, starting from +0), of
// grad[bag_ids[k] * grad_stride + grad_offset + d], each term times 1 / len(bag) (a rounded
// reciprocal, len = offsets[b + 1] - offsets[b]) when mean != 0; then table[r * dim + d] -= lr * g.
// Each unique row is owned by one warp and reduced in a fixed order: deterministic, no atomics,
// the CPU's bit pattern (products are __fmul_rn, never contracted into FMAs). A row r >= rows is
// skipped, and so is an occurrence whose bag id is >= bags; row_starts past occurrences
// (bag_ids' length) are clamped to it. unique_rows must hold distinct rows
// (the CSR map's rows are strictly increasing), else two warps would race on one row.
// Lanes own columns: float4 loads and stores when dim % 4 == 0 and table is 16-byte aligned,
// float4 gradient loads when also grad is 16-byte aligned and grad_stride, grad_offset are
// multiples of 4; scalar otherwise (checked in the kernel). eps is unused; it keeps the scalar
// list identical to bag_backward_adagrad's.
// Args: table (f32 [rows*dim], updated), unique_rows (u32 [unique]), row_starts (u32 [unique+1]), bag_ids (u32 [row_starts[unique]]), offsets (u32 [bags+1]), grad (f32 [(bags-1)*grad_stride+grad_offset+dim]), dim (u32), unique (u32), grad_stride (u32), grad_offset (u32), mean (u32, 0 sum / 1 mean), lr (f32), eps (f32, unused), rows (u32), bags (u32), occurrences (u32)
// Launch: block 256 threads (8 warps; any multiple of 32 works); grid ceil(unique / 8) blocks in x, may be capped (grid-stride over unique rows); one warp per unique row; no shared memory.

#include "embedding_rows.cuh"

extern "C" __global__ void bag_backward_sgd(float* __restrict__ table,
                                            const unsigned int* __restrict__ unique_rows,
                                            const unsigned int* __restrict__ row_starts,
                                            const unsigned int* __restrict__ bag_ids,
                                            const unsigned int* __restrict__ offsets,
                                            const float* __restrict__ grad,
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
    (void)eps;
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned long long first_warp =
        ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const unsigned long long warps = ((unsigned long long)gridDim.x * blockDim.x) >> 5;

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
        for (unsigned long long c0 = 0; c0 < dim; c0 += 128) {
            const float4 g = row_grad4(bag_ids, offsets, grad, ks, ke, grad_stride, grad_offset,
                                       mean, bags, c0, lane, dim, vmap, gv);
            float4 x = load4(table, w, c0, lane, dim, vmap, tv);
            // w -= lr * g: the product rounded, then the difference (as the CPU).
            x.x = __fsub_rn(x.x, __fmul_rn(lr, g.x));
            x.y = __fsub_rn(x.y, __fmul_rn(lr, g.y));
            x.z = __fsub_rn(x.z, __fmul_rn(lr, g.z));
            x.w = __fsub_rn(x.w, __fmul_rn(lr, g.w));
            store4(table, w, c0, lane, dim, vmap, tv, x);
        }
    }
}
