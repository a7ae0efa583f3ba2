// Model files and checkpoints: safetensors, Hugging Face GPT-2 directories, llm.c .bin files,
// atomic training checkpoints.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "ouro/checkpoint.h"
#include "ouro/error.h"

namespace fs = std::filesystem;
using namespace ouro;
using nlohmann::json;

namespace {

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("ouro_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

// Runs fn, expecting an ouro::Error whose message contains every one of the parts.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an ouro::Error";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
        << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

const GPT2Config kCfg{2, 3, 24, 17, 301};  // ragged on purpose: Vp = 384, head size 8

// gpt2_init_params plus random LayerNorm weights and biases, so a misplaced vector shows up.
std::vector<float> random_params(const GPT2Config& cfg, uint64_t seed) {
  auto p = gpt2_init_params(cfg, seed);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> nd(0.0f, 0.5f);
  for (const auto& t : gpt2_param_layout(cfg))
    if (!t.decay)
      for (size_t i = 0; i < t.size; ++i) p[t.offset + i] = nd(rng);
  return p;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Round to nearest even, as PyTorch's .to(torch.bfloat16).
uint16_t f32_to_bf16(float f) {
  uint32_t b = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return 0x7fc0;
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
float bf16_round(float f) { return std::bit_cast<float>(static_cast<uint32_t>(f32_to_bf16(f)) << 16); }

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}
// A safetensors file from a raw header text and data section.
void write_raw_st(const fs::path& p, const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  write_bytes(p, std::string(reinterpret_cast<const char*>(&n), 8) + header + data);
}

// ---- safetensors ----

TEST(SafeTensors, RoundTripDtypesAndMetadata) {
  TempDir d;
  const fs::path f = d / "t.safetensors";
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
  std::vector<float> b_vals = {1.0f, -3.140625f, 65536.0f, 0.0078125f};
  std::vector<uint16_t> b;
  for (float v : b_vals) b.push_back(f32_to_bf16(v));
  std::vector<int32_t> ints = {7, -8};
  write_safetensors(f,
                    {{"a", "F32", {2, 3}, a.data()},
                     {"b", "BF16", {4}, b.data()},
                     {"i", "I32", {2}, ints.data()},
                     {"empty", "F32", {0, 5}, nullptr}},
                    {{"format", "pt"}, {"note", "hello"}});

  // The data section starts 8-byte aligned, as the reference writer does it.
  const std::string raw = read_bytes(f);
  uint64_t hlen;
  std::memcpy(&hlen, raw.data(), 8);
  EXPECT_EQ((8 + hlen) % 8, 0u);

  SafeTensors st(f);
  EXPECT_EQ(st.names(), (std::vector<std::string>{"a", "b", "empty", "i"}));
  EXPECT_EQ(st.shape("a"), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(st.dtype("b"), "BF16");
  EXPECT_TRUE(bitwise_equal(st.get_f32("a"), a));
  EXPECT_EQ(st.get_f32("b"), b_vals);  // all exactly representable in bf16
  EXPECT_TRUE(st.get_f32("empty").empty());
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.metadata().at("note"), "hello");
  EXPECT_FALSE(st.has("nope"));
  expect_error([&] { st.get_f32("i"); }, {f.string(), "'i'", "I32"});
  expect_error([&] { st.get_f32("nope"); }, {f.string(), "'nope'"});
}

TEST(SafeTensors, HalfAndBFloat16ConversionIsExactForEveryPattern) {
  TempDir d;
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  write_safetensors(d / "h.safetensors", {{"h", "F16", {65536}, all.data()}, {"b", "BF16", {65536}, all.data()}});
  SafeTensors st(d / "h.safetensors");
  auto h = st.get_f32("h"), b = st.get_f32("b");
  for (uint32_t i = 0; i < 65536; ++i) {
    // Reference: the binary16 definition evaluated in double.
    const int sign = (i >> 15) ? -1 : 1, exp = (i >> 10) & 31, mant = i & 1023;
    double want;
    if (exp == 31)
      want = mant ? NAN : sign * INFINITY;
    else if (exp == 0)
      want = sign * std::ldexp(mant, -24);
    else
      want = sign * std::ldexp(1024 + mant, exp - 25);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(h[i])) << i;
    } else {
      ASSERT_EQ(h[i], static_cast<float>(want)) << "f16 pattern " << i;
      ASSERT_EQ(std::signbit(h[i]), sign < 0) << i;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(b[i]), i << 16) << "bf16 pattern " << i;
  }
}

TEST(SafeTensors, CorruptFilesNameTheFile) {
  TempDir d;
  const fs::path f = d / "bad.safetensors";
  std::vector<float> v(4, 1.0f);
  write_safetensors(f, {{"w", "F32", {4}, v.data()}});
  const std::string good = read_bytes(f);

  write_bytes(f, good.substr(0, good.size() - 3));  // truncated data section
  expect_error([&] { SafeTensors s(f); }, {f.string(), "'w'", "out of range"});

  write_bytes(f, good.substr(0, 5));  // not even a length prefix
  expect_error([&] { SafeTensors s(f); }, {f.string()});

  std::string big = good;
  uint64_t huge = 1ull << 40;
  std::memcpy(big.data(), &huge, 8);
  write_bytes(f, big);
  expect_error([&] { SafeTensors s(f); }, {f.string(), "header length"});

  write_raw_st(f, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})", std::string(16, '\0'));
  expect_error([&] { SafeTensors s(f); }, {f.string(), "'w'", "out of range"});

