// bag_backward_sgd: fused embedding backward + SGD, one warp per unique row.
// For each unique row u with r = unique_rows[u] < rows: g = sum over k in row_starts[u] ..
// row_starts[u + 1], in that order (batch order, starting from +0), of
// grad[bag_ids[k] * grad_stride + grad_offset + d], each term times 1 / len(bag) (a rounded
// reciprocal, len = offsets[b + 1] - offsets[b]) when mean != 0; then table[r * dim + d] -= lr * g.
// Each unique row is owned by one warp and reduced in a fixed order: deterministic, no atomics,
// the CPU's bit pattern (products are __fmul_rn, never contracted into FMAs). A row r >= rows is
// skipped, and so is an occurrence whose bag id is >= bags. unique_rows must hold distinct rows
// (the CSR map's rows are strictly increasing), else two warps would race on one row.
// Lanes own columns: float4 loads and stores when dim % 4 == 0 and table is 16-byte aligned,
// float4 gradient loads when also grad is 16-byte aligned and grad_stride, grad_offset are
// multiples of 4; scalar otherwise (checked in the kernel). eps is unused; it keeps the scalar
// list identical to bag_backward_adagrad's.
// Args: table (f32 [rows*dim], updated), unique_rows (u32 [unique]), row_starts (u32 [unique+1]), bag_ids (u32 [row_starts[unique]]), offsets (u32 [bags+1]), grad (f32 [(bags-1)*grad_stride+grad_offset+dim]), dim (u32), unique (u32), grad_stride (u32), grad_offset (u32), mean (u32, 0 sum / 1 mean), lr (f32), eps (f32, unused), rows (u32), bags (u32)
// Launch: block 256 threads (8 warps; any multiple of 32 works); grid ceil(unique / 8) blocks in x, may be capped (grid-stride over unique rows); one warp per unique row; no shared memory.

#define FULL_MASK 0xffffffffu
// Bag gradients gathered per inner step: independent loads in flight before their ordered sums.
#define UNROLL 4

static __device__ __forceinline__ bool aligned16(const void* p)
{
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0ull;
}

// This lane's 4 values of row `base` (element offset) in the 128-column chunk at c0:
// columns c0 + 4 * lane + e when vmap (dim % 4 == 0), else c0 + 32 * e + lane. Columns at or
// past dim read as 0 and are never stored.
static __device__ __forceinline__ float4 load4(const float* p, unsigned long long base,
                                               unsigned long long c0, unsigned int lane,
                                               unsigned int dim, bool vmap, bool vld)
{
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (vmap) {
        unsigned long long c = c0 + 4ull * lane;
        if (c < dim) {
            if (vld) {
                v = *reinterpret_cast<const float4*>(p + base + c);
            } else {
                v.x = p[base + c];
                v.y = p[base + c + 1];
                v.z = p[base + c + 2];
                v.w = p[base + c + 3];
            }
        }
    } else {
        unsigned long long c = c0 + lane;
        if (c < dim) v.x = p[base + c];
        if (c + 32 < dim) v.y = p[base + c + 32];
        if (c + 64 < dim) v.z = p[base + c + 64];
        if (c + 96 < dim) v.w = p[base + c + 96];
    }
    return v;
}

// Stores the lane's 4 values of `load4`'s mapping (columns past dim are not written).
static __device__ __forceinline__ void store4(float* p, unsigned long long base, unsigned long long c0,
                                              unsigned int lane, unsigned int dim, bool vmap,
                                              bool vst, float4 v)
{
    if (vmap) {
        unsigned long long c = c0 + 4ull * lane;
        if (c < dim) {
            if (vst) {
                *reinterpret_cast<float4*>(p + base + c) = v;
            } else {
                p[base + c] = v.x;
                p[base + c + 1] = v.y;
                p[base + c + 2] = v.z;
                p[base + c + 3] = v.w;
            }
        }
    } else {
        unsigned long long c = c0 + lane;
        if (c < dim) p[base + c] = v.x;
        if (c + 32 < dim) p[base + c + 32] = v.y;
        if (c + 64 < dim) p[base + c + 64] = v.z;
        if (c + 96 < dim) p[base + c + 96] = v.w;
    }
}

