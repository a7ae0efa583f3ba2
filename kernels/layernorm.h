// LayerNorm over the last dimension C (eps 1e-5), bf16 tensors, fp32 statistics. Device pointers.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// out = LN(inp) * weight + bias; mean, rstd (N floats) saved for the backward.
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight,
                       const bf16* bias, int N, int C, cudaStream_t stream);

// The residual add fused in: residual = a + b, then out = LN(residual) (one read of a and b).
void residual_layernorm_forward(bf16* residual, bf16* out, float* mean, float* rstd, const bf16* a,
                                const bf16* b, const bf16* weight, const bf16* bias, int N, int C,
                                cudaStream_t stream);

// dinp += d/dinp (the residual stream's gradient flows through it); dweight, dbias accumulate.
// Deterministic (fixed reduction order). scratch: layernorm_backward_scratch_bytes(N, C) bytes.
size_t layernorm_backward_scratch_bytes(int N, int C);
void layernorm_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int N, int C,
                        void* scratch, cudaStream_t stream);

}  // namespace ouro::kernels
