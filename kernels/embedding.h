// Token + position embedding. tokens are device int arrays (B*T). Device pointers.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// out[b, t, :] = wte[tokens[b, t], :] + wpe[pos0 + t, :]; wpe null: out[b, t, :] = wte[tokens[b, t], :]
void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T,
                     int C, int pos0, cudaStream_t stream);

// dwte, dwpe += the gradient (dwpe null: dwte only), deterministically (every element summed in a fixed order, no
// float atomics). tokens_host is the same B*T tokens on the host: the launcher groups the rows
// by token there. scratch: encoder_backward_scratch_bytes(B, T, C) bytes of device memory.
size_t encoder_backward_scratch_bytes(int B, int T, int C);
void encoder_backward(bf16* dwte, bf16* dwpe, const bf16* dout, const int* tokens_host, int B,
                      int T, int C, void* scratch, cudaStream_t stream);

}  // namespace ouro::kernels
