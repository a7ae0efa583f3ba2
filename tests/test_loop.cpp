// The self-improvement loop's building blocks: tasks and verifiers, text metrics, batched
// generation with log-probs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <random>
#include <set>

#include "loop/tasks.h"
#include "loop/text_metrics.h"
#include "model/generate.h"
#include "ouro/error.h"
#include "ouro/model.h"
#include "ouro/ops.h"

using namespace ouro;

TEST(Tasks, AdditionIsReversedAndCorrect) {
  auto t = make_task("add");
  std::mt19937_64 rng(3);
  for (int digits = 1; digits <= 12; ++digits) {
    for (uint64_t i = 0; i < 200; ++i) {
      Problem p = t->make(digits, 42, i);
      ASSERT_EQ(p.prompt.size(), static_cast<size_t>(2 * digits + 2));
      std::string a = p.prompt.substr(0, digits), b = p.prompt.substr(digits + 1, digits);
      ASSERT_EQ(p.prompt[digits], '+');
      ASSERT_EQ(p.prompt.back(), '=');
      // Independent check: un-reverse, add as integers (digits <= 12 fits in 64 bits), re-reverse.
      auto value = [](std::string s) { std::reverse(s.begin(), s.end()); return std::stoull(s); };
      std::string sum = std::to_string(value(a) + value(b));
      std::reverse(sum.begin(), sum.end());
      // The reversed sum keeps trailing zeros only up to the operand width.
      while (sum.size() < static_cast<size_t>(digits)) sum += '0';
      EXPECT_EQ(p.answer, sum) << p.prompt;
      EXPECT_TRUE(t->verify(p, p.answer + "\nmore"));
      EXPECT_FALSE(t->verify(p, p.answer + "1\n"));
    }
  }
  // Problems are a pure function of (seed, index).
  EXPECT_EQ(t->make(5, 1, 7).prompt, t->make(5, 1, 7).prompt);
  EXPECT_NE(t->make(5, 1, 7).prompt, t->make(5, 1, 8).prompt);
}

TEST(Tasks, SortAndCopy) {
  auto s = make_task("sort");
  Problem p = s->make(9, 5, 0);
  EXPECT_EQ(p.prompt.rfind("sort ", 0), 0u);
  std::string body = p.prompt.substr(5, 9);
  std::sort(body.begin(), body.end());
  EXPECT_EQ(p.answer, body);
  EXPECT_TRUE(std::is_sorted(p.answer.begin(), p.answer.end()));
  auto c = make_task("copy");
  Problem q = c->make(6, 5, 1);
  EXPECT_EQ(q.prompt, "copy " + q.answer + "=");
  EXPECT_EQ(problem_text(q), q.prompt + q.answer + "\n");
  EXPECT_THROW(make_task("multiply"), Error);
  EXPECT_THROW(s->make(0, 1, 1), Error);
}

TEST(Tasks, CopyDistinctDrawsEveryLetterAtMostOnceAndUniformly) {
  auto t = make_task("copyd");
  std::vector<int> first(26, 0);
  for (int len : {1, 5, 12, 26}) {
    for (uint64_t i = 0; i < 300; ++i) {
      Problem p = t->make(len, 9, i);
      ASSERT_EQ(p.prompt, "copy " + p.answer + "=");
      ASSERT_EQ(p.answer.size(), static_cast<size_t>(len));
      std::set<char> seen(p.answer.begin(), p.answer.end());
      ASSERT_EQ(seen.size(), static_cast<size_t>(len)) << p.answer;
      for (char c : p.answer) ASSERT_TRUE(c >= 'a' && c <= 'z') << p.answer;
      if (len == 5) ++first[p.answer[0] - 'a'];
      EXPECT_TRUE(t->verify(p, p.answer + "\n"));
      EXPECT_TRUE(t->plausible(p, p.answer));
      EXPECT_FALSE(t->plausible(p, p.answer + "a"));
    }
  }
  // The first letter of 300 strings is spread over the alphabet (expected ~11.5 each), not a
  // fixed prefix: every letter is drawn at least once and none more than 40 times.
  for (int c = 0; c < 26; ++c) {
    EXPECT_GE(first[c], 1) << static_cast<char>('a' + c);
    EXPECT_LE(first[c], 40) << static_cast<char>('a' + c);
  }
  EXPECT_EQ(t->make(7, 1, 3).answer, t->make(7, 1, 3).answer);
  EXPECT_NE(t->make(7, 1, 3).answer, t->make(7, 1, 4).answer);
  EXPECT_THROW(t->make(27, 1, 1), Error);
  EXPECT_THROW(t->make(0, 1, 1), Error);
}

