#include <algorithm>
#include <cmath>

#include <filesystem>

#include "cli/commands.h"
#include "loop/task_eval.h"
#include "ouro/error.h"
#include "ouro/data.h"
#include "ouro/tokenizer.h"
#include "train/run_log.h"

namespace ouro::cli {

void add_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "Turn text files into train/val token shards (llm.c format)");
  struct Opts {
    std::vector<std::string> inputs;
    std::string out, tokenizer;
    double val_frac = 0.05;
    size_t block = 8192;
    int threads = 0;
    bool quiet = false;
    std::string task;
    int64_t count = 100000;
    int min_d = 1, max_d = 3;
    uint64_t seed = 1;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--input,-i", o->inputs, "Text files; each is one document")->check(CLI::ExistingFile);
  cmd->add_option("--task", o->task, "Write a built-in task's problems instead of text: add, sort or copy");
  cmd->add_option("--count", o->count, "--task: training problems")->check(CLI::PositiveNumber);
  cmd->add_option("--min", o->min_d, "--task: smallest difficulty (digits or length)")->check(CLI::PositiveNumber);
  cmd->add_option("--max", o->max_d, "--task: largest difficulty")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "--task: problem seed");
  cmd->add_option("--out,-o", o->out, "Output prefix: writes PREFIX_train.bin and PREFIX_val.bin")->required();
  cmd->add_option("--tokenizer,-t", o->tokenizer,
                  "BPE tokenizer (ranks file, or GPT-2's directory / encoder.json); without it, byte-level tokens");
  cmd->add_option("--val-frac", o->val_frac, "Fraction of tokens held out for validation")->check(CLI::Range(0.001, 0.5));
  cmd->add_option("--block", o->block, "Tokens per train/val interleaving block")->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "Encoding threads (0 = all cores)");
  cmd->add_flag("--quiet,-q", o->quiet, "No progress bar");
  cmd->callback([o] {
    if (!o->task.empty()) {
      OURO_CHECK(o->inputs.empty(), "prepare: --task and --input are exclusive");
      auto task = make_task(o->task);
      auto r = prepare_task(*task, o->out, o->count, o->min_d, o->max_d, o->seed, o->val_frac);
      logger()->info("wrote {} ({} tokens) and {} ({} tokens): task {} at difficulties {}..{}", r.train.string(),
                     r.train_tokens, r.val.string(), r.val_tokens, o->task, o->min_d, o->max_d);
      return;
    }
    OURO_CHECK(!o->inputs.empty(), "prepare: give --input FILES (text) or --task NAME");
    std::vector<std::filesystem::path> in(o->inputs.begin(), o->inputs.end());
    PrepareResult r;
    if (o->tokenizer.empty()) {
      r = prepare_bytes(in, o->out, o->val_frac, o->block);
    } else {
      const Tokenizer tok = Tokenizer::load(o->tokenizer);
      r = prepare_tokens(in, o->out, tok, o->val_frac, o->block, !o->quiet, o->threads);
    }
    logger()->info("wrote {} ({} tokens) and {} ({} tokens), {} vocabulary of {}", r.train.string(),
                   r.train_tokens, r.val.string(), r.val_tokens,
                   o->tokenizer.empty() ? "byte-level" : o->tokenizer, r.vocab_size);
    // Validation takes whole blocks (the last of every 1/val_frac): a corpus shorter than that
    // many blocks leaves it empty, and training would refuse it only later.
    if (r.val_tokens == 0)
      logger()->warn("{} is empty: {} tokens make fewer than {:.0f} blocks of --block {}; pass a smaller --block",
                     r.val.string(), r.train_tokens, std::max(2.0, std::round(1.0 / o->val_frac)), o->block);
  });
}

}  // namespace ouro::cli
