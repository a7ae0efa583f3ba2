// Token + position embedding. tokens are device int arrays (B*T). Device pointers.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// out[b, t, :] = wte[tokens[b, t], :] + wpe[pos0 + t, :]; wpe null: out[b, t, :] = wte[tokens[b, t], :]
void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T,
                     int C, int pos0, cudaStream_t stream);
// The same with pos0 read by the kernel from device memory (one int the caller keeps in range):
// decoding's CUDA Graph replays one launch for every token's position.
void encoder_forward_at(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C,
                        const int* pos0_device, cudaStream_t stream);

// dwte, dwpe += the gradient (dwpe null: dwte only), deterministically (every element summed in a fixed order, no
// float atomics). tokens_host is the same B*T tokens on the host: the launcher groups the rows
// by token there. scratch: encoder_backward_scratch_bytes(B, T, C) bytes of device memory.
size_t encoder_backward_scratch_bytes(int B, int T, int C);
void encoder_backward(bf16* dwte, bf16* dwpe, const bf16* dout, const int* tokens_host, int B,
                      int T, int C, void* scratch, cudaStream_t stream);

// The same in two halves, for callers that stage the host's work themselves (a CUDA Graph
// replays the launches; the plan of each new batch reaches the device through a fixed buffer):
// encoder_backward_plan groups the B*T host tokens by token into `plan`, an array of
// encoder_backward_plan_ints(B, T) ints whose layout does not depend on the tokens
// (order[N] | group_start[N + 1] | group_token[N] | groups, N = B*T), and returns the number of
// groups; encoder_backward_planned launches the kernels on `plan` copied to device memory,
// with `grid_groups` >= the plan's groups blocks per column of the grid (blocks past the
// plan's count, read on the device, do nothing: a graph passes N for every batch). The result
// does not depend on grid_groups.
size_t encoder_backward_plan_ints(int B, int T);
int encoder_backward_plan(const int* tokens_host, int B, int T, int* plan);
void encoder_backward_planned(bf16* dwte, bf16* dwpe, const bf16* dout, const int* plan_device, int grid_groups,
                              int B, int T, int C, cudaStream_t stream);

}  // namespace ouro::kernels
