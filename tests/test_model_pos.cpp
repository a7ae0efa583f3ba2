// model.pos = learned | none | rope on the cpu backend: the parameter layout, the gradient
// against finite differences, KV-cache decoding against the full forward, learning, the
// checkpoint format, and end to end through the binary (exact resume, refusing a checkpoint of
// another position encoding). The device path's agreement is tests/test_device_pos.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "ouro/checkpoint.h"
#include "ouro/data.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "model_checks.h"
#include "test_support.h"

using namespace ouro;

namespace {

GPT2Config tiny(PosEncoding pos) {
  GPT2Config c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;  // head dim 8: four rotation frequencies
  c.seq_len = 12;
  c.vocab_size = 11;
  c.pos = pos;
  c.rope_theta = 100.0;  // a small base: the slow frequencies still turn within 12 positions
  return c;
}

// Parameters large enough that attention is sharp, so positions matter to the loss and to
// every gradient (GPT-2's 0.02 initialisation makes attention nearly uniform).
std::vector<float> sharp_params(const GPT2Config& c, uint64_t seed) {
  std::vector<float> p = gpt2_init_params(c, seed);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<float> nd(0.0f, 0.25f);
  for (const auto& t : gpt2_param_layout(c))
    if (t.decay && t.name != "wte")
      for (size_t i = 0; i < t.size; ++i) p[t.offset + i] = nd(rng);
  return p;
}

struct Batch {
  int B = 2, T = 9;
  std::vector<int> tokens, targets;
  explicit Batch(const GPT2Config& c, uint64_t seed = 3) {
    std::mt19937 rng(seed);
    for (int i = 0; i < B * T; ++i) tokens.push_back(int(rng() % c.vocab_size));
    for (int i = 0; i < B * T; ++i) targets.push_back(i % 7 == 4 ? -1 : int(rng() % c.vocab_size));
  }
};

using ouro::test::rel_err;

class PosModes : public ::testing::TestWithParam<PosEncoding> {};

}  // namespace

TEST(PosEncodingNames, ParseAndDescribe) {
  for (auto p : {PosEncoding::learned, PosEncoding::none, PosEncoding::rope})
    EXPECT_EQ(parse_pos_encoding(pos_encoding_name(p)), p);
  try {
    parse_pos_encoding("alibi");
    ADD_FAILURE() << "alibi accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.pos"), std::string::npos) << e.what();
  }
  EXPECT_NE(describe_model(tiny(PosEncoding::rope)).find("pos=rope rope_theta=100"), std::string::npos);
  // rope_theta is part of the function only for rope.
  GPT2Config a = tiny(PosEncoding::none), b = a;
  b.rope_theta = 7;
  EXPECT_EQ(a, b);
  a.pos = b.pos = PosEncoding::rope;
  EXPECT_NE(a, b);
  EXPECT_NE(tiny(PosEncoding::rope), tiny(PosEncoding::none));
}

TEST(PosLayout, NoneAndRopeHaveNoWpe) {
  const GPT2Config learned = tiny(PosEncoding::learned);
  const size_t n = gpt2_num_params(learned);
  for (auto p : {PosEncoding::none, PosEncoding::rope}) {
    const GPT2Config c = tiny(p);
    EXPECT_EQ(gpt2_num_params(c), n - size_t(c.seq_len) * c.n_embd);
    const auto layout = gpt2_param_layout(c);
    EXPECT_TRUE(std::none_of(layout.begin(), layout.end(), [](const ParamTensor& t) { return t.name == "wpe"; }));
    EXPECT_EQ(layout.size(), gpt2_param_layout(learned).size() - 1);
    auto ops = make_ops("cpu");
    GPT2 m(c, *ops, 1, 4);
    EXPECT_EQ(m.num_params(), gpt2_num_params(c));
  }
}

TEST(PosLayout, RopeNeedsAnEvenHeadDimension) {
  GPT2Config c = tiny(PosEncoding::rope);
  c.n_embd = 18;  // head dim 9
  auto ops = make_ops("cpu");
  EXPECT_THROW(GPT2(c, *ops, 1, 4), Error);
  c.pos = PosEncoding::none;
  EXPECT_NO_THROW(GPT2(c, *ops, 1, 4));
}

