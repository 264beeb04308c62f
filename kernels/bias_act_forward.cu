// bias_act_forward: x[r, c] = act(x[r, c] + bias[c]) in place; act is ReLU when relu != 0, else
// the identity.
// One thread per element of the [rows, cols] row-major x, grid-stride over rows * cols (64-bit
// indices). ReLU is fmaxf(z, 0), which maps a NaN z to 0 as the CPU's f32::max does. The sum is
// one rounded addition: the CPU's bits.
// Args: x (f32 [rows*cols], updated), bias (f32 [cols]), rows (u32), cols (u32), relu (u32, 0/1)
// Launch: block 256 threads; grid ceil(rows * cols / 256) blocks in x, may be capped (grid-stride over elements); one thread per element; no shared memory.

extern "C" __global__ void bias_act_forward(float* __restrict__ x,
                                            const float* __restrict__ bias,
                                            unsigned int rows,
                                            unsigned int cols,
                                            unsigned int relu)
{
    const unsigned long long n = (unsigned long long)rows * cols;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const float z = __fadd_rn(x[i], bias[i % cols]);
        x[i] = relu != 0u ? fmaxf(z, 0.0f) : z;
    }
}
