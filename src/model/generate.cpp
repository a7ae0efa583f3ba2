#include "model/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ouro/error.h"

namespace ouro {

double counter_uniform(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int sample_token(const float* logits, int V, const SampleOptions& opt, double u) {
  if (opt.temperature <= 0.0f) return static_cast<int>(std::max_element(logits, logits + V) - logits);
  std::vector<int> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  // Highest logits first; ties broken by id so the order is total and deterministic.
  std::sort(idx.begin(), idx.end(), [&](int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  int keep = (opt.top_k > 0 && opt.top_k < V) ? opt.top_k : V;
  std::vector<double> p(keep);
  const double mx = logits[idx[0]];
  double sum = 0;
  for (int i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[idx[i]] - mx) / opt.temperature);
  if (opt.top_p < 1.0f) {
    // Smallest prefix whose probability mass reaches top_p (at least one token).
    double acc = 0;
    int n = 0;
    while (n < keep) {
      acc += p[n++] / sum;
      if (acc >= opt.top_p) break;
    }
    keep = n;
    sum = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  }
  double target = u * sum, acc = 0;
  for (int i = 0; i < keep; ++i) {
    acc += p[i];
    if (target < acc) return idx[i];
  }
  return idx[keep - 1];
}

std::vector<int> generate(GPT2& model, std::vector<int> prompt, const SampleOptions& opt) {
  const int V = model.config().vocab_size, Vp = model.config().padded_vocab();
  const int ctx = model.config().seq_len;
  OURO_CHECK(!prompt.empty(), "generate: the prompt is empty");
  (void)Vp;
  if (static_cast<int>(prompt.size()) >= ctx)
    prompt.erase(prompt.begin(), prompt.end() - (ctx - 1));
  model.kv_reset();
  std::vector<float> logits = model.kv_step(prompt.data(), 1, static_cast<int>(prompt.size()));
  std::vector<int> out;
  for (int i = 0; i < opt.max_tokens; ++i) {
    int tok = sample_token(logits.data(), V, opt, counter_uniform(opt.seed, static_cast<uint64_t>(i)));
    out.push_back(tok);
    if (tok == opt.stop_token || model.kv_pos() >= ctx || i + 1 == opt.max_tokens) break;
    logits = model.kv_step(&tok, 1, 1);
  }
  return out;
}

double token_logprob(const float* logits, int V, int tok) {
  double mx = logits[0];
  for (int i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return static_cast<double>(logits[tok]) - mx - std::log(sum);
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
  const int V = model.config().vocab_size, Vp = model.config().padded_vocab();
  const int ctx = model.config().seq_len;
  OURO_CHECK(P < ctx, "generate_batch: prompt of {} tokens leaves no room in a context of {}", P, ctx);
  std::vector<int> flat;
  flat.reserve(static_cast<size_t>(B) * P);
  for (const auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());
  model.kv_reset();
  std::vector<float> logits = model.kv_step(flat.data(), B, P);
  std::vector<Generation> out(B);
  std::vector<int> next(B);
  for (int i = 0; i < opt.max_tokens; ++i) {
    bool all_stopped = true;
    for (int b = 0; b < B; ++b) {
      const float* row = logits.data() + static_cast<size_t>(b) * Vp;
      int tok = sample_token(row, V, opt, counter_uniform(row_seeds[b], static_cast<uint64_t>(i)));
      next[b] = tok;
      if (out[b].stopped) continue;
      out[b].tokens.push_back(tok);
      out[b].logprobs.push_back(static_cast<float>(token_logprob(row, V, tok)));
      if (tok == opt.stop_token) out[b].stopped = true;
      all_stopped = all_stopped && out[b].stopped;
    }
    if (all_stopped || i + 1 == opt.max_tokens || model.kv_pos() >= ctx) break;
    logits = model.kv_step(next.data(), B, 1);
  }
  return out;
}

}  // namespace ouro
