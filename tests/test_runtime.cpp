// The run's life under faults and careless use (issue 21): shards changing under a run,
// divergence, incomplete or inconsistent checkpoints, two processes on one run directory,
// inputs checked at start, non-UTF-8 paths, signals. End to end through the `ouro` binary where
// the behaviour is the process's, through the API where it is a reader's.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "test_support.h"

#include "ouro/checkpoint.h"
#include "ouro/config.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "train/checkpoint_state.h"
#include "train/metrics_records.h"

namespace fs = std::filesystem;
using namespace ouro::test;

namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ouro::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ouro::Error";
  return {};
}

class Runtime : public ScratchDirTest {
 protected:
  void SetUp() override {
    make_dir("ouro_test_runtime_");
    std::mt19937 rng(11);
    std::vector<uint32_t> toks{ouro::kByteEot};
    const std::string words[] = {"in ", "the ", "beginning ", "was ", "word ", "and ", "light "};
    while (toks.size() < 30000)
      for (char c : words[rng() % 7]) toks.push_back(static_cast<unsigned char>(c));
    ouro::write_shard(dir / "train.bin", toks, ouro::kByteVocab);
    toks.resize(3000);
    ouro::write_shard(dir / "val.bin", toks, ouro::kByteVocab);
    std::ofstream(dir / "cfg.toml") << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 16\n"
                                       "vocab_size = 257\n[train]\nsteps = 8\nbatch_size = 4\n"
                                       "lr = 3e-3\nwarmup_steps = 2\neval_every = 4\neval_batches = 2\n"
                                       "[data]\ntrain = \"" + (dir / "train.bin").string() +
                                       "\"\nval = \"" + (dir / "val.bin").string() +
                                       "\"\n[run]\nthreads = 1\n[checkpoint]\nevery = 2\nkeep = 2\n";
  }
  std::string cfg() const { return " --config " + (dir / "cfg.toml").string(); }
  std::string out(const std::string& name) const { return " --set run.out_dir=" + (dir / name).string(); }
  CmdResult ouro(const std::string& args) const {
    return run_shell(std::string(OURO_BIN) + " " + args, dir / "cmd.log");
  }
  // A bash script run in `dir` (OURO is the binary); its output captured.
  CmdResult script(const std::string& body) const {
    std::ofstream(dir / "script.sh") << "set -u\ncd '" << dir.string() << "'\nOURO='" << OURO_BIN << "'\n" << body;
    return run_shell("bash " + (dir / "script.sh").string(), dir / "script.log");
  }
  // Starts a long training of run directory `name` in the background, waits until it logged a
  // step; the script continues with $pid.
  std::string start_long_run(const std::string& name, const std::string& extra = "") const {
    return "\"$OURO\" train" + cfg() + out(name) + " --set train.steps=1000000 --set checkpoint.every=0 "
           "--set train.eval_every=0 " + extra + " > bg.log 2>&1 &\npid=$!\n"
           "for i in $(seq 1200); do grep -q '\"step\"' " + (dir / name / "metrics.jsonl").string() +
           " 2>/dev/null && break; sleep 0.05; done\n";
  }
  static bool weights_sane(const fs::path& ckpt) {
    auto m = ouro::load_model(ckpt);
    for (float w : m.params)
      if (!std::isfinite(w) || std::fabs(w) > 1e6) return false;
    return true;
  }
};

}  // namespace

// ---- item 3: a shard changed while in use ----

