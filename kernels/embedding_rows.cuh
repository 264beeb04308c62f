// embedding_rows.cuh: what the warp-per-row embedding kernels share (bag_forward,
// bag_backward_sgd, bag_backward_adagrad). A warp owns one row and handles it in chunks of 128
// columns: lane l holds columns c0 + 4l .. c0 + 4l + 3 (float4 loads and stores) when dim % 4 == 0,
// else c0 + l, c0 + 32 + l, c0 + 64 + l, c0 + 96 + l. Sums use __fadd_rn / __fmul_rn, never
// contracted into FMAs, so they round as the CPU does.
// Included with `#include "embedding_rows.cuh"`; NVRTC reads no files, so
// src/device/cuda/compile.rs splices this text in place of that line.

#pragma once

#define FULL_MASK 0xffffffffu
// Bag gradients gathered per inner step of row_grad4: independent loads in flight before their
// ordered sums.
#define GRAD_UNROLL 4

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
        for (; t + GRAD_UNROLL <= n; t += GRAD_UNROLL) {
            unsigned int b[GRAD_UNROLL];
            float s[GRAD_UNROLL];
            float4 v[GRAD_UNROLL];
#pragma unroll
            for (int q = 0; q < GRAD_UNROLL; ++q) {
                b[q] = __shfl_sync(FULL_MASK, my_bag, t + q);
                s[q] = __shfl_sync(FULL_MASK, my_scale, t + q);
            }
#pragma unroll
            for (int q = 0; q < GRAD_UNROLL; ++q) {
                v[q] = b[q] < bags
                           ? load4(grad, (unsigned long long)b[q] * grad_stride + grad_offset, c0,
                                   lane, dim, vmap, gvld)
                           : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
#pragma unroll
            for (int q = 0; q < GRAD_UNROLL; ++q) {
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
