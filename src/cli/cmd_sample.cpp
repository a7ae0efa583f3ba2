#include <algorithm>
#include <cstdio>
#include <limits>

#include "cli/commands.h"
#include "cli/validators.h"
#include "common/log.h"
#include "common/threads.h"
#include "model/generate.h"
#include "ouro/checkpoint.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/ops.h"
#include "train/run_tokenizer.h"
#include "train/trainer.h"

namespace ouro::cli {

void add_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand("sample", "Generate text from a model with a KV cache");
  struct Opts {
    std::string init, prompt, device = "cpu", tokenizer;
    int max_tokens = 200, top_k = 0, threads = 0;
    float temperature = 1.0f, top_p = 1.0f;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--init", o->init, "Model: checkpoint or Hugging Face directory, or llm.c .bin")->required();
  cmd->add_option("--prompt,-p", o->prompt, "Prompt text");
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer (default: tokenizer.tiktoken of the run the checkpoint belongs to; byte-level for 257 tokens)");
  cmd->add_option("--max-tokens,-n", o->max_tokens,
                  "Tokens to generate (at most what the model's context leaves after the prompt)")
      ->check(integer_in(1, std::numeric_limits<int>::max(), "a positive integer"));
  cmd->add_option("--temperature,-t", o->temperature, "Softmax temperature; 0 = greedy")
      ->check(finite_in(0, 1e6, "a finite number >= 0"));
  cmd->add_option("--top-k", o->top_k, "Keep the k most likely tokens (0 = off)")
      ->check(integer_in(0, std::numeric_limits<int>::max(), "an integer >= 0"));
  cmd->add_option("--top-p", o->top_p, "Nucleus sampling mass (1 = off)")
      ->check(finite_in(0, 1, "a number in (0, 1]", /*lo_open=*/true));
  cmd->add_option("--seed", o->seed, "Random seed");
  cmd->add_option("--device", o->device, "Backend: cpu, cuda or simt");
  cmd->add_option("--threads", o->threads, "Compute threads (0 = all cores)");
  cmd->callback([o] {
    set_compute_threads(o->threads);
    LoadedModel lm = load_model(o->init);
    const Tokenizer tok = find_model_tokenizer(o->tokenizer, o->init, lm.config.vocab_size);
    const auto eot = static_cast<int>(tok.eot_id());
    auto ops = make_ops(o->device);
    GPT2 model(lm.config, *ops, 1, lm.config.seq_len);
    model.set_params(lm.params);
    std::vector<int> prompt{eot};
    for (uint32_t id : tok.encode(o->prompt)) prompt.push_back(static_cast<int>(id));
    // generate() stops when the context is full: say so rather than return fewer tokens silently.
    const int room = sample_room(lm.config.seq_len, static_cast<int>(prompt.size()));
    if (o->max_tokens > room)
      logger()->warn("sample: -n {} capped to {} token(s): the model's context is {} positions and the prompt "
                     "takes {} (with <|endoftext|>)",
                     o->max_tokens, room, lm.config.seq_len,
                     std::min<int>(static_cast<int>(prompt.size()), lm.config.seq_len - 1));
    SampleOptions so;
    so.max_tokens = std::min(o->max_tokens, room);
    so.temperature = o->temperature;
    so.top_k = o->top_k;
    so.top_p = o->top_p;
    so.seed = o->seed;
    so.stop_token = eot;  // a document ends there
    auto out = generate(model, prompt, so);
    const std::string text = o->prompt + decode_sample(tok, out);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  });
}

}  // namespace ouro::cli
