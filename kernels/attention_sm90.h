// The Hopper (sm_90a) attention forward behind kernels/attention.h: TMA + mbarrier pipeline for
// K and V, two ping-ponged wgmma consumer warpgroups (kernels/attention_sm90.cu).
// kernels/attention.cu chooses it; nothing else calls it directly.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels::sm90 {

// Whether this process can run the kernel on the current device: on a GPU, compute capability
// 9.0 and a binary holding sm_90a code for it; in the SIMT emulator, always.
bool attention_available();
// Whether attention_forward takes it: attention_available() on a GPU; in the emulator only with
// OURO_SIMT_ARCH=90. OURO_ATTENTION_SM90=0 turns it off everywhere (kernels/attention.cu's
// kernels then run on Hopper too).
bool attention_selected();
// Whether it handles this case: head dim 64 or 128, qkv 16-byte aligned, out 4-byte aligned.
bool attention_supports(int head_dim, const void* qkv, const void* out);

// Same contract as kernels::attention_forward (causal; out (B, T, C); lse (B, NH, T), natural log
// of each row's sum of exp of scaled scores). False (nothing launched) when it does not support
// the case or the device cannot give it its shared memory.
bool attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                       cudaStream_t stream);

// The backward (kernels/attention_sm90_bwd.cu): dK, dV in registers per 128-key tile, dQ in fp32.
// Deterministic (the default, bitwise reproducible: dQ partials per key tile summed in a fixed
// order) unless OURO_ATTENTION_DETERMINISTIC=0, which takes the fast mode (atomicAdd into one
// fp32 dQ).
bool attention_backward_deterministic();
// Scratch bytes the backward needs: D (B*NH*T floats) and the fp32 dQ (one copy, or one per
// 128-key tile in the deterministic mode).
size_t attention_backward_scratch_bytes(int B, int T, int C, int NH, bool deterministic);
// Same contract as kernels::attention_backward. False (nothing launched) when it does not
// support the case, scratch is smaller than the above, or the device lacks the shared memory.
bool attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, int B,
                        int T, int C, int NH, void* scratch, size_t scratch_bytes, bool deterministic,
                        cudaStream_t stream);

}  // namespace ouro::kernels::sm90
