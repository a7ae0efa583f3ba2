// Data parallelism on the cpu backend under `mpirun -np 2`: equivalence with one rank, ZeRO-1 and
// gradient buckets, resume across world sizes, config mismatch, and a rank that dies or hangs.
#include <gtest/gtest.h>
#include <unistd.h>


#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <utility>

#include <nlohmann/json.hpp>

#include "ouro/comm.h"
#include "test_support.h"
#include "ouro/data.h"
#include "train/grad_buckets.h"

namespace fs = std::filesystem;
using namespace ouro::test;

namespace {

// mpirun as CI needs it: root is allowed, 2 ranks on 2 cores.
std::string mpirun(int np) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) + " ";
}

class Dist : public ScratchDirTest {
 protected:
  void SetUp() override {
    make_dir("ouro_test_dist_");
    std::mt19937 rng(11);
    std::vector<uint32_t> toks{ouro::kByteEot};
    const std::string words[] = {"in ", "the ", "beginning ", "was ", "word ", "and ", "light, "};
    while (toks.size() < 40000)
      for (char c : words[rng() % 7]) toks.push_back(static_cast<unsigned char>(c));
    ouro::write_shard(dir / "train.bin", toks, ouro::kByteVocab);
    toks.resize(5000);
    ouro::write_shard(dir / "val.bin", toks, ouro::kByteVocab);
    std::ofstream(dir / "cfg.toml")
        << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 16\nvocab_size = 257\n"
           "[train]\nsteps = 8\nbatch_size = 4\ngrad_accum = 2\nlr = 3e-3\nwarmup_steps = 2\n"
           "eval_every = 4\neval_batches = 3\n[data]\ntrain = \"" + (dir / "train.bin").string() +
               "\"\nval = \"" + (dir / "val.bin").string() + "\"\n[run]\nthreads = 1\n"
           "[dist]\ntimeout_s = 20\n";
  }
  // comm_fault: "" runs `ouro`; else the ranks run the tests' fault worker (tests/fault_worker.cpp)
  // with OURO_FAULT_COMM=comm_fault in their environment (RANK:OP:CALL:SIGNAL).
  CmdResult train(int np, const std::string& name, const std::string& extra = "", const std::string& comm_fault = "") {
    const std::string bin = comm_fault.empty() ? std::string(OURO_BIN) : std::string(OURO_FAULT_BIN);
    std::string cmd = (comm_fault.empty() ? "" : "OURO_FAULT_COMM=" + comm_fault + " ") +
                      (np > 0 ? mpirun(np) : std::string()) + bin + " train --config " +
                      (dir / "cfg.toml").string() + " --set run.out_dir=" + (dir / name).string() +
                      " " + extra;
    return run_shell(cmd, dir / (name + ".log"));
  }
  std::vector<double> values(const std::string& name, const char* key) const {
    return metric_values(dir / name, key);
  }
  std::string bytes(const std::string& rel) const { return read_file(dir / rel); }
};

void expect_close(const std::vector<double>& a, const std::vector<double>& b, double rel) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(std::abs(a[i] - b[i]), rel * std::abs(b[i])) << i;
}

}  // namespace

TEST(DistEnv, LaunchersAndSharding) {
  ::setenv("SLURM_PROCID", "3", 1), ::setenv("SLURM_NTASKS", "8", 1), ::setenv("SLURM_LOCALID", "1", 1);
  auto e = ouro::detect_dist_env();
  if (e.launcher == "slurm") {  // not when this test itself runs under mpirun
    EXPECT_EQ(e.rank, 3);
    EXPECT_EQ(e.world, 8);
    EXPECT_EQ(e.local_rank, 1);
  }
  ::unsetenv("SLURM_PROCID"), ::unsetenv("SLURM_NTASKS"), ::unsetenv("SLURM_LOCALID");
  size_t covered = 0;
  // Ranks per node (the device communicator checks them against the GPUs): Slurm's per-node
  // list at this node, torchrun's LOCAL_WORLD_SIZE, else at least local rank + 1.
  if (ouro::detect_dist_env().launcher == "none") {
    ::setenv("SLURM_PROCID", "5", 1), ::setenv("SLURM_NTASKS", "9", 1), ::setenv("SLURM_LOCALID", "0", 1);
    ::setenv("SLURM_TASKS_PER_NODE", "2(x2),4,1", 1);
    for (auto [node, want] : {std::pair{"0", 2}, {"1", 2}, {"2", 4}, {"3", 1}}) {
      ::setenv("SLURM_NODEID", node, 1);
      EXPECT_EQ(ouro::detect_dist_env().local_world, want) << "node " << node;
    }
    ::unsetenv("SLURM_PROCID"), ::unsetenv("SLURM_NTASKS"), ::unsetenv("SLURM_LOCALID");
    ::unsetenv("SLURM_TASKS_PER_NODE"), ::unsetenv("SLURM_NODEID");
    ::setenv("RANK", "3", 1), ::setenv("WORLD_SIZE", "8", 1), ::setenv("LOCAL_RANK", "3", 1);
    EXPECT_EQ(ouro::detect_dist_env().local_world, 4);  // no LOCAL_WORLD_SIZE: local rank + 1
    ::setenv("LOCAL_WORLD_SIZE", "4", 1);
    EXPECT_EQ(ouro::detect_dist_env().local_world, 4);
    ::setenv("LOCAL_WORLD_SIZE", "8", 1);
    EXPECT_EQ(ouro::detect_dist_env().local_world, 8);
    ::unsetenv("RANK"), ::unsetenv("WORLD_SIZE"), ::unsetenv("LOCAL_RANK"), ::unsetenv("LOCAL_WORLD_SIZE");
  }
  for (int r = 0; r < 3; ++r) {
    auto s = ouro::shard_of(10, 3, r);
    EXPECT_EQ(s.begin, covered);
    covered = s.end;
    EXPECT_TRUE(s.size() == 3 || s.size() == 4);
  }
  EXPECT_EQ(covered, 10u);
}

