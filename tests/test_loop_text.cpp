// The loop on text prepared with a BPE tokenizer (data.tokenizer): prompts, samples and the
// replay buffer are token ids of that vocabulary, and the samples file holds their text as the
// tokenizer decodes it. Tasks stay byte-level and say so.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;

namespace {

constexpr const char* kEot = "<|endoftext|>";

// Seeded pseudo-English: few enough distinct words that a 300-id BPE learns whole words.
std::string make_document(uint32_t seed, int sentences) {
  static const char* words[] = {"the", "light", "of", "morning", "came", "over", "water", "and",
                                "they", "went", "into", "city", "with", "bread", "wine", "unto",
                                "him", "said", "behold", "land", "good", "shall", "be", "given"};
  std::mt19937 rng(seed);
  std::string s;
  for (int i = 0; i < sentences; ++i) {
    const int n = 4 + static_cast<int>(rng() % 8);
    for (int w = 0; w < n; ++w) {
      std::string word = words[rng() % (sizeof(words) / sizeof(words[0]))];
      if (w == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
      s += word;
      s += w + 1 < n ? " " : ".\n";
    }
  }
  return s;
}

class LoopText : public ouro::test::ScratchDirTest {
 protected:
  std::string corpus;  // every document, concatenated

  void SetUp() override {
    make_dir("ouro_test_loop_text_");
    std::string inputs;
    for (uint32_t d = 0; d < 3; ++d) {
      const std::string doc = make_document(11 + d, 500);
      corpus += doc;
      const fs::path f = dir / ("doc" + std::to_string(d) + ".txt");
      std::ofstream(f) << doc;
      inputs += " --input " + f.string();
    }
    ASSERT_EQ(ouro(" tokenizer train" + inputs + " --vocab 300 --out " + (dir / "tok.tiktoken").string(), "tok").code, 0);
    ASSERT_EQ(ouro(" prepare" + inputs + " --tokenizer " + (dir / "tok.tiktoken").string() + " --out " +
                       (dir / "kjv").string() + " --val-frac 0.1 --block 512",
                   "prepare")
                  .code,
              0);
    std::ofstream(dir / "cfg.toml")
        << "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nseq_len = 32\nvocab_size = 300\n"
           "[train]\nsteps = 30\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 2\neval_every = 0\neval_batches = 2\n"
           "[data]\ntrain = \"" + (dir / "kjv_train_*.bin").string() + "\"\nval = \"" + (dir / "kjv_val_*.bin").string() +
               "\"\ntokenizer = \"" + (dir / "tok.tiktoken").string() +
               "\"\n[run]\nthreads = 2\n[checkpoint]\nevery = 0\nkeep = 1\n"
               "[loop]\nrounds = 2\nstart_step = 10\nround_steps = 10\nprompts = 4\nk = 2\nprompt_tokens = 8\n"
               "max_new_tokens = 8\nscorer = \"accept_all\"\nguard_tolerance = 10.0\n";
  }

  ouro::test::CmdResult ouro(const std::string& args, const std::string& log) {
    return ouro::test::run_shell(std::string(OURO_BIN) + args, dir / (log + ".log"));
  }
  ouro::test::CmdResult train(const std::string& name, const std::string& extra = "") {
    return ouro(" train --config " + (dir / "cfg.toml").string() + " --set run.out_dir=" + (dir / name).string() +
                    " " + extra,
                name);
  }

  // Decoded training text is the corpus cut at document ends, where <|endoftext|> stands.
  void expect_corpus_text(const std::string& text, const std::string& what) {
    size_t from = 0;
    for (size_t at; from <= text.size(); from = at + std::string(kEot).size()) {
      at = text.find(kEot, from);
      if (at == std::string::npos) at = text.size();
      const std::string piece = text.substr(from, at - from);
      EXPECT_NE(corpus.find(piece), std::string::npos) << what << ": '" << piece << "' is not corpus text";
      if (at == text.size()) break;
    }
  }
};

}  // namespace

TEST_F(LoopText, BpeSamplesAreDecodedByTheRunsTokenizer) {
  auto r = train("run");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream rounds(dir / "run/rounds.jsonl");
  int n_rounds = 0;
  for (std::string line; std::getline(rounds, line); ++n_rounds) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["generated"], 8) << line;
    EXPECT_LE(j["accepted"].get<int>(), 8) << line;
  }
  EXPECT_EQ(n_rounds, 2);
  std::ifstream samples(dir / "run/samples.jsonl");
  int n_samples = 0;
  for (std::string line; std::getline(samples, line); ++n_samples) {
    const auto j = nlohmann::json::parse(line);
    const std::string prompt = j["prompt"];
    // 8 prompt tokens of a 300-id vocabulary are whole words: far more than 8 bytes, and
    // exactly a window of the corpus (a byte-level decode would drop every merged id).
    EXPECT_GT(prompt.size(), 8u) << line;
    expect_corpus_text(prompt, "prompt");
    EXPECT_TRUE(j.contains("text")) << line;
  }
  EXPECT_GT(n_samples, 0);
}

