// interaction_forward: DLRM dot interaction. With v_0 = dense[b] and v_t = emb[b, t - 1],
//   out[b] = [v_0, dot(v_i, v_j) for i in 1..=tables for j in 0..i]   (width = dim + pairs),
// pair (i, j) at column dim + i * (i - 1) / 2 + j. Dots use the CPU's scheme (src/device/cpu/
// simd.rs `dot`): eight partial sums over the first dim / 8 * 8 terms, combined
// ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)), then the tail in order; every product and
// sum rounded separately (no FMA contraction), so the result is the CPU's bits.
// width must be interaction_width(tables, dim) = dim + (tables + 1) * tables / 2.
// One thread per output element, linear index b * width + c, grid-stride over batch * width.
// Args: dense (f32 [batch*dim]), emb (f32 [batch*tables*dim]), out (f32 [batch*width], written), batch (u32), tables (u32), dim (u32), width (u32)
// Launch: block 256 threads; grid ceil(batch * width / 256) blocks in x, may be capped (grid-stride over elements); one thread per output element; no shared memory.

extern "C" __global__ void interaction_forward(const float* __restrict__ dense,
                                               const float* __restrict__ emb,
                                               float* __restrict__ out,
                                               unsigned int batch,
                                               unsigned int tables,
                                               unsigned int dim,
                                               unsigned int width)
{
    const unsigned long long n = (unsigned long long)batch * width;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long idx = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += stride) {
        const unsigned long long b = idx / width;
        const unsigned int c = (unsigned int)(idx % width);
        if (c < dim) {
            out[idx] = dense[b * dim + c];
            continue;
        }
        // Pair q = i * (i - 1) / 2 + j: walk the rows of the triangle (at most `tables` steps)
        // rather than invert with a sqrt that float rounding could put one row off.
        const unsigned int q = c - dim;
        unsigned int i = 1u;
        unsigned int first = 0u;
        while (q >= first + i && i <= tables) {
            first += i;
            ++i;
        }
        if (i > tables) {
            continue; // past the last pair: width is larger than interaction_width
        }
        const unsigned int j = q - first;
        const float* vi = emb + (b * tables + (i - 1u)) * dim;
        const float* vj = j == 0u ? dense + b * dim : emb + (b * tables + (j - 1u)) * dim;

        float acc[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[k] = 0.0f;
        const unsigned int n8 = dim / 8u * 8u;
        for (unsigned int d = 0; d < n8; d += 8u) {
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                acc[k] = __fadd_rn(acc[k], __fmul_rn(vi[d + k], vj[d + k]));
            }
        }
        float s = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[4]), __fadd_rn(acc[1], acc[5])),
                            __fadd_rn(__fadd_rn(acc[2], acc[6]), __fadd_rn(acc[3], acc[7])));
        for (unsigned int d = n8; d < dim; ++d) {
            s = __fadd_rn(s, __fmul_rn(vi[d], vj[d]));
        }
        out[idx] = s;
    }
}