  write_raw_st(f, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})", std::string(16, '\0'));
  expect_error([&] { SafeTensors s(f); }, {f.string(), "JSON"});

  write_raw_st(f, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, '\0'));
  expect_error([&] { SafeTensors s(f); }, {f.string(), "'w'", "[3]"});

  write_raw_st(f, R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}})", std::string(16, '\0'));
  expect_error([&] { SafeTensors s(f); }, {f.string(), "'w'", "BF16"});

  write_raw_st(f, R"({"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})", std::string(4, '\0'));
  expect_error([&] { SafeTensors s(f); }, {f.string(), "'w'", "Q4"});

  write_raw_st(f,
               R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               std::string(12, '\0'));
  expect_error([&] { SafeTensors s(f); }, {f.string(), "overlap"});

  write_raw_st(f, R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", std::string(16, '\0'));
  expect_error([&] { SafeTensors s(f); }, {f.string(), "'w'"});

  write_raw_st(f, R"({"__metadata__":{"k":3}})", "");
  expect_error([&] { SafeTensors s(f); }, {f.string(), "metadata"});

  expect_error([&] { SafeTensors s(d / "missing.safetensors"); }, {"missing.safetensors"});
}

// ---- Hugging Face directories ----

// Rewrites dir/model.safetensors through edit(name -> (shape, values)) with the given dtype.
using TensorMap = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;
void rewrite_model(const fs::path& dir, const std::function<void(TensorMap&)>& edit,
                   const std::string& dtype = "F32") {
  TensorMap m;
  {
    SafeTensors st(dir / "model.safetensors");
    for (const auto& n : st.names()) m[n] = {st.shape(n), st.get_f32(n)};
  }
  edit(m);
  std::vector<std::vector<uint16_t>> halves;
  halves.reserve(m.size());
  std::vector<StTensorIn> ts;
  for (const auto& [n, sv] : m) {
    const void* data = sv.second.data();
    if (dtype == "BF16") {
      auto& h = halves.emplace_back();
      for (float x : sv.second) h.push_back(f32_to_bf16(x));
      data = h.data();
    }
    ts.push_back({n, dtype, sv.first, data});
  }
  write_safetensors(dir / "model.safetensors", ts, {{"format", "pt"}});
}

