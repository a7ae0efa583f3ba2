// Sampling on the host in double precision, driven by a counter-based RNG so a (seed, counter)
// pair always draws the same number whatever came before. Part of the ops layer's public seam:
// the cpu backend's Ops::sample_tokens is built on it (src/cpu/cpu_sampling.cpp, which defines
// these) and the model's generation draws its host-side samples with it.
#pragma once
#include <cstdint>

#include "ouro/ops.h"

namespace ouro {

// Uniform [0,1) from (seed, counter): splitmix64 of the pair.
double counter_uniform(uint64_t seed, uint64_t counter);
// Why row logits[0..V) has no distribution to sample ("holds a NaN", "has no value above -inf"),
// or null when it has one. Ops::sample_tokens refuses such a row naming it.
const char* nonfinite_row(const float* logits, int V);
// Picks a token from logits[0..V) (temperature, top-k, top-p as SamplingSpec says). `u` is a
// uniform number in [0, 1).
int sample_token(const float* logits, int V, const SamplingSpec& spec, double u);
// Log-probability of token `tok` under softmax(logits[0..V)), computed in double.
double token_logprob(const float* logits, int V, int tok);

}  // namespace ouro