TEST_F(Dist, TwoRanksEqualOneRankWithTwiceTheBatch) {
  auto one = train(0, "one", "--set train.batch_size=8");
  ASSERT_EQ(one.code, 0) << one.out;
  auto two = train(2, "two");
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("data parallel: 2 ranks"), std::string::npos) << two.out;
  expect_close(values("two", "loss"), values("one", "loss"), 1e-6);
  expect_close(values("two", "val_loss"), values("one", "val_loss"), 1e-6);
  // Each checkpoint proves the ranks hold bitwise-identical weights (the run fails otherwise).
  EXPECT_TRUE(fs::exists(dir / "two/checkpoints/step_000008/model.safetensors"));
}

TEST_F(Dist, ZeroOneAndGradientBucketsEqualOneExchangeBitwise) {
  // z0: one all-reduce after the backward (dist.bucket_mb = 0).
  auto z0 = train(2, "z0", "--set dist.bucket_mb=0");
  ASSERT_EQ(z0.code, 0) << z0.out;
  EXPECT_EQ(z0.out.find("buckets"), std::string::npos) << z0.out;
  auto z1 = train(2, "z1", "--set dist.zero=1");
  ASSERT_EQ(z1.code, 0) << z1.out;
  // Buckets of 10 KiB: one per layer (12,704 fp32 gradients, 50 KB, fill one alone) and one for
  // wte + wpe + lnf at the end: 3 per step. With grad_accum = 2, exchanging on both micro-steps
  // would make 6.
  auto zb = train(2, "zb", "--set dist.bucket_mb=0.01");
  ASSERT_EQ(zb.code, 0) << zb.out;
  EXPECT_NE(zb.out.find("gradients averaged in 3 buckets"), std::string::npos) << zb.out;
  for (const char* run : {"z1", "zb"}) {
    const std::string r = run;
    EXPECT_EQ(values("z0", "loss"), values(r, "loss")) << r;
    EXPECT_EQ(values("z0", "grad_norm"), values(r, "grad_norm")) << r;
    EXPECT_EQ(bytes("z0/checkpoints/step_000008/model.safetensors"),
              bytes(r + "/checkpoints/step_000008/model.safetensors")) << r;
    EXPECT_EQ(bytes("z0/checkpoints/step_000008/optimizer.safetensors"),
              bytes(r + "/checkpoints/step_000008/optimizer.safetensors")) << r;
  }
}

TEST(GradBuckets, GroupInBackwardOrderMergeAdjacentRangesAndFlushTheRest) {
  // Two layers of a stacked layout with two tensors of 10 and 4 elements per layer, 2 elements
  // apart: layer l's slices are [10l, 10l + 10) and [22 + 4l, 26 + 4l); the globals are [30, 42).
  std::vector<std::pair<int, std::vector<ouro::BufferSpan>>> got;
  ouro::GradBucketer b(/*bucket_bytes=*/4 * 20, /*elem_bytes=*/4,
                       [&](int i, const std::vector<ouro::BufferSpan>& s) { got.emplace_back(i, s); });
  b.add({{10, 20}, {26, 30}});  // layer 1: 14 elements, below the 20 of a bucket
  EXPECT_TRUE(got.empty());
  b.add({{0, 10}, {22, 26}});   // layer 0: 28 >= 20, launched, the layers' slices merged
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, 0);
  ASSERT_EQ(got[0].second.size(), 2u);
  EXPECT_EQ(got[0].second[0].offset, 0u);
  EXPECT_EQ(got[0].second[0].count, 20u);
  EXPECT_EQ(got[0].second[1].offset, 22u);
  EXPECT_EQ(got[0].second[1].count, 8u);
  b.add({{30, 42}});  // 12 < 20: waits for the flush
  EXPECT_EQ(got.size(), 1u);
  b.flush();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].first, 1);
  ASSERT_EQ(got[1].second.size(), 1u);
  EXPECT_EQ(got[1].second[0].offset, 30u);
  EXPECT_EQ(got[1].second[0].count, 12u);
  b.flush();  // nothing pending: nothing launched
  EXPECT_EQ(b.launched(), 2);
  EXPECT_EQ(b.launched_elements(), 40u);  // the 2 elements between the tensors are no range
  b.add({{0, 5}, {3, 8}});
  EXPECT_THROW(b.flush(), std::exception);  // overlapping ranges are a caller's bug
}