TEST_F(Runtime, ShardTruncatedInPlaceGivesAnErrorNamingItNotSigbus) {
  ouro::Shard s(dir / "train.bin");
  EXPECT_EQ(s[5], s[5]);
  fs::resize_file(dir / "train.bin", 0);  // in place: the same inode
  const std::string msg = error_of([&] { (void)s[20000]; });
  EXPECT_NE(msg.find("train.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("changed while in use"), std::string::npos) << msg;
}

TEST_F(Runtime, LoaderRefusesAShardRewrittenInPlace) {
  ouro::DataLoader loader((dir / "train.bin").string(), 4, 16, 0, 1, 1, true);
  std::vector<int> x(64), y(64);
  loader.next_batch(x.data(), y.data());
  {  // same size, new content, as `cp other train.bin` over a same-sized file
    std::fstream f(dir / "train.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2000);
    f.write("zzzz", 4);
  }
  // mtime granularity: make sure the change is visible even on a coarse clock.
  fs::last_write_time(dir / "train.bin", fs::last_write_time(dir / "train.bin") + std::chrono::seconds(2));
  const std::string msg = error_of([&] { loader.next_batch(x.data(), y.data()); });
  EXPECT_NE(msg.find("train.bin"), std::string::npos) << msg;
}

TEST_F(Runtime, TrainingFailsNamingATruncatedShardAfterCheckpointing) {
  fs::copy_file(dir / "train.bin", dir / "live.bin");
  auto r = script(start_long_run("t", "--set data.train=live.bin") +
                  ": > live.bin\nwait $pid\necho \"status=$?\"\ncat bg.log\n");
  EXPECT_NE(r.out.find("status=1"), std::string::npos) << r.out;  // an error, not a signal
  EXPECT_NE(r.out.find("live.bin"), std::string::npos) << r.out;
  auto ck = ouro::latest_checkpoint(dir / "t");
  ASSERT_TRUE(ck.has_value()) << r.out;
  EXPECT_NE(r.out.find(ck->string()), std::string::npos) << r.out;
}

// ---- item 4: divergence ----

TEST_F(Runtime, DivergenceNeverCheckpointsExplodedWeightsAndNamesAGoodOne) {
  ASSERT_EQ(ouro("train" + cfg() + out("d") + " --stop-at 4").code, 0);
  // lr 1e20 is finite, so valid: the first update blows the weights up.
  auto r = ouro("train" + cfg() + out("d") + " --resume --set train.lr=1e20 --set train.max_bad_steps=2 "
                "--set checkpoint.every=1 --set checkpoint.keep=1 --set train.eval_every=0");
  EXPECT_EQ(r.code, 1) << r.out;
  auto ck = ouro::latest_checkpoint(dir / "d");
  ASSERT_TRUE(ck.has_value()) << r.out;
  EXPECT_EQ(ck->filename(), "step_000004") << r.out;
  EXPECT_TRUE(weights_sane(*ck));
  EXPECT_NE(r.out.find("checkpoint of step 4"), std::string::npos) << r.out;
  for (const auto& e : fs::directory_iterator(dir / "d" / "checkpoints"))
    if (e.path().filename().string().rfind("step_", 0) == 0) {
      EXPECT_TRUE(weights_sane(e.path())) << e.path();
    }
}

TEST_F(Runtime, EvalOfANonFiniteModelFails) {
  ASSERT_EQ(ouro("train" + cfg() + out("e") + " --stop-at 2").code, 0);
  auto m = ouro::load_model(dir / "e/checkpoints/step_000002");
  m.params[7] = std::nanf("");
  fs::create_directories(dir / "nan");
  ouro::save_hf_model(dir / "nan", m.config, m.params);
  auto r = ouro("eval --init " + (dir / "nan").string() + " --data " + (dir / "val.bin").string() +
                " --batch 2 --batches 2");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("non-finite"), std::string::npos) << r.out;
  // Finite weights whose loss overflows fail too.
  for (auto& w : m.params) w = 1e30f;
  ouro::save_hf_model(dir / "nan", m.config, m.params);
  r = ouro("eval --init " + (dir / "nan").string() + " --data " + (dir / "val.bin").string() +
           " --batch 2 --batches 2");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("non-finite"), std::string::npos) << r.out;
}

TEST_F(Runtime, OptimizerKeysMustFitFp32) {
  for (const char* key : {"lr", "weight_decay", "eps"})
    for (const char* v : {"inf", "nan", "1e300", "-inf", "1e39"}) {
      const std::string set = std::string("train.") + key + "=" + v;
      const std::string msg = error_of([&] { ouro::load_config("", {set}); });
      EXPECT_NE(msg.find(std::string("train.") + key), std::string::npos) << set << ": " << msg;
    }
  const std::string msg = error_of([&] { ouro::load_config("", {"train.eps=1e-50"}); });  // fp32 0
  EXPECT_NE(msg.find("train.eps"), std::string::npos) << msg;
  EXPECT_NO_THROW(ouro::load_config("", {"train.lr=1e20", "train.weight_decay=0"}));
}

// ---- item 5: checkpoint completeness ----

TEST_F(Runtime, ResumeRefusesAnIncompleteCheckpointNamingTheFile) {
  ASSERT_EQ(ouro("train" + cfg() + out("c") + " --stop-at 4").code, 0);
  const fs::path ck = dir / "c/checkpoints/step_000004";
  for (const char* f : {"state.json", "optimizer.safetensors"}) {
    fs::copy_file(ck / f, dir / "saved", fs::copy_options::overwrite_existing);
    fs::remove(ck / f);
    auto r = ouro("train" + cfg() + out("c") + " --resume");
    EXPECT_NE(r.code, 0) << f << ": " << r.out;
    EXPECT_NE(r.out.find((ck / f).string()), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(dir / "c/checkpoints/step_000006")) << f;  // nothing trained
    fs::copy_file(dir / "saved", ck / f);
  }
}

TEST_F(Runtime, ResumeChecksStateJsonTypesAndStep) {
  ASSERT_EQ(ouro("train" + cfg() + out("s") + " --stop-at 4").code, 0);
  const fs::path file = dir / "s/checkpoints/step_000004/state.json";
  const std::string good = read_file(file);
  struct Case { const char* key; nlohmann::json value; const char* expect; };
  const Case cases[] = {{"step", 5.5, "'step'"}, {"step", -100, "'step'"}, {"step", 1e15, "'step'"},
                        {"step", int64_t{1000000000000000}, "step_000004"}, {"step", "4", "'step'"},
                        {"opt_steps", nlohmann::json::array(), "'opt_steps'"}, {"config", 3, "'config'"},
                        {"elapsed_s", "x", "'elapsed_s'"}, {"loader", "x", "'loader'"}};
  for (const auto& c : cases) {
    auto j = nlohmann::json::parse(good);
    j[c.key] = c.value;
    std::ofstream(file) << j.dump();
    auto r = ouro("train" + cfg() + out("s") + " --resume");
    EXPECT_NE(r.code, 0) << c.key << "=" << c.value.dump();
    EXPECT_NE(r.out.find(file.string()), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("type_error"), std::string::npos) << r.out;
  }
  std::ofstream(file) << good;
  EXPECT_EQ(ouro("train" + cfg() + out("s") + " --resume --stop-at 6").code, 0);
}

TEST(CheckpointState, ParsesWhatTheTrainerWritesAndNamesFileAndKey) {
  const nlohmann::json good = {{"step", 6}, {"opt_steps", 5}, {"world", 2}, {"elapsed_s", 1.5},
                               {"loader", {{"epoch", 1}, {"cursor", 8}}}, {"config", "[model]\n"}};
  auto s = ouro::parse_checkpoint_state(good, "f.json", 6);
  EXPECT_EQ(s.step, 6);
  EXPECT_EQ(s.opt_steps, 5);
  EXPECT_EQ(s.world, 2);
  EXPECT_EQ(s.loader.cursor, 8u);
  EXPECT_TRUE(s.loop.is_null());
  auto bad = good;
  bad["opt_steps"] = 7;  // more updates than steps
  EXPECT_NE(error_of([&] { ouro::parse_checkpoint_state(bad, "f.json", 6); }).find("'opt_steps'"), std::string::npos);
  EXPECT_NE(error_of([&] { ouro::parse_checkpoint_state(good, "f.json", 7); }).find("step_000007"), std::string::npos);
  bad = good;
  bad["world"] = 0;
  EXPECT_NE(error_of([&] { ouro::parse_checkpoint_state(bad, "f.json", 6); }).find("'world'"), std::string::npos);
  bad = good;
  bad["step"] = 18446744073709551615ull;
  EXPECT_NE(error_of([&] { ouro::parse_checkpoint_state(bad, "f.json", -1); }).find("'step'"), std::string::npos);
  EXPECT_NE(error_of([&] { ouro::parse_checkpoint_state_text("{\"step\":", "f.json", 6); }).find("f.json"),
            std::string::npos);
}

TEST(MetricsRecords, StrayLinesAreDroppedWithAWarning) {
  const std::string text =
      "{\"step\":1,\"loss\":2}\n[1,2]\n3\n\"x\"\nnull\n{\"step\":\"two\"}\n\n{\"step\":2}\n{\"step\":3}\n"
      "{\"note\":\"no step\"}\n{\"step\":18446744073709551615}\n{torn";
  auto k = ouro::metrics_records_through(text, 2, "m.jsonl");
  EXPECT_EQ(k.text, "{\"step\":1,\"loss\":2}\n{\"step\":2}\n{\"note\":\"no step\"}\n");
  ASSERT_EQ(k.warnings.size(), 6u);
  EXPECT_NE(k.warnings[0].find("m.jsonl: line 2"), std::string::npos) << k.warnings[0];
  EXPECT_NE(k.warnings.back().find("line 12"), std::string::npos) << k.warnings.back();
}

TEST_F(Runtime, ResumeToleratesStrayMetricsLines) {
  ASSERT_EQ(ouro("train" + cfg() + out("m") + " --stop-at 4").code, 0);
  std::ofstream(dir / "m/metrics.jsonl", std::ios::app) << "[1,2]\n7\n{\"step\":\"x\"}\n";
  auto r = ouro("train" + cfg() + out("m") + " --resume --stop-at 6");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("metrics.jsonl: line"), std::string::npos) << r.out;
  EXPECT_EQ(metric_values(dir / "m", "loss").size(), 6u);
}

