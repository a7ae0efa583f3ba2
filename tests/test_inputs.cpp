// Untrusted input and careless use (issue 21): sizes from headers and configs computed with
// overflow checks and bounded, configs that are directories, --init supplying the model section,
// eval scoring every window with train's keys, and command-line values that used to be accepted
// silently or refused with unreadable messages.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "test_support.h"

#include "io/atomic_file.h"
#include "model/generate.h"
#include "ouro/checkpoint.h"
#include "ouro/config.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/ops.h"
#include "train/evaluate.h"

namespace fs = std::filesystem;
using namespace ouro;
using namespace ouro::test;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ouro::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT AN ouro::Error: ") + e.what();
  }
  return "no error";
}

GPT2Config shape(int L, int NH, int C, int T, int V) { return GPT2Config{L, NH, C, T, V}; }

class Inputs : public ScratchDirTest {
 protected:
  void SetUp() override { make_dir("ouro_test_inputs_"); }
  CmdResult ouro(const std::string& args) { return run_shell(std::string(OURO_BIN) + " " + args, dir / "cmd.log"); }
  // A byte-level shard of `n` tokens with some structure.
  void shard(const std::string& name, size_t n, uint32_t seed = 5) {
    std::mt19937 rng(seed);
    std::vector<uint32_t> toks{kByteEot};
    const std::string words[] = {"the ", "lord ", "said ", "unto ", "them ", "and "};
    while (toks.size() < n)
      for (char c : words[rng() % 6]) toks.push_back(static_cast<unsigned char>(c));
    toks.resize(n);
    write_shard(dir / name, toks, kByteVocab);
  }
  // A tiny config (2 layers, width 32, 16 positions) training on train.bin.
  void config(const std::string& name, const std::string& extra = "", bool with_model = true) {
    std::ofstream(dir / name) << (with_model ? "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 16\n"
                                               "vocab_size = 257\n"
                                             : "")
                              << "[train]\nsteps = 2\nbatch_size = 4\nlr = 3e-3\neval_every = 0\n"
                              << "[data]\ntrain = \"" << (dir / "train.bin").string() << "\"\n"
                              << "[run]\nthreads = 2\n"
                              << extra;
  }
  std::string out(const std::string& name) const { return " --set run.out_dir=" + (dir / name).string(); }
};

// ---------------------------------------------------------------- item 2: size arithmetic
// (Config keys out of range: test_config.cpp, InputsSizes.ConfigKeysOutOfRangeAreNamed.)

TEST(InputsSizes, ParameterCountsNeverWrap) {
  // n_embd = 2^20, n_layer = 1398099, seq_len = 11184712: the size_t count wrapped to a small
  // number and the model segfaulted in its initialisation.
  const std::string msg = error_of([] { gpt2_num_params(shape(1398099, 1, 1 << 20, 11184712, 257)); });
  EXPECT_NE(msg.find("2^40"), std::string::npos) << msg;
  EXPECT_NE(msg.find("n_layer"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { gpt2_param_layout(shape(1398099, 1, 1 << 20, 11184712, 257)); }).find("2^40"),
            std::string::npos);
  // In range: the exact count of GPT-2 124M (vocabulary padded to 50304).
  EXPECT_EQ(gpt2_num_params(shape(12, 12, 768, 1024, 50257)), 124475904u);
}

TEST(InputsSizes, ModelsLargerThanMemoryAreRefusedNamingTheKeys) {
  if (physical_memory_bytes() == 0 || physical_memory_bytes() >= (uint64_t{1} << 40))
    GTEST_SKIP() << "needs a machine with less than 1 TiB of memory";
  // 2^38 parameters: under the 2^40 limit, but 1 TiB of fp32 weights (a bad_alloc before).
  auto msg = error_of([] { load_config("", {"model.vocab_size=16777216", "model.n_embd=16384", "model.n_head=1"}); });
  EXPECT_NE(msg.find("GiB of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.vocab_size = 16777216"), std::string::npos) << msg;
  // Training state and activations beyond memory (weights alone fit): train refuses, naming keys.
  const uint64_t gib = physical_memory_bytes() >> 30;
  Config big = load_config("", {"model.n_layer=1", "model.n_embd=4096", "model.n_head=1", "model.seq_len=4096",
                                "model.vocab_size=" + std::to_string(std::min<uint64_t>(gib << 15, 16777216))});  // weights: half the memory
  msg = error_of([&] { check_training_memory(big); });
  EXPECT_NE(msg.find("train.batch_size"), std::string::npos) << msg;
  big.run.device = Device::cuda;  // device memory is the device's business
  EXPECT_EQ(error_of([&] { check_training_memory(big); }), "no error");
  nlohmann::json j = hf_config_json(shape(2, 1, 16384, 16, 16777216));
  msg = error_of([&] { gpt2_config_from_hf(j, "x/config.json"); });
  EXPECT_NE(msg.find("x/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key 'vocab_size' = 16777216"), std::string::npos) << msg;
}

