// The self-improvement loop's building blocks: tasks and verifiers, text metrics, batched
// generation with log-probs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

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