TEST_F(Dist, ResumeAcrossWorldSizes) {
  ASSERT_EQ(train(0, "ref", "--set train.batch_size=8").code, 0);
  // 2 ranks (ZeRO-1: sharded moments saved whole) -> 1 rank with the same global batch.
  auto a = train(2, "down", "--set dist.zero=1 --stop-at 4");
  ASSERT_EQ(a.code, 0) << a.out;
  auto b = train(0, "down", "--set train.batch_size=8 --resume");
  ASSERT_EQ(b.code, 0) << b.out;
  expect_close(values("down", "loss"), values("ref", "loss"), 1e-6);
  // 1 rank -> 2 ranks.
  auto c = train(0, "up", "--set train.batch_size=8 --stop-at 4");
  ASSERT_EQ(c.code, 0) << c.out;
  auto d = train(2, "up", "--set dist.zero=1 --resume");
  ASSERT_EQ(d.code, 0) << d.out;
  expect_close(values("up", "loss"), values("ref", "loss"), 1e-6);
  // A different global batch is refused.
  auto e = train(2, "up", "--set train.batch_size=2 --resume --set train.steps=9");
  EXPECT_NE(e.code, 0);
  EXPECT_NE(e.out.find("train.batch_size"), std::string::npos) << e.out;
}

TEST_F(Dist, AConfigMismatchIsRefusedNamingTheKey) {
  const std::string base = std::string(OURO_BIN) + " train --config " + (dir / "cfg.toml").string() +
                           " --set run.out_dir=" + (dir / "mm").string();
  auto r = run_shell("mpirun --allow-run-as-root --oversubscribe --bind-to none -np 1 " + base + " : -np 1 " +
                     base + " --set train.lr=0.01",
                 dir / "mm.log");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("train.lr"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "mm/checkpoints"));
}

TEST_F(Dist, ADeadRankEndsTheJobQuickly) {
  // Rank 1 SIGKILLs itself on entering its 8th host all-reduce (a few steps in).
  auto r = train(2, "dead", "--set train.steps=100000", "1:all_reduce:8:kill");
  EXPECT_NE(r.code, 0);
  EXPECT_LT(r.seconds, 60.0);
  EXPECT_NE(r.out.find("rank 1"), std::string::npos) << r.out;
}

TEST_F(Dist, AHungRankIsDetectedByTheTimeout) {
  // Rank 1 SIGSTOPs itself on entering its 8th host all-reduce (a few steps in).
  auto r = train(2, "hung", "--set train.steps=100000 --set dist.timeout_s=3",
                 "1:all_reduce:8:stop");
  EXPECT_NE(r.code, 0);
  EXPECT_LT(r.seconds, 60.0);
  EXPECT_NE(r.out.find("did not complete within 3 s (dist.timeout_s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank 0: "), std::string::npos) << r.out;
}

TEST_F(Dist, BenchTrainReportsWeakScaling) {
  // `ouro bench train` under mpirun: one step alone and one data parallel per rank; rank 0 prints
  // the job's figures. Efficiency = alone / data-parallel step time (on 2 shared cores it is
  // whatever the cores give: only its definition is checked, never a speed).
  // Small buckets, as training would use them: one per layer and one for the embeddings and lnf.
  auto r = run_shell(mpirun(2) + OURO_BIN + " bench train --config " + (dir / "cfg.toml").string() +
                         " --steps 2 --warmup 1 --json --set dist.bucket_mb=0.01",
                     dir / "bench.log");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto brace = r.out.find("{\n");
  ASSERT_NE(brace, std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("bench train:", r.out.find("bench train:") + 1), std::string::npos)
      << "only rank 0 reports: " << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(brace, r.out.rfind('}') - brace + 1));
  EXPECT_EQ(j.at("world"), 2);
  const auto& dp = j.at("data_parallel");
  EXPECT_EQ(dp.at("transport"), "mpi");
  EXPECT_EQ(dp.at("buckets"), 3);
  const double alone = j.at("step_s").get<double>(), together = dp.at("step_s").get<double>();
  ASSERT_GT(alone, 0.0);
  ASSERT_GT(together, 0.0);
  EXPECT_GT(dp.at("allreduce_s").get<double>(), 0.0);
  EXPECT_NEAR(dp.at("scaling_efficiency").get<double>(), alone / together, 1e-12);
  EXPECT_NEAR(dp.at("tokens_per_s").get<double>(), 2 * j.at("tokens_per_s").get<double>() * alone / together,
              1e-6 * dp.at("tokens_per_s").get<double>());
  // One process: no scaling figures.
  auto one = run_shell(std::string(OURO_BIN) + " bench train --config " + (dir / "cfg.toml").string() +
                           " --steps 1 --warmup 0 --json",
                       dir / "bench1.log");
  ASSERT_EQ(one.code, 0) << one.out;
  const auto j1 = nlohmann::json::parse(one.out.substr(one.out.find("{\n")));
  EXPECT_EQ(j1.at("world"), 1);
  EXPECT_TRUE(j1.at("data_parallel").is_null());
}
