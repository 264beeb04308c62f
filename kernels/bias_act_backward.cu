// bias_act_backward: dy[r, c] *= act'(y[r, c]) in place (act 1, ReLU: dy = 0 where y <= 0, a NaN
// y keeping its gradient as on the CPU; act 2, sigmoid: y (1 − y), each product rounded as on
// the CPU; act 3, Mish: y holds the pre-activation z, factor t + z (1 − t²) σ(z) with
// t = tanh(softplus(z)) as the CPU's `mish_grad`; act 0: unchanged), then dbias[c] = sum over r of dy[r, c]
// (overwritten), rows summed in increasing order from +0: the CPU's bits.
// One thread owns a whole column (grid-stride over cols), so the sum has the CPU's order and needs
// no atomics; neighbouring threads read neighbouring words of each row (coalesced).
// Args: y (f32 [rows*cols]), dy (f32 [rows*cols], updated), dbias (f32 [cols], written), rows (u32), cols (u32), act (u32, 0/1/2/3)
// Launch: block 256 threads; grid ceil(cols / 256) blocks in x, may be capped (grid-stride over columns); one thread per column; no shared memory.

extern "C" __global__ void bias_act_backward(const float* __restrict__ y,
                                             float* __restrict__ dy,
                                             float* __restrict__ dbias,
                                             unsigned int rows,
                                             unsigned int cols,
                                             unsigned int act)
{
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long c = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; c < cols;
         c += stride) {
        float acc = 0.0f;
        for (unsigned long long idx = c, r = 0; r < rows; ++r, idx += cols) {
            float v = dy[idx];
            if (act == 1u && y[idx] <= 0.0f) {
                v = 0.0f;
                dy[idx] = 0.0f;
            } else if (act == 2u) {
                const float s = y[idx];
                v = __fmul_rn(v, __fmul_rn(s, __fsub_rn(1.0f, s)));
                dy[idx] = v;
            } else if (act == 3u) {
                const float z = y[idx];
                const float t = tanhf(fmaxf(z, 0.0f) + logf(1.0f + expf(-fabsf(z))));
                const float s = z >= 0.0f ? 1.0f / (1.0f + expf(-z)) : expf(z) / (1.0f + expf(z));
                v = v * (t + z * (1.0f - t * t) * s);
                dy[idx] = v;
            }
            acc = __fadd_rn(acc, v);
        }
        dbias[c] = acc;
    }
}
