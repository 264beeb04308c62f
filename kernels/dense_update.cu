// dense_update: one optimizer step on len dense parameters.
// SGD (adagrad == 0): param -= lr * grad. Adagrad (adagrad != 0, element-wise accumulator):
// state += grad * grad; param -= lr * grad / (sqrt(state) + eps). Every operation is rounded as
// the CPU rounds it (no FMA contraction, IEEE division and square root whatever the compile
// flags say): the CPU's bits. state is not touched for SGD (it may then be any pointer, e.g. null).
// One thread per parameter, grid-stride over len.
// Args: param (f32 [len], updated), grad (f32 [len]), state (f32 [len], updated; unused for SGD), len (u32), lr (f32), adagrad (u32, 0 SGD / 1 Adagrad), eps (f32)
// Launch: block 256 threads; grid ceil(len / 256) blocks in x, may be capped (grid-stride over parameters); one thread per parameter; no shared memory.

extern "C" __global__ void dense_update(float* __restrict__ param,
                                        const float* __restrict__ grad,
                                        float* __restrict__ state,
                                        unsigned int len,
                                        float lr,
                                        unsigned int adagrad,
                                        float eps)
{
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < len;
         i += stride) {
        const float g = grad[i];
        if (adagrad == 0u) {
            param[i] = __fsub_rn(param[i], __fmul_rn(lr, g));
        } else {
            const float s = __fadd_rn(state[i], __fmul_rn(g, g));
            state[i] = s;
            param[i] = __fsub_rn(param[i], __fdiv_rn(__fmul_rn(lr, g), __fadd_rn(__fsqrt_rn(s), eps)));
        }
    }
}
