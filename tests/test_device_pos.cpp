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

using namespace ouro;

namespace {

double rel_err(const std::vector<float>& out, const std::vector<float>& ref, size_t begin = 0,
               size_t n = SIZE_MAX) {
  n = std::min(n, ref.size() - begin);
  double num = 0, den = 0;
  for (size_t i = begin; i < begin + n; ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    const double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

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
  const auto full = ref.forward_logits(tokens.data(), B, T);
  const size_t Vp = cfg.padded_vocab();
  m.kv_reset();
  int pos = 0;
  for (int n : {5, 1, 1, 3, 1, 9}) {
    std::vector<int> chunk;
    for (int b = 0; b < B; ++b)
      for (int t = pos; t < pos + n; ++t) chunk.push_back(tokens[b * T + t]);
    m.kv_step(chunk.data(), B, n);
    pos += n;
    const auto got = m.kv_logits();
    for (int b = 0; b < B; ++b) {
      const float* row = full.data() + (size_t(b) * T + pos - 1) * Vp;
      const std::vector<float> r(row, row + Vp), o(got.begin() + ptrdiff_t(b * Vp), got.begin() + ptrdiff_t((b + 1) * Vp));
      EXPECT_LT(rel_err(o, r), 2e-2) << "row " << b << " position " << pos - 1;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(NoneAndRope, DevicePos, ::testing::Values(PosEncoding::none, PosEncoding::rope),
                         [](const auto& info) { return std::string(pos_encoding_name(info.param)); });
