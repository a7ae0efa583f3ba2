// AdamW over every parameter in one launch, and the global gradient norm for clipping.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// One contiguous tensor of the flat parameter buffer (element offsets), as ouro::ParamSegment.
struct AdamSegment {
  size_t offset;
  size_t size;
  int decay;  // weight decay applies
};

struct AdamParams {
  float lr, beta1, beta2, eps, weight_decay;
  float grad_scale;  // multiplies every gradient first (the clipping coefficient)
  long long step;    // 1-based, for bias correction
  uint64_t seed;     // stochastic rounding stream (Philox key)
  size_t index_base; // absolute index of params[0] in the whole model (a ZeRO shard's start)
};

// For every segment (a device array of n_segments) and element i in it: the torch.optim.AdamW
// update of master[i] (fp32) with m[i], v[i] (fp32), from grads[i] (bf16); params[i] (bf16)
// receives master[i] stochastically rounded (rounding_random(index_base + i, master[i], seed)). m and v are
// indexed by the same absolute i as params (callers offset the pointers for a shard).
void adamw(bf16* params, float* master, const bf16* grads, float* m, float* v,
           const AdamSegment* segments, int n_segments, size_t total_elements,
           const AdamParams& p, cudaStream_t stream);

// params[i] = master[i] rounded to bf16 exactly as adamw rounds it (same seed): loading a
// checkpoint's fp32 master weights gives back the bf16 weights the run trained with.
void f32_to_bf16_stochastic(bf16* params, const float* master, size_t n, uint64_t seed,
                            cudaStream_t stream);

// Sum of squares of x[0..n) into *out (fp32 accumulation per block, the blocks' partials summed
// in a fixed order into a double: deterministic). out is device memory; scratch holds
// sum_squares_scratch_bytes(n) bytes.
size_t sum_squares_scratch_bytes(size_t n);
void sum_squares(double* out, const bf16* x, size_t n, void* scratch, cudaStream_t stream);

}  // namespace ouro::kernels
