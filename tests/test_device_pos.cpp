// model.pos = none | rope on the device path (the simt backend, in-process) against the cpu
// reference backend: loss, every parameter gradient, and KV-cache decoding. Tolerances as in
// tests/test_device.cpp (bf16 storage: ~1e-2 relative norms); rope adds one bf16 rounding of q
// and k in the forward and of dq, dk in the backward.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "ouro/model.h"
#include "ouro/ops.h"
#include "model_checks.h"

using namespace ouro;

namespace {

using ouro::test::rel_err;

// Head dim 32 (the tensor-core attention kernels), ragged T and vocabulary.
GPT2Config config(PosEncoding pos) {
  GPT2Config c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 64;
  c.seq_len = 48;
  c.vocab_size = 203;
  c.pos = pos;
  c.rope_theta = 1000.0;
  return c;
}

// GPT-2's initialisation with the q, k weights scaled up so attention is far from uniform and
// the positions visibly matter.
std::vector<float> params(const GPT2Config& c) {
  auto p = gpt2_init_params(c, 42);
  const auto& qkvw = find_param(gpt2_param_layout(c), "qkvw");
  const size_t C = c.n_embd, per_layer = 3 * C * C;
  for (int l = 0; l < c.n_layer; ++l)
    for (size_t i = 0; i < 2 * C * C; ++i) p[qkvw.offset + l * per_layer + i] *= 10.0f;
  return p;
}

class DevicePos : public ::testing::TestWithParam<PosEncoding> {
 protected:
  void SetUp() override {
    const auto devices = available_devices();
    if (std::find(devices.begin(), devices.end(), "simt") == devices.end())
      GTEST_SKIP() << "no simt backend in this build";
    cpu = make_ops("cpu");
    dev = make_ops("simt");
  }
  std::unique_ptr<Ops> cpu, dev;
};

}  // namespace

TEST_P(DevicePos, LossAndEveryGradientMatchTheCpuBackend) {
  const GPT2Config cfg = config(GetParam());
  const int B = 2, T = 37;
  std::mt19937 rng(7);
  std::vector<int> tokens, targets;
  for (int i = 0; i < B * T; ++i) tokens.push_back(int(rng() % cfg.vocab_size));
  for (int i = 0; i < B * T; ++i) targets.push_back(i % 11 == 5 ? -1 : int(rng() % cfg.vocab_size));
  const auto init = params(cfg);
  GPT2 ref(cfg, *cpu, B, T), out(cfg, *dev, B, T);
  ref.set_params(init);
  out.set_params(init);
  ref.zero_grad();
  out.zero_grad();
  const float lr = ref.forward_backward(tokens.data(), targets.data(), B, T, 1.0f);
  const float lo = out.forward_backward(tokens.data(), targets.data(), B, T, 1.0f);
  EXPECT_LT(std::abs(lo - lr) / lr, 5e-3) << lo << " vs " << lr;
  const auto gr = ref.get_grads(), go = out.get_grads();
  for (const auto& t : ref.layout()) EXPECT_LT(rel_err(go, gr, t.offset, t.size), 3e-2) << t.name;
  EXPECT_LT(rel_err(out.last_losses(B, T), ref.last_losses(B, T)), 1e-2);
}

TEST_P(DevicePos, KvDecodingMatchesTheFullForward) {
  const GPT2Config cfg = config(GetParam());
  const int B = 2, T = 20;
  std::mt19937 rng(9);
  std::vector<int> tokens(B * T);
  for (auto& t : tokens) t = int(rng() % cfg.vocab_size);
  GPT2 m(cfg, *dev, B, T), ref(cfg, *cpu, B, T);
  m.set_params(params(cfg));
  ref.set_params(params(cfg));
  ouro::test::expect_kv_decoding_matches(m, ref.forward_logits(tokens.data(), B, T), tokens, B, T, {5, 1, 1, 3, 1, 9},
                                         2e-2);
}

INSTANTIATE_TEST_SUITE_P(NoneAndRope, DevicePos, ::testing::Values(PosEncoding::none, PosEncoding::rope),
                         [](const auto& info) { return std::string(pos_encoding_name(info.param)); });