// ---- item 6: one process per run directory ----

TEST_F(Runtime, ASecondProcessIsRefusedNamingTheDirectoryAndThePid) {
  fs::create_directories(dir / "l");
  // This test process holds the lock as a running `ouro train` would.
  const int fd = ::open((dir / "l/ouro.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string pid = std::to_string(::getpid());
  ASSERT_EQ(::write(fd, (pid + "\n").data(), pid.size() + 1), static_cast<ssize_t>(pid.size() + 1));
  auto r = ouro("train" + cfg() + out("l"));
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find((dir / "l").string() + " is in use"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pid " + pid), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "l/metrics.jsonl"));
  ::close(fd);  // released: the run may start
  EXPECT_EQ(ouro("train" + cfg() + out("l") + " --stop-at 2").code, 0);
}

TEST_F(Runtime, TheLockHoldsForTheRunsLifeAndDiesWithIt) {
  auto r = script(start_long_run("two") + "\"$OURO\" train" + cfg() + out("two") +
                  " --resume > second.log 2>&1\necho \"second=$?\"\ncat second.log\n"
                  "kill -9 $pid\nwait $pid\n\"$OURO\" train" + cfg() + out("two") +
                  " --set checkpoint.every=1 --set train.steps=1000000 --resume --stop-at 2 > third.log 2>&1\n"
                  "echo \"third=$?\"\ncat third.log\n");
  EXPECT_NE(r.out.find("second=1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("is in use by another ouro process (pid"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("third=0"), std::string::npos) << r.out;
}

// ---- item 7: every input checked at start ----

TEST_F(Runtime, AMissingOrShortValidationShardIsRefusedBeforeTraining) {
  auto r = ouro("train" + cfg() + out("v1") + " --set data.val=" + (dir / "nope.bin").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("data.val"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nope.bin"), std::string::npos) << r.out;
  EXPECT_TRUE(metric_values(dir / "v1", "loss").empty()) << r.out;
  std::vector<uint32_t> few(40, 'a');
  ouro::write_shard(dir / "short.bin", few, ouro::kByteVocab);
  r = ouro("train" + cfg() + out("v2") + " --set data.val=" + (dir / "short.bin").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("short.bin"), std::string::npos) << r.out;
  EXPECT_TRUE(metric_values(dir / "v2", "loss").empty()) << r.out;
  ouro::write_shard(dir / "big_ids.bin", std::vector<uint32_t>(4000, 300), 1000);
  r = ouro("train" + cfg() + out("v3") + " --set data.val=" + (dir / "big_ids.bin").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("model.vocab_size"), std::string::npos) << r.out;
}

// ---- item 9: paths are bytes ----
// (The saved config's side is a config unit: test_config.cpp, ConfigBytes.*.)

TEST_F(Runtime, ResumeAcceptsItsOwnRunUnderNonUtf8Paths) {
  const std::string odd = (dir / "d\xff\xfe").string();
  fs::create_directories(odd);
  fs::copy_file(dir / "train.bin", odd + "/train.bin");
  const std::string args = "train" + cfg() + " --set 'data.train=" + odd + "/train.bin' --set 'run.out_dir=" +
                           (dir / "r\xe9").string() + "'";
  auto r = ouro(args + " --stop-at 2");
  ASSERT_EQ(r.code, 0) << r.out;
  r = ouro(args + " --resume --stop-at 4");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(dir / "r\xe9/checkpoints/step_000004"));
}

// ---- item 10: signals ----

TEST_F(Runtime, SighupAndSigtermCheckpointAndExitWithADistinctStatus) {
  for (const auto& [sig, status] : {std::pair{"HUP", 129}, std::pair{"TERM", 143}}) {
    const std::string name = std::string("sig") + sig;
    auto r = script(start_long_run(name) + "kill -" + sig + " $pid\nwait $pid\necho \"status=$?\"\ncat bg.log\n");
    EXPECT_NE(r.out.find("status=" + std::to_string(status)), std::string::npos) << r.out;
    auto steps = metric_values(dir / name, "loss");
    auto ck = ouro::latest_checkpoint(dir / name);
    ASSERT_TRUE(ck.has_value()) << r.out;
    EXPECT_EQ(ouro::checkpoint_dir_step(*ck), static_cast<int64_t>(steps.size())) << r.out;
    EXPECT_NE(r.out.find("interrupted by SIG"), std::string::npos) << r.out;
  }
}

TEST_F(Runtime, NohupIgnoredHangupsStayIgnored) {
  auto r = script("trap '' HUP\n" + start_long_run("nohup") + "kill -HUP $pid\nsleep 0.5\n"
                  "kill -0 $pid && echo alive\nkill -TERM $pid\nwait $pid\necho \"status=$?\"\n");
  EXPECT_NE(r.out.find("alive"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("status=143"), std::string::npos) << r.out;
}

// ---- kill -9 inside a checkpoint write ----

TEST_F(Runtime, Kill9InsideACheckpointWriteResumesBitwise) {
  ASSERT_EQ(ouro("train" + cfg() + out("ref")).code, 0);
  for (const char* phase : {"model", "renamed"}) {
    const std::string name = std::string("k_") + phase;
    // The tests' fault worker (tests/fault_worker.cpp) SIGKILLs itself at that phase of step 6's write.
    auto r = run_shell(std::string("OURO_FAULT_CHECKPOINT_KILL=") + phase + ":6 " + OURO_FAULT_BIN + " train" + cfg() +
                           out(name),
                       dir / "cmd.log");
    EXPECT_TRUE(r.code == 128 || r.code == 137) << r.code << r.out;  // killed by SIGKILL
    ASSERT_EQ(ouro("train" + cfg() + out(name) + " --resume").code, 0) << phase;
    for (const char* f : {"model.safetensors", "optimizer.safetensors"})
      EXPECT_EQ(read_file(dir / "ref/checkpoints/step_000008" / f),
                read_file(dir / name / "checkpoints/step_000008" / f))
          << phase << " " << f;
  }
}
