#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "ouro/checkpoint.h"
#include "ouro/error.h"
#include "ouro/ops.h"
#include "train/evaluate.h"
#include "train/run_log.h"
#include "train/trainer.h"

namespace ouro::cli {

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Mean cross-entropy of a model on a token shard");
  struct Opts {
    std::string init, data, device = "cpu";
    int batch = 4, seq = 0, batches = 0, threads = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--init", o->init, "Model: checkpoint or Hugging Face directory, or llm.c .bin")->required();
  cmd->add_option("--data", o->data, "Shard file, directory or glob")->required();
  cmd->add_option("--batch", o->batch, "Batch size")->check(CLI::PositiveNumber);
  cmd->add_option("--seq", o->seq, "Sequence length (default: the model's)");
  cmd->add_option("--batches", o->batches, "Evaluate only the first N batches (default: all)");
  cmd->add_option("--device", o->device, "Backend: cpu, cuda or simt");
  cmd->add_option("--threads", o->threads, "Compute threads (0 = all cores)");
  cmd->add_flag("--json", o->json, "Print one JSON object {loss, tokens} on stdout");
  cmd->callback([o] {
    set_compute_threads(o->threads);
    LoadedModel lm = load_model(o->init);
    const int T = o->seq > 0 ? o->seq : lm.config.seq_len;
    OURO_CHECK(T <= lm.config.seq_len, "--seq {} exceeds the model's {} positions", T, lm.config.seq_len);
    auto ops = make_ops(o->device);
    GPT2 model(lm.config, *ops, o->batch, T);
    model.set_params(lm.params);
    auto r = evaluate(model, o->data, o->batch, T, o->batches);
    if (o->json) {
      std::puts(nlohmann::json{{"loss", r.loss}, {"tokens", r.tokens}}.dump().c_str());
    } else {
      logger()->info("loss {:.6f} over {} tokens", r.loss, r.tokens);
    }
  });
}

}  // namespace ouro::cli
