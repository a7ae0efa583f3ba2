// End to end through the `ouro` binary (non-finite steps in-process, through a communicator that
// turns chosen losses into NaN): exact resume, non-finite steps, bad input, eval/sample.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/train.h"
#include "common/log.h"
#include "fault_injection.h"
#include "test_support.h"

#include "ouro/checkpoint.h"
#include "ouro/comm.h"
#include "ouro/data.h"
#include "train/lr_schedule.h"
#include "ouro/error.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace ouro::test;

namespace {

CmdResult run_ouro(const std::string& args, const fs::path& dir) {
  return run_shell(std::string(OURO_BIN) + " " + args, dir / "cmd.log");
}

class TrainEndToEnd : public ScratchDirTest {
 protected:
  void SetUp() override {
    make_dir("ouro_test_train_");
    // Text-like bytes with structure the model can learn a little of.
    std::mt19937 rng(5);
    std::vector<uint32_t> toks{ouro::kByteEot};
    const std::string words[] = {"the ", "lord ", "said ", "unto ", "them ", "and ", "behold, "};
    while (toks.size() < 30000)
      for (char c : words[rng() % 7]) toks.push_back(static_cast<unsigned char>(c));
    ouro::write_shard(dir / "train.bin", toks, ouro::kByteVocab);
    toks.resize(3000);
    ouro::write_shard(dir / "val.bin", toks, ouro::kByteVocab);
    std::ofstream(dir / "cfg.toml") << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 16\n"
                                       "vocab_size = 257\n[train]\nsteps = 8\nbatch_size = 4\n"
                                       "grad_accum = 2\nlr = 3e-3\nwarmup_steps = 2\neval_every = 4\n"
                                       "eval_batches = 2\n[data]\ntrain = \"" + (dir / "train.bin").string() +
                                       "\"\nval = \"" + (dir / "val.bin").string() + "\"\n[run]\nthreads = 2\n";
  }
  std::string cfg() const { return "--config " + (dir / "cfg.toml").string(); }
  std::string out(const std::string& name) const { return " --set run.out_dir=" + (dir / name).string(); }

