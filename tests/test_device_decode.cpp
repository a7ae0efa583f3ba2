// Generation's decode step on the device path (simt backend, in-process): the decode step inside
// the backend's CUDA Graph (GPT2::kv_decode, Ops::begin_decode_graph: captured once, replayed for
// every later token, with the position, the tokens and the sampler's step read from device
// memory) against the same step uncaptured; what a replayed step waits for; and which GEMMs take
// the skinny-M kernel (decoding's only, never training's, whatever the row count).
//
// Sampling runs at temperature 1 with per-row seeds, so a replay that reused the capture's step
// counter, position or tokens would draw other tokens (or attend over the wrong cache length)
// and fail the bitwise comparisons below.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"  // the kernel header's #pragma unroll, under g++
#include "kernels/matmul_skinny.h"
#pragma GCC diagnostic pop
#include "ouro/env_switch.h"
#include "model/generate.h"
#include "ouro/model.h"
#include "ouro/ops.h"

namespace {

using namespace ouro;

GPT2Config config(PosEncoding pos, int seq_len) {
  GPT2Config c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 64;
  c.seq_len = seq_len;
  c.vocab_size = 203;  // padded to 256
  c.pos = pos;
  return c;
}

class DeviceDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto devices = available_devices();
    if (std::find(devices.begin(), devices.end(), "simt") == devices.end())
      GTEST_SKIP() << "no simt backend in this build";
    dev = make_ops("simt");
    // The skinny-M kernel on (the default), whatever the outer environment says.
    ::unsetenv("OURO_MATMUL_SKINNY");
    ouro::reread_switches();
  }
  std::unique_ptr<Ops> dev;
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Three generations on one model: context 1 (one-token prompts, 3 rows), a ragged 7-token prompt
// (4 rows), then one row through generate(); 8 decode steps each (max_tokens 9).
struct Generations {
  std::vector<std::vector<Generation>> batches;
  std::vector<int> single;
};

Generations generate_three(GPT2& m, bool graph) {
  SampleOptions o;
  o.temperature = 1.0f;
  o.max_tokens = 9;
  o.cuda_graph = graph;
  Generations g;
  g.batches.push_back(generate_batch(m, {{5}, {17}, {150}}, o, {1, 2, 3}));
  const std::vector<int> p7 = {3, 50, 101, 7, 180, 22, 99};
  std::vector<std::vector<int>> four(4, p7);
  four[2][6] = 12;
  g.batches.push_back(generate_batch(m, four, o, {11, 12, 13, 14}));
  o.seed = 77;
  g.single = generate(m, {9, 8, 7, 6, 5}, o);
  return g;
}

TEST_F(DeviceDecode, GenerationWithGraphsIsBitwiseGenerationWithout) {
  for (PosEncoding pos : {PosEncoding::learned, PosEncoding::rope}) {
    SCOPED_TRACE(pos == PosEncoding::rope ? "rope" : "learned");
    const GPT2Config cfg = config(pos, 40);
    GPT2 m(cfg, *dev, 4, cfg.seq_len);
    m.set_params(gpt2_init_params(cfg, 7));
    const Ops::GraphStats s0 = dev->decode_graph_stats().value();
    const Generations plain = generate_three(m, false);
    const Ops::GraphStats s1 = dev->decode_graph_stats().value();
    EXPECT_EQ(s1.captured + s1.replayed + s1.uncaptured, s0.captured + s0.replayed + s0.uncaptured)
        << "no decode graph step without cuda_graph";
    const Generations graphed = generate_three(m, true);
    const Ops::GraphStats s2 = dev->decode_graph_stats().value();
    // 3 generations x 8 decode steps. Each generation may run one step uncaptured (the backend's
    // first step, or one whose shape or buffers changed) and captures the next: the other 6 replay.
    EXPECT_GE(s2.replayed - s1.replayed, 3 * 6);
    EXPECT_GE(s2.captured - s1.captured, 1);
    EXPECT_EQ(s2.captured + s2.replayed + s2.uncaptured - (s1.captured + s1.replayed + s1.uncaptured), 3 * 8);

    ASSERT_EQ(plain.batches.size(), graphed.batches.size());
    for (size_t i = 0; i < plain.batches.size(); ++i) {
      ASSERT_EQ(plain.batches[i].size(), graphed.batches[i].size());
      for (size_t r = 0; r < plain.batches[i].size(); ++r) {
        const Generation &a = plain.batches[i][r], &b = graphed.batches[i][r];
        EXPECT_EQ(a.tokens.size(), 9u) << "batch " << i << " row " << r;
        EXPECT_EQ(a.tokens, b.tokens) << "batch " << i << " row " << r;
        EXPECT_TRUE(same_bits(a.logprobs, b.logprobs)) << "batch " << i << " row " << r;
        for (float lp : a.logprobs) EXPECT_TRUE(lp <= 0.0f) << lp;  // finite log-probs, NaN fails
      }
    }
    EXPECT_EQ(plain.single.size(), 9u);
    EXPECT_EQ(plain.single, graphed.single);
    // The rows drew different tokens (a replay stuck on the capture's inputs would not follow them).
    EXPECT_NE(graphed.batches[0][0].tokens, graphed.batches[0][1].tokens);
  }
}

