#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/validators.h"
#include "common/log.h"
#include "common/threads.h"
#include "loop/task_eval.h"
#include "ouro/checkpoint.h"
#include "ouro/config.h"
#include "ouro/error.h"
#include "ouro/ops.h"
#include "train/evaluate.h"
#include "train/trainer.h"

namespace ouro::cli {

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Mean cross-entropy of a model on a token shard");
  struct Opts {
    std::string init, data, config, device;
    std::vector<std::string> sets;
    int batch = 0, seq = -1, batches = 0, threads = -1;
    bool json = false;
    std::string task, task_file, verifier_cmd;
    bool verifier_shell = false;
    double verifier_timeout_s = 60;
    int min_d = 1, max_d = 3, problems = 64, k = 1;
    float temperature = 1.0f;
  };
  auto o = std::make_shared<Opts>();
  const auto positive = integer_in(1, std::numeric_limits<int>::max(), "a positive integer");
  const auto non_negative = integer_in(0, std::numeric_limits<int>::max(), "an integer >= 0");
  cmd->add_option("--init", o->init, "Model: checkpoint or Hugging Face directory, or llm.c .bin")->required();
  cmd->add_option("--data", o->data, "Shard file, directory or glob (default: data.val of --config)");
  cmd->add_option("--config,-c", o->config,
                  "A run's TOML config: its train.* and run.* keys (batch, sequence, threads, device) apply; "
                  "the model comes from --init");
  cmd->add_option("--set", o->sets, "Override a key as train does: section.key=value (repeatable), e.g. "
                  "train.batch_size=16, train.seq_len=256, run.threads=2, run.device=cpu");
  cmd->add_option("--task", o->task,
                  "Exact-match accuracy on a task instead: add, sort, copy, copyd, rev or revpad, or file (--task-file)");
  cmd->add_option("--task-file", o->task_file, "--task file: JSONL of {prompt, answer?, difficulty?} per line");
  cmd->add_option("--verifier-cmd", o->verifier_cmd,
                  "--task: a checker program judging the answers (JSONL {prompt, sample} in, one score per line "
                  "out; >= 0.5 is correct), run without a shell");
  cmd->add_flag("--verifier-shell", o->verifier_shell, "--verifier-cmd: run it through /bin/sh -c");
  cmd->add_option("--verifier-timeout", o->verifier_timeout_s, "--verifier-cmd: seconds per run (default 60)")
      ->check(finite_in(1e-3, 1e6, "a positive number of seconds"));
  cmd->add_option("--min", o->min_d, "--task: smallest difficulty")->check(positive);
  cmd->add_option("--max", o->max_d, "--task: largest difficulty")->check(positive);
  cmd->add_option("--problems", o->problems, "--task: problems per difficulty")->check(positive);
  cmd->add_option("-k", o->k, "--task: also majority-of-K at --temperature")->check(positive);
  cmd->add_option("--temperature", o->temperature, "--task: sampling temperature for majority-of-K")
      ->check(finite_in(0, 1e6, "a finite number >= 0"));
  cmd->add_option("--batch", o->batch, "Batch size (= --set train.batch_size=N)")->check(positive);
  cmd->add_option("--seq", o->seq, "Sequence length (= --set train.seq_len=N; default: the model's)")
      ->check(positive);
  cmd->add_option("--batches", o->batches, "Evaluate only the first N full batches (default 0: every window)")
      ->check(non_negative);
  cmd->add_option("--device", o->device, "Backend: cpu, cuda or simt (= --set run.device=NAME)");
  cmd->add_option("--threads", o->threads, "Compute threads, 0 = all cores (= --set run.threads=N)")
      ->check(non_negative);
  cmd->add_flag("--json", o->json, "Print one JSON object {loss, tail_loss, tokens} on stdout");
  cmd->callback([o] {
    // The same keys as train: the model section from --init, the rest from --config and --set.
    const ModelFrom mf{load_model_config(o->init), "--init " + o->init};
    auto sets = o->sets;
    if (o->batch > 0) sets.push_back("train.batch_size=" + std::to_string(o->batch));
    if (o->seq > 0) sets.push_back("train.seq_len=" + std::to_string(o->seq));
    if (o->threads >= 0) sets.push_back("run.threads=" + std::to_string(o->threads));
    if (!o->device.empty()) sets.push_back("run.device=" + o->device);
    const Config cfg = load_config(o->config, sets, &mf);
    set_compute_threads(cfg.run.threads);
    LoadedModel lm = load_model(o->init);
    // A diverged model has no loss to report: nan from it would read as a result.
    const auto bad = std::count_if(lm.params.begin(), lm.params.end(), [](float w) { return !std::isfinite(w); });
    OURO_CHECK(bad == 0, "--init {}: the model holds {} non-finite weight(s); it diverged and cannot be evaluated",
               o->init, bad);
    if (!o->task.empty()) {
      auto task = make_task(o->task, o->task_file);
      auto ops = make_ops(cfg.run.device);
      GPT2 model(lm.config, *ops, std::max(1, o->k), lm.config.seq_len);
      model.set_params(lm.params);
      TaskEvalOptions te;
      te.min_d = o->min_d, te.max_d = o->max_d, te.problems = o->problems, te.k = o->k;
      te.temperature = o->temperature;
      te.verifier = {o->verifier_cmd, o->verifier_shell, o->verifier_timeout_s};
      auto r = evaluate_task(model, *task, te);
      r["task"] = o->task;
      if (o->json) std::puts(r.dump().c_str());
      else logger()->info("task {}: {}", o->task, r.dump());
      return;
    }
    const std::string data = o->data.empty() ? cfg.data.val : o->data;
    OURO_CHECK(!data.empty(), "eval: give --data SHARD (or a --config with data.val) for the loss, or --task NAME "
               "for accuracy");
    const int B = cfg.train.batch_size, T = cfg.train_seq_len();
    auto ops = make_ops(cfg.run.device);
    GPT2 model(lm.config, *ops, B, T);
    model.set_params(lm.params);
    auto r = evaluate(model, data, B, T, o->batches);
    OURO_CHECK(std::isfinite(r.loss), "--init {}: the loss on {} is non-finite ({}); the model's weights overflow",
               o->init, data, r.loss);
    if (o->json) {
      std::puts(nlohmann::json{{"loss", r.loss}, {"tail_loss", r.tail_loss}, {"tokens", r.tokens}}.dump().c_str());
    } else {
      logger()->info("loss {:.6f} over {} tokens (hardest 10% of windows: {:.6f})", r.loss, r.tokens, r.tail_loss);
    }
  });
}

}  // namespace ouro::cli