  std::vector<nlohmann::json> metrics(const std::string& name) const {
    std::vector<nlohmann::json> v;
    std::ifstream in(dir / name / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
    return v;
  }
  std::vector<double> step_losses(const std::string& name) const { return metric_values(dir / name, "loss"); }

  // `ouro train` with the config and `sets`, in this process, its communicator wrapped so that
  // the 0-based steps `nan_steps` see a NaN mean loss; out: the run's train.log and its error.
  CmdResult train_with_nan_losses(const std::string& name, std::set<int64_t> nan_steps,
                                  std::vector<std::string> sets = {}) {
    sets.push_back("run.out_dir=" + (dir / name).string());
    ouro::test::CommFault fault;
    fault.nan_loss_steps = std::move(nan_steps);
    ouro::TrainHooks hooks;
    hooks.wrap_comm = ouro::test::with_fault(fault);
    auto& sinks = ouro::logger()->sinks();
    const size_t console_sinks = sinks.size();
    CmdResult r;
    try {
      ouro::train(ouro::load_config((dir / "cfg.toml").string(), sets), {}, hooks);
      r.code = 0;
    } catch (const ouro::Error& e) {
      r.code = 1;
      r.out = e.what();
    }
    sinks.resize(console_sinks);  // the run's train.log sink
    r.out = read_file(dir / name / "train.log") + r.out;
    return r;
  }
};

}  // namespace

TEST_F(TrainEndToEnd, ResumeGivesBitwiseTheSameLossesAndWeights) {
  auto a = run_ouro("train " + cfg() + out("straight"), dir);
  ASSERT_EQ(a.code, 0) << a.out;
  auto b1 = run_ouro("train " + cfg() + out("split") + " --stop-at 4", dir);
  ASSERT_EQ(b1.code, 0) << b1.out;
  EXPECT_TRUE(fs::exists(dir / "split/checkpoints/step_000004/optimizer.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "split/checkpoints/step_000008"));
  auto b2 = run_ouro("train " + cfg() + out("split") + " --resume", dir);
  ASSERT_EQ(b2.code, 0) << b2.out;
  auto la = step_losses("straight"), lb = step_losses("split");
  ASSERT_EQ(la.size(), 8u);
  ASSERT_EQ(lb.size(), 8u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;  // bitwise
  EXPECT_LT(la.back(), la.front());
  EXPECT_EQ(read_file(dir / "straight/checkpoints/step_000008/model.safetensors"),
            read_file(dir / "split/checkpoints/step_000008/model.safetensors"));
  EXPECT_EQ(read_file(dir / "straight/checkpoints/step_000008/optimizer.safetensors"),
            read_file(dir / "split/checkpoints/step_000008/optimizer.safetensors"));
  // Every step record carries the fields users plot.
  for (auto& j : metrics("straight")) {
    if (!j.contains("loss")) continue;
    for (const char* k : {"step", "lr", "grad_norm", "tokens_per_s", "elapsed_s"}) {
      EXPECT_TRUE(j.contains(k)) << k;
    }
  }
  int evals = 0;
  for (auto& j : metrics("straight")) evals += j.contains("val_loss");
  EXPECT_EQ(evals, 2);
  EXPECT_TRUE(fs::exists(dir / "straight/train.log"));
}

TEST_F(TrainEndToEnd, AFreshRunRefusesAnOutDirWithCheckpoints) {
  ASSERT_EQ(run_ouro("train " + cfg() + out("twice") + " --stop-at 2", dir).code, 0);
  auto r = run_ouro("train " + cfg() + out("twice"), dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--resume"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "twice/checkpoints/step_000002"));
}

TEST_F(TrainEndToEnd, ResumeRefusesAChangedBatch) {
  ASSERT_EQ(run_ouro("train " + cfg() + out("r") + " --stop-at 2", dir).code, 0);
  auto r = run_ouro("train " + cfg() + out("r") + " --resume --set train.batch_size=2", dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("train.batch_size"), std::string::npos) << r.out;
}

TEST_F(TrainEndToEnd, NonFiniteStepIsSkippedAndReported) {
  auto r = train_with_nan_losses("nan", {2});
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("non-finite"), std::string::npos) << r.out;
  auto m = metrics("nan");
  bool skipped = false;
  for (auto& j : m)
    if (j.value("skipped", false)) skipped = j["step"] == 3;
  EXPECT_TRUE(skipped);
  auto l = step_losses("nan");
  EXPECT_EQ(l.size(), 7u);
  for (double x : l) EXPECT_TRUE(std::isfinite(x));
}

TEST_F(TrainEndToEnd, TooManyBadStepsAbortWithACheckpointKept) {
  auto r = train_with_nan_losses("abort", {2, 3}, {"train.max_bad_steps=2"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("aborting"), std::string::npos) << r.out;
  auto ck = ouro::latest_checkpoint(dir / "abort");
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->filename(), "step_000004");
  // The kept checkpoint holds the weights after the 2 good updates and loads cleanly.
  auto loaded = ouro::load_checkpoint(*ck);
  for (float x : loaded.model.params) ASSERT_TRUE(std::isfinite(x));
  EXPECT_EQ(loaded.state["opt_steps"], 2);
}

TEST_F(TrainEndToEnd, BadInputGivesClearErrors) {
  auto r = run_ouro("train --config " + (dir / "missing.toml").string(), dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("missing.toml"), std::string::npos) << r.out;
  r = run_ouro("train " + cfg() + " --set train.bogus=1", dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("train.bogus"), std::string::npos) << r.out;
  // A shard with a bad magic number.
  auto bad = dir / "bad.bin";
  {
    std::ofstream f(bad, std::ios::binary);
    std::vector<int32_t> h(256, 0);
    h[0] = 12345;
    f.write(reinterpret_cast<const char*>(h.data()), 1024);
  }
  r = run_ouro("train " + cfg() + out("bad") + " --set data.train=" + bad.string(), dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(bad.string()), std::string::npos) << r.out;
  // A truncated shard: the header promises more tokens than the file holds.
  auto trunc = dir / "trunc.bin";
  fs::copy_file(dir / "train.bin", trunc);
  fs::resize_file(trunc, fs::file_size(trunc) - 100);
  r = run_ouro("eval --init " + (fs::path(OURO_FIXTURES) / "gpt2_tiny").string() + " --data " + trunc.string(), dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(trunc.string()), std::string::npos) << r.out;
  // --init whose shape differs from the config.
  r = run_ouro("train " + cfg() + out("init") + " --init " + (fs::path(OURO_FIXTURES) / "gpt2_tiny").string(), dir);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("differs"), std::string::npos) << r.out;
}

TEST_F(TrainEndToEnd, ProfileStepsBracketStepsWithoutChangingThem) {
  // The capture range only calls Ops::profiler_start/stop (no-ops off the GPU): same losses.
  ASSERT_EQ(run_ouro("train " + cfg() + out("plain"), dir).code, 0);
  auto r = run_ouro("train " + cfg() + out("profiled") + " --profile-steps 2:5", dir);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(step_losses("plain"), step_losses("profiled"));
  for (const char* bad : {"5:2", "3", "a:4", "-1:2"}) {
    r = run_ouro("train " + cfg() + out("bad_profile") + " --profile-steps " + bad, dir);
    EXPECT_NE(r.code, 0) << bad;
    EXPECT_NE(r.out.find("--profile-steps"), std::string::npos) << r.out;
  }
}

TEST_F(TrainEndToEnd, EvalJsonAndSampleAndInit) {
  ASSERT_EQ(run_ouro("train " + cfg() + out("e"), dir).code, 0);
  auto ck = ouro::latest_checkpoint(dir / "e");
  ASSERT_TRUE(ck);
  auto r = run_ouro("eval --init " + ck->string() + " --data " + (dir / "val.bin").string() + " --batch 3 --json", dir);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_GT(j["loss"].get<double>(), 0.5);
  EXPECT_LT(j["loss"].get<double>(), std::log(257.0) + 0.5);
  EXPECT_EQ(j["tokens"].get<size_t>(), 2999u / 16 * 16);  // every window, the last batch partial
  // -n 8: all that 16 positions leave after <|endoftext|> + 8 bytes (more is capped with a warning).
  r = run_ouro("sample --init " + ck->string() + " --prompt 'the lord' -n 8 --seed 3", dir);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("the lord", 0), 0u) << r.out;
  auto r2 = run_ouro("sample --init " + ck->string() + " --prompt 'the lord' -n 8 --seed 3", dir);
  EXPECT_EQ(r.out, r2.out);  // same seed, same text
  // A run started from that checkpoint with --init continues from its weights.
  r = run_ouro("train " + cfg() + out("init") + " --init " + ck->string() + " --set train.steps=1", dir);
  ASSERT_EQ(r.code, 0) << r.out;
  auto l0 = step_losses("init");
  ASSERT_EQ(l0.size(), 1u);
  EXPECT_LT(l0[0], step_losses("e").front());
}

TEST_F(TrainEndToEnd, EverySubcommandHasHelp) {
  for (const char* sub : {"prepare", "train", "eval", "sample", "bench", "bench train"}) {
    auto r = run_ouro(std::string(sub) + " --help", dir);
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("--"), std::string::npos) << sub;
  }
}

TEST_F(TrainEndToEnd, SigtermCheckpointsAndTheRunResumesExactly) {
  // A long schedule interrupted early: the interrupted + resumed run must reproduce the
  // uninterrupted one step for step, wherever the signal landed.
  const std::string longrun = cfg() + " --set train.steps=100000 --set train.eval_every=0";
  const auto metrics_file = dir / "sig" / "metrics.jsonl";
  std::string script = "(" + std::string(OURO_BIN) + " train " + longrun + out("sig") + " > " +
                       (dir / "sig.log").string() + " 2>&1 & pid=$!; " + "while kill -0 $pid 2>/dev/null && [ ! -s " +
                       metrics_file.string() + " ]; do sleep 0.02; done; sleep 0.2; kill -TERM $pid; wait $pid)";
  // Interrupted after checkpointing: 128 + SIGTERM, not 0 (README, Usage).
  const int st = std::system(("bash -c '" + script + "'").c_str());
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 143) << st;
  auto ck = ouro::latest_checkpoint(dir / "sig");
  ASSERT_TRUE(ck.has_value());
  const int64_t stopped = ouro::load_checkpoint(*ck).state["step"].get<int64_t>();
  ASSERT_GT(stopped, 0);
  ASSERT_LT(stopped, 100000);
  const int64_t until = stopped + 5;
  auto r = run_ouro("train " + longrun + out("sig") + " --resume --stop-at " + std::to_string(until), dir);
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_ouro("train " + longrun + out("ref") + " --stop-at " + std::to_string(until), dir);
  ASSERT_EQ(r.code, 0) << r.out;
  auto a = step_losses("sig"), b = step_losses("ref");
  ASSERT_EQ(b.size(), static_cast<size_t>(until));
  // The interrupted run may log a step after its last checkpoint only if it checkpointed it.
  ASSERT_EQ(a.size(), static_cast<size_t>(until));
  EXPECT_EQ(a, b);
}