TEST(HfGpt2, RoundTripIsBitwise) {
  TempDir d;
  const auto params = random_params(kCfg, 1);
  save_hf_model(d.path(), kCfg, params);
  const auto loaded = load_model(d.path());
  EXPECT_EQ(loaded.config, kCfg);
  EXPECT_TRUE(bitwise_equal(loaded.params, params));

  // Names, HF shapes and the Conv1D transpose as transformers expects them.
  SafeTensors st(d / "model.safetensors");
  EXPECT_EQ(st.names().size(), 4u + 12u * kCfg.n_layer);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.shape("transformer.wte.weight"), (std::vector<int64_t>{301, 24}));
  EXPECT_EQ(st.shape("transformer.wpe.weight"), (std::vector<int64_t>{17, 24}));
  EXPECT_EQ(st.shape("transformer.h.1.attn.c_attn.weight"), (std::vector<int64_t>{24, 72}));
  EXPECT_EQ(st.shape("transformer.h.1.mlp.c_fc.weight"), (std::vector<int64_t>{24, 96}));
  EXPECT_EQ(st.shape("transformer.h.1.mlp.c_proj.weight"), (std::vector<int64_t>{96, 24}));
  EXPECT_EQ(st.shape("transformer.ln_f.bias"), (std::vector<int64_t>{24}));
  const auto layout = gpt2_param_layout(kCfg);
  const auto& qkvw = find_param(layout, "qkvw");
  const auto c_attn = st.get_f32("transformer.h.1.attn.c_attn.weight");
  const size_t C = 24;
  for (size_t r = 0; r < 3 * C; ++r)
    for (size_t k = 0; k < C; ++k)
      ASSERT_EQ(c_attn[k * 3 * C + r], params[qkvw.offset + 3 * C * C + r * C + k]);
  const auto fcprojb = st.get_f32("transformer.h.0.mlp.c_proj.bias");
  EXPECT_EQ(fcprojb[5], params[find_param(layout, "fcprojb").offset + 5]);

  const json cfg = json::parse(read_bytes(d / "config.json"));
  EXPECT_EQ(cfg["model_type"], "gpt2");
  EXPECT_EQ(cfg["architectures"], json::array({"GPT2LMHeadModel"}));
  EXPECT_TRUE(cfg["n_inner"].is_null());
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(cfg["bos_token_id"], 300);
  EXPECT_EQ(cfg["eos_token_id"], 300);
  EXPECT_EQ(cfg["n_positions"], 17);
  EXPECT_EQ(cfg["activation_function"], "gelu_new");
  EXPECT_EQ(gpt2_config_from_hf(cfg, "x"), kCfg);
}

TEST(HfGpt2, AcceptsTransformersVariants) {
  TempDir d;
  const auto params = random_params(kCfg, 2);
  save_hf_model(d.path(), kCfg, params);
  // GPT2Model-style names, a tied lm_head and the attention mask buffers.
  rewrite_model(d.path(), [&](TensorMap& m) {
    TensorMap out;
    for (auto& [n, v] : m) out[n.substr(std::string("transformer.").size())] = v;
    out["lm_head.weight"] = m["transformer.wte.weight"];
    out["h.0.attn.bias"] = {{1, 1, 17, 17}, std::vector<float>(17 * 17, 1.0f)};
    out["h.1.attn.masked_bias"] = {{}, {-1e4f}};
    m = out;
  });
  EXPECT_TRUE(bitwise_equal(load_model(d.path()).params, params));

  // BF16 weights load as the bf16-rounded values.
  save_hf_model(d.path(), kCfg, params);
  rewrite_model(d.path(), [](TensorMap&) {}, "BF16");
  const auto loaded = load_model(d.path()).params;
  ASSERT_EQ(loaded.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) ASSERT_EQ(loaded[i], bf16_round(params[i])) << i;
}