// A replayed decode step waits for the device once, for its tokens (the graph's last copy): no
// synchronisation when the context passes 64 or 128 keys (the split-KV scratch is sized for the
// whole cache at the prefill), none for the inputs. Context 1 to 150 on one row.
TEST_F(DeviceDecode, ReplayedStepsWaitOnlyForTheirTokens) {
  const GPT2Config cfg = config(PosEncoding::learned, 150);
  GPT2 m(cfg, *dev, 1, cfg.seq_len);
  m.set_params(gpt2_init_params(cfg, 9));
  const SamplingSpec spec{1.0f, 0, 1.0f};
  const uint64_t seed = 5;
  int tok = 42;
  float lp = 0;
  m.kv_reset();
  m.kv_step(&tok, 1, 1);
  m.kv_sample(&tok, &lp, spec, &seed, 0);
  const int64_t replayed0 = dev->decode_graph_stats().value().replayed;
  for (int step = 1; m.kv_pos() < cfg.seq_len; ++step) {
    const uint64_t before = dev->host_syncs().value();
    m.kv_decode(&tok, 1, &tok, &lp, spec, &seed, static_cast<uint64_t>(step), true);
    const uint64_t waits = dev->host_syncs().value() - before;
    if (step > 2) {
      ASSERT_EQ(waits, 1u) << "step " << step << " at context " << m.kv_pos();
    }
    ASSERT_TRUE(tok >= 0 && tok < cfg.vocab_size && lp <= 0.0f) << step;
  }
  EXPECT_EQ(dev->decode_graph_stats().value().replayed - replayed0, cfg.seq_len - 1 - 2);
}

// Training's GEMMs never take the skinny-M kernel, even at 2 x 16 = 32 rows (they would round
// differently from the same rows in a larger batch); decoding's do (MatmulHint::decode): 4 per
// layer and the LM head, for the prefill (6 rows) and for each one-token step.
TEST_F(DeviceDecode, OnlyDecodingTakesTheSkinnyGemm) {
  const GPT2Config cfg = config(PosEncoding::learned, 40);
  GPT2 m(cfg, *dev, 2, 16);
  m.set_params(gpt2_init_params(cfg, 3));
  std::vector<int> x(32), y(32);
  for (int i = 0; i < 32; ++i) x[i] = (7 * i + 3) % cfg.vocab_size, y[i] = (5 * i + 1) % cfg.vocab_size;
  const uint64_t c0 = kernels::skinny::calls();
  m.zero_grad();
  const float loss = m.forward_backward(x.data(), y.data(), 2, 16, 1.0f);
  AdamWArgs a;
  a.lr = 1e-3f;
  m.adamw_step(a);
  EXPECT_GT(m.forward(x.data(), y.data(), 2, 16), 0.0f);  // evaluation: the same GEMMs
  dev->synchronize();
  EXPECT_TRUE(loss > 0.0f) << loss;
  EXPECT_EQ(kernels::skinny::calls(), c0) << "a training or evaluation GEMM took the skinny-M kernel";

  const uint64_t per_step = 4 * cfg.n_layer + 1;
  m.kv_reset();
  m.kv_step(x.data(), 2, 3);
  EXPECT_EQ(kernels::skinny::calls() - c0, per_step);
  std::vector<int> next(2);
  const std::vector<uint64_t> seeds = {1, 2};
  m.kv_sample(next.data(), nullptr, SamplingSpec{}, seeds.data(), 0);
  m.kv_decode(next.data(), 2, next.data(), nullptr, SamplingSpec{}, seeds.data(), 1, false);
  EXPECT_EQ(kernels::skinny::calls() - c0, 2 * per_step);
}

}  // namespace