TEST_F(TrainEndToEnd, InitFromATransformersDirectoryKeepsItsWeights) {
  const auto hf = fs::path(OURO_FIXTURES) / "gpt2_tiny";
  const std::string shape =
      " --set model.n_layer=2 --set model.n_head=4 --set model.n_embd=48 --set model.seq_len=24"
      " --set model.vocab_size=371";
  auto r = run_ouro("train " + cfg() + shape + out("hf") + " --init " + hf.string() + " --stop-at 0", dir);
  ASSERT_EQ(r.code, 0) << r.out;
  auto ck = ouro::latest_checkpoint(dir / "hf");
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ouro::load_model(*ck).params, ouro::load_model(hf).params);  // bitwise
  r = run_ouro("train " + cfg() + shape + out("hf2") + " --init " + hf.string() + " --set train.steps=3", dir);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(step_losses("hf2").size(), 3u);
}

// The learning-rate schedule and the gradient clip coefficient (src/train/lr_schedule.h).
namespace ouro {

TEST(LrSchedule, WarmupCosineLinearWsdConstant) {
  LrSchedule s{1.0, 0.1, 0.2, 10, 110, LrScheduleKind::cosine};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  s.kind = LrScheduleKind::linear;
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  s.kind = LrScheduleKind::wsd;  // decays over the last 22 steps (0.2 * 110)
  EXPECT_DOUBLE_EQ(s.at(87), 1.0);
  EXPECT_NEAR(s.at(109), 0.1, 1e-12);
  EXPECT_NEAR(s.at(98), 1.0 - 0.9 * 11.0 / 22.0, 1e-12);
  s.kind = LrScheduleKind::constant;
  EXPECT_DOUBLE_EQ(s.at(100), 1.0);
  EXPECT_FLOAT_EQ(clip_coefficient(2.0, 1.0), static_cast<float>(1.0 / (2.0 + 1e-6)));
  EXPECT_FLOAT_EQ(clip_coefficient(0.5, 1.0), 1.0f);
  EXPECT_FLOAT_EQ(clip_coefficient(5.0, 0.0), 1.0f);
}

}  // namespace ouro

