// interaction_backward: gradient of interaction_forward with respect to its inputs (ddense and
// demb are overwritten). With v_0 = dense[b], v_t = emb[b, t - 1] and
// s(i, j) = dout[b, dim + i * (i - 1) / 2 + j], the gradient of v_vi is
//   [vi == 0] * dout[b, 0..dim] + sum over pairs (i, j), j < i, of
//   s(i, j) * v_j if i == vi, plus s(i, j) * v_i if j == vi,
// accumulated in the CPU's pair order (i = 1..=tables, j = 0..i-1), starting from dout[b, d] for
// vi == 0 and from +0 otherwise; each product and sum rounded separately (no FMA contraction):
// the CPU's bits. width must be interaction_width(tables, dim) = dim + (tables + 1) * tables / 2.
// One thread per (b, vi, d), vi in 0..=tables, linear index (b * (tables + 1) + vi) * dim + d,
// grid-stride over batch * (tables + 1) * dim.
// Args: dense (f32 [batch*dim]), emb (f32 [batch*tables*dim]), dout (f32 [batch*width]), ddense (f32 [batch*dim], written), demb (f32 [batch*tables*dim], written), batch (u32), tables (u32), dim (u32), width (u32)
// Launch: block 256 threads; grid ceil(batch * (tables + 1) * dim / 256) blocks in x, may be capped (grid-stride over elements); one thread per (sample, vector, column); no shared memory.

// Element d of vector t of sample b.
static __device__ __forceinline__ float vec_at(const float* __restrict__ dense,
                                               const float* __restrict__ emb,
                                               unsigned long long b, unsigned int t,
                                               unsigned int tables, unsigned int dim,
                                               unsigned int d)
{
    if (t == 0u) return dense[b * dim + d];
    return emb[(b * tables + (t - 1u)) * dim + d];
}

static __device__ __forceinline__ unsigned long long pair(unsigned int i, unsigned int j)
{
    return (unsigned long long)i * (i - 1u) / 2ull + j;
}

extern "C" __global__ void interaction_backward(const float* __restrict__ dense,
                                                const float* __restrict__ emb,
                                                const float* __restrict__ dout,
                                                float* __restrict__ ddense,
                                                float* __restrict__ demb,
                                                unsigned int batch,
                                                unsigned int tables,
                                                unsigned int dim,
                                                unsigned int width)
{
    const unsigned long long nvec = (unsigned long long)tables + 1ull;
    const unsigned long long n = (unsigned long long)batch * nvec * dim;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long idx = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += stride) {
        const unsigned int d = (unsigned int)(idx % dim);
        const unsigned long long rest = idx / dim;
        const unsigned int vi = (unsigned int)(rest % nvec);
        const unsigned long long b = rest / nvec;
        const float* __restrict__ g = dout + b * width + dim;

        float acc = vi == 0u ? dout[b * width + d] : 0.0f;
        // Of the pairs (i, j) in the CPU's order, only those with i == vi (all j < vi, met first)
        // and then those with j == vi (i = vi + 1 ..= tables) touch v_vi: visiting just them
        // keeps the order of the additions and costs O(tables) instead of O(tables^2).
        for (unsigned int j = 0; j < vi; ++j) {
            acc = __fadd_rn(acc, __fmul_rn(g[pair(vi, j)], vec_at(dense, emb, b, j, tables, dim, d)));
        }
        for (unsigned int i = vi + 1u; i <= tables; ++i) {
            acc = __fadd_rn(acc, __fmul_rn(g[pair(i, vi)], vec_at(dense, emb, b, i, tables, dim, d)));
        }

        if (vi == 0u) {
            ddense[b * dim + d] = acc;
        } else {
            demb[(b * tables + (vi - 1u)) * dim + d] = acc;
        }
    }
}
