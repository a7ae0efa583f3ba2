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

// The per-step scalars the update uses, computed on the host in double from AdamParams and cast
// to float (as torch computes them in Python): the step size lr / (1 - beta1^step), the square
// root of the second bias correction, the lerp weights and the decay factors.
struct AdamScalars {
  float step_size;   // lr / (1 - beta1^step)
  float bc2_sqrt;    // sqrt(1 - beta2^step)
  float eps, grad_scale, beta2;
  float w1, w2;      // 1 - beta1, 1 - beta2
  float decay_on;    // 1 - lr * weight_decay
  float decay_off;   // 1 - lr * 0 = 1
  uint64_t seed;
  size_t index_base;  // rounding hashes the absolute index: shards round as the whole does
};
// Throws std::invalid_argument for step < 1.
AdamScalars adam_scalars(const AdamParams& p);

// For every segment (a device array of n_segments) and element i in it: the torch.optim.AdamW
// update of master[i] (fp32) with m[i], v[i] (fp32), from grads[i] (bf16); params[i] (bf16)
// receives master[i] stochastically rounded (rounding_random(index_base + i, master[i], seed)). m and v are
// indexed by the same absolute i as params (callers offset the pointers for a shard).
void adamw(bf16* params, float* master, const bf16* grads, float* m, float* v,
           const AdamSegment* segments, int n_segments, size_t total_elements,
           const AdamParams& p, cudaStream_t stream);
// The same update with its per-step scalars read from device memory (`scalars`, written by an
// earlier copy on the stream) when the kernel runs rather than passed as kernel arguments: a
// CUDA Graph that captured this launch replays each step with the learning rate, clipping
// coefficient and bias corrections its host wrote for that step, never those of the capture.
// Bitwise the same update as adamw() with the AdamParams the scalars came from.
void adamw_scalars_on_device(bf16* params, float* master, const bf16* grads, float* m, float* v,
                             const AdamSegment* segments, int n_segments, size_t total_elements,
                             const AdamScalars* scalars, cudaStream_t stream);

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