// acc + s * v without contraction (the CPU rounds the product, then the sum).
static __device__ __forceinline__ float4 axpy4(float4 acc, float s, float4 v)
{
    return make_float4(__fadd_rn(acc.x, __fmul_rn(s, v.x)), __fadd_rn(acc.y, __fmul_rn(s, v.y)),
                       __fadd_rn(acc.z, __fmul_rn(s, v.z)), __fadd_rn(acc.w, __fmul_rn(s, v.w)));
}

static __device__ __forceinline__ float4 add4(float4 a, float4 b)
{
    return make_float4(__fadd_rn(a.x, b.x), __fadd_rn(a.y, b.y), __fadd_rn(a.z, b.z),
                       __fadd_rn(a.w, b.w));
}

// The lane's 4 columns (chunk c0) of unique row u's gradient: the bags k = ks .. ke summed in
// order. Warp-uniform arguments; every lane must call it (it shuffles).
static __device__ __forceinline__ float4 row_grad4(const unsigned int* __restrict__ bag_ids,
                                                   const unsigned int* __restrict__ offsets,
                                                   const float* __restrict__ grad,
                                                   unsigned int ks, unsigned int ke,
                                                   unsigned int grad_stride, unsigned int grad_offset,
                                                   unsigned int mean, unsigned int bags,
                                                   unsigned long long c0, unsigned int lane,
                                                   unsigned int dim, bool vmap, bool gvld)
{
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (unsigned int kb = ks; kb < ke; kb += 32u) {
        // The lanes load 32 bag ids (and their 1 / len) at once, then broadcast them in order.
        const unsigned int n = min(32u, ke - kb);
        unsigned int my_bag = 0xffffffffu;
        float my_scale = 1.0f;
        if (lane < n) {
            my_bag = bag_ids[(unsigned long long)kb + lane];
            if (mean != 0u && my_bag < bags) {
                // A bag that reads the row has at least one index (the CPU divides alike).
                my_scale = __fdiv_rn(1.0f, (float)(offsets[my_bag + 1ull] - offsets[my_bag]));
            }
        }
        unsigned int t = 0;
        for (; t + UNROLL <= n; t += UNROLL) {
            unsigned int b[UNROLL];
            float s[UNROLL];
            float4 v[UNROLL];
#pragma unroll
            for (int q = 0; q < UNROLL; ++q) {
                b[q] = __shfl_sync(FULL_MASK, my_bag, t + q);
                s[q] = __shfl_sync(FULL_MASK, my_scale, t + q);
            }
#pragma unroll
            for (int q = 0; q < UNROLL; ++q) {
                v[q] = b[q] < bags
                           ? load4(grad, (unsigned long long)b[q] * grad_stride + grad_offset, c0,
                                   lane, dim, vmap, gvld)
                           : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
#pragma unroll
            for (int q = 0; q < UNROLL; ++q) {
                if (b[q] < bags) acc = mean != 0u ? axpy4(acc, s[q], v[q]) : add4(acc, v[q]);
            }
        }
        for (; t < n; ++t) {
            const unsigned int b = __shfl_sync(FULL_MASK, my_bag, t);
            const float s = __shfl_sync(FULL_MASK, my_scale, t);
            if (b < bags) {
                const float4 v = load4(grad, (unsigned long long)b * grad_stride + grad_offset, c0,
                                       lane, dim, vmap, gvld);
                acc = mean != 0u ? axpy4(acc, s, v) : add4(acc, v);
            }
        }
    }
    return acc;
}

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
                                            unsigned int bags)
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
        const unsigned int ks = row_starts[u];
        const unsigned int ke = row_starts[u + 1];
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
