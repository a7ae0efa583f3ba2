#include <algorithm>
#include <cmath>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include "cli/commands.h"
#include "common/log.h"
#include "loop/task_eval.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"

namespace ouro::cli {

namespace {

// This process's command line (for the manifest), arguments separated by spaces.
std::string command_line() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!s.empty() && s.back() == '\0') s.pop_back();
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

}  // namespace

void add_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "Turn text files into train/val token shards (llm.c format)");
  struct Opts {
    std::vector<std::string> inputs, positional;
    std::string out, tokenizer, text_key = "text";
    double val_frac = 0.05;
    size_t block = 8192;
    uint64_t shard_tokens = 100'000'000;
    bool jsonl = false, skip_bad = false;
    int threads = 0;
    bool quiet = false;
    std::string task, task_file;
    int64_t count = 100000;
    int min_d = 1, max_d = 3;
    uint64_t seed = 1;
    int row_tokens = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--input,-i", o->inputs,
                  "Inputs: text files (one document each), JSONL (one per line), .gz/.zst of either, - for stdin");
  cmd->add_option("inputs", o->positional, "More inputs (as --input)");
  cmd->add_flag("--jsonl", o->jsonl, "Inputs are JSONL, one document per line (automatic for *.jsonl[.gz|.zst])");
  cmd->add_option("--text-key", o->text_key, "JSONL: the key holding each document's text");
  cmd->add_flag("--skip-bad", o->skip_bad, "JSONL: skip and count malformed lines instead of failing");
  cmd->add_option("--shard-tokens", o->shard_tokens, "Tokens per shard (PREFIX_train_000000.bin, ...)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{2147483647}));
  cmd->add_option("--task", o->task,
                  "Write a task's problems instead of text: add, sort, copy, copyd, rev or revpad, or file (--task-file; its "
                  "validation problems are drawn from the same file)");
  cmd->add_option("--task-file", o->task_file, "--task file: JSONL of {prompt, answer, difficulty?} per line");
  cmd->add_option("--count", o->count, "--task: training problems")->check(CLI::PositiveNumber);
  cmd->add_option("--min", o->min_d, "--task: smallest difficulty (digits or length)")->check(CLI::PositiveNumber);
  cmd->add_option("--max", o->max_d, "--task: largest difficulty")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "--task: problem seed");
  cmd->add_option("--row-tokens", o->row_tokens,
                  "--task: pack the problems into rows of N tokens (= model.seq_len), each starting with a "
                  "problem and padded with <|endoftext|>, so every training window starts at a problem as "
                  "eval and loop prompts do (default 0: one stream)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--out,-o", o->out,
                  "Output prefix: PREFIX_train_NNNNNN.bin, PREFIX_val_NNNNNN.bin and PREFIX.manifest.json "
                  "(--task: PREFIX_train.bin, PREFIX_val.bin)")->required();
  cmd->add_option("--tokenizer,-t", o->tokenizer,
                  "BPE tokenizer (ranks file, or GPT-2's directory / encoder.json); without it, byte-level tokens");
  cmd->add_option("--val-frac", o->val_frac, "Fraction of tokens held out for validation")->check(CLI::Range(0.001, 0.5));
  cmd->add_option("--block", o->block, "Tokens per train/val interleaving block")->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "Encoding threads (0 = all cores)");
  cmd->add_flag("--quiet,-q", o->quiet, "No progress bar");
  cmd->callback([o] {
    if (!o->task.empty()) {
      OURO_CHECK(o->inputs.empty(), "prepare: --task and --input are exclusive");
      auto task = make_task(o->task, o->task_file);
      TaskDataOptions t;
      t.count = o->count, t.min_d = o->min_d, t.max_d = o->max_d, t.seed = o->seed, t.val_frac = o->val_frac;
      t.row_tokens = o->row_tokens;
      auto r = prepare_task(*task, o->out, t);
      logger()->info("wrote {} ({} tokens) and {} ({} tokens): task {} at difficulties {}..{}", r.train.string(),
                     r.train_tokens, r.val.string(), r.val_tokens, o->task, o->min_d, o->max_d);
      return;
    }
    o->inputs.insert(o->inputs.end(), o->positional.begin(), o->positional.end());
    OURO_CHECK(!o->inputs.empty(), "prepare: give --input FILES (text, JSONL, - for stdin) or --task NAME");
    PrepareOptions p;
    p.inputs = o->inputs;
    p.out_prefix = o->out;
    std::optional<Tokenizer> tok;
    if (!o->tokenizer.empty()) {
      tok.emplace(Tokenizer::load(o->tokenizer));
      p.tokenizer = &*tok;
      p.tokenizer_file = o->tokenizer;
    }
    p.val_frac = o->val_frac;
    p.block_tokens = o->block;
    p.shard_tokens = o->shard_tokens;
    p.jsonl = o->jsonl;
    p.text_key = o->text_key;
    p.skip_bad = o->skip_bad;
    p.threads = o->threads;
    p.progress = !o->quiet;
    p.command = command_line();
    const PrepareSummary r = prepare_corpus(p);
    logger()->info("wrote {} train shards ({} tokens) and {} val shards ({} tokens) from {} documents{}, {} "
                   "vocabulary of {}; manifest {}; peak memory {:.0f} MB",
                   r.train.size(), r.train_tokens, r.val.size(), r.val_tokens, r.documents,
                   r.bad_lines ? fmt::format(" ({} bad lines skipped)", r.bad_lines) : "",
                   o->tokenizer.empty() ? "byte-level" : o->tokenizer, r.vocab_size, r.manifest.string(),
                   r.peak_rss_mb);
    // Validation takes whole blocks (the last of every 1/val_frac): a corpus shorter than that
    // many blocks leaves it empty, and training would refuse it only later.
    if (r.val_tokens == 0)
      logger()->warn("no validation shard: {} tokens make fewer than {:.0f} blocks of --block {}; pass a smaller --block",
                     r.train_tokens, std::max(2.0, std::round(1.0 / o->val_frac)), o->block);
  });
}

}  // namespace ouro::cli