TEST_F(Inputs, LlmcHeaderWhoseSizeWrapsIsRefused) {
  // L=1398096, C=2^19, maxT=15379055, V=Vp=128: 1024 + 4 * (parameter count) wraps to exactly
  // 2098176 bytes, so the old size check passed and read_params ran far past its buffer.
  int32_t h[256] = {};
  h[0] = 20240326, h[1] = 3, h[2] = 15379055, h[3] = 128, h[4] = 1398096, h[5] = 1, h[6] = 1 << 19,
  h[7] = 128;
  {
    std::ofstream f(dir / "evil.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(h), sizeof(h));
  }
  fs::resize_file(dir / "evil.bin", 2098176);
  auto msg = error_of([&] { load_llmc_bin(dir / "evil.bin"); });
  EXPECT_NE(msg.find("evil.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("header[4] (num_layers) = 1398096"), std::string::npos) << msg;
  msg = error_of([&] { load_model_config(dir / "evil.bin"); });
  EXPECT_NE(msg.find("2^40"), std::string::npos) << msg;
  // A field out of range is named too.
  h[2] = -7;
  {
    std::ofstream f(dir / "neg.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(h), sizeof(h));
  }
  msg = error_of([&] { load_llmc_bin(dir / "neg.bin"); });
  EXPECT_NE(msg.find("header[2] (maxT) = -7 is out of range"), std::string::npos) << msg;
}

TEST_F(Inputs, ConfigJsonShapesAreBounded) {
  nlohmann::json j = hf_config_json(shape(2, 2, 32, 16, 257));
  j["n_layer"] = 1 << 30;
  j["n_embd"] = 1 << 24;
  j["n_head"] = 1;
  auto msg = error_of([&] { gpt2_config_from_hf(j, dir / "config.json"); });
  EXPECT_NE(msg.find("key 'n_layer' = 1073741824 is out of range"), std::string::npos) << msg;
  j["n_layer"] = 1 << 20;
  msg = error_of([&] { gpt2_config_from_hf(j, dir / "config.json"); });
  EXPECT_NE(msg.find("2^40"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key 'n_layer' = 1048576"), std::string::npos) << msg;
}

TEST_F(Inputs, SafetensorsShapesThatOverflowAreRefused) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,0]}})";
  const uint64_t len = header.size();
  {
    std::ofstream f(dir / "x.safetensors", std::ios::binary);
    f.write(reinterpret_cast<const char*>(&len), 8);
    f << header;
  }
  auto msg = error_of([&] { SafeTensors st(dir / "x.safetensors"); });
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("overflow"), std::string::npos) << msg;
}

// ---------------------------------------------------------------- item 8: --config DIR