TEST(HfGpt2, RejectsBadTensors) {
  TempDir d;
  const auto params = random_params(kCfg, 3);
  const std::string file = (d / "model.safetensors").string();

  save_hf_model(d.path(), kCfg, params);
  rewrite_model(d.path(), [](TensorMap& m) {
    m["lm_head.weight"] = m["transformer.wte.weight"];
    m["lm_head.weight"].second[7] += 1.0f;
  });
  expect_error([&] { load_model(d.path()); }, {file, "lm_head.weight", "untied"});

  save_hf_model(d.path(), kCfg, params);
  rewrite_model(d.path(), [](TensorMap& m) { m.erase("transformer.h.1.ln_2.bias"); });
  expect_error([&] { load_model(d.path()); }, {file, "missing", "transformer.h.1.ln_2.bias"});

  save_hf_model(d.path(), kCfg, params);
  rewrite_model(d.path(), [](TensorMap& m) { m["transformer.h.2.ln_1.weight"] = {{24}, std::vector<float>(24)}; });
  expect_error([&] { load_model(d.path()); }, {file, "unexpected", "transformer.h.2.ln_1.weight"});

  save_hf_model(d.path(), kCfg, params);
  rewrite_model(d.path(), [](TensorMap& m) {
    m["transformer.h.0.mlp.c_fc.weight"].first = {96, 24};  // ours, not Conv1D's orientation
  });
  expect_error([&] { load_model(d.path()); }, {file, "transformer.h.0.mlp.c_fc.weight", "[96,24]", "[24,96]"});

  save_hf_model(d.path(), kCfg, params);
  rewrite_model(d.path(), [](TensorMap& m) { m["h.0.ln_1.bias"] = m["transformer.h.0.ln_1.bias"]; });
  expect_error([&] { load_model(d.path()); }, {file, "h.0.ln_1.bias"});
}

TEST(HfGpt2, ConfigChecksNameTheKey) {
  json good = hf_config_json(kCfg);
  const fs::path where = "some/config.json";
  EXPECT_EQ(gpt2_config_from_hf(good, where), kCfg);

  json j = good;
  j.erase("n_positions");  // older configs only have n_ctx
  EXPECT_EQ(gpt2_config_from_hf(j, where), kCfg);

  j = good;
  j["activation_function"] = "gelu_pytorch_tanh";
  EXPECT_EQ(gpt2_config_from_hf(j, where), kCfg);

  auto bad = [&](const char* key, json value) {
    json b = good;
    if (value.is_discarded())
      b.erase(key);
    else
      b[key] = value;
    expect_error([&] { gpt2_config_from_hf(b, where); }, {where.string(), key});
  };
  bad("activation_function", "relu");
  bad("layer_norm_epsilon", 1e-6);
  bad("n_head", json(json::value_t::discarded));
  bad("n_head", 5);  // 24 % 5 != 0
  bad("n_layer", -1);
  bad("vocab_size", "big");
  bad("tie_word_embeddings", false);
  bad("n_inner", 100);
  bad("model_type", "gpt_neo");
}

// ---- llm.c .bin ----

// An llm.c model file for params (internal layout, our padding) with the file's vocabulary
// padded to vp_file rows; padding rows hold `pad` so the loader's zeroing shows.
void write_llmc(const fs::path& p, const GPT2Config& cfg, const std::vector<float>& params, int version,
                int vp_file, float pad = 0.0f) {
  int32_t h[256] = {};
  h[0] = 20240326;
  h[1] = version;
  h[2] = cfg.seq_len;
  h[3] = cfg.vocab_size;
  h[4] = cfg.n_layer;
  h[5] = cfg.n_head;
  h[6] = cfg.n_embd;
  h[7] = vp_file;
  const size_t C = cfg.n_embd, real = cfg.vocab_size * C, wte = cfg.padded_vocab() * C;
  std::vector<float> v(params.begin(), params.begin() + real);
  v.insert(v.end(), (vp_file - cfg.vocab_size) * C, pad);
  v.insert(v.end(), params.begin() + wte, params.end());
  std::string out(reinterpret_cast<const char*>(h), sizeof(h));
  if (version == 5) {
    for (float x : v) {
      uint16_t b = f32_to_bf16(x);
      out.append(reinterpret_cast<const char*>(&b), 2);
    }
  } else {
    out.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  }
  write_bytes(p, out);
}

