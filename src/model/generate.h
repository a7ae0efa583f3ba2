// Autoregressive generation with the model's KV cache. Sampling (temperature, top-k, top-p)
// runs where the logits are (Ops::sample_tokens: on the device for device backends), driven by
// a counter-based RNG, so a (seed, position) pair always draws the same number whatever came
// before; only the drawn tokens and their log-probs come back to the host.
#pragma once
#include <cstdint>
#include <vector>

#include "ouro/host_sampling.h"  // counter_uniform, sample_token, token_logprob (the cpu sampler)
#include "ouro/model.h"

namespace ouro {

struct SampleOptions {
  int max_tokens = 128;
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // 1 = off
  uint64_t seed = 0;
  int stop_token = -1;       // stop after emitting this token (-1: never)
  // Each new token's step in the backend's decode graph (GPT2::kv_decode; device backends): the
  // same tokens and log-probs bit for bit, without relaunching every kernel from the host.
  bool cuda_graph = true;

  SamplingSpec spec() const { return {temperature, top_k, top_p}; }
};

// Generates continuations of `prompt` (batch of one); returns only the new tokens. The prompt
// is truncated from the left to leave room for at least one new token in the context. Token i
// draws its uniform from (opt.seed, i).
std::vector<int> generate(GPT2& model, std::vector<int> prompt, const SampleOptions& opt);
// The most tokens generate() can return for a prompt of `prompt_tokens` in a context of `ctx`
// positions (the prompt truncated as generate() does): a larger max_tokens is cut to this.
int sample_room(int ctx, int prompt_tokens);

// One row of a batched generation.
struct Generation {
  std::vector<int> tokens;       // the new tokens, the stop token included when it was drawn
  std::vector<float> logprobs;   // log p(token | prefix) under the model (temperature 1)
  bool stopped = false;          // ended by opt.stop_token rather than by length
};

// Generates for B prompts of equal length at once with the KV cache (B <= the model's batch).
// Row b draws its uniforms from (row_seeds[b], step), so its sample does not depend on which
// other rows share the batch. Rows that stopped keep decoding (their tokens are discarded) until
// every row stopped or the length or context limit is reached.
std::vector<Generation> generate_batch(GPT2& model, const std::vector<std::vector<int>>& prompts,
                                       const SampleOptions& opt,
                                       const std::vector<uint64_t>& row_seeds);

}  // namespace ouro