TEST(Tasks, ReverseWritesTheLettersBackToFront) {
  auto t = make_task("rev");
  for (int len : {1, 2, 7, 30}) {
    for (uint64_t i = 0; i < 50; ++i) {
      Problem p = t->make(len, 4, i);
      ASSERT_EQ(p.prompt.rfind("rev ", 0), 0u);
      ASSERT_EQ(p.prompt.back(), '=');
      const std::string s = p.prompt.substr(4, len);
      ASSERT_EQ(p.prompt.size(), static_cast<size_t>(len + 5));
      for (int k = 0; k < len; ++k) ASSERT_EQ(p.answer[k], s[len - 1 - k]) << p.prompt;
      EXPECT_TRUE(t->plausible(p, p.answer + "\n"));
      if (len > 1 && s != p.answer) EXPECT_FALSE(t->verify(p, s));
    }
  }
  Problem p = t->make(6, 4, 0);
  EXPECT_FALSE(t->plausible(p, p.answer.substr(1)));
  EXPECT_FALSE(t->plausible(p, "123456"));
  EXPECT_THROW(t->make(0, 1, 1), Error);
}

TEST(Tasks, PaddedReversalHasDistinctLettersBetweenFillerRunsOfEveryLength) {
  auto t = make_task("revpad");
  std::set<std::pair<size_t, size_t>> fills;  // (dots before, dots after) seen
  for (int len : {1, 2, 9, 26}) {
    for (uint64_t i = 0; i < 200; ++i) {
      Problem p = t->make(len, 4, i);
      ASSERT_EQ(p.prompt.rfind("rev ", 0), 0u);
      ASSERT_EQ(p.prompt.back(), '=');
      const std::string body = p.prompt.substr(4, p.prompt.size() - 5);
      const size_t first = body.find_first_not_of('.'), last = body.find_last_not_of('.');
      ASSERT_NE(first, std::string::npos) << p.prompt;
      const std::string s = body.substr(first, last + 1 - first);
      ASSERT_EQ(s.size(), static_cast<size_t>(len)) << p.prompt;
      ASSERT_LE(first, 4u) << p.prompt;
      ASSERT_LE(body.size() - 1 - last, 4u) << p.prompt;
      fills.insert({first, body.size() - 1 - last});
      ASSERT_EQ(std::set<char>(s.begin(), s.end()).size(), s.size()) << p.prompt;  // distinct
      ASSERT_EQ(p.answer, std::string(s.rbegin(), s.rend())) << p.prompt;
      EXPECT_TRUE(t->verify(p, p.answer + "\n"));
      EXPECT_TRUE(t->plausible(p, p.answer + "\n"));
      EXPECT_EQ(t->make(len, 4, i).prompt, p.prompt);  // a pure function of (seed, index)
    }
  }
  EXPECT_EQ(fills.size(), 25u);  // every (before, after) pair in 0..4 x 0..4 occurs
  Problem p = t->make(6, 4, 0);
  EXPECT_FALSE(t->plausible(p, p.answer.substr(1)));
  EXPECT_FALSE(t->plausible(p, p.answer + "a"));
  EXPECT_FALSE(t->plausible(p, "abc.ef"));
  EXPECT_THROW(t->make(0, 1, 1), Error);
  EXPECT_THROW(t->make(27, 1, 1), Error);
}

TEST(Tasks, PlausibleAnswersHaveTheDifficultysLengthAndAlphabet) {
  auto add = make_task("add");
  for (int d : {1, 3, 8}) {
    for (uint64_t i = 0; i < 20; ++i) {
      Problem p = add->make(d, 3, i);
      EXPECT_TRUE(add->plausible(p, p.answer + "\n")) << p.prompt << p.answer;
    }
    Problem p = add->make(d, 3, 0);
    EXPECT_TRUE(add->plausible(p, std::string(d, '7')));       // wrong but well-formed: kept
    EXPECT_TRUE(add->plausible(p, std::string(d + 1, '1')));   // a carry out
    EXPECT_FALSE(add->plausible(p, std::string(d + 2, '1')));  // run-on
    EXPECT_FALSE(add->plausible(p, ""));
    if (d > 1) EXPECT_FALSE(add->plausible(p, std::string(d - 1, '1')));  // truncated
    EXPECT_FALSE(add->plausible(p, std::string(d - 1, '1') + "x"));
  }
  auto sort = make_task("sort"), copy = make_task("copy");
  Problem s = sort->make(5, 1, 2), c = copy->make(4, 1, 2);
  EXPECT_TRUE(sort->plausible(s, s.answer));
  EXPECT_FALSE(sort->plausible(s, s.answer + "0"));
  EXPECT_FALSE(sort->plausible(s, "abcde"));
  EXPECT_TRUE(copy->plausible(c, c.answer + "\nzz"));
  EXPECT_FALSE(copy->plausible(c, c.answer.substr(1)));
  EXPECT_FALSE(copy->plausible(c, "12345"));
}

