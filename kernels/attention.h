// Causal flash attention, bf16 in and out, online softmax in fp32. qkv (B, T, 3C) holds q|k|v per
// row, each split into NH heads of hd = C/NH (any hd in 1..256; attention_supports below says
// which path runs). Device pointers; async on `stream`.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// True when the kernels support this head dimension: any hd in 1..256. hd 32, 64 and 128 with
// 16-byte aligned tensors run on the tensor-core kernels (attention.cu; on Hopper, hd 64 and 128
// on the wgmma/TMA kernels of attention_sm90.cu and attention_sm90_bwd.cu, see
// attention_sm90.h); any other runs on the generic CUDA-core kernels (attention_generic.cu).
bool attention_supports(int head_dim);
bool attention_has_tensor_core_path(int head_dim);

// out (B, T, C); lse (B, NH, T) floats: the logsumexp of each query row's scaled scores, saved
// for the backward.
void attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                       cudaStream_t stream);

// dqkv (B, T, 3C) OVERWRITTEN. scratch: attention_backward_scratch_bytes(B, T, C, NH) bytes.
size_t attention_backward_scratch_bytes(int B, int T, int C, int NH);
void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                        const float* lse, int B, int T, int C, int NH, void* scratch,
                        cudaStream_t stream);

// The first step of the tensor-core backwards (this file's and attention_sm90_bwd.cu's):
// D (B, NH, T) floats = rowsum(dO * O) per (row, head), a warp per (row, head). hd 32, 64 or 128.
void attention_backward_rowdot(float* D, const bf16* dout, const bf16* out, int B, int T, int C, int NH,
                               cudaStream_t stream);

// Decoding with a KV cache: qkv (B, Tn, 3C) for the Tn new tokens at positions pos0.. ; their k
// and v are written into kcache / vcache (B, Tmax, C); out (B, Tn, C) attends causally over
// cache positions <= its own. One warp per (token, head) over the whole cache: generation runs
// the split-KV kernel instead (attention_decode.h); this one stays as its tests' reference.
void attention_kv(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0,
                  int Tmax, int C, int NH, cudaStream_t stream);

// The generic path (attention_generic.cu), same contracts; D is the backward's scratch
// (B*NH*T floats). The launchers above dispatch to these; tests call them directly too.
void generic_attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                               cudaStream_t stream);
void generic_attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                                const float* lse, int B, int T, int C, int NH, float* D,
                                cudaStream_t stream);
void generic_attention_kv(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn,
                          int pos0, int Tmax, int C, int NH, cudaStream_t stream);

}  // namespace ouro::kernels