TEST(LlmcBin, Version3LoadsExactly) {
  TempDir d;
  const auto params = random_params(kCfg, 4);
  write_llmc(d / "m.bin", kCfg, params, 3, kCfg.padded_vocab());
  auto m = load_model(d / "m.bin");
  EXPECT_EQ(m.config, kCfg);
  EXPECT_TRUE(bitwise_equal(m.params, params));

  // A file padded differently (and with junk in its padding) is re-padded with zeros.
  write_llmc(d / "odd.bin", kCfg, params, 3, 320, 7.0f);
  EXPECT_TRUE(bitwise_equal(load_llmc_bin(d / "odd.bin").params, params));
  write_llmc(d / "unpadded.bin", kCfg, params, 3, kCfg.vocab_size);
  EXPECT_TRUE(bitwise_equal(load_llmc_bin(d / "unpadded.bin").params, params));
}

TEST(LlmcBin, Version5LoadsBf16RoundedValues) {
  TempDir d;
  const auto params = random_params(kCfg, 5);
  write_llmc(d / "m.bin", kCfg, params, 5, 512, -3.0f);
  const auto m = load_llmc_bin(d / "m.bin");
  EXPECT_EQ(m.config, kCfg);
  ASSERT_EQ(m.params.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) ASSERT_EQ(m.params[i], bf16_round(params[i])) << i;
}

TEST(LlmcBin, CorruptFilesNameTheFile) {
  TempDir d;
  const auto params = random_params(kCfg, 6);
  const fs::path f = d / "m.bin";
  write_llmc(f, kCfg, params, 3, kCfg.padded_vocab());
  const std::string good = read_bytes(f);
  auto with_int = [&](int index, int32_t value) {
    std::string s = good;
    std::memcpy(s.data() + 4 * index, &value, 4);
    write_bytes(f, s);
  };
  with_int(0, 12345);
  expect_error([&] { load_llmc_bin(f); }, {f.string(), "magic"});
  with_int(1, 4);
  expect_error([&] { load_llmc_bin(f); }, {f.string(), "version 4"});
  with_int(1, 5);  // a v3 body under a v5 header: the size is wrong
  expect_error([&] { load_llmc_bin(f); }, {f.string(), "bytes"});
  with_int(7, 100);  // Vp < V
  expect_error([&] { load_llmc_bin(f); }, {f.string(), "padded_vocab_size"});
  with_int(4, 0);
  expect_error([&] { load_llmc_bin(f); }, {f.string(), "num_layers"});
  write_bytes(f, good.substr(0, good.size() - 4));
  expect_error([&] { load_llmc_bin(f); }, {f.string(), "bytes"});
  write_bytes(f, good.substr(0, 100));
  expect_error([&] { load_llmc_bin(f); }, {f.string(), "header"});
}

TEST(LoadModel, ClearErrorsForMissingOrEmptyPaths) {
  TempDir d;
  expect_error([&] { load_model(d / "nope"); }, {(d / "nope").string(), "does not exist"});
  expect_error([&] { load_model(d.path()); }, {d.path().string(), "config.json"});
  write_bytes(d / "config.json", hf_config_json(kCfg).dump());
  expect_error([&] { load_model(d.path()); }, {d.path().string(), "no model.safetensors"});
  save_hf_model(d.path(), kCfg, random_params(kCfg, 7));
  write_bytes(d / "config.json", "{not json");
  expect_error([&] { load_model(d.path()); }, {(d / "config.json").string(), "JSON"});
}