TEST(TextMetrics, DistinctAndRepetition) {
  std::vector<Tokens> same = {{1, 2, 3}, {1, 2, 3}};
  EXPECT_DOUBLE_EQ(distinct_n(same, 1), 3.0 / 6.0);
  EXPECT_DOUBLE_EQ(distinct_n(same, 2), 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(distinct_n({{1, 2, 3, 4}}, 2), 1.0);
  EXPECT_DOUBLE_EQ(distinct_n({{1}}, 2), 0.0);
  EXPECT_DOUBLE_EQ(max_repeat_fraction({7, 7, 7, 7, 7}, 1), 1.0);
  EXPECT_DOUBLE_EQ(max_repeat_fraction({1, 2, 1, 2, 1}, 2), 2.0 / 4.0);
}

TEST(TextMetrics, JaccardAndBleu) {
  auto a = ngram_set({1, 2, 3, 4}, 2), b = ngram_set({3, 4, 5, 6}, 2);
  EXPECT_DOUBLE_EQ(jaccard(a, b), 1.0 / 5.0);
  EXPECT_DOUBLE_EQ(jaccard(a, a), 1.0);
  Tokens x = {1, 2, 3, 4, 5, 6, 7, 8};
  // Identical hypothesis and reference: every precision (m+1)/(c+1) = 1, no brevity penalty.
  EXPECT_NEAR(mean_bleu({x}, {x}, false), 1.0, 1e-12);
  // Disjoint: each precision is 1/(count+1).
  Tokens y = {9, 10, 11, 12, 13, 14, 15, 16};
  double expect = std::exp((std::log(1.0 / 9) + std::log(1.0 / 8) + std::log(1.0 / 7) + std::log(1.0 / 6)) / 4);
  EXPECT_NEAR(mean_bleu({x}, {y}, false), expect, 1e-12);
  // Self-BLEU excludes each sample from its own references.
  EXPECT_NEAR(mean_bleu({x, y}, {x, y}, true), expect, 1e-12);
}

TEST(TextMetrics, Auroc) {
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.2, 0.8, 0.9}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(auroc({0.9, 0.8, 0.2, 0.1}, {0, 0, 1, 1}), 0.0);
  EXPECT_DOUBLE_EQ(auroc({0.5, 0.5, 0.5, 0.5}, {0, 1, 0, 1}), 0.5);
  EXPECT_DOUBLE_EQ(auroc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(auroc({1, 2}, {1, 1}), 0.5);
}

TEST(Generation, BatchRowsMatchSingleRowsAndLogprobsAreExact) {
  GPT2Config cfg{2, 2, 32, 24, 61};
  auto ops = make_ops("cpu");
  auto params = gpt2_init_params(cfg, 9);
  for (auto& p : params) p *= 5.0f;  // sharper distributions than the 0.02 init
  GPT2 batch(cfg, *ops, 3, cfg.seq_len), single(cfg, *ops, 1, cfg.seq_len), full(cfg, *ops, 1, cfg.seq_len);
  batch.set_params(params), single.set_params(params), full.set_params(params);
  std::vector<std::vector<int>> prompts = {{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}};
  SampleOptions o;
  o.max_tokens = 12;
  o.temperature = 1.0f;
  o.stop_token = 0;
  std::vector<uint64_t> seeds = {11, 22, 33};
  auto g = generate_batch(batch, prompts, o, seeds);
  ASSERT_EQ(g.size(), 3u);
  for (int b = 0; b < 3; ++b) {
    auto one = generate_batch(single, {prompts[b]}, o, {seeds[b]});
    EXPECT_EQ(one[0].tokens, g[b].tokens) << b;
    ASSERT_EQ(g[b].tokens.size(), g[b].logprobs.size());
    ASSERT_FALSE(g[b].tokens.empty());
    EXPECT_EQ(g[b].stopped, g[b].tokens.back() == 0);
    // Log-probs equal a full forward over prompt + generated tokens.
    std::vector<int> seq = prompts[b];
    seq.insert(seq.end(), g[b].tokens.begin(), g[b].tokens.end());
    auto logits = full.forward_logits(seq.data(), 1, static_cast<int>(seq.size()));
    for (size_t i = 0; i < g[b].tokens.size(); ++i) {
      const float* row = logits.data() + (prompts[b].size() - 1 + i) * cfg.padded_vocab();
      EXPECT_NEAR(g[b].logprobs[i], token_logprob(row, cfg.vocab_size, g[b].tokens[i]), 1e-4) << b << "," << i;
      EXPECT_LE(g[b].logprobs[i], 0.0f);
    }
  }
  EXPECT_THROW(generate_batch(batch, {{1, 2}, {3}}, o, {1, 2}), Error);
}

// ---- the buffer, the selection, and the loop end to end ----

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/train.h"
#include "loop/buffer.h"
#include "loop/selection.h"
#include "loop/task_data.h"
#include "ouro/checkpoint.h"
#include "ouro/data.h"
#include "common/log.h"
#include "test_support.h"

namespace fs = std::filesystem;

TEST(ReplayBuffer, CapEvictionAndReuseLimit) {
  ReplayBuffer age(10, EvictPolicy::age, 2, 1);
  age.add({{1, 2, 3, 4}, 0.5, 0, 0});
  age.add({{5, 6, 7, 8}, 0.9, 1, 0});
  age.add({{9, 9, 9, 9}, 0.1, 2, 0});  // 12 tokens > 10: the oldest (round 0) goes
  ASSERT_EQ(age.size(), 2u);
  EXPECT_EQ(age.samples()[0].round, 1);
  ReplayBuffer score(10, EvictPolicy::score, 2, 1);
  score.add({{1, 2, 3, 4}, 0.5, 0, 0});
  score.add({{5, 6, 7, 8}, 0.9, 1, 0});
  score.add({{9, 9, 9, 9}, 0.1, 2, 0});  // the lowest score goes: the newest one
  ASSERT_EQ(score.size(), 2u);
  EXPECT_EQ(score.samples()[1].round, 1);
  EXPECT_EQ(score.tokens(), 8);
  score.start_round();
  score.start_round();
  EXPECT_EQ(score.size(), 2u);
  score.start_round();  // third use > reuse limit 2
  EXPECT_EQ(score.size(), 0u);
}

TEST(ReplayBuffer, WindowsAreAPureFunctionOfStepMicroRow) {
  ReplayBuffer b(1000, EvictPolicy::age, 5, 7);
  for (int i = 0; i < 5; ++i) b.add({{256, 10 + i, 20 + i, 30 + i, 40 + i, 50 + i}, 0, i, 0});
  std::vector<int> x1(3 * 4), y1(x1.size()), x2(x1.size()), y2(x1.size());
  b.fill(3, 4, 12, 1, x1.data(), y1.data());
  b.fill(3, 4, 12, 1, x2.data(), y2.data());
  EXPECT_EQ(x1, x2);
  EXPECT_EQ(y1, y2);
  for (int r = 0; r < 3; ++r)
    for (int t = 0; t + 1 < 4; ++t) EXPECT_EQ(y1[r * 4 + t], x1[r * 4 + t + 1]);
  b.fill(3, 4, 13, 1, x2.data(), y2.data());
  EXPECT_NE(x1, x2);
  // A round trip through JSON (checkpoints) keeps every field.
  ReplayBuffer c(1000, EvictPolicy::age, 5, 7);
  c.from_json(b.to_json());
  c.fill(3, 4, 12, 1, x2.data(), y2.data());
  EXPECT_EQ(x1, x2);
}

namespace {
Candidate cand(int prompt, Tokens gen, std::vector<float> lp, bool stopped = true) {
  Candidate c;
  c.prompt = prompt;
  c.prompt_tokens = {256, 1};
  c.gen = std::move(gen);
  c.logprobs = std::move(lp);
  c.stopped = stopped;
  return c;
}

// Task candidates whose answer is their text; plausible when it has `plausible_len` characters
// (0: every answer is).
std::vector<Candidate> answer_cands(const std::vector<std::pair<int, std::string>>& rows, size_t plausible_len = 0) {
  std::vector<Candidate> c;
  for (const auto& [prompt, a] : rows) {
    auto x = cand(prompt, Tokens(a.begin(), a.end()), {-0.1f, -0.2f});
    x.answer = a;
    x.plausible = plausible_len == 0 || a.size() == plausible_len;
    c.push_back(x);
  }
  return c;
}
}  // namespace

TEST(Selection, BandCutsTopAndBottomAndFiltersNameThemselves) {
  std::vector<Candidate> c;
  for (int i = 0; i < 10; ++i) c.push_back(cand(i, {100 + i, 200 + i, 300 + i}, {-0.1f * i, -0.1f * i, -0.1f * i}));
  c.push_back(cand(10, {}, {}));                                       // too short
  c.push_back(cand(11, {5, 5, 5, 5, 5, 5, 5}, std::vector<float>(7, -0.5f)));  // a loop
  score_candidates(c);
  EXPECT_NEAR(c[3].mean_logprob, -0.3, 1e-6);
  EXPECT_NEAR(c[3].min_prob, std::exp(-0.3), 1e-6);
  LoopSection cfg;
  cfg.scorer = "logprob_band";
  cfg.band_lo = 0.2, cfg.band_hi = 0.8;
  cfg.per_prompt_cap = 5;
  auto rej = select_candidates(c, cfg, {});
  EXPECT_EQ(c[10].rejected_by, "length");
  EXPECT_EQ(c[11].rejected_by, "repetition");
  EXPECT_EQ(c[0].rejected_by, "logprob_band");  // the most likely: cut, not kept
  EXPECT_EQ(c[9].rejected_by, "logprob_band");
  EXPECT_TRUE(c[5].accepted);
  int accepted = 0;
  for (auto& x : c) accepted += x.accepted;
  EXPECT_EQ(accepted + rej["length"] + rej["repetition"] + rej["logprob_band"], 12);
}

TEST(Selection, MajorityVerifierDedupAndCap) {
  LoopSection cfg;
  cfg.task = "add";
  cfg.per_prompt_cap = 1;
  std::vector<Candidate> c;
  for (const char* a : {"12", "12", "13"}) {
    auto x = cand(0, Tokens(a, a + 2), {-0.1f, -0.2f});
    x.answer = a;
    x.verified = std::string(a) == "13";
    c.push_back(x);
  }
  score_candidates(c);
  cfg.scorer = "majority";
  auto m = c;
  select_candidates(m, cfg, {});
  EXPECT_EQ(m[2].rejected_by, "majority");
  EXPECT_TRUE(m[0].accepted);
  EXPECT_EQ(m[1].rejected_by, "dedup");  // the same document twice
  cfg.scorer = "verifier";
  auto v = c;
  select_candidates(v, cfg, {});
  EXPECT_TRUE(v[2].accepted);
  EXPECT_EQ(v[0].rejected_by, "verifier");
  // Dedup against the buffer, then the per-prompt cap.
  cfg.scorer = "accept_all";
  auto d = c;
  Tokens doc = {256, 1, '1', '3'};
  select_candidates(d, cfg, {doc});
  EXPECT_EQ(d[2].rejected_by, "dedup");
  EXPECT_TRUE(d[0].accepted);
  EXPECT_EQ(d[1].rejected_by, "dedup");
  auto e = c;
  e[1].gen = {'1', '4'};
  select_candidates(e, cfg, {});
  EXPECT_EQ(e[1].rejected_by, "per_prompt_cap");
}

TEST(Selection, AnswerLengthComposesWithMajority) {
  LoopSection cfg;
  cfg.task = "add";
  cfg.per_prompt_cap = 3;
  cfg.scorer = "answer_length,majority";
  // Prompt 0: the majority answer is implausible (too long); prompt 1: plausible majority.
  auto c = answer_cands({{0, "123"}, {0, "123"}, {0, "12"}, {1, "45"}, {1, "45"}, {1, "46"}}, 2);
  score_candidates(c);
  auto rej = select_candidates(c, cfg, {});
  EXPECT_EQ(c[0].rejected_by, "answer_length");
  EXPECT_EQ(c[1].rejected_by, "answer_length");
  EXPECT_EQ(c[2].rejected_by, "majority");  // the vote counts every stopped sample
  EXPECT_TRUE(c[3].accepted);
  EXPECT_EQ(c[4].rejected_by, "dedup");
  EXPECT_EQ(c[5].rejected_by, "majority");
  EXPECT_EQ(rej["answer_length"], 2);
  cfg.scorer = "no_such_scorer";
  EXPECT_THROW(select_candidates(c, cfg, {}), Error);
}

// loop.majority_plausible_only: Lee et al.'s order, the length filter first, then the vote among
// what it passed; a wrong-length majority no longer outvotes a right-length minority.
TEST(Selection, MajorityOfThePlausibleAnswersOnly) {
  LoopSection cfg;
  cfg.task = "add";
  cfg.per_prompt_cap = 3;
  cfg.scorer = "answer_length,majority";
  cfg.majority_plausible_only = true;
  // Prompt 0: "123" x3 (implausible) outvotes "12" x2 unless only plausible answers vote; prompt 1:
  // "45" x2 against "46" x1, all plausible: the same winner either way.
  auto c = answer_cands({{0, "123"}, {0, "123"}, {0, "123"}, {0, "12"}, {0, "12"}, {1, "45"}, {1, "45"}, {1, "46"}}, 2);
  score_candidates(c);
  select_candidates(c, cfg, {});
  for (int i : {0, 1, 2}) EXPECT_EQ(c[i].rejected_by, "answer_length") << i;
  EXPECT_TRUE(c[3].accepted);
  EXPECT_EQ(c[4].rejected_by, "dedup");
  EXPECT_TRUE(c[5].accepted);
  EXPECT_EQ(c[6].rejected_by, "dedup");
  EXPECT_EQ(c[7].rejected_by, "majority");
  cfg.majority_plausible_only = false;  // every stopped sample votes: "123" wins prompt 0
  select_candidates(c, cfg, {});
  EXPECT_EQ(c[3].rejected_by, "majority");
  EXPECT_EQ(c[4].rejected_by, "majority");
  EXPECT_TRUE(c[5].accepted);
}

// loop.majority_min_votes: a majority of fewer votes than that keeps nothing of its prompt.
TEST(Selection, MajorityNeedsItsMinimumOfVotes) {
  LoopSection cfg;
  cfg.task = "add";
  cfg.scorer = "majority";
  // Prompt 0: "12" has 3 of 5 votes; prompt 1: "45" has 2 of 5 (the rest all differ).
  auto c = answer_cands(
      {{0, "12"}, {0, "12"}, {0, "12"}, {0, "13"}, {0, "14"}, {1, "45"}, {1, "45"}, {1, "46"}, {1, "47"}, {1, "48"}});
  score_candidates(c);
  for (int min_votes : {1, 2, 3, 4}) {
    cfg.majority_min_votes = min_votes;
    select_candidates(c, cfg, {});
    EXPECT_EQ(c[0].accepted, min_votes <= 3) << min_votes;
    EXPECT_EQ(c[5].accepted, min_votes <= 2) << min_votes;
    for (int i : {3, 4, 7, 8, 9}) EXPECT_EQ(c[i].rejected_by, "majority") << min_votes << " " << i;
    if (min_votes > 3) EXPECT_EQ(c[0].rejected_by, "majority");
  }
}

namespace {

std::vector<nlohmann::json> jsonl(const fs::path& p) {
  std::vector<nlohmann::json> v;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("seconds");  // wall time is the one thing allowed to differ
    v.push_back(j);
  }
  return v;
}

std::string bytes(const fs::path& p) { return ouro::test::read_file(p); }

class LoopRun : public ouro::test::ScratchDirTest {
 protected:
  void SetUp() override {
    make_dir("ouro_test_loop_");
    // Addition problems of 1-2 digits as the real data.
    auto task = make_task("add");
    std::vector<uint32_t> toks;
    for (uint64_t i = 0; toks.size() < 20000; ++i) {
      toks.push_back(kByteEot);
      for (char ch : problem_text(task->make(1 + static_cast<int>(i % 2), 99, i))) toks.push_back(static_cast<unsigned char>(ch));
    }
    write_shard(dir / "train.bin", toks, kByteVocab);
    toks.resize(4000);
    write_shard(dir / "val.bin", toks, kByteVocab);
    std::ofstream(dir / "cfg.toml")
        << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 32\nvocab_size = 257\n"
           "[train]\nsteps = 40\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 2\neval_every = 0\n"
           "eval_batches = 2\n[data]\ntrain = \"" + (dir / "train.bin").string() +
               "\"\nval = \"" + (dir / "val.bin").string() +
               "\"\n[run]\nthreads = 2\n[checkpoint]\nevery = 1\nkeep = 0\n"
               "[loop]\nrounds = 3\nstart_step = 10\nround_steps = 10\nprompts = 6\nk = 3\n"
               "max_new_tokens = 6\ntask = \"add\"\ntask_min = 2\ntask_max = 3\nscorer = \"majority\"\n"
               "guard_tolerance = 10.0\nper_prompt_cap = 1\n";
  }
  // A plain 10-step run (no loop) whose checkpoint the CLI tests use.
  int train_and_stop() { return train("m", "--set loop.rounds=0 --set train.steps=10").code; }
  // `ouro train` in this process, with a guard of the test's that fails in the rounds `failing`
  // (LoopParts::extra_guard_fails): each is rolled back.
  ouro::test::CmdResult train_failing_rounds(const std::string& name, std::set<int> failing) {
    ouro::TrainHooks hooks;
    hooks.extra_guard_fails = [failing](int round) { return failing.count(round) > 0; };
    auto& sinks = ouro::logger()->sinks();
    const size_t console_sinks = sinks.size();
    ouro::test::CmdResult r;
    try {
      ouro::train(ouro::load_config((dir / "cfg.toml").string(), {"run.out_dir=" + (dir / name).string()}), {}, hooks);
      r.code = 0;
    } catch (const ouro::Error& e) {
      r.code = 1;
      r.out = e.what();
    }
    sinks.resize(console_sinks);  // the run's train.log sink
    return r;
  }
  ouro::test::CmdResult train(const std::string& name, const std::string& extra = "") {
    return ouro::test::run_shell(std::string(OURO_BIN) + " train --config " + (dir / "cfg.toml").string() +
                  " --set run.out_dir=" + (dir / name).string() + " " + extra,
              dir / (name + ".log"));
  }
};

}  // namespace