TEST_F(Inputs, AConfigThatIsADirectoryIsRefused) {
  auto msg = error_of([&] { load_config(dir.string()); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
  config("cfg.toml");
  auto r = ouro("train --config " + dir.string() + out("r"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("is a directory, not a TOML config file"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "r"));
}

// ---------------------------------------------------------------- item 13: train --init DIR
// (load_config's side, the model keys taken from the --init model, is a config unit: test_config.cpp.)

TEST_F(Inputs, TrainInitTakesTheShapeFromTheCheckpoint) {
  shard("train.bin", 6000);
  config("cfg.toml");
  ASSERT_EQ(ouro("train --config " + (dir / "cfg.toml").string() + out("a")).code, 0);
  const auto ck = latest_checkpoint(dir / "a");
  ASSERT_TRUE(ck);
  // No [model] section at all (the defaults are another shape): the checkpoint's is used.
  config("bare.toml", "", /*with_model=*/false);
  auto r = ouro("train --config " + (dir / "bare.toml").string() + out("b") + " --init " + ck->string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("2 layers, 2 heads, 32 channels"), std::string::npos) << r.out;
  // A config that sets another shape is refused, naming the key.
  r = ouro("train --config " + (dir / "bare.toml").string() + out("c") + " --init " + ck->string() +
           " --set model.n_layer=3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("key 'model.n_layer' = 3"), std::string::npos) << r.out;
}

// ---------------------------------------------------------------- item 14: eval

TEST_F(Inputs, EvalScoresEveryWindowIncludingAPartialLastBatch) {
  shard("val.bin", 16 * 11 + 1);  // 11 windows of 16: two batches of 4 and a last one of 3
  const GPT2Config cfg = shape(2, 2, 32, 16, 257);
  auto ops = make_ops("cpu");
  GPT2 model(cfg, *ops, 4, 16);
  model.set_params(gpt2_init_params(cfg, 7));
  const EvalResult r = evaluate(model, (dir / "val.bin").string(), 4, 16, 0);
  EXPECT_EQ(r.tokens, 11u * 16);
  // Reference: each window alone, in file order.
  DataLoader one((dir / "val.bin").string(), 1, 16, 0, 1, 0, false);
  double sum = 0;
  std::vector<double> per_window;
  std::vector<int> x(16), y(16);
  for (uint64_t w = 0; w < 11; ++w) {
    one.read_window(w, x.data(), y.data());
    per_window.push_back(model.forward(x.data(), y.data(), 1, 16));
    sum += per_window.back();
  }
  std::sort(per_window.rbegin(), per_window.rend());
  EXPECT_NEAR(r.loss, sum / 11, 1e-5);
  EXPECT_NEAR(r.tail_loss, (per_window[0] + per_window[1]) / 2, 1e-5);  // ceil(0.1 * 11) = 2 windows
  // batches > 0 keeps its meaning: that many full batches.
  EXPECT_EQ(evaluate(model, (dir / "val.bin").string(), 4, 16, 2).tokens, 8u * 16);
}

TEST_F(Inputs, EvalTakesTrainKeysAndRefusesBadValues) {
  shard("train.bin", 6000);
  shard("val.bin", 16 * 11 + 1);
  config("cfg.toml");
  ASSERT_EQ(ouro("train --config " + (dir / "cfg.toml").string() + out("a")).code, 0);
  const auto ck = latest_checkpoint(dir / "a");
  ASSERT_TRUE(ck);
  const std::string base = "eval --init " + ck->string() + " --data " + (dir / "val.bin").string() + " --json";
  auto r = ouro(base + " --set train.batch_size=4 --set train.seq_len=16 --set run.threads=1 --set train.lr=1");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["tokens"].get<size_t>(), 11u * 16);
  // The same figure with another batch size: every window counts, whatever the batch.
  r = ouro(base + " --set train.batch_size=5");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(r.out.substr(r.out.find('{')))["loss"].get<double>(), j["loss"].get<double>(), 1e-5);
  // Keys that make no sense are refused as train refuses them.
  r = ouro(base + " --set train.seq_len=99");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("train.seq_len"), std::string::npos) << r.out;
  r = ouro(base + " --set model.n_layer=7");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("model.n_layer"), std::string::npos) << r.out;
  // item 12: negative --seq and --batches.
  for (const char* bad : {" --seq -5", " --batches -3", " --seq 0"}) {
    r = ouro(base + bad);
    EXPECT_NE(r.code, 0) << bad;
    EXPECT_NE(r.out.find("must be"), std::string::npos) << bad << ": " << r.out;
  }
}

