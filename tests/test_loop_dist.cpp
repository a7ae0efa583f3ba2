// The self-improvement loop across ranks on the cpu backend under `mpirun -np 2`: prompts are
// sharded, candidates gathered, and every rank selects the same samples into the same buffer.
// A 2-rank run with batch B per rank must match a 1-rank run with batch 2B.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "ouro/checkpoint.h"
#include "ouro/data.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ouro::test;

namespace {

std::vector<nlohmann::json> jsonl(const fs::path& p) {
  std::vector<nlohmann::json> v;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

void expect_close(double a, double b, double rel, const std::string& what) {
  EXPECT_LE(std::abs(a - b), rel * std::abs(b)) << what << ": " << a << " vs " << b;
}

class LoopDist : public ScratchDirTest {
 protected:
  void SetUp() override {
    make_dir("ouro_test_loop_dist_");
    std::mt19937 rng(7);
    std::vector<uint32_t> toks{ouro::kByteEot};
    const std::string words[] = {"in ", "the ", "beginning ", "was ", "word ", "and ", "light, "};
    while (toks.size() < 30000)
      for (char c : words[rng() % 7]) toks.push_back(static_cast<unsigned char>(c));
    ouro::write_shard(dir / "train.bin", toks, ouro::kByteVocab);
    toks.resize(4000);
    ouro::write_shard(dir / "val.bin", toks, ouro::kByteVocab);
    // The loop starts at step 0 so that round 0 generates from the same weights on one rank and
    // on two (data-parallel gradients equal one rank's to rounding only, not bitwise).
    std::ofstream(dir / "cfg.toml")
        << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 32\nvocab_size = 257\n"
           "[train]\nsteps = 8\nbatch_size = 4\nlr = 3e-3\nwarmup_steps = 2\neval_every = 0\n"
           "eval_batches = 2\n[data]\ntrain = \"" + (dir / "train.bin").string() +
               "\"\nval = \"" + (dir / "val.bin").string() +
               "\"\n[run]\nthreads = 1\n[dist]\ntimeout_s = 30\n"
               "[loop]\nrounds = 2\nstart_step = 0\nround_steps = 4\nprompts = 5\nk = 3\n"
               "prompt_tokens = 8\nmax_new_tokens = 8\nscorer = \"ref_logprob\"\nref = \"lagged\"\n"
               "guard_tolerance = 10.0\ndiversity_guard = 0.0\nper_prompt_cap = 3\ndedup_threshold = 1.1\n";
  }
  // np = 0: a plain one-rank process with twice the per-rank batch.
  CmdResult train(int np, const std::string& name, const std::string& extra = "") {
    const std::string launch = np > 0 ? "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " +
                                            std::to_string(np) + " "
                                      : std::string();
    return run_shell(launch + OURO_BIN + " train --config " + (dir / "cfg.toml").string() + " --set run.out_dir=" +
                         (dir / name).string() + (np > 0 ? "" : " --set train.batch_size=8") + " " + extra,
                     dir / (name + ".log"));
  }
  // The two runs agree: counts exactly, figures to rounding, buffers token for token.
  void expect_same_loop(const std::string& one, const std::string& two) {
    auto r1 = jsonl(dir / one / "rounds.jsonl"), r2 = jsonl(dir / two / "rounds.jsonl");
    ASSERT_EQ(r1.size(), 2u);
    ASSERT_EQ(r2.size(), 2u);
    for (size_t r = 0; r < 2; ++r) {
      for (const char* k : {"generated", "accepted", "rejected_by", "buffer_tokens", "syn_rows", "committed", "ref"})
        EXPECT_EQ(r1[r][k], r2[r][k]) << k << " in round " << r;
      expect_close(r2[r]["val_loss"], r1[r]["val_loss"], 1e-6, "val_loss");
      expect_close(r2[r]["flops"]["score"], r1[r]["flops"]["score"], 1e-12, "flops.score");
      expect_close(r2[r]["flops"]["generate"], r1[r]["flops"]["generate"], 1e-12, "flops.generate");
    }
    // Round 0 generated from identical weights: the buffers are bitwise equal.
    EXPECT_EQ(r1[0]["buffer_fingerprint"], r2[0]["buffer_fingerprint"]);
    EXPECT_EQ(r1[0]["ref_score"], r2[0]["ref_score"]);
    // Training: the losses of every step within 1e-6 relative, as the data-parallel tests.
    auto l1 = metric_values(dir / one, "loss"), l2 = metric_values(dir / two, "loss");
    ASSERT_EQ(l1.size(), 8u);
    ASSERT_EQ(l2.size(), l1.size());
    for (size_t i = 0; i < l1.size(); ++i) expect_close(l2[i], l1[i], 1e-6, "loss " + std::to_string(i));
    // The final buffers: the same samples, scores to rounding (round 1 sampled from weights that
    // differ in the last bits).
    auto b1 = ouro::load_checkpoint(dir / one / "checkpoints/step_000008").state["loop"]["buffer"];
    auto b2 = ouro::load_checkpoint(dir / two / "checkpoints/step_000008").state["loop"]["buffer"];
    ASSERT_EQ(b1.size(), b2.size());
    ASSERT_GT(b1.size(), 0u);
    for (size_t i = 0; i < b1.size(); ++i) {
      EXPECT_EQ(b1[i]["tokens"], b2[i]["tokens"]) << i;
      EXPECT_EQ(b1[i]["round"], b2[i]["round"]) << i;
      EXPECT_EQ(b1[i]["uses"], b2[i]["uses"]) << i;
      expect_close(b2[i]["score"], b1[i]["score"], 1e-5, "buffer score " + std::to_string(i));
    }
  }
};

}  // namespace

TEST_F(LoopDist, TwoRanksSelectWhatOneRankSelects) {
  // syn_frac 0.25: 1 of each rank's 4 rows, 2 of the one rank's 8, drawn from the same windows.
  // The real rows differ (each rank's share of the loader's batch ends with the synthetic row):
  // only the replace arm below, whose rows are all synthetic, can match one rank's losses.
  auto two = train(2, "two");
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("data parallel: 2 ranks"), std::string::npos) << two.out;
  // After each round's selection every rank compares its buffer's fingerprint with rank 0's (the
  // run fails otherwise); rank 0 says so once per round (the other ranks log warnings only).
  EXPECT_EQ(count(two.out, "the 2 ranks' replay buffers are bitwise identical"), 2u) << two.out;
  // Only rank 0 writes the records.
  EXPECT_EQ(jsonl(dir / "two/rounds.jsonl").size(), 2u);
  auto one = train(0, "one", "--set loop.syn_frac=0");
  ASSERT_EQ(one.code, 0) << one.out;
  auto two0 = train(2, "two0", "--set loop.syn_frac=0");
  ASSERT_EQ(two0.code, 0) << two0.out;
  expect_same_loop("one", "two0");
}

TEST_F(LoopDist, TheReplaceArmTrainsOnTheSameSyntheticRows) {
  auto one = train(0, "one", "--set loop.mode=replace");
  ASSERT_EQ(one.code, 0) << one.out;
  auto two = train(2, "two", "--set loop.mode=replace");
  ASSERT_EQ(two.code, 0) << two.out;
  auto r = jsonl(dir / "two/rounds.jsonl");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1]["syn_rows"], 8);  // every row of the global batch came from the buffer
  expect_same_loop("one", "two");
}
