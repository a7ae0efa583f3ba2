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

}  // namespace ouro
