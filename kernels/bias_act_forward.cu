// bias_act_forward: x[r, c] = act(x[r, c] + bias[c]) in place; act is the identity (act = 0),
// ReLU (1), the sigmoid (2, the stable form of the CPU's `sigmoid`) or Mish (3,
// z · tanh(softplus(z)), softplus as the CPU's `softplus`).
// One thread per element of the [rows, cols] row-major x, grid-stride over rows * cols (64-bit
// indices). ReLU is fmaxf(z, 0), which maps a NaN z to 0 as the CPU's f32::max does. The sum is
// one rounded addition: the CPU's bits.
// Args: x (f32 [rows*cols], updated), bias (f32 [cols]), rows (u32), cols (u32), act (u32, 0/1/2/3)
// Launch: block 256 threads; grid ceil(rows * cols / 256) blocks in x, may be capped (grid-stride over elements); one thread per element; no shared memory.

extern "C" __global__ void bias_act_forward(float* __restrict__ x,
                                            const float* __restrict__ bias,
                                            unsigned int rows,
                                            unsigned int cols,
                                            unsigned int act)
{
    const unsigned long long n = (unsigned long long)rows * cols;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const float z = __fadd_rn(x[i], bias[i % cols]);
        if (act == 1u) {
            x[i] = fmaxf(z, 0.0f);
        } else if (act == 2u) {
            if (z >= 0.0f) {
                x[i] = 1.0f / (1.0f + expf(-z));
            } else {
                const float e = expf(z);
                x[i] = e / (1.0f + e);
            }
        } else if (act == 3u) {
            const float sp = fmaxf(z, 0.0f) + logf(1.0f + expf(-fabsf(z)));
            x[i] = z * tanhf(sp);
        } else {
            x[i] = z;
        }
    }
}