namespace {

// One rank whose communicator fails inside the k-th all-reduce of a step's mean loss, as a
// dead peer makes a real one fail (the watchdog's error): everything else is a one-rank
// communicator's no-op.
class FailingComm final : public ouro::Communicator {
 public:
  explicit FailingComm(int fail_at) : fail_at_(fail_at) {}
  std::string name() const override { return "failing"; }
  int rank() const override { return 0; }
  int world() const override { return 1; }
  int local_rank() const override { return 0; }
  void all_reduce(float*, size_t, ouro::ReduceOp) override {}
  void all_reduce(double*, size_t n, ouro::ReduceOp op) override {
    if (n == 1 && op == ouro::ReduceOp::Avg && losses_++ == fail_at_)
      throw ouro::Error("all_reduce: peer rank 1 is gone");
  }
  void reduce_scatter(float*, size_t, ouro::ReduceOp) override {}
  void all_gather(float*, size_t) override {}
  void all_gather(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}

 private:
  int fail_at_, losses_ = 0;
};

}  // namespace

// A communicator failure mid-run (injected by a fake: no second process, no signal) ends the
// run with the communicator's error; the periodic checkpoints before it stand, and --resume from
// them finishes with the losses and weights of an uninterrupted run, bitwise.
TEST_F(TrainEndToEnd, ACommunicatorFailureMidRunResumesFromTheLastCheckpointBitwise) {
  auto config = [&](const std::string& name) {
    return ouro::load_config((dir / "cfg.toml").string(),
                             {"run.out_dir=" + (dir / name).string(), "checkpoint.every=2", "train.eval_every=0"});
  };
  {
    ouro::TrainSession straight(config("straight"), {});
    straight.run_until(straight.last_step());
    straight.finish();
  }
  {
    ouro::TrainParts parts;
    parts.comm = std::make_unique<FailingComm>(/*fail_at=*/4);  // inside step 5 (0-based 4)
    ouro::TrainSession broken(config("broken"), {}, std::move(parts));
    try {
      broken.run_until(broken.last_step());
      FAIL() << "the communicator's failure did not end the run";
    } catch (const ouro::Error& e) {
      EXPECT_NE(std::string(e.what()).find("peer rank 1 is gone"), std::string::npos) << e.what();
    }
    EXPECT_EQ(broken.step(), 4);
  }
  EXPECT_TRUE(fs::exists(dir / "broken/checkpoints/step_000004/optimizer.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "broken/checkpoints/step_000006"));
  {
    ouro::TrainOptions resume;
    resume.resume = true;
    ouro::TrainSession again(config("broken"), resume);
    EXPECT_EQ(again.step(), 4);
    again.run_until(again.last_step());
    again.finish();
  }
  EXPECT_EQ(step_losses("straight"), step_losses("broken"));
  EXPECT_EQ(read_file(dir / "straight/checkpoints/step_000008/model.safetensors"),
            read_file(dir / "broken/checkpoints/step_000008/model.safetensors"));
  EXPECT_EQ(read_file(dir / "straight/checkpoints/step_000008/optimizer.safetensors"),
            read_file(dir / "broken/checkpoints/step_000008/optimizer.safetensors"));
}
