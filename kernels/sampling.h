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

// What sample_tokens reports per row in status[b]: a row holding a NaN logit, or with no logit
// above -inf, has no distribution to draw from. Such a row still gets a token in [0, V) (the
// argmax of its non-NaN logits, 0 if none) and a NaN log-prob; the caller must treat it as the
// error it is (DeviceOps::sample_tokens names the row). +inf logits share all the probability.
enum SampleStatus : int { kSampleOk = 0, kSampleNaN = 1, kSampleNoFinite = 2 };

// tokens[b] (device int) drawn from row b of logits (B, Vp) over the real vocabulary V; the
// row's log-probability of the drawn token under the unmodified softmax goes to logprobs[b]
// (may be null). Deterministic for (seed, offset): the uniform for row b is
// uniform01(philox4x32_10(offset_lo, offset_hi, b, 0, seed_lo, seed_hi).x[0]).
// status (device, B ints, may be null) receives each row's SampleStatus.
void sample_tokens(int* tokens, float* logprobs, const bf16* logits, int B, int V, int Vp,
                   const SamplingParams& p, cudaStream_t stream, int* status = nullptr);

// As sample_tokens, but row b is keyed by row_seeds[b] (device, B keys; p.seed is unused) and
// its Philox counter is (offset_lo, offset_hi, 0, 0): a row's draw is a function of its logits,
// its seed and the offset alone, whatever other rows share the launch (batched generation where
// each sequence owns its random stream). offset_device, when not null, is where the kernel reads
// the offset instead of p.offset (device memory: decoding's CUDA Graph replays one launch for
// every token's step).
void sample_tokens_row_seeds(int* tokens, float* logprobs, const bf16* logits, int B, int V, int Vp,
                             const SamplingParams& p, const uint64_t* row_seeds, cudaStream_t stream,
                             int* status = nullptr, const uint64_t* offset_device = nullptr);

// logprobs[n] = log softmax(logits[n, :V])[targets[n]] (0 where targets[n] < 0).
void gather_logprobs(float* logprobs, const bf16* logits, const int* targets, int N, int V, int Vp,
                     cudaStream_t stream);

}  // namespace ouro::kernels