// The position encoding changes the function: the same parameters (none and rope share a
// layout) give different losses, and a permutation of the context changes rope's last-token
// loss. With no positions at all, a one-layer model is invariant to permuting the PAST of the
// last token (its attention is a weighted sum over a set; deeper layers see each past token's
// own prefix, which the permutation changes) -- NoPE's order signal is the mask alone.
TEST(PosFunction, RopeSeesOrderNoneOnlyThroughTheMask) {
  GPT2Config cn = tiny(PosEncoding::none), cr = tiny(PosEncoding::rope);
  cn.n_layer = cr.n_layer = 1;
  const auto params = sharp_params(cn, 5);
  auto ops = make_ops("cpu");
  GPT2 none(cn, *ops, 1, 8), rope(cr, *ops, 1, 8);
  none.set_params(params);
  rope.set_params(params);
  std::vector<int> a{1, 2, 3, 4, 5, 6, 7, 8}, b{4, 2, 7, 1, 6, 3, 5, 8};  // same set, same last token
  const size_t Vp = cn.padded_vocab();
  auto last = [&](GPT2& m, std::vector<int>& t) {
    auto l = m.forward_logits(t.data(), 1, 8);
    return std::vector<float>(l.end() - ptrdiff_t(Vp), l.end());
  };
  const auto na = last(none, a), nb = last(none, b), ra = last(rope, a), rb = last(rope, b);
  EXPECT_LT(rel_err(nb, na), 1e-5);
  EXPECT_GT(rel_err(rb, ra), 1e-2);
  EXPECT_GT(rel_err(ra, na), 1e-2);
}

TEST_P(PosModes, GradientMatchesFiniteDifferences) {
  const GPT2Config c = tiny(GetParam());
  const Batch b(c);
  auto ops = make_ops("cpu");
  GPT2 m(c, *ops, b.B, b.T);
  auto params = sharp_params(c, 11);
  m.set_params(params);
  m.zero_grad();
  m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, 1.0f);
  const auto grads = m.get_grads();
  // The entries of the largest gradient in every tensor (q and k rows of qkvw among them, which
  // see rope's backward), plus a few random ones.
  std::vector<size_t> idx;
  std::mt19937 rng(1);
  for (const auto& t : m.layout()) {
    size_t best = t.offset;
    for (size_t i = t.offset; i < t.offset + t.size; ++i)
      if (std::abs(grads[i]) > std::abs(grads[best])) best = i;
    idx.push_back(best);
    idx.push_back(t.offset + rng() % t.size);
  }
  const auto& qkvw = find_param(m.layout(), "qkvw");
  const size_t C = c.n_embd;
  for (size_t part = 0; part < 2; ++part)  // the largest entries of the q rows and of the k rows of layer 0
  {
    size_t best = qkvw.offset + part * C * C;
    for (size_t i = best; i < qkvw.offset + (part + 1) * C * C; ++i)
      if (std::abs(grads[i]) > std::abs(grads[best])) best = i;
    idx.push_back(best);
  }
  const float eps = 1e-3f;
  int checked = 0;
  for (size_t i : idx) {
    const float saved = params[i];
    params[i] = saved + eps;
    m.set_params(params);
    const double up = m.forward(b.tokens.data(), b.targets.data(), b.B, b.T);
    params[i] = saved - eps;
    m.set_params(params);
    const double down = m.forward(b.tokens.data(), b.targets.data(), b.B, b.T);
    params[i] = saved;
    const double fd = (up - down) / (2.0 * eps);
    EXPECT_NEAR(grads[i], fd, 2e-2 * std::abs(fd) + 3e-4) << "parameter " << i;
    checked += std::abs(fd) > 1e-2;
  }
  EXPECT_GE(checked, 10);  // the check has teeth: many entries carry real gradient
}

// kv_step at every position (one token, then chunks at odd offsets) reproduces the full forward's
// logits: rope rotates each new q, k at its cache position.
TEST_P(PosModes, KvDecodingMatchesTheFullForward) {
  const GPT2Config c = tiny(GetParam());
  const int B = 2, T = 12;
  auto ops = make_ops("cpu");
  GPT2 m(c, *ops, B, T);
  m.set_params(sharp_params(c, 21));
  std::vector<int> tokens(B * T);
  std::mt19937 rng(4);
  for (auto& t : tokens) t = int(rng() % c.vocab_size);
  const auto full = m.forward_logits(tokens.data(), B, T);
  ouro::test::expect_kv_decoding_matches(m, full, tokens, B, T, {1, 3, 1, 1, 2, 4}, 1e-5);
}