TEST_F(LoopRun, RoundsAreRecordedAndDeterministic) {
  auto a = train("a");
  ASSERT_EQ(a.code, 0) << a.out;
  auto b = train("b");
  ASSERT_EQ(b.code, 0) << b.out;
  auto ra = jsonl(dir / "a/rounds.jsonl"), rb = jsonl(dir / "b/rounds.jsonl");
  ASSERT_EQ(ra.size(), 3u);
  EXPECT_EQ(ra, rb);
  for (const char* k : {"round", "flops", "generated", "accepted", "accept_rate", "rejected_by", "syn_frac",
                        "buffer_tokens", "val_loss", "val_loss_tail", "distinct_2", "self_bleu",
                        "task_accuracy", "committed", "probe_auroc"})
    EXPECT_TRUE(ra[0].contains(k)) << k;
  EXPECT_EQ(ra[0]["generated"], 18);
  for (const char* k : {"train", "generate", "score"}) EXPECT_TRUE(ra[0]["flops"].contains(k)) << k;
  EXPECT_TRUE(fs::exists(dir / "a/samples.jsonl"));
  EXPECT_EQ(bytes(dir / "a/checkpoints/step_000040/model.safetensors"),
            bytes(dir / "b/checkpoints/step_000040/model.safetensors"));
}

