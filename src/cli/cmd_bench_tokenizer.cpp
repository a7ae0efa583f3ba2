// `ouro bench tokenizer`, registered under `ouro bench`.
#include <cstdio>

#include "bench/tokenizer_bench.h"
#include "cli/commands.h"

namespace ouro::cli {

void add_bench_tokenizer(CLI::App& bench) {
  auto* tok = bench.add_subcommand("tokenizer", "Encoding MB/s of ouro (1 and N threads) and tiktoken on the same text");
  struct Opts {
    TokenizerBenchOptions b;
    bool json = false, no_tiktoken = false;
  };
  auto o = std::make_shared<Opts>();
  tok->add_option("--tokenizer,-t", o->b.tokenizer, "Ranks file, or GPT-2's directory / encoder.json")->required();
  tok->add_option("--input,-i", o->b.input, "Text file to encode")->required()->check(CLI::ExistingFile);
  tok->add_option("--threads", o->b.threads, "Threads of the multi-threaded run (0 = all cores)");
  tok->add_option("--repeats", o->b.repeats, "Each figure is the best of this many runs")->check(CLI::PositiveNumber);
  tok->add_flag("--no-tiktoken", o->no_tiktoken, "Do not run tiktoken");
  tok->add_flag("--json", o->json, "Print the figures as JSON on stdout");
  tok->callback([o] {
    o->b.tiktoken = !o->no_tiktoken;
    auto r = bench_tokenizer(o->b);
    if (o->json) std::puts(r.dump(2).c_str());
  });
}

}  // namespace ouro::cli