// ---- training checkpoints ----

CheckpointData ckpt(const std::vector<float>* p, const std::vector<float>* m, const std::vector<float>* v,
                    int64_t step) {
  return {kCfg, p, m, v, json{{"step", step}, {"loader", {{"shard", 1}, {"pos", 12345}}}}};
}

TEST(Checkpoint, SaveLatestLoad) {
  TempDir d;
  EXPECT_FALSE(latest_checkpoint(d.path()).has_value());
  const auto p = random_params(kCfg, 8), m = random_params(kCfg, 9), v = random_params(kCfg, 10);
  const fs::path dir = save_checkpoint(d.path(), 10, ckpt(&p, &m, &v, 10), 3);
  EXPECT_EQ(dir, d / "checkpoints" / "step_000010");
  for (const char* f : {"model.safetensors", "config.json", "optimizer.safetensors", "state.json"})
    EXPECT_TRUE(fs::is_regular_file(dir / f)) << f;
  ASSERT_TRUE(latest_checkpoint(d.path()).has_value());
  EXPECT_EQ(*latest_checkpoint(d.path()), dir);

  const auto ck = load_checkpoint(dir);
  EXPECT_EQ(ck.model.config, kCfg);
  EXPECT_TRUE(bitwise_equal(ck.model.params, p));
  EXPECT_TRUE(bitwise_equal(ck.adam_m, m));
  EXPECT_TRUE(bitwise_equal(ck.adam_v, v));
  EXPECT_EQ(ck.state["step"], 10);
  EXPECT_EQ(ck.state["loader"]["pos"], 12345);
  SafeTensors opt(dir / "optimizer.safetensors");
  EXPECT_EQ(opt.metadata().at("num_params"), std::to_string(gpt2_num_params(kCfg)));

  // A model-only checkpoint: no optimizer, no state.
  const fs::path d2 = save_checkpoint(d.path(), 11, {kCfg, &p, nullptr, nullptr, {}}, 0);
  const auto ck2 = load_checkpoint(d2);
  EXPECT_TRUE(ck2.adam_m.empty() && ck2.adam_v.empty());
  EXPECT_TRUE(ck2.state.is_object() && ck2.state.empty());
  EXPECT_EQ(*latest_checkpoint(d.path()), d2);
}

TEST(Checkpoint, KeepLastPrunesOldest) {
  TempDir d;
  const auto p = random_params(kCfg, 11);
  for (int64_t s : {100, 200, 300, 400}) save_checkpoint(d.path(), s, ckpt(&p, &p, &p, s), 2);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d / "checkpoints")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_000300", "step_000400"}));
  EXPECT_EQ(*latest_checkpoint(d.path()), d / "checkpoints" / "step_000400");

  // Saving an older step (a run resumed from an earlier checkpoint) never deletes what it wrote.
  save_checkpoint(d.path(), 150, ckpt(&p, &p, &p, 150), 2);
  EXPECT_TRUE(fs::exists(d / "checkpoints" / "step_000150"));
  EXPECT_TRUE(fs::exists(d / "checkpoints" / "step_000400"));
  EXPECT_FALSE(fs::exists(d / "checkpoints" / "step_000300"));
}

TEST(Checkpoint, LeftoverTmpAndIncompleteDirsAreIgnored) {
  TempDir d;
  const auto p = random_params(kCfg, 12);
  save_checkpoint(d.path(), 5, ckpt(&p, nullptr, nullptr, 5), 0);
  // A crashed save of a later step: complete-looking, but still under its temporary name.
  const fs::path tmp = d / "checkpoints" / ".tmp-step_000009-99999";
  fs::create_directories(tmp);
  fs::copy(d / "checkpoints" / "step_000005", tmp, fs::copy_options::recursive);
  // A step directory missing its model is not a checkpoint either.
  fs::create_directories(d / "checkpoints" / "step_000007");
  write_bytes(d / "checkpoints" / "step_000007" / "config.json", "{}");
  EXPECT_EQ(*latest_checkpoint(d.path()), d / "checkpoints" / "step_000005");

  save_checkpoint(d.path(), 6, ckpt(&p, nullptr, nullptr, 6), 0);
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(*latest_checkpoint(d.path()), d / "checkpoints" / "step_000006");
}