TEST_F(LoopRun, ARolledBackRoundRestoresTheStateBeforeItBitwise) {
  auto r = train_failing_rounds("rb", {1});
  ASSERT_EQ(r.code, 0) << r.out;
  auto rounds = jsonl(dir / "rb/rounds.jsonl");
  ASSERT_GE(rounds.size(), 2u);
  EXPECT_EQ(rounds[1]["rolled_back"], true);
  EXPECT_EQ(rounds[1]["step_end"], rounds[1]["step_start"]);
  EXPECT_DOUBLE_EQ(rounds[2]["syn_frac"].get<double>(), rounds[1]["syn_frac"].get<double>() / 2);
  // Round 1 started at step 20 (after round 0's checkpoint) and was rolled back to it: the
  // checkpoint written after the rollback holds exactly round 0's end state.
  const auto step20 = dir / "rb/checkpoints/step_000020";
  ASSERT_TRUE(fs::exists(step20));
  auto ck = load_checkpoint(step20);
  EXPECT_EQ(ck.state["loop"]["round"], 2);
  // Compare with the same run without the fault, at the end of its round 0.
  auto ok = train("ok", "--stop-at 20");
  ASSERT_EQ(ok.code, 0) << ok.out;
  EXPECT_EQ(bytes(step20 / "model.safetensors"), bytes(dir / "ok/checkpoints/step_000020/model.safetensors"));
  EXPECT_EQ(bytes(step20 / "optimizer.safetensors"), bytes(dir / "ok/checkpoints/step_000020/optimizer.safetensors"));
}

