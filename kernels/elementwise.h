// Memory-bound elementwise kernels: GELU (tanh approximation) and residual adds. bf16 tensors of
// n elements (any n); 128-bit loads and stores where alignment allows. Device pointers.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

void gelu_forward(bf16* out, const bf16* inp, size_t n, cudaStream_t stream);
// dinp = gelu'(inp) * dout (dinp may alias dout).
void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, size_t n, cudaStream_t stream);
void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n, cudaStream_t stream);
// dst += src
void add_inplace(bf16* dst, const bf16* src, size_t n, cudaStream_t stream);
// Conversions between the fp32 host format and the device's bf16 (round to nearest even).
void f32_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream);
void bf16_to_f32(float* dst, const bf16* src, size_t n, cudaStream_t stream);

}  // namespace ouro::kernels
