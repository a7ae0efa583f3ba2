#include "loop/text_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <unordered_map>

#include "common/hash.h"

namespace ouro {
namespace {

uint64_t hash_ngram(const int* p, int n) {
  // FNV-1a over 32-bit token units, the offset basis salted with n.
  uint64_t h = kFnv1aShortOffset ^ static_cast<uint64_t>(n);
  for (int i = 0; i < n; ++i) h = fnv1a_step(h, static_cast<uint32_t>(p[i]));
  return h;
}

std::unordered_map<uint64_t, int> ngram_counts(const Tokens& t, int n) {
  std::unordered_map<uint64_t, int> c;
  for (size_t i = 0; i + n <= t.size(); ++i) c[hash_ngram(t.data() + i, n)]++;
  return c;
}

}  // namespace

double distinct_n(const std::vector<Tokens>& samples, int n) {
  std::unordered_set<uint64_t> seen;
  size_t total = 0;
  for (const auto& s : samples)
    for (size_t i = 0; i + n <= s.size(); ++i, ++total) seen.insert(hash_ngram(s.data() + i, n));
  return total ? static_cast<double>(seen.size()) / static_cast<double>(total) : 0.0;
}

double mean_bleu(const std::vector<Tokens>& hyps, const std::vector<Tokens>& refs, bool exclude_self) {
  if (hyps.empty()) return 0.0;
  // Clipped counts use, per n-gram, the maximum count in any one reference.
  std::vector<std::vector<std::unordered_map<uint64_t, int>>> ref_counts(refs.size());
  for (size_t r = 0; r < refs.size(); ++r)
    for (int n = 1; n <= 4; ++n) ref_counts[r].push_back(ngram_counts(refs[r], n));
  double total = 0;
  for (size_t h = 0; h < hyps.size(); ++h) {
    const Tokens& hyp = hyps[h];
    if (hyp.empty()) continue;
    double log_p = 0;
    for (int n = 1; n <= 4; ++n) {
      auto hc = ngram_counts(hyp, n);
      std::unordered_map<uint64_t, int> best;
      for (size_t r = 0; r < refs.size(); ++r) {
        if (exclude_self && r == h) continue;
        for (const auto& [g, c] : ref_counts[r][n - 1]) best[g] = std::max(best[g], c);
      }
      int match = 0, count = 0;
      for (const auto& [g, c] : hc) {
        count += c;
        auto it = best.find(g);
        if (it != best.end()) match += std::min(c, it->second);
      }
      log_p += std::log((match + 1.0) / (count + 1.0)) / 4.0;
    }
    // Brevity penalty against the reference closest in length.
    size_t closest = 0;
    long best_gap = -1;
    for (size_t r = 0; r < refs.size(); ++r) {
      if (exclude_self && r == h) continue;
      long gap = std::labs(static_cast<long>(refs[r].size()) - static_cast<long>(hyp.size()));
      if (best_gap < 0 || gap < best_gap) best_gap = gap, closest = refs[r].size();
    }
    const double bp = (best_gap < 0 || hyp.size() >= closest)
                          ? 1.0
                          : std::exp(1.0 - static_cast<double>(closest) / static_cast<double>(hyp.size()));
    total += bp * std::exp(log_p);
  }
  return total / static_cast<double>(hyps.size());
}

std::unordered_set<uint64_t> ngram_set(const Tokens& t, int n) {
  std::unordered_set<uint64_t> s;
  for (size_t i = 0; i + n <= t.size(); ++i) s.insert(hash_ngram(t.data() + i, n));
  return s;
}

double jaccard(const std::unordered_set<uint64_t>& a, const std::unordered_set<uint64_t>& b) {
  if (a.empty() && b.empty()) return 0.0;
  const auto& small = a.size() < b.size() ? a : b;
  const auto& large = a.size() < b.size() ? b : a;
  size_t inter = 0;
  for (uint64_t x : small) inter += large.count(x);
  return static_cast<double>(inter) / static_cast<double>(a.size() + b.size() - inter);
}

double max_repeat_fraction(const Tokens& t, int n) {
  if (t.size() < static_cast<size_t>(n)) return 0.0;
  int best = 0;
  for (const auto& [g, c] : ngram_counts(t, n)) best = std::max(best, c);
  if (best < 2) return 0.0;  // nothing repeats (a short sample is not a loop)
  return static_cast<double>(best) / static_cast<double>(t.size() - n + 1);
}

double auroc(const std::vector<double>& scores, const std::vector<int>& labels) {
  // Mann-Whitney U from ranks with ties averaged.
  const size_t n = scores.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  std::vector<double> rank(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && scores[idx[j + 1]] == scores[idx[i]]) ++j;
    for (size_t k = i; k <= j; ++k) rank[idx[k]] = (static_cast<double>(i + j) / 2.0) + 1.0;
    i = j + 1;
  }
  double pos = 0, rank_sum = 0;
  for (size_t i = 0; i < n; ++i)
    if (labels[i]) pos += 1, rank_sum += rank[i];
  const double neg = static_cast<double>(n) - pos;
  if (pos == 0 || neg == 0) return 0.5;
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

}  // namespace ouro