TEST_F(Inputs, EvalNamesTheShardAndOffsetOfAnOutOfVocabularyToken) {
  std::vector<uint32_t> toks(200, 3);
  toks[77] = 300;  // a 301-token vocabulary's shard, evaluated by a 257-token model
  write_shard(dir / "oov.bin", toks, 301);
  const GPT2Config cfg = shape(1, 1, 8, 16, 257);
  auto ops = make_ops("cpu");
  GPT2 model(cfg, *ops, 2, 16);
  model.set_params(gpt2_init_params(cfg, 1));
  const auto msg = error_of([&] { evaluate(model, (dir / "oov.bin").string(), 2, 16, 0); });
  EXPECT_NE(msg.find("oov.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("token 300 at byte offset 1178 (token index 77)"), std::string::npos) << msg;
}

TEST_F(Inputs, DataShuffleFalseReadsWindowsInFileOrder) {
  shard("train.bin", 6000);
  config("cfg.toml");
  ASSERT_EQ(ouro("train --config " + (dir / "cfg.toml").string() + out("a")).code, 0);
  const auto ck = latest_checkpoint(dir / "a");
  ASSERT_TRUE(ck);
  EXPECT_TRUE(load_config((dir / "cfg.toml").string()).data.shuffle);  // the default
  // Step 0 of an unshuffled run from ck sees windows 0..3: eval of ck on the first batch.
  auto r = ouro("train --config " + (dir / "cfg.toml").string() + out("b") + " --init " + ck->string() +
                " --set train.steps=1 --set data.shuffle=false");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto losses = metric_values(dir / "b", "loss");
  ASSERT_EQ(losses.size(), 1u);
  r = ouro("eval --init " + ck->string() + " --data " + (dir / "train.bin").string() +
           " --batches 1 --set train.batch_size=4 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const double first = nlohmann::json::parse(r.out.substr(r.out.find('{')))["loss"].get<double>();
  EXPECT_NEAR(losses[0], first, 1e-4);
  // The default shuffles: its first batch is another.
  r = ouro("train --config " + (dir / "cfg.toml").string() + out("c") + " --init " + ck->string() +
           " --set train.steps=1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_GT(std::abs(metric_values(dir / "c", "loss").at(0) - first), 1e-4);
}

// ---------------------------------------------------------------- items 11, 12: messages

TEST_F(Inputs, RunOutDirEmptyOrUnderAFileIsNamed) {
  auto msg = error_of([] { load_config("", {"run.out_dir="}); });
  EXPECT_NE(msg.find("run.out_dir"), std::string::npos) << msg;
  std::ofstream(dir / "file") << "x";
  msg = error_of([&] { io::create_dirs(dir / "file" / "run", "run.out_dir 'x'"); });
  EXPECT_NE(msg.find("'" + (dir / "file").string() + "' exists and is not a directory"), std::string::npos) << msg;
  shard("train.bin", 6000);
  config("cfg.toml");
  auto r = ouro("train --config " + (dir / "cfg.toml").string() + " --set run.out_dir=" + (dir / "file" / "run").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("run.out_dir"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("is not a directory"), std::string::npos) << r.out;
  r = ouro("train --config " + (dir / "cfg.toml").string() + " --set run.out_dir=");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("run.out_dir"), std::string::npos) << r.out;
}

TEST_F(Inputs, SampleRefusesBadNumbersAndSaysWhenItCaps) {
  shard("train.bin", 6000);
  config("cfg.toml");
  ASSERT_EQ(ouro("train --config " + (dir / "cfg.toml").string() + out("a")).code, 0);
  const auto ck = latest_checkpoint(dir / "a");
  ASSERT_TRUE(ck);
  const std::string base = "sample --init " + ck->string() + " --prompt 'the lord'";
  for (const char* bad : {" -n 0", " -n -4", " -t nan", " -t inf", " --top-p nan", " --top-p 0", " --top-p 1.5"}) {
    auto r = ouro(base + bad);
    EXPECT_NE(r.code, 0) << bad;
    EXPECT_NE(r.out.find("must be"), std::string::npos) << bad << ": " << r.out;
    EXPECT_LT(r.out.size(), 400u) << bad << ": " << r.out;  // no 300-digit range
  }
  auto r = ouro(base + " -n 1000000 --seed 1");
  ASSERT_EQ(r.code, 0) << r.out;
  // 16 positions, the prompt <|endoftext|> + 8 bytes: 16 - 9 + 1 = 8 tokens at most.
  EXPECT_NE(r.out.find("-n 1000000 capped to 8 token(s)"), std::string::npos) << r.out;
}

TEST(InputsSample, RoomMatchesWhatGenerateReturns) {
  const GPT2Config cfg = shape(1, 1, 8, 12, 257);
  auto ops = make_ops("cpu");
  GPT2 model(cfg, *ops, 1, cfg.seq_len);
  model.set_params(gpt2_init_params(cfg, 3));
  for (int p : {1, 5, 11, 12, 30}) {
    SampleOptions so;
    so.max_tokens = 1000;
    so.temperature = 0;
    auto out = generate(model, std::vector<int>(p, 65), so);
    EXPECT_EQ(static_cast<int>(out.size()), sample_room(cfg.seq_len, p)) << "prompt " << p;
  }
}

// 70,000 shards once failed on vm.max_map_count (every shard was mapped for the run's life).
// Shards are now read with pread, so a process whose memory maps are all used up still opens
// and reads them.
TEST_F(Inputs, ShardsNeedNoMemoryMapsSoManyShardsOpen) {
  shard("train.bin", 100);
  long limit = 0;
  std::ifstream("/proc/sys/vm/max_map_count") >> limit;
  if (limit <= 0 || limit > 300000) GTEST_SKIP() << "vm.max_map_count " << limit;
  // Use up the process's mappings with single pages of alternating protection (so the kernel
  // cannot merge neighbours), as 70,000 mapped shards would, then open more shards.
  std::vector<void*> maps;
  for (long i = 0; i < limit + 10; ++i) {
    void* p = ::mmap(nullptr, 4096, (i % 2) ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) break;
    maps.push_back(p);
  }
  // Free a handful so the test's own small allocations can map what they need.
  for (int i = 0; i < 4 && !maps.empty(); ++i) ::munmap(maps.back(), 4096), maps.pop_back();
  std::vector<std::unique_ptr<Shard>> open;
  std::string msg = "no error";
  std::vector<uint32_t> got(10);
  for (int i = 0; i < 64 && msg == "no error"; ++i)
    msg = error_of([&] {
      open.push_back(std::make_unique<Shard>(dir / "train.bin"));
      open.back()->read(0, got.size(), got.data());
      open.back()->release();
    });
  const size_t opened = open.size();
  open.clear();
  for (void* p : maps) ::munmap(p, 4096);
  EXPECT_EQ(msg, "no error");
  EXPECT_EQ(opened, 64u);
}

}  // namespace
