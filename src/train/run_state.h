// A run's persistent state around its checkpoints: the run directory (locked for the run's
// life), what a run starts from (--resume: the newest checkpoint, checked for completeness and
// for config keys a resumed run must keep), the state.json every checkpoint carries, the
// fingerprints that prove the ranks hold the same weights, and the named state of components
// that ride along (the loop's rounds and replay buffer: "loop").
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ouro/checkpoint.h"
#include "ouro/comm.h"
#include "ouro/config.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "train/checkpoint_state.h"

namespace ouro {

// The trainer's counters a checkpoint records.
struct RunCounters {
  int64_t step = 0;       // steps completed
  int64_t opt_steps = 0;  // optimizer updates applied
  double elapsed_s = 0;   // training seconds, earlier (resumed-from) runs included
  LoaderPosition loader;
};

class RunState {
 public:
  explicit RunState(const Config& cfg);
  ~RunState();  // releases the run directory's lock
  RunState(const RunState&) = delete;
  RunState& operator=(const RunState&) = delete;

  // flock on run.out_dir/ouro.lock for the run's life (rank 0), before anything in it is read
  // or written: two runs must not share a directory.
  void lock_out_dir();

  // A component's state in every checkpoint: `save` is called at each checkpoint and its JSON
  // stored in state.json under `name`; a resumed run reads it back with resumed(name).
  void register_state(const std::string& name, std::function<nlohmann::json()> save);
  void unregister_state(const std::string& name) { savers_.erase(name); }
  // The named state of the checkpoint this run resumed from (null when none).
  const nlohmann::json& resumed(const std::string& name) const;

  // The checkpoint a run starts from: with --resume the newest in run.out_dir (none: a warning
  // and a fresh start); a fresh run refuses a run.out_dir that already holds checkpoints.
  std::optional<std::filesystem::path> start_checkpoint(bool resume) const;
  // Loads `dir` to resume from it: its files complete, state.json strict, the config keys that
  // decide what the next steps compute unchanged, the model the config's `model`.
  struct Resumed {
    TrainingCheckpoint checkpoint;
    RunCounters counters;
  };
  Resumed load(const std::filesystem::path& dir, const GPT2Config& model, int world);

  // Refuses to write weights that are non-finite or exploded, naming the newest checkpoint.
  void check_weights_sane(const std::vector<float>& params, int64_t step) const;
  // Every rank runs rank 0's config: rank 0's resolved config is the reference, every rank
  // compares its own against it, and all learn whether any differed so that none starts a run
  // the others refuse. The error names the keys. A collective.
  void check_same_config(Communicator& comm) const;
  // Every rank must hold the same weights; a checkpoint is the moment to prove it. Both copies
  // count: the fp32 masters and the weights the backend computes with (bf16 on devices).
  // A collective.
  void check_ranks_agree(Communicator& comm, const std::vector<float>& params, GPT2& model, Ops& ops,
                         int64_t step);
  // Writes the checkpoint of `c.step` (rank 0): d's weights and moments, and state.json from
  // the counters, the config and every registered component's state.
  std::filesystem::path write(CheckpointData d, const RunCounters& c, int world);
  // Called at each phase of a checkpoint write (save_checkpoint's on_phase) with its step.
  void set_checkpoint_observer(std::function<void(int64_t step, const char* phase)> f) {
    observer_ = std::move(f);
  }

 private:
  const Config& cfg_;
  std::string out_;
  int lock_fd_ = -1;
  std::map<std::string, std::function<nlohmann::json()>> savers_;
  nlohmann::json resumed_ = nlohmann::json::object();
  std::function<void(int64_t, const char*)> observer_;
};

}  // namespace ouro