TEST(Checkpoint, ResavingTheSameStepReplacesIt) {
  TempDir d;
  const auto p1 = random_params(kCfg, 13), p2 = random_params(kCfg, 14);
  save_checkpoint(d.path(), 30, ckpt(&p1, &p1, &p1, 30), 3);
  const fs::path dir = save_checkpoint(d.path(), 30, ckpt(&p2, &p2, &p2, 30), 3);
  const auto ck = load_checkpoint(dir);
  EXPECT_TRUE(bitwise_equal(ck.model.params, p2));
  EXPECT_TRUE(bitwise_equal(ck.adam_v, p2));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d / "checkpoints")) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"step_000030"});  // nothing left aside
}

TEST(Checkpoint, OptimizerSizeMismatchNamesTheFile) {
  TempDir d;
  const auto p = random_params(kCfg, 15);
  const fs::path dir = save_checkpoint(d.path(), 1, ckpt(&p, &p, &p, 1), 0);
  std::vector<float> short_state(p.size() - 1);
  write_safetensors(dir / "optimizer.safetensors",
                    {{"adam.m", "F32", {static_cast<int64_t>(short_state.size())}, short_state.data()},
                     {"adam.v", "F32", {static_cast<int64_t>(short_state.size())}, short_state.data()}});
  expect_error([&] { load_checkpoint(dir); }, {(dir / "optimizer.safetensors").string(), "adam.m"});

  std::vector<float> wrong(p.size() + 1);
  expect_error([&] { save_checkpoint(d.path(), 2, ckpt(&p, &wrong, &wrong, 2), 0); }, {"optimizer"});
}

// ---- the transformers-made fixture ----

const fs::path kFixture = fs::path(OURO_FIXTURES) / "gpt2_tiny";

TEST(Fixture, HfAndLlmcFilesAgree) {
  const auto hf = load_model(kFixture);
  EXPECT_EQ(hf.config, (GPT2Config{2, 4, 48, 24, 371}));
  const auto v3 = load_model(kFixture / "model_v3.bin");
  EXPECT_EQ(hf.config, v3.config);
  EXPECT_TRUE(bitwise_equal(hf.params, v3.params));
  const auto v5 = load_model(kFixture / "model_v5.bin");
  EXPECT_EQ(hf.config, v5.config);
  ASSERT_EQ(v5.params.size(), hf.params.size());
  for (size_t i = 0; i < hf.params.size(); ++i) ASSERT_EQ(v5.params[i], bf16_round(hf.params[i])) << i;
  // The fixture's values are non-trivial everywhere, so the match above checks every mapping;
  // the 13 vocabulary padding rows are ours and zero.
  const size_t real = 371 * 48;
  EXPECT_TRUE(std::all_of(hf.params.begin() + real, hf.params.begin() + 384 * 48, [](float x) { return x == 0; }));
  EXPECT_TRUE(std::none_of(hf.params.begin() + 384 * 48, hf.params.end(), [](float x) { return x == 0; }));

  // Through ouro and back out, a transformers-made model is unchanged.
  TempDir d;
  save_hf_model(d.path(), hf.config, hf.params);
  SafeTensors theirs(kFixture / "model.safetensors"), ours(d / "model.safetensors");
  EXPECT_EQ(theirs.names(), ours.names());
  for (const auto& n : theirs.names()) {
    EXPECT_EQ(theirs.shape(n), ours.shape(n)) << n;
    EXPECT_TRUE(bitwise_equal(theirs.get_f32(n), ours.get_f32(n))) << n;
  }
}

}  // namespace
