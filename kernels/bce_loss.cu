// bce_loss: sigmoid + binary cross-entropy per sample, in the stable form
//   loss[i] = max(z, 0) - z * y + log1p(exp(-|z|)),   dlogits[i] = scale * (sigmoid(z) - y),
// with z = logits[i], y = labels[i], sigmoid(z) = 1 / (1 + exp(-z)) for z >= 0 and
// e / (1 + e), e = exp(z), below (no overflow for either sign), as the CPU. max(z, 0) is fmaxf
// (a NaN z gives 0, as f32::max). Additions, products and divisions are rounded as the CPU's
// (no FMA contraction, IEEE division); expf / log1pf are CUDA's (within 2 ulp of the CPU's
// libm, so agreement is to float tolerance, not bit for bit; compile without --use_fast_math,
// which would swap in the approximate __expf).
// One thread per sample, grid-stride over batch.
// Args: logits (f32 [batch]), labels (f32 [batch]), loss (f32 [batch], written), dlogits (f32 [batch], written), batch (u32), scale (f32)
// Launch: block 256 threads; grid ceil(batch / 256) blocks in x, may be capped (grid-stride over samples); one thread per sample; no shared memory.

static __device__ __forceinline__ float sigmoid(float z)
{
    if (z >= 0.0f) {
        return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-z)));
    }
    const float e = expf(z);
    return __fdiv_rn(e, __fadd_rn(1.0f, e));
}

extern "C" __global__ void bce_loss(const float* __restrict__ logits,
                                    const float* __restrict__ labels,
                                    float* __restrict__ loss,
                                    float* __restrict__ dlogits,
                                    unsigned int batch,
                                    float scale)
{
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < batch;
         i += stride) {
        const float z = logits[i];
        const float y = labels[i];
        const float lin = __fsub_rn(fmaxf(z, 0.0f), __fmul_rn(z, y));
        loss[i] = __fadd_rn(lin, log1pf(expf(-fabsf(z))));
        dlogits[i] = __fmul_rn(scale, __fsub_rn(sigmoid(z), y));
    }
}