TEST_P(PosModes, TrainingReducesTheLoss) {
  const GPT2Config c = tiny(GetParam());
  const int B = 4, T = 12;
  auto ops = make_ops("cpu");
  GPT2 m(c, *ops, B, T);
  m.set_params(gpt2_init_params(c, 7));
  // A cyclic pattern: the next token is a function of the current one.
  std::vector<int> tokens(B * T), targets(B * T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      tokens[b * T + t] = (3 * (b + t)) % c.vocab_size;
      targets[b * T + t] = (3 * (b + t + 1)) % c.vocab_size;
    }
  AdamWArgs a;
  a.lr = 1e-2f;
  float first = 0, last = 0;
  for (int step = 1; step <= 40; ++step) {
    m.zero_grad();
    last = m.forward_backward(tokens.data(), targets.data(), B, T, 1.0f);
    if (step == 1) first = last;
    a.step = step;
    m.adamw_step(a);
  }
  EXPECT_LT(last, 0.3f * first) << first << " -> " << last;
}

INSTANTIATE_TEST_SUITE_P(NoneAndRope, PosModes, ::testing::Values(PosEncoding::none, PosEncoding::rope),
                         [](const auto& info) { return std::string(pos_encoding_name(info.param)); });

// ---- the checkpoint format ------------------------------------------------------------------

namespace {
using namespace ouro::test;
namespace fs = std::filesystem;

class PosCheckpoint : public ScratchDirTest {
 protected:
  void SetUp() override { make_dir("ouro_test_model_pos_"); }
};
}  // namespace

TEST_F(PosCheckpoint, SavedAndLoadedWithTheirPositionEncoding) {
  for (auto p : {PosEncoding::none, PosEncoding::rope}) {
    GPT2Config c = tiny(p);
    c.rope_theta = 12345.5;
    const auto params = sharp_params(c, 2);
    const fs::path d = dir / pos_encoding_name(p);
    fs::create_directories(d);
    save_hf_model(d, c, params);
    const auto j = nlohmann::json::parse(read_file(d / "config.json"));
    EXPECT_EQ(j["model_type"], "ouro_gpt2");  // transformers must not take it for GPT-2
    EXPECT_EQ(j["ouro_pos"], pos_encoding_name(p));
    EXPECT_EQ(j.contains("rope_theta"), p == PosEncoding::rope);
    EXPECT_FALSE(SafeTensors(d / "model.safetensors").has("transformer.wpe.weight"));
    const LoadedModel lm = load_model(d);
    EXPECT_EQ(lm.config, c);
    EXPECT_EQ(lm.config.rope_theta, c.pos == PosEncoding::rope ? 12345.5 : 10000.0);
    EXPECT_EQ(lm.params, params);  // bitwise
  }
  // A learned model's config.json is GPT-2's, with no ouro keys.
  const fs::path d = dir / "learned";
  fs::create_directories(d);
  save_hf_model(d, tiny(PosEncoding::learned), sharp_params(tiny(PosEncoding::learned), 2));
  const auto j = nlohmann::json::parse(read_file(d / "config.json"));
  EXPECT_EQ(j["model_type"], "gpt2");
  EXPECT_FALSE(j.contains("ouro_pos"));
  EXPECT_EQ(load_model(d).config.pos, PosEncoding::learned);
}

