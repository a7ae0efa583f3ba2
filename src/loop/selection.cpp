#include "loop/selection.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "ouro/error.h"

namespace ouro {
namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = static_cast<size_t>(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// Marks a candidate rejected by its first failed filter and counts the rejections per filter.
struct Rejections {
  std::map<std::string, int> count;
  void operator()(Candidate& c, const char* why) {
    if (!c.rejected_by.empty()) return;
    c.rejected_by = why;
    count[why]++;
  }
};

std::vector<std::string> checked_scorers(const std::string& list) {
  const auto scorers = split_list(list);
  for (const auto& s : scorers)
    OURO_CHECK(s == "logprob_band" || s == "ref_logprob" || s == "min_prob" || s == "majority" || s == "verifier" ||
                   s == "answer_length" || s == "accept_all",
               "loop.scorer: unknown scorer '{}' (logprob_band, ref_logprob, min_prob, majority, verifier, answer_length, "
               "accept_all)", s);
  return scorers;
}

// Too short (or, on a task, not stopped) or too repetitive: out before any score is looked at.
void reject_by_shape(std::vector<Candidate>& cands, const LoopSection& cfg, bool is_task, Rejections& reject) {
  for (auto& c : cands) {
    c.rejected_by.clear();
    c.accepted = false;
    if (static_cast<int>(c.gen.size()) < cfg.min_new_tokens || (is_task && !c.stopped)) reject(c, "length");
    else if (max_repeat_fraction(c.gen, 3) > cfg.max_repeat) reject(c, "repetition");
  }
}

struct Bands {
  double lo = 0, hi = 0, ref_lo = 0, ref_hi = 0;
};

// The band is taken over the candidates still in play: the quantiles of this round's scores,
// so the top (often degenerate, repetitive text) is cut as well as the bottom.
Bands score_bands(const std::vector<Candidate>& cands, const LoopSection& cfg, bool use_ref) {
  std::vector<double> live, live_ref;
  for (const auto& c : cands) {
    if (!c.rejected_by.empty()) continue;
    live.push_back(c.mean_logprob);
    if (!use_ref) continue;
    OURO_CHECK(!std::isnan(c.ref_logprob), "ref_logprob scorer: candidate {} of prompt {} has no reference score",
               c.sample, c.prompt);
    live_ref.push_back(c.ref_logprob);
  }
  return {quantile(live, cfg.band_lo), quantile(live, cfg.band_hi), quantile(live_ref, cfg.band_lo),
          quantile(live_ref, cfg.band_hi)};
}

// Majority answer per prompt over its K samples (ties: the lexicographically smallest); with
// plausible_only, over the samples whose answer has a plausible form. A prompt whose majority has
// fewer than min_votes votes has none.
std::map<int, std::string> majority_answers(const std::vector<Candidate>& cands, bool is_task, bool plausible_only,
                                            int min_votes) {
  std::map<int, std::map<std::string, int>> votes;
  for (const auto& c : cands)
    if (is_task && c.stopped && (!plausible_only || c.plausible == 1)) votes[c.prompt][c.answer]++;
  std::map<int, std::string> majority;
  for (auto& [p, v] : votes) {
    int best = -1;
    std::string winner;
    for (auto& [a, n] : v)
      if (n > best) best = n, winner = a;
    if (best >= min_votes) majority[p] = winner;
  }
  return majority;
}

void reject_by_scorers(std::vector<Candidate>& cands, const LoopSection& cfg, const std::vector<std::string>& scorers,
                       bool is_task, Rejections& reject) {
  const bool use_ref = std::find(scorers.begin(), scorers.end(), "ref_logprob") != scorers.end();
  const Bands b = score_bands(cands, cfg, use_ref);
  std::map<int, std::string> majority =
      majority_answers(cands, is_task, cfg.majority_plausible_only, cfg.majority_min_votes);
  for (auto& c : cands) {
    if (!c.rejected_by.empty()) continue;
    for (const auto& s : scorers) {
      if (s == "logprob_band" && (c.mean_logprob < b.lo || c.mean_logprob > b.hi)) reject(c, "logprob_band");
      if (s == "ref_logprob" && (c.ref_logprob < b.ref_lo || c.ref_logprob > b.ref_hi)) reject(c, "ref_logprob");
      if (s == "min_prob" && c.min_prob < cfg.min_token_prob) reject(c, "min_prob");
      if (s == "majority" && (!is_task || !majority.count(c.prompt) || c.answer != majority.at(c.prompt)))
        reject(c, "majority");
      if (s == "verifier" && c.verified != 1) reject(c, "verifier");
      if (s == "answer_length" && c.plausible != 1) reject(c, "answer_length");
    }
  }
}

// Dedup and the per-prompt cap run last, over the survivors, best score first; the rest is
// accepted.
void dedup_cap_and_accept(std::vector<Candidate>& cands, const LoopSection& cfg, const std::vector<Tokens>& existing,
                          bool is_task, Rejections& reject) {
  std::vector<size_t> order;
  for (size_t i = 0; i < cands.size(); ++i)
    if (cands[i].rejected_by.empty()) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return cands[a].mean_logprob > cands[b].mean_logprob; });
  std::vector<std::unordered_set<uint64_t>> seen;
  for (const auto& t : existing) seen.push_back(ngram_set(t, cfg.dedup_n));
  std::map<int, int> per_prompt;
  for (size_t i : order) {
    Candidate& c = cands[i];
    Tokens doc = c.prompt_tokens;
    doc.insert(doc.end(), c.gen.begin(), c.gen.end());
    auto grams = ngram_set(is_task ? doc : c.gen, cfg.dedup_n);
    bool dup = !c.reference.empty() && jaccard(grams, ngram_set(c.reference, cfg.dedup_n)) >= cfg.dedup_threshold;
    for (const auto& s : seen)
      if (!dup && jaccard(grams, s) >= cfg.dedup_threshold) dup = true;
    if (dup) { reject(c, "dedup"); continue; }
    if (per_prompt[c.prompt] >= cfg.per_prompt_cap) { reject(c, "per_prompt_cap"); continue; }
    per_prompt[c.prompt]++;
    c.accepted = true;
    seen.push_back(std::move(grams));
  }
}

}  // namespace

void score_candidates(std::vector<Candidate>& cands) {
  for (auto& c : cands) {
    double sum = 0, mn = 0;
    for (size_t i = 0; i < c.logprobs.size(); ++i) {
      sum += c.logprobs[i];
      mn = i == 0 ? c.logprobs[i] : std::min<double>(mn, c.logprobs[i]);
    }
    c.mean_logprob = c.logprobs.empty() ? -INFINITY : sum / static_cast<double>(c.logprobs.size());
    c.min_prob = c.logprobs.empty() ? 0.0 : std::exp(mn);
  }
}

std::map<std::string, int> select_candidates(std::vector<Candidate>& cands, const LoopSection& cfg,
                                             const std::vector<Tokens>& existing) {
  const auto scorers = checked_scorers(cfg.scorer);
  const bool is_task = !cfg.task.empty();
  Rejections reject;
  reject_by_shape(cands, cfg, is_task, reject);
  reject_by_scorers(cands, cfg, scorers, is_task, reject);
  dedup_cap_and_accept(cands, cfg, existing, is_task, reject);
  return reject.count;
}

}  // namespace ouro
