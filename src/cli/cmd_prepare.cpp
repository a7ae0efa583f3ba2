#include <filesystem>

#include "cli/commands.h"
#include "ouro/data.h"
#include "train/run_log.h"

namespace ouro::cli {

void add_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "Turn text files into train/val token shards (llm.c format)");
  struct Opts {
    std::vector<std::string> inputs;
    std::string out;
    double val_frac = 0.05;
    size_t block = 8192;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--input,-i", o->inputs, "Text files; each is one document")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out,-o", o->out, "Output prefix: writes PREFIX_train.bin and PREFIX_val.bin")->required();
  cmd->add_option("--val-frac", o->val_frac, "Fraction of tokens held out for validation")->check(CLI::Range(0.001, 0.5));
  cmd->add_option("--block", o->block, "Tokens per train/val interleaving block")->check(CLI::PositiveNumber);
  cmd->callback([o] {
    std::vector<std::filesystem::path> in(o->inputs.begin(), o->inputs.end());
    auto r = prepare_bytes(in, o->out, o->val_frac, o->block);
    logger()->info("wrote {} ({} tokens) and {} ({} tokens), byte-level vocabulary of {}",
                   r.train.string(), r.train_tokens, r.val.string(), r.val_tokens, kByteVocab);
  });
}

}  // namespace ouro::cli
