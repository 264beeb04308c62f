// hash_encode: a DHE's first layer, each id's k universal hashes as real numbers.
// For id i (ids[2i] low, ids[2i+1] high 32 bits) and hash j (coeffs[2j] = a, coeffs[2j+1] = b):
// h = ((a·x + b) mod p) mod m, with 64-bit products (a·(x mod p) < p² < 2^46), then
//   uniform (transform 0):  out = (float)(2h − (m − 1)) · scale, rounded once (__fmul_rn): the
//                           CPU's and the shader's bits (scale = 1 / (m − 1), from the host);
//   gaussian (transform 1): Box–Muller on U = (h + 1) · scale over columns (2c, 2c + 1)
//                           (scale = 1 / m), within the transcendental functions' rounding.
// Args: ids (u32 [batch*2]), coeffs (u32 [k*2]), out (f32 [batch*k], written), batch (u32), k (u32), m (u32), p (u32), transform (u32, 0/1), scale (f32)
// Launch: block 256 threads; grid ceil(batch * ceil(k / 2) / 256) blocks in x, may be capped (grid-stride over (id, column pair)); one thread per pair of columns; no shared memory.

static __device__ __forceinline__ unsigned dhe_hash(unsigned long long xr, unsigned a, unsigned b,
                                                    unsigned p, unsigned m)
{
    return (unsigned)(((unsigned long long)a * xr + b) % p % m);
}

static __device__ __forceinline__ float uniform_value(unsigned h, unsigned m, float scale)
{
    return __fmul_rn((float)((int)(2u * h) - (int)(m - 1u)), scale);
}

extern "C" __global__ void hash_encode(const unsigned int* __restrict__ ids,
                                       const unsigned int* __restrict__ coeffs,
                                       float* __restrict__ out,
                                       unsigned int batch,
                                       unsigned int k,
                                       unsigned int m,
                                       unsigned int p,
                                       unsigned int transform,
                                       float scale)
{
    const unsigned long long pairs = (k + 1u) / 2u;
    const unsigned long long n = (unsigned long long)batch * pairs;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += stride) {
        const unsigned long long i = t / pairs;
        const unsigned j0 = 2u * (unsigned)(t % pairs);
        const unsigned long long x =
            (unsigned long long)ids[2 * i] | ((unsigned long long)ids[2 * i + 1] << 32);
        const unsigned long long xr = x % p;
        const unsigned long long o = i * k + j0;
        const unsigned h0 = dhe_hash(xr, coeffs[2 * j0], coeffs[2 * j0 + 1], p, m);
        if (transform == 0u) {
            out[o] = uniform_value(h0, m, scale);
            if (j0 + 1u < k) {
                const unsigned h1 = dhe_hash(xr, coeffs[2 * j0 + 2], coeffs[2 * j0 + 3], p, m);
                out[o + 1] = uniform_value(h1, m, scale);
            }
            continue;
        }
        const unsigned h1 = dhe_hash(xr, coeffs[2 * j0 + 2], coeffs[2 * j0 + 3], p, m);
        const float u1 = __fmul_rn((float)(h0 + 1u), scale);
        const float u2 = __fmul_rn((float)(h1 + 1u), scale);
        const float radius = sqrtf(-2.0f * logf(u1));
        const float angle = 6.2831855f * u2;
        out[o] = radius * cosf(angle);
        out[o + 1] = radius * sinf(angle);
    }
}
