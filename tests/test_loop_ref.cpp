// The ref_logprob scorer: the band over reference scores, the reference model's scores, frozen
// vs lagged weights, their files (hash-checked on resume, collected when unused), and resume in
// the middle of a loop that scores with a reference.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "loop/exchange.h"
#include "loop/reference.h"
#include "loop/selection.h"
#include "model/generate.h"
#include "ouro/checkpoint.h"
#include "ouro/comm.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/ops.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ouro;

namespace {

Candidate scored(int prompt, int sample, Tokens gen, float self_lp, double ref_lp) {
  Candidate c;
  c.prompt = prompt;
  c.sample = sample;
  c.prompt_tokens = {256, 1};
  c.gen = std::move(gen);
  c.logprobs.assign(c.gen.size(), self_lp);
  c.stopped = true;
  c.ref_logprob = ref_lp;
  return c;
}

std::vector<nlohmann::json> jsonl(const fs::path& p) {
  std::vector<nlohmann::json> v;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    j.erase("seconds");  // wall time is the one thing allowed to differ
    v.push_back(j);
  }
  return v;
}

std::set<std::string> reference_files(const fs::path& dir) {
  std::set<std::string> s;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.path().filename().string().rfind("ref_step_", 0) == 0) s.insert(f.path().filename().string());
  return s;
}

}  // namespace

TEST(RefSelection, TheBandCutsTopAndBottomOfTheReferenceScore) {
  // The self-scores are all equal: only the reference score can tell the candidates apart.
  std::vector<Candidate> c;
  for (int i = 0; i < 10; ++i) c.push_back(scored(i, 0, {100 + i, 200 + i, 300 + i}, -0.5f, -0.1 * i));
  score_candidates(c);
  LoopSection cfg;
  cfg.scorer = "ref_logprob";
  cfg.band_lo = 0.2, cfg.band_hi = 0.8;
  cfg.per_prompt_cap = 5;
  auto rej = select_candidates(c, cfg, {});
  EXPECT_EQ(c[0].rejected_by, "ref_logprob");  // the reference's favourite: cut, not kept
  EXPECT_EQ(c[1].rejected_by, "ref_logprob");
  EXPECT_EQ(c[9].rejected_by, "ref_logprob");
  for (int i = 2; i <= 7; ++i) EXPECT_TRUE(c[i].accepted) << i;
  EXPECT_EQ(rej["ref_logprob"], 4);
  // The self-score band alone keeps them all (no spread), so the two scorers are independent.
  cfg.scorer = "logprob_band";
  auto self = c;
  select_candidates(self, cfg, {});
  for (auto& x : self) EXPECT_TRUE(x.accepted);
  // A live candidate without a reference score is a bug upstream, never a silent pass.
  cfg.scorer = "ref_logprob";
  c[4].ref_logprob = std::nan("");
  EXPECT_THROW(select_candidates(c, cfg, {}), Error);
}

TEST(RefScore, EqualsTheSelfLogprobWhenTheReferenceIsTheGenerator) {
  GPT2Config cfg{2, 2, 32, 24, 61};
  auto ops = make_ops("cpu");
  auto params = gpt2_init_params(cfg, 5);
  for (auto& p : params) p *= 5.0f;  // sharp distributions: log-probs far from uniform
  const int K = 3, max_new = 8;
  GPT2 gen(cfg, *ops, K, cfg.seq_len), ref(cfg, *ops, K, cfg.seq_len), other(cfg, *ops, K, cfg.seq_len);
  gen.set_params(params), ref.set_params(params);
  other.set_params(gpt2_init_params(cfg, 6));
  SampleOptions o;
  o.max_tokens = max_new;
  o.stop_token = 0;
  std::vector<Candidate> cands;
  for (int p = 0; p < 2; ++p) {
    std::vector<std::vector<int>> rows(K, {1 + p, 2, 3 + p});
    auto g = generate_batch(gen, rows, o, {11u + p, 22u + p, 33u + p});
    for (int k = 0; k < K; ++k) {
      Candidate c;
      c.prompt = p, c.sample = k, c.prompt_tokens = rows[k], c.gen = g[k].tokens, c.logprobs = g[k].logprobs;
      cands.push_back(c);
    }
  }
  score_candidates(cands);
  const double flops = score_with_reference(ref, cands, K, max_new, 1.0);
  EXPECT_DOUBLE_EQ(flops, 2.0 * K * (3 + max_new));  // K rows of prompt + max_new per prompt
  for (const auto& c : cands) {
    ASSERT_FALSE(c.gen.empty());
    EXPECT_NEAR(c.ref_logprob, c.mean_logprob, 1e-4) << c.prompt << "," << c.sample;
  }
  // Another model's scores differ: the scorer reads the reference's weights, not the samples'.
  auto again = cands;
  score_with_reference(other, again, K, max_new, 1.0);
  double diff = 0;
  for (size_t i = 0; i < cands.size(); ++i) diff += std::abs(again[i].ref_logprob - cands[i].ref_logprob);
  EXPECT_GT(diff, 0.1);
}

