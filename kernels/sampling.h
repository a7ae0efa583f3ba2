// Sampling from logits on the device and the per-token log-prob gather used for self-scoring.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

struct SamplingParams {
  float temperature;  // <= 0: greedy (argmax, lowest index on ties)
  int top_k;          // <= 0: no top-k cut
  float top_p;        // >= 1: no nucleus cut
  uint64_t seed;      // Philox key
  uint64_t offset;    // Philox counter base: row b draws counter (offset, b)
};

// tokens[b] (device int) drawn from row b of logits (B, Vp) over the real vocabulary V; the
// row's log-probability of the drawn token under the unmodified softmax goes to logprobs[b]
// (may be null). Deterministic for (seed, offset): the uniform for row b is
// uniform01(philox4x32_10(offset_lo, offset_hi, b, 0, seed_lo, seed_hi).x[0]).
void sample_tokens(int* tokens, float* logprobs, const bf16* logits, int B, int V, int Vp,
                   const SamplingParams& p, cudaStream_t stream);

// As sample_tokens, but row b is keyed by row_seeds[b] (device, B keys; p.seed is unused) and
// its Philox counter is (offset_lo, offset_hi, 0, 0): a row's draw is a function of its logits,
// its seed and the offset alone, whatever other rows share the launch (batched generation where
// each sequence owns its random stream).
void sample_tokens_row_seeds(int* tokens, float* logprobs, const bf16* logits, int B, int V, int Vp,
                             const SamplingParams& p, const uint64_t* row_seeds, cudaStream_t stream);

// logprobs[n] = log softmax(logits[n, :V])[targets[n]] (0 where targets[n] < 0).
void gather_logprobs(float* logprobs, const bf16* logits, const int* targets, int N, int V, int Vp,
                     cudaStream_t stream);

}  // namespace ouro::kernels
