#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "common/hash.h"
#include "cpu/cpu_ops.h"
#include "ouro/host_sampling.h"

namespace ouro {

double counter_uniform(uint64_t seed, uint64_t counter) {
  return static_cast<double>(splitmix64_pair(seed, counter) >> 11) * 0x1.0p-53;
}

const char* nonfinite_row(const float* logits, int V) {
  bool above_neg_inf = false;
  for (int i = 0; i < V; ++i) {
    if (std::isnan(logits[i])) return "holds a NaN";
    above_neg_inf |= logits[i] > -INFINITY;
  }
  return above_neg_inf ? nullptr : "has no value above -inf";
}

int sample_token(const float* logits, int V, const SamplingSpec& spec, double u) {
  if (spec.temperature <= 0.0f) return static_cast<int>(std::max_element(logits, logits + V) - logits);
  std::vector<int> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  // Highest logits first; ties broken by id so the order is total and deterministic.
  std::sort(idx.begin(), idx.end(), [&](int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  int keep = (spec.top_k > 0 && spec.top_k < V) ? spec.top_k : V;
  std::vector<double> p(keep);
  const double mx = logits[idx[0]];
  double sum = 0;
  // A +inf maximum: the +inf logits share all the probability (the limit of a growing logit).
  for (int i = 0; i < keep; ++i)
    sum += p[i] = std::isinf(mx) ? (logits[idx[i]] == mx ? 1.0 : 0.0)
                                 : std::exp((logits[idx[i]] - mx) / spec.temperature);
  if (spec.top_p < 1.0f) {
    // Smallest prefix whose probability mass reaches top_p (at least one token).
    double acc = 0;
    int n = 0;
    while (n < keep) {
      acc += p[n++] / sum;
      if (acc >= spec.top_p) break;
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

double token_logprob(const float* logits, int V, int tok) {
  double mx = logits[0];
  for (int i = 1; i < V; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  if (std::isinf(mx) && mx > 0) {  // +inf logits share the probability equally
    for (int i = 0; i < V; ++i) sum += logits[i] == mx ? 1.0 : 0.0;
    return logits[tok] == mx ? -std::log(sum) : -INFINITY;
  }
  for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return static_cast<double>(logits[tok]) - mx - std::log(sum);
}

// Logits are fp32 host memory on this backend: the rows are read in place.
void CpuOps::sample_tokens(int* tokens, float* logprobs, const void* logits, int B, int V,
                           size_t row_stride, const SamplingSpec& spec, const uint64_t* row_seeds,
                           uint64_t step) {
  OURO_CHECK(B >= 0 && V > 0 && row_stride >= static_cast<size_t>(V),
             "sample_tokens: {} rows of {} tokens, {} apart", B, V, row_stride);
  for (int b = 0; b < B; ++b) {
    const float* row = static_cast<const float*>(logits) + static_cast<size_t>(b) * row_stride;
    const char* bad = nonfinite_row(row, V);
    OURO_CHECK(!bad, "sample_tokens: row {} of the logits {}: the model diverged or its input is corrupt", b, bad);
    tokens[b] = sample_token(row, V, spec, counter_uniform(row_seeds[b], step));
    if (logprobs) logprobs[b] = static_cast<float>(token_logprob(row, V, tokens[b]));
  }
}

}  // namespace ouro