TEST_F(LoopRun, ResumeInTheMiddleOfARoundRedoesItExactly) {
  auto straight = train("s");
  ASSERT_EQ(straight.code, 0) << straight.out;
  auto first = train("p", "--stop-at 25");  // inside round 1 (steps 20..30)
  ASSERT_EQ(first.code, 0) << first.out;
  auto ck = latest_checkpoint(dir / "p");
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->filename(), "step_000020");  // the state before the interrupted round
  auto second = train("p", "--resume");
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_EQ(jsonl(dir / "s/rounds.jsonl"), jsonl(dir / "p/rounds.jsonl"));
  EXPECT_EQ(bytes(dir / "s/checkpoints/step_000040/model.safetensors"),
            bytes(dir / "p/checkpoints/step_000040/model.safetensors"));
}

// One round on the simt device path (the kernels on the emulator), run synchronously and under
// OURO_SIMT_ASYNC=1 (launches, copies and collectives queued, unordered accesses reported):
// the same rounds and the same bits, so no queued operation is read early.
TEST_F(LoopRun, OneRoundOnTheSimtDevicePathSynchronousAndAsynchronousAlike) {
  if (std::string(OURO_SIMT_BIN).empty()) GTEST_SKIP() << "no binary with the simt backend";
  auto run = [&](const std::string& name, const std::string& env) {
    return ouro::test::run_shell(env + " " + std::string(OURO_SIMT_BIN) + " train --config " +
                                     (dir / "cfg.toml").string() + " --device simt --set run.out_dir=" +
                                     (dir / name).string() +
                                     " --set loop.rounds=1 --set train.steps=8 --set loop.start_step=4"
                                     " --set loop.round_steps=4",
                                 dir / (name + ".log"));
  };
  auto sync = run("sync", "OURO_SIMT_ASYNC=0");
  ASSERT_EQ(sync.code, 0) << sync.out;
  auto async = run("async", "OURO_SIMT_ASYNC=1 OURO_SIMT_ORDER=reverse");
  ASSERT_EQ(async.code, 0) << async.out;
  const auto rs = jsonl(dir / "sync/rounds.jsonl"), ra = jsonl(dir / "async/rounds.jsonl");
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0]["generated"], 18);
  EXPECT_EQ(rs, ra);
  EXPECT_EQ(bytes(dir / "sync/checkpoints/step_000008/model.safetensors"),
            bytes(dir / "async/checkpoints/step_000008/model.safetensors"));
}

