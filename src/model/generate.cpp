#include "model/generate.h"

#include <algorithm>

#include "ouro/error.h"

namespace ouro {

std::vector<int> generate(GPT2& model, std::vector<int> prompt, const SampleOptions& opt) {
  const int ctx = model.config().seq_len;
  OURO_CHECK(!prompt.empty(), "generate: the prompt is empty");
  if (static_cast<int>(prompt.size()) >= ctx)
    prompt.erase(prompt.begin(), prompt.end() - (ctx - 1));
  const SamplingSpec spec = opt.spec();
  model.kv_reset();
  model.kv_step(prompt.data(), 1, static_cast<int>(prompt.size()));
  std::vector<int> out;
  if (opt.max_tokens <= 0) return out;
  int tok = 0;
  model.kv_sample(&tok, nullptr, spec, &opt.seed, 0);
  for (int i = 0;; ++i) {
    out.push_back(tok);
    if (tok == opt.stop_token || model.kv_pos() >= ctx || i + 1 == opt.max_tokens) break;
    // Feeds token i and draws token i + 1 (in the decode graph when opt.cuda_graph).
    model.kv_decode(&tok, 1, &tok, nullptr, spec, &opt.seed, static_cast<uint64_t>(i + 1), opt.cuda_graph);
  }
  return out;
}

int sample_room(int ctx, int prompt_tokens) {
  // The last position's logits give one token beyond the context's last slot.
  return ctx - std::min(prompt_tokens, ctx - 1) + 1;
}

std::vector<Generation> generate_batch(GPT2& model, const std::vector<std::vector<int>>& prompts,
                                       const SampleOptions& opt,
                                       const std::vector<uint64_t>& row_seeds) {
  const int B = static_cast<int>(prompts.size());
  OURO_CHECK(B > 0 && row_seeds.size() == prompts.size(), "generate_batch: {} prompts, {} seeds", B,
             row_seeds.size());
  const int P = static_cast<int>(prompts[0].size());
  OURO_CHECK(P > 0, "generate_batch: empty prompts");
  for (const auto& p : prompts)
    OURO_CHECK(static_cast<int>(p.size()) == P, "generate_batch: prompts must share one length ({} vs {})",
               p.size(), P);
  const int ctx = model.config().seq_len;
  OURO_CHECK(P < ctx, "generate_batch: prompt of {} tokens leaves no room in a context of {}", P, ctx);
  std::vector<int> flat;
  flat.reserve(static_cast<size_t>(B) * P);
  for (const auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());
  const SamplingSpec spec = opt.spec();
  model.kv_reset();
  model.kv_step(flat.data(), B, P);
  std::vector<Generation> out(B);
  std::vector<int> next(B);
  std::vector<float> logprobs(B);
  if (opt.max_tokens > 0) model.kv_sample(next.data(), logprobs.data(), spec, row_seeds.data(), 0);
  for (int i = 0; i < opt.max_tokens; ++i) {
    bool all_stopped = true;
    for (int b = 0; b < B; ++b) {
      if (out[b].stopped) continue;
      out[b].tokens.push_back(next[b]);
      out[b].logprobs.push_back(logprobs[b]);
      if (next[b] == opt.stop_token) out[b].stopped = true;
      all_stopped = all_stopped && out[b].stopped;
    }
    if (all_stopped || i + 1 == opt.max_tokens || model.kv_pos() >= ctx) break;
    // Feeds token i of every row and draws token i + 1 (in the decode graph when opt.cuda_graph).
    model.kv_decode(next.data(), B, next.data(), logprobs.data(), spec, row_seeds.data(), static_cast<uint64_t>(i + 1),
                    opt.cuda_graph);
  }
  return out;
}

}  // namespace ouro