TEST(Exchange, CandidatesRoundTripAndSortByPromptAndSample) {
  std::vector<Candidate> c = {scored(1, 1, {5, 6}, -0.1f, -0.7), scored(0, 2, {}, -0.2f, -INFINITY),
                              scored(1, 0, {7}, -0.3f, -0.2)};
  c[1].stopped = false;
  auto back = unpack_candidates(pack_candidates(c));
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].gen, c[0].gen);
  EXPECT_EQ(back[0].logprobs, c[0].logprobs);
  EXPECT_EQ(back[1].stopped, false);
  EXPECT_TRUE(std::isinf(back[1].ref_logprob));
  EXPECT_EQ(back[2].ref_logprob, -0.2);
  auto comm = make_comm("local", 10);
  auto all = gather_candidates(*comm, c);
  EXPECT_EQ(all[0].prompt, 0);
  EXPECT_EQ(all[1].sample, 0);
  EXPECT_EQ(all[2].sample, 1);
  std::string bytes = pack_candidates(c);
  bytes.pop_back();
  EXPECT_THROW(unpack_candidates(bytes), Error);
  EXPECT_EQ(prompts_of_rank(7, 1, 3), (std::vector<int>{1, 4}));
}

class RefStore : public ouro::test::ScratchDirTest {
 protected:
  void SetUp() override { make_dir("ouro_test_loop_ref_store_"); }
  std::unique_ptr<Communicator> comm = make_comm("local", 10);
  static std::vector<float> weights(float v) { return std::vector<float>(10, v); }
};

TEST_F(RefStore, FrozenAndLaggedPickTheRightRounds) {
  ReferenceStore frozen(ReferenceKind::frozen, 1, dir, *comm), lagged(ReferenceKind::lagged, 2, dir, *comm);
  for (int r = 0; r < 5; ++r) {
    frozen.round_starts(r, 10 * (r + 1), weights(static_cast<float>(r)));
    lagged.round_starts(r, 10 * (r + 1), weights(static_cast<float>(r)));
    EXPECT_EQ(frozen.for_round(r).round, 0);
    EXPECT_EQ(frozen.for_round(r).weights, weights(0));
    const int src = std::max(0, r - 2);
    EXPECT_EQ(lagged.for_round(r).round, src);
    EXPECT_EQ(lagged.for_round(r).step, 10 * (src + 1));
    EXPECT_EQ(lagged.for_round(r).weights, weights(static_cast<float>(src)));
  }
  // Lagged keeps what the current round (or a redo of it) and later rounds need: rounds 2..4.
  auto j = lagged.to_json();
  ASSERT_EQ(j["weights"].size(), 3u);
  EXPECT_EQ(j["weights"][0]["round"], 2);
  EXPECT_EQ(j["weights"][0]["file"], "ref_step_000030.f32");
  ASSERT_EQ(frozen.to_json()["weights"].size(), 1u);
  // A reload from the state reads the files back bit for bit.
  ReferenceStore back(ReferenceKind::lagged, 2, dir, *comm);
  back.from_json(j, 10);
  EXPECT_EQ(back.for_round(4).weights, weights(2));
  // Unused files go: the frozen store and the lagged one name steps 10 and 30..50.
  std::ofstream(dir / "ref_step_000999.f32") << "stale";
  lagged.collect_garbage();
  EXPECT_EQ(reference_files(dir), (std::set<std::string>{"ref_step_000030.f32", "ref_step_000040.f32",
                                                         "ref_step_000050.f32"}));
}