TEST_F(LoopRun, BaselineSpendsTheGenerationFlopsOnRealData) {
  auto r = train("base", "--set loop.mode=baseline");
  ASSERT_EQ(r.code, 0) << r.out;
  auto rounds = jsonl(dir / "base/rounds.jsonl");
  ASSERT_FALSE(rounds.empty());
  EXPECT_EQ(rounds[0]["generated"], 0);
  EXPECT_GT(rounds[0]["step_end"].get<int>() - rounds[0]["step_start"].get<int>(), 10);
}

TEST_F(LoopRun, PrepareTaskAndEvalTask) {
  auto p = ouro::test::run_shell(std::string(OURO_BIN) + " prepare --task sort --count 50 --min 2 --max 4 --out " +
                  (dir / "sortdata").string(),
              dir / "prep.log");
  ASSERT_EQ(p.code, 0) << p.out;
  Shard train(dir / "sortdata_train.bin");
  // The first document: <|endoftext|> + "sort XY..=" + sorted + "\n" at its drawn difficulty.
  auto first = make_task("sort")->make(task_difficulty(2, 4, 1, 0), 1, 0);
  std::string text = problem_text(first);
  ASSERT_EQ(train[0], static_cast<uint32_t>(kByteEot));
  for (size_t i = 0; i < text.size(); ++i) ASSERT_EQ(train[1 + i], static_cast<unsigned char>(text[i]));
  EXPECT_TRUE(fs::exists(dir / "sortdata_val.bin"));
  ASSERT_EQ(train_and_stop(), 0);
  auto e = ouro::test::run_shell(std::string(OURO_BIN) + " eval --init " + (dir / "m/checkpoints/step_000010").string() +
                  " --task add --min 1 --max 2 --problems 4 -k 3 --json",
              dir / "eval.log");
  ASSERT_EQ(e.code, 0) << e.out;
  auto j = nlohmann::json::parse(e.out.substr(e.out.find('{')));
  EXPECT_EQ(j["task"], "add");
  EXPECT_TRUE(j["greedy"].contains("1") && j["greedy"].contains("2"));
  EXPECT_TRUE(j["majority"].contains("2"));
  auto bad = ouro::test::run_shell(std::string(OURO_BIN) + " prepare --task divide --out " + (dir / "x").string(), dir / "bad.log");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("divide"), std::string::npos) << bad.out;
}