TEST_F(PosCheckpoint, InconsistentConfigsAreRefused) {
  const GPT2Config c = tiny(PosEncoding::rope);
  save_hf_model(dir, c, sharp_params(c, 2));
  const auto good = nlohmann::json::parse(read_file(dir / "config.json"));
  auto expect_refused = [&](nlohmann::json j, const std::string& needle) {
    std::ofstream(dir / "config.json") << j.dump();
    try {
      load_model(dir);
      ADD_FAILURE() << "accepted " << j.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto j = good;
  j["model_type"] = "gpt2";  // Hugging Face GPT-2 claiming rope
  expect_refused(j, "learned positions only");
  j = good;
  j.erase("ouro_pos");
  expect_refused(j, "needs key 'ouro_pos'");
  j = good;
  j["ouro_pos"] = "learned";
  expect_refused(j, "none or rope");
  j = good;
  j.erase("rope_theta");
  expect_refused(j, "rope_theta");
  j = good;
  j["ouro_pos"] = "none";  // the weights match none's layout too: this one loads
  std::ofstream(dir / "config.json") << j.dump();
  EXPECT_EQ(load_model(dir).config.pos, PosEncoding::none);
  // A GPT-2 (learned) weight file under a rope config: its wpe is not part of the model.
  const GPT2Config learned = tiny(PosEncoding::learned);
  save_hf_model(dir, learned, sharp_params(learned, 2));
  std::ofstream(dir / "config.json") << good.dump();
  expect_refused(good, "wpe");
}

// ---- end to end through the binary ----------------------------------------------------------

namespace {

class PosTrain : public ScratchDirTest {
 protected:
  void SetUp() override {
    make_dir("ouro_test_model_pos_train_");
    std::mt19937 rng(5);
    std::vector<uint32_t> toks{ouro::kByteEot};
    const std::string words[] = {"one ", "two ", "three ", "four ", "five "};
    while (toks.size() < 20000)
      for (char ch : words[rng() % 5]) toks.push_back(static_cast<unsigned char>(ch));
    ouro::write_shard(dir / "train.bin", toks, ouro::kByteVocab);
    toks.resize(3000);
    ouro::write_shard(dir / "val.bin", toks, ouro::kByteVocab);
    std::ofstream(dir / "cfg.toml") << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 16\n"
                                       "vocab_size = 257\npos = \"rope\"\nrope_theta = 500.0\n"
                                       "[train]\nsteps = 8\nbatch_size = 4\nlr = 3e-3\nwarmup_steps = 2\n"
                                       "eval_every = 4\neval_batches = 2\n[data]\ntrain = \"" +
                                           (dir / "train.bin").string() + "\"\nval = \"" +
                                           (dir / "val.bin").string() + "\"\n[run]\nthreads = 2\n";
  }
  CmdResult ouro(const std::string& args) { return run_shell(std::string(OURO_BIN) + " " + args, dir / "cmd.log"); }
  std::string cfg(const std::string& out) const {
    return "--config " + (dir / "cfg.toml").string() + " --set run.out_dir=" + (dir / out).string();
  }
};

}  // namespace

TEST_F(PosTrain, RopeAndNoneResumeBitwiseAndRefuseAnotherPos) {
  for (const std::string pos : {"rope", "none"}) {
    SCOPED_TRACE(pos);
    const std::string set = " --set model.pos=" + pos;
    auto a = ouro("train " + cfg(pos + "_straight") + set);
    ASSERT_EQ(a.code, 0) << a.out;
    auto b1 = ouro("train " + cfg(pos + "_split") + set + " --stop-at 4");
    ASSERT_EQ(b1.code, 0) << b1.out;
    auto b2 = ouro("train " + cfg(pos + "_split") + set + " --resume");
    ASSERT_EQ(b2.code, 0) << b2.out;
    const auto la = metric_values(dir / (pos + "_straight"), "loss"), lb = metric_values(dir / (pos + "_split"), "loss");
    ASSERT_EQ(la.size(), 8u);
    EXPECT_EQ(la, lb);  // bitwise
    EXPECT_LT(la.back(), la.front());
    const std::string ck = "checkpoints/step_000008";
    EXPECT_EQ(read_file(dir / (pos + "_straight") / ck / "model.safetensors"),
              read_file(dir / (pos + "_split") / ck / "model.safetensors"));
    EXPECT_EQ(read_file(dir / (pos + "_straight") / ck / "optimizer.safetensors"),
              read_file(dir / (pos + "_split") / ck / "optimizer.safetensors"));
    // Resuming under another model.pos is refused, naming the key.
    const std::string other = pos == "rope" ? "none" : "rope";
    auto r = ouro("train " + cfg(pos + "_split") + " --set model.pos=" + other + " --set train.steps=10 --resume");
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("model.pos"), std::string::npos) << r.out;
    // --init from it under another model.pos is refused too.
    auto i = ouro("train " + cfg(pos + "_init") + " --set model.pos=" + other + " --init " +
                  (dir / (pos + "_straight") / ck).string());
    EXPECT_NE(i.code, 0) << i.out;
    EXPECT_NE(i.out.find("differs from the config"), std::string::npos) << i.out;
    EXPECT_NE(i.out.find("pos=" + other), std::string::npos) << i.out;  // both models described
    // A different rope_theta is a different rope model.
    if (pos == "rope") {
      auto t = ouro("train " + cfg(pos + "_theta") + set + " --set model.rope_theta=10000 --init " +
                    (dir / (pos + "_straight") / ck).string());
      EXPECT_NE(t.code, 0) << t.out;
    }
    // The checkpoint evaluates and samples through the same loaders.
    auto e = ouro("eval --init " + (dir / (pos + "_straight") / ck).string() + " --data " +
                  (dir / "val.bin").string() + " --batches 2 --batch 2 --json");
    ASSERT_EQ(e.code, 0) << e.out;
    auto s = ouro("sample --init " + (dir / (pos + "_straight") / ck).string() + " -n 8 --prompt 'one '");
    EXPECT_EQ(s.code, 0) << s.out;
  }
}