// Every guard rolls a round back on its own and names itself; the diversity guard compares
// with the real continuations of the round's prompts (text rounds have them).
TEST_F(LoopText, DiversityAndAcceptRateGuardsRollBack) {
  auto rounds_of = [&](const std::string& name) {
    std::vector<nlohmann::json> v;
    std::ifstream in(dir / name / "rounds.jsonl");
    for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
    return v;
  };
  auto has = [](const nlohmann::json& r, const char* guard) {
    for (const auto& g : r["guards_failed"]) if (g == guard) return true;
    return false;
  };
  ASSERT_EQ(train("ok", "--set loop.diversity_guard=0").code, 0);
  for (const auto& r : rounds_of("ok")) {
    EXPECT_EQ(r["committed"], true) << r.dump();
    EXPECT_TRUE(r["guards_failed"].empty()) << r.dump();
  }
  // Greedy samples: a prompt's K = 2 samples are the same text, so with dedup and the
  // repetition filter off their self-BLEU is ~1, far below the real continuations' novelty.
  ASSERT_EQ(train("div", "--set loop.temperature=0 --set loop.dedup_threshold=1.1 --set loop.max_repeat=1.0").code,
            0);
  const auto div = rounds_of("div");
  ASSERT_EQ(div.size(), 2u);
  for (const auto& r : div) {
    EXPECT_GT(r["accepted"].get<int>(), 1) << r.dump();
    EXPECT_GT(r["self_bleu"].get<double>(), 0.9) << r.dump();
    EXPECT_LT(r["real_self_bleu"].get<double>(), 0.9) << r.dump();
    EXPECT_TRUE(has(r, "diversity")) << r.dump();
    EXPECT_EQ(r["rolled_back"], true) << r.dump();
  }
  // The band keeps at most half of the samples: an accept rate of at least 0.9 cannot hold.
  ASSERT_EQ(train("rate", "--set loop.scorer=logprob_band --set loop.accept_min=0.9").code, 0);
  const auto rate = rounds_of("rate");
  ASSERT_EQ(rate.size(), 2u);
  for (const auto& r : rate) {
    EXPECT_LT(r["accept_rate"].get<double>(), 0.9) << r.dump();
    EXPECT_TRUE(has(r, "accept_rate")) << r.dump();
    EXPECT_EQ(r["rolled_back"], true) << r.dump();
    EXPECT_EQ(r["step_end"], r["step_start"]) << r.dump();
  }
  EXPECT_DOUBLE_EQ(rate[1]["syn_frac"].get<double>(), rate[0]["syn_frac"].get<double>() / 2);
  // Bounds out of order are refused naming the key.
  auto bad = train("bad", "--set loop.accept_min=0.8 --set loop.accept_max=0.2");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("loop.accept_min"), std::string::npos) << bad.out;
}

TEST_F(LoopText, AModelOfAnotherVocabularyNeedsItsTokenizer) {
  auto r = train("notok", "--set data.tokenizer=\"\"");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("data.tokenizer"), std::string::npos) << r.out;
}

TEST_F(LoopText, TasksAreByteLevel) {
  auto r = train("task", "--set loop.task=add");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("byte-level"), std::string::npos) << r.out;
}