// Issue 21 item 12: `prepare --task --count 2e12` grew memory without bound and checked the
// shard's limit only at write time. The size is estimated first; under a 4 GB address-space
// limit a regression fails with bad_alloc instead of the message naming --count.
TEST(TaskData, HugeCountIsRefusedBeforeMemoryGrows) {
  const fs::path dir = fs::temp_directory_path() / ("ouro_taskcount_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto r = ouro::test::run_shell("bash -c 'ulimit -v 4000000; exec " + std::string(OURO_BIN) +
                                     " prepare --task add --count 2000000000000 --out " + (dir / "x").string() + "'",
                                 dir / "log");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--count 2000000000000 would make about"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "x_train.bin"));
  fs::remove_all(dir);
}

// The documents of `prepare --task` as (difficulty, start offset) in stream order; add's
// difficulty is its prompt's operand width.
namespace {
struct TaskDoc { int digits; size_t start, end; };
std::vector<TaskDoc> add_documents(const Shard& sh) {
  std::vector<TaskDoc> docs;
  for (size_t i = 0; i < sh.size(); ++i) {
    if (sh[i] != static_cast<uint32_t>(kByteEot) || i + 1 >= sh.size() || sh[i + 1] == static_cast<uint32_t>(kByteEot))
      continue;
    size_t j = i + 1, plus = 0;
    while (j < sh.size() && sh[j] != '\n') { if (sh[j] == '+') plus = j; ++j; }
    docs.push_back({static_cast<int>(plus - i - 1), i, j + 1});
  }
  return docs;
}
}  // namespace

// Issue 20: problem i had difficulty min + i % span, so the stream ran 1,2,3,1,2,3,... and the
// length of the next problem was known from the last one (a model leaned on it instead of its
// operands, and failed on eval prompts with no problem before them). Difficulties are now drawn:
// each about equally often, and a problem's successor has its difficulty about 1/span of the time
// (never, under the rotation).
TEST(TaskData, DifficultiesAreDrawnNotRotated) {
  const fs::path dir = fs::temp_directory_path() / ("ouro_taskdiff_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  TaskDataOptions o;
  o.count = 3000, o.min_d = 1, o.max_d = 3, o.seed = 5;
  prepare_task(*make_task("add"), dir / "add", o);
  auto docs = add_documents(Shard(dir / "add_train.bin"));
  ASSERT_EQ(docs.size(), 3000u);
  int per[4] = {0, 0, 0, 0}, same = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    ASSERT_GE(docs[i].digits, 1);
    ASSERT_LE(docs[i].digits, 3);
    ++per[docs[i].digits];
    if (i > 0 && docs[i].digits == docs[i - 1].digits) ++same;
  }
  for (int d = 1; d <= 3; ++d) EXPECT_NEAR(per[d] / 3000.0, 1.0 / 3, 0.04) << "difficulty " << d;
  EXPECT_NEAR(same / 2999.0, 1.0 / 3, 0.04);
  fs::remove_all(dir);
}

// --row-tokens R: every row of R tokens starts with <|endoftext|> + a problem (eval's and the
// loop's prompt layout), no problem crosses a row, the rest of a row is <|endoftext|>, and one
// token past the last row lets the loader read it as a whole window of T = R.
TEST(TaskData, RowsStartWithAProblemAndNeverSplitOne) {
  const fs::path dir = fs::temp_directory_path() / ("ouro_taskrows_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  TaskDataOptions o;
  o.count = 500, o.min_d = 1, o.max_d = 4, o.seed = 9, o.row_tokens = 32;
  prepare_task(*make_task("add"), dir / "add", o);
  Shard sh(dir / "add_train.bin");
  ASSERT_EQ(sh.size() % 32, 1u);
  auto docs = add_documents(sh);
  ASSERT_EQ(docs.size(), 500u);
  for (const auto& d : docs) EXPECT_EQ(d.start / 32, (d.end - 1) / 32) << "a problem crosses a row at " << d.start;
  std::vector<bool> starts(sh.size(), false);
  for (const auto& d : docs) starts[d.start] = true;
  for (size_t r = 0; r + 1 < sh.size(); r += 32) EXPECT_TRUE(starts[r]) << "row at " << r << " does not start a problem";
  // Between a row's last problem and the next row: padding only.
  for (size_t i = 0; i + 1 < docs.size(); ++i)
    for (size_t k = docs[i].end; k < docs[i + 1].start; ++k) EXPECT_EQ(sh[k], static_cast<uint32_t>(kByteEot));
  DataLoader loader((dir / "add_train.bin").string(), 4, 32, 0, 1, 1, true);
  std::vector<int> x(4 * 32), y(4 * 32);
  loader.next_batch(x.data(), y.data());
  for (int b = 0; b < 4; ++b) {
    EXPECT_EQ(x[b * 32], static_cast<int>(kByteEot));
    EXPECT_GE(x[b * 32 + 1], '0');
    EXPECT_LE(x[b * 32 + 1], '9');
  }
  o.row_tokens = 8;  // a 4-digit problem is 16 tokens
  EXPECT_THROW(prepare_task(*make_task("add"), dir / "small", o), Error);
  fs::remove_all(dir);
}