TEST_F(RefStore, AMissingOrCorruptFileIsAClearError) {
  write_reference_file(dir / "w.f32", weights(1.5f));
  const std::string h = content_hash(weights(1.5f));
  EXPECT_EQ(read_reference_file(dir / "w.f32", 10, h), weights(1.5f));
  auto message = [&](size_t count, const std::string& hash) {
    try {
      read_reference_file(dir / "w.f32", count, hash);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(11, h).find("holds 10 weights, the model has 11"), std::string::npos);
  {
    std::fstream f(dir / "w.f32", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  }
  const std::string m = message(10, h);
  EXPECT_NE(m.find("w.f32"), std::string::npos) << m;
  EXPECT_NE(m.find("content hash"), std::string::npos) << m;
  fs::resize_file(dir / "w.f32", 30);
  EXPECT_NE(message(10, h).find("truncated"), std::string::npos);
  fs::remove(dir / "w.f32");
  EXPECT_NE(message(10, h).find("missing"), std::string::npos);
}

// ---- end to end: `ouro train` with the ref_logprob scorer ----

class RefLoop : public ouro::test::ScratchDirTest {
 protected:
  void SetUp() override {
    make_dir("ouro_test_loop_ref_");
    std::mt19937 rng(5);
    std::vector<uint32_t> toks{kByteEot};
    const std::string words[] = {"in ", "the ", "beginning ", "was ", "word ", "and ", "light, ", "darkness. "};
    while (toks.size() < 30000)
      for (char c : words[rng() % 8]) toks.push_back(static_cast<unsigned char>(c));
    write_shard(dir / "train.bin", toks, kByteVocab);
    toks.resize(4000);
    write_shard(dir / "val.bin", toks, kByteVocab);
    std::ofstream(dir / "cfg.toml")
        << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 32\nvocab_size = 257\n"
           "[train]\nsteps = 40\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 2\neval_every = 0\n"
           "eval_batches = 2\n[data]\ntrain = \"" + (dir / "train.bin").string() +
               "\"\nval = \"" + (dir / "val.bin").string() +
               "\"\n[run]\nthreads = 1\n[checkpoint]\nevery = 1\nkeep = 0\n"
               "[loop]\nrounds = 3\nstart_step = 10\nround_steps = 10\nprompts = 4\nk = 4\n"
               "prompt_tokens = 8\nmax_new_tokens = 8\nscorer = \"ref_logprob\"\nref = \"lagged\"\n"
               "ref_lag = 1\nguard_tolerance = 10.0\ndiversity_guard = 0.0\nper_prompt_cap = 4\ndedup_threshold = 1.1\n";
  }
  ouro::test::CmdResult train(const std::string& name, const std::string& extra = "") {
    return ouro::test::run_shell(std::string(OURO_BIN) + " train --config " + (dir / "cfg.toml").string() +
                                     " --set run.out_dir=" + (dir / name).string() + " " + extra,
                                 dir / (name + ".log"));
  }
  std::vector<float> checkpoint_weights(const std::string& run, int64_t step) {
    return load_checkpoint(dir / run / "checkpoints" / fmt::format("step_{:06d}", step)).model.params;
  }
};

TEST_F(RefLoop, FrozenAndLaggedScoreAgainstTheRightWeightsAndRecordIt) {
  auto lag = train("lag");
  ASSERT_EQ(lag.code, 0) << lag.out;
  auto rounds = jsonl(dir / "lag/rounds.jsonl");
  ASSERT_EQ(rounds.size(), 3u);
  // Lagged by one round: round r scores against the start of round r-1 (round 0: its own start).
  const int64_t expect_step[] = {10, 10, 20};
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(rounds[r]["ref"]["kind"], "lagged");
    EXPECT_EQ(rounds[r]["ref"]["step"], expect_step[r]) << r;
    EXPECT_EQ(rounds[r]["ref"]["round"], std::max(0, r - 1)) << r;
    EXPECT_GT(rounds[r]["flops"]["score"].get<double>(), 0.0);
    EXPECT_EQ(rounds[r]["ref_score"]["scored"], rounds[r]["generated"]);
    EXPECT_GT(rounds[r]["rejected_by"].value("ref_logprob", 0), 0) << rounds[r].dump();
    EXPECT_GT(rounds[r]["accepted"].get<int>(), 0);
    // The real text's figures count each prompt's continuation once, not once per sample
    // (K copies made its self-BLEU exactly 1).
    EXPECT_LT(rounds[r]["real_self_bleu"].get<double>(), 1.0) << rounds[r].dump();
  }
  // The file holds exactly the weights of the checkpoint at that step, and its hash is recorded.
  for (int64_t step : {10, 20}) {
    const std::string file = fmt::format("ref_step_{:06d}.f32", step);
    const auto w = checkpoint_weights("lag", step);
    EXPECT_EQ(read_reference_file(dir / "lag" / file, w.size(), content_hash(w)), w) << file;
  }
  // The band, not the top: some candidates the reference likes more than every accepted one
  // were cut, and so were some it likes less.
  double max_acc = -1e30, min_acc = 1e30, max_cut = -1e30, min_cut = 1e30;
  for (const auto& s : jsonl(dir / "lag/samples.jsonl")) {
    if (s["round"] != 0 || !s.contains("ref_score")) continue;
    const double v = s["ref_score"].get<double>();
    if (s["accepted"] == true) max_acc = std::max(max_acc, v), min_acc = std::min(min_acc, v);
    if (s["rejected_by"] == "ref_logprob") max_cut = std::max(max_cut, v), min_cut = std::min(min_cut, v);
  }
  EXPECT_GT(max_cut, max_acc);
  EXPECT_LT(min_cut, min_acc);

  auto frozen = train("frozen", "--set loop.ref=frozen");
  ASSERT_EQ(frozen.code, 0) << frozen.out;
  auto fr = jsonl(dir / "frozen/rounds.jsonl");
  ASSERT_EQ(fr.size(), 3u);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(fr[r]["ref"]["step"], 10) << r;
  // Round 0 references the same weights either way: the same figures; later rounds differ.
  EXPECT_EQ(fr[0]["ref_score"], rounds[0]["ref_score"]);
  EXPECT_NE(fr[2]["ref_score"], rounds[2]["ref_score"]);
  EXPECT_EQ(reference_files(dir / "frozen"), std::set<std::string>{"ref_step_000010.f32"});
}

TEST_F(RefLoop, ResumeInTheMiddleOfTheLoopIsExact) {
  auto straight = train("s");
  ASSERT_EQ(straight.code, 0) << straight.out;
  auto first = train("p", "--stop-at 35");  // inside round 2 (steps 30..40), reference: step 20
  ASSERT_EQ(first.code, 0) << first.out;
  auto second = train("p", "--resume");
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_EQ(jsonl(dir / "s/rounds.jsonl"), jsonl(dir / "p/rounds.jsonl"));
  EXPECT_EQ(ouro::test::read_file(dir / "s/checkpoints/step_000040/model.safetensors"),
            ouro::test::read_file(dir / "p/checkpoints/step_000040/model.safetensors"));
}

TEST_F(RefLoop, AMissingOrCorruptReferenceFileStopsTheResumeNamingIt) {
  auto first = train("p", "--stop-at 35");
  ASSERT_EQ(first.code, 0) << first.out;
  const fs::path file = dir / "p/ref_step_000020.f32";
  ASSERT_TRUE(fs::exists(file));
  const std::string good = ouro::test::read_file(file);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x55');
  }
  auto corrupt = train("p", "--resume");
  EXPECT_NE(corrupt.code, 0);
  EXPECT_NE(corrupt.out.find("ref_step_000020.f32"), std::string::npos) << corrupt.out;
  EXPECT_NE(corrupt.out.find("content hash"), std::string::npos) << corrupt.out;
  fs::remove(file);
  auto missing = train("p", "--resume");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.out.find("ref_step_000020.f32"), std::string::npos) << missing.out;
  EXPECT_NE(missing.out.find("missing"), std::string::npos) << missing.out;
  // Restored, the resume goes through: the failed attempts changed nothing.
  std::ofstream(file, std::ios::binary) << good;
  auto ok = train("p", "--resume");
  EXPECT_EQ(ok.code, 0) << ok.out;
}

TEST_F(RefLoop, FilesNoCheckpointNamesAreDeleted) {
  auto r = train("gc", "--set checkpoint.keep=1");
  ASSERT_EQ(r.code, 0) << r.out;
  // The one checkpoint left (step 40, after round 2) names round 1's and round 2's starts; the
  // loop's first reference (step 10) is no longer needed by anything.
  EXPECT_EQ(reference_files(dir / "gc"), (std::set<std::string>{"ref_step_000020.f32", "ref_step_000030.f32"}));
  auto ck = load_checkpoint(dir / "gc/checkpoints/step_000040");
  ASSERT_EQ(ck.state["loop"]["ref"]["weights"].size(), 2u);
}
