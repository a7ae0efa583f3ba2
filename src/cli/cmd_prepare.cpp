#include <filesystem>

#include "cli/commands.h"
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
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--input,-i", o->inputs, "Text files; each is one document")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out,-o", o->out, "Output prefix: writes PREFIX_train.bin and PREFIX_val.bin")->required();
  cmd->add_option("--tokenizer,-t", o->tokenizer,
                  "BPE tokenizer (ranks file, or GPT-2's directory / encoder.json); without it, byte-level tokens");
  cmd->add_option("--val-frac", o->val_frac, "Fraction of tokens held out for validation")->check(CLI::Range(0.001, 0.5));
  cmd->add_option("--block", o->block, "Tokens per train/val interleaving block")->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o->threads, "Encoding threads (0 = all cores)");
  cmd->add_flag("--quiet,-q", o->quiet, "No progress bar");
  cmd->callback([o] {
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
  });
}

}  // namespace ouro::cli
