#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "cli/commands.h"
#include "cli/train.h"
#include "ouro/checkpoint.h"
#include "ouro/config.h"
#include "ouro/error.h"
#include "train/run_log.h"
#include "train/trainer.h"

namespace ouro::cli {

namespace {

// "A:B" -> {A, B}: 0-based steps, A captured, B not (the profiler range; tools/profile.sh).
std::pair<int64_t, int64_t> parse_profile_steps(const std::string& s) {
  const size_t colon = s.find(':');
  auto number = [&](const std::string& part) -> int64_t {
    OURO_CHECK(!part.empty() && part.find_first_not_of("0123456789") == std::string::npos && part.size() <= 18,
               "--profile-steps '{}': expected A:B, two non-negative step numbers", s);
    return std::stoll(part);
  };
  OURO_CHECK(colon != std::string::npos, "--profile-steps '{}': expected A:B (e.g. 10:13)", s);
  const int64_t first = number(s.substr(0, colon)), last = number(s.substr(colon + 1));
  OURO_CHECK(last > first, "--profile-steps '{}': B must be greater than A (steps A..B-1 are captured)", s);
  return {first, last};
}

}  // namespace

void add_train(CLI::App& app) { add_train(app, TrainHooks{}); }

void add_train(CLI::App& app, const TrainHooks& hooks) {
  auto* cmd = app.add_subcommand("train", "Train a model from a TOML config");
  struct Opts {
    std::string config;
    std::vector<std::string> sets;
    std::string init, device;
    bool resume = false;
    int64_t stop_at = -1;
    std::string profile_steps;  // "A:B", empty = no capture range
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->config, "TOML config file")->required();
  cmd->add_option("--set", o->sets, "Override a key: section.key=value (repeatable)");
  cmd->add_option("--init", o->init, "Start from weights: a checkpoint or Hugging Face directory, or an llm.c .bin (its shape "
                  "fills the model.* keys the config leaves unset)");
  cmd->add_option("--device", o->device, "Backend: cpu, cuda or simt (overrides run.device)");
  cmd->add_flag("--resume", o->resume, "Continue exactly from the newest checkpoint in run.out_dir");
  cmd->add_option("--stop-at", o->stop_at, "Checkpoint and stop after this many steps (the schedule still spans train.steps)");
  cmd->add_option("--profile-steps", o->profile_steps,
                  "Profile 0-based steps A..B-1 only (cudaProfilerStart/Stop around them; tools/profile.sh)")
      ->type_name("A:B");
  cmd->callback([o, hooks] {
    auto sets = o->sets;
    if (!o->device.empty()) sets.push_back("run.device=" + o->device);
    // --init supplies the model section: its shape is in the checkpoint's config.json (or the
    // llm.c header), and a config key that sets a different one is refused.
    std::optional<ModelFrom> init_model;
    if (!o->init.empty()) init_model = ModelFrom{load_model_config(o->init), "--init " + o->init};
    Config cfg = load_config(o->config, sets, init_model ? &*init_model : nullptr);
    check_training_memory(cfg);
    TrainOptions t;
    t.init = o->init;
    t.resume = o->resume;
    t.stop_at = o->stop_at;
    if (!o->profile_steps.empty())
      std::tie(t.profile_first_step, t.profile_last_step) = parse_profile_steps(o->profile_steps);
    auto s = train(cfg, t, hooks);
    if (s.val_loss >= 0) logger()->info("final val loss {:.4f}", s.val_loss);
    // Interrupted (checkpointed): a distinct status, so a scheduler can requeue the job.
    if (s.stop_signal != 0) throw ExitStatus{interrupted_exit_status(s.stop_signal)};
  });
}

}  // namespace ouro::cli
