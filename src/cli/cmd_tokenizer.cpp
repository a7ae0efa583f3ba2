// `ouro tokenizer train|convert|info`: learn a byte-level BPE, rewrite a tokenizer in tiktoken's
// ranks format, describe one.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "common/log.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"

namespace ouro::cli {

namespace {

void add_train_cmd(CLI::App& parent) {
  auto* cmd = parent.add_subcommand("train", "Learn byte-level BPE merges from text files");
  struct Opts {
    std::vector<std::string> inputs, specials;
    std::string out, pattern = "gpt2";
    size_t vocab = 8192;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--input,-i", o->inputs, "Text files")->required()->check(CLI::ExistingFile);
  cmd->add_option("--vocab,-v", o->vocab, "Vocabulary size: 256 bytes + merges + special tokens")->required();
  cmd->add_option("--out,-o", o->out, "Ranks file to write (FILE.json beside it: pattern, special tokens)")->required();
  cmd->add_option("--pattern", o->pattern, "Split pattern: gpt2 (GPT-2/r50k) or gpt4 (cl100k)")
      ->check(CLI::IsMember({"gpt2", "gpt4"}));
  cmd->add_option("--special", o->specials, "Extra special tokens after <|endoftext|> (repeatable)");
  cmd->add_option("--threads", o->threads, "Threads for counting pre-tokens (0 = all cores)");
  cmd->callback([o] {
    BpeTrainOptions opt;
    opt.vocab_size = o->vocab;
    opt.pattern = pattern_by_name(o->pattern);
    opt.specials.insert(opt.specials.end(), o->specials.begin(), o->specials.end());
    opt.threads = o->threads;
    std::vector<std::filesystem::path> in(o->inputs.begin(), o->inputs.end());
    const auto t0 = std::chrono::steady_clock::now();
    BpeTrainStats st;
    Tokenizer tk = train_bpe(in, opt, &st);
    tk.save(o->out);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    logger()->info("{} bytes, {} unique pre-tokens ({} pattern): {} merges; counting {:.2f} s, "
                   "merging {:.2f} s, total {:.2f} s", st.input_bytes, st.unique_pieces, o->pattern,
                   st.merges, st.count_s, st.merge_s, total);
    if (tk.vocab_size() < o->vocab)
      logger()->warn("the text ran out of pairs to merge: vocabulary of {}, not {}", tk.vocab_size(), o->vocab);
    logger()->info("wrote {} and {}.json: {} ranks + {} special token(s) = vocabulary of {}", o->out,
                   o->out, tk.n_ranks(), tk.specials().size(), tk.vocab_size());
  });
}

void add_convert_cmd(CLI::App& parent) {
  auto* cmd = parent.add_subcommand("convert", "Write a tokenizer (e.g. GPT-2's encoder.json + vocab.bpe) as a ranks file + sidecar");
  struct Opts {
    std::string in, out;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--tokenizer,-t", o->in, "Ranks file, or GPT-2's directory / encoder.json")->required();
  cmd->add_option("--out,-o", o->out, "Ranks file to write")->required();
  cmd->callback([o] {
    Tokenizer tk = Tokenizer::load(o->in);
    tk.save(o->out);
    logger()->info("wrote {} and {}.json (vocabulary of {})", o->out, o->out, tk.vocab_size());
  });
}

void add_info_cmd(CLI::App& parent) {
  auto* cmd = parent.add_subcommand("info", "Print a tokenizer's sizes, pattern and special tokens");
  auto path = std::make_shared<std::string>();
  cmd->add_option("--tokenizer,-t", *path, "Ranks file, or GPT-2's directory / encoder.json")->required();
  cmd->callback([path] {
    Tokenizer tk = Tokenizer::load(*path);
    std::printf("ranks: %zu\nvocab_size: %zu\npattern: %s\n", tk.n_ranks(), tk.vocab_size(),
                tk.pattern().c_str());
    for (const auto& [s, id] : tk.specials()) std::printf("special: %s = %u\n", s.c_str(), id);
  });
}

}  // namespace

void add_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "Train, convert and inspect byte-level BPE tokenizers");
  cmd->require_subcommand(1);
  add_train_cmd(*cmd);
  add_convert_cmd(*cmd);
  add_info_cmd(*cmd);
}

}  // namespace ouro::cli
