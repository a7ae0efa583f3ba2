// model.attention = cudnn: causal self-attention through cuDNN's graph-API flash attention
// (scaled dot-product attention, forward and backward, via the header-only cuDNN frontend), the
// vendor alternate the native kernels (kernels/attention.h) are measured against. Only the cuda
// half of the device backend has it, and only when cmake found the frontend's headers
// (OURO_HAVE_CUDNN_FRONTEND); otherwise the constructor throws, saying why.
//
// Same contracts as kernels::attention_forward / attention_backward (Ops semantics):
//   qkv (B, T, 3C) bf16 holds q|k|v per row, each NH heads of hd = C / NH; out (B, T, C) bf16;
//   state (B, NH, T) floats: the natural-log logsumexp of each query row's scaled scores
//   (cuDNN's softmax "Stats"; the native kernels save the same quantity in the same layout);
//   dqkv (B, T, 3C) is OVERWRITTEN (dQ, dK, dV are written as strided views of it, every
//   element of it is written: no zeroing is needed and nothing accumulates).
#pragma once
#include <ouro/cuda.h>

#include <cstddef>
#include <memory>

#include "kernels/common.cuh"

namespace ouro {

class CudnnAttention {
 public:
  // Binds a cuDNN handle to `stream`; every call runs asynchronously on it.
  explicit CudnnAttention(cudaStream_t stream);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  // Floats of `state` the forward fills and the backward reads.
  static size_t state_size(int B, int T, int NH) { return size_t(B) * NH * T; }

  void forward(kernels::bf16* out, float* state, const kernels::bf16* qkv, int B, int T, int C,
               int NH);
  void backward(kernels::bf16* dqkv, const kernels::bf16* dout, const kernels::bf16* qkv,
                const kernels::bf16* out, const float* state, int B, int T, int C, int NH);

  // False when cuDNN had no deterministic backward for a shape seen so far and the default
  // (atomic dQ accumulation, run-to-run bit differences) was used instead.
  bool backward_deterministic() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ouro
