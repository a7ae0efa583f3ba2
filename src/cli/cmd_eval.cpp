#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "loop/task_eval.h"
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
    std::string task;
    int min_d = 1, max_d = 3, problems = 64, k = 1;
    float temperature = 1.0f;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--init", o->init, "Model: checkpoint or Hugging Face directory, or llm.c .bin")->required();
  cmd->add_option("--data", o->data, "Shard file, directory or glob");
  cmd->add_option("--task", o->task, "Exact-match accuracy on a built-in task instead: add, sort or copy");
  cmd->add_option("--min", o->min_d, "--task: smallest difficulty")->check(CLI::PositiveNumber);
  cmd->add_option("--max", o->max_d, "--task: largest difficulty")->check(CLI::PositiveNumber);
  cmd->add_option("--problems", o->problems, "--task: problems per difficulty")->check(CLI::PositiveNumber);
  cmd->add_option("-k", o->k, "--task: also majority-of-K at --temperature")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", o->temperature, "--task: sampling temperature for majority-of-K");
  cmd->add_option("--batch", o->batch, "Batch size")->check(CLI::PositiveNumber);
  cmd->add_option("--seq", o->seq, "Sequence length (default: the model's)");
  cmd->add_option("--batches", o->batches, "Evaluate only the first N batches (default: all)");
  cmd->add_option("--device", o->device, "Backend: cpu, cuda or simt");
  cmd->add_option("--threads", o->threads, "Compute threads (0 = all cores)");
  cmd->add_flag("--json", o->json, "Print one JSON object {loss, tail_loss, tokens} on stdout");
  cmd->callback([o] {
    set_compute_threads(o->threads);
    LoadedModel lm = load_model(o->init);
    // A diverged model has no loss to report: nan from it would read as a result.
    const auto bad = std::count_if(lm.params.begin(), lm.params.end(), [](float w) { return !std::isfinite(w); });
    OURO_CHECK(bad == 0, "--init {}: the model holds {} non-finite weight(s); it diverged and cannot be evaluated",
               o->init, bad);
    if (!o->task.empty()) {
      auto task = make_task(o->task);
      auto ops = make_ops(o->device);
      GPT2 model(lm.config, *ops, std::max(1, o->k), lm.config.seq_len);
      model.set_params(lm.params);
      TaskEvalOptions te;
      te.min_d = o->min_d, te.max_d = o->max_d, te.problems = o->problems, te.k = o->k;
      te.temperature = o->temperature;
      auto r = evaluate_task(model, *task, te);
      r["task"] = o->task;
      if (o->json) std::puts(r.dump().c_str());
      else logger()->info("task {}: {}", o->task, r.dump());
      return;
    }
    OURO_CHECK(!o->data.empty(), "eval: give --data SHARD (loss) or --task NAME (accuracy)");
    const int T = o->seq > 0 ? o->seq : lm.config.seq_len;
    OURO_CHECK(T <= lm.config.seq_len, "--seq {} exceeds the model's {} positions", T, lm.config.seq_len);
    auto ops = make_ops(o->device);
    GPT2 model(lm.config, *ops, o->batch, T);
    model.set_params(lm.params);
    auto r = evaluate(model, o->data, o->batch, T, o->batches);
    OURO_CHECK(std::isfinite(r.loss), "--init {}: the loss on {} is non-finite ({}); the model's weights overflow",
               o->init, o->data, r.loss);
    if (o->json) {
      std::puts(nlohmann::json{{"loss", r.loss}, {"tail_loss", r.tail_loss}, {"tokens", r.tokens}}.dump().c_str());
    } else {
      logger()->info("loss {:.6f} over {} tokens (hardest 10% of windows: {:.6f})", r.loss, r.tokens, r.tail_loss);
    }
  });
}

}  // namespace ouro::cli
