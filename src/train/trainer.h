// The training loop: data, model, optimizer, schedule, evaluation, checkpoints, metrics.
// TrainSession is the engine the self-improvement loop (src/loop) drives round by round;
// train() runs a plain session from start to end.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "ouro/comm.h"
#include "ouro/config.h"
#include "ouro/data.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "train/evaluate.h"

namespace ouro {

class RunState;

struct TrainOptions {
  std::string init;         // weights to start from (checkpoint dir, HF dir, llm.c .bin)
  bool resume = false;      // continue from the newest checkpoint in run.out_dir
  int64_t stop_at = -1;     // save a checkpoint and stop after this many steps (a partial run)
  // Nsight capture range (--profile-steps A:B): the profiler records 0-based steps A..B-1 only.
  int64_t profile_first_step = -1;
  int64_t profile_last_step = -1;
};

struct TrainSummary {
  int64_t steps_done = 0;
  double last_loss = 0;
  double val_loss = -1;     // -1 when no evaluation ran
  int stop_signal = 0;      // the signal (SIGINT, SIGTERM, SIGHUP) that stopped the run, or 0
};

// Exit status of a run stopped by a signal after checkpointing its step: 128 + the signal
// (130 SIGINT, 143 SIGTERM, 129 SIGHUP), as a shell reports a process killed by it, so scripts
// and schedulers tell an interrupted run from a finished one (0) or a failed one (1).
constexpr int interrupted_exit_status(int signal) { return 128 + signal; }

// Supplies the synthetic rows of a mixed batch: `rows` windows of T+1 tokens as inputs and
// targets (rows*T each), a pure function of (step, micro) so that a rolled-back or resumed
// round redraws the same rows.
class SyntheticSource {
 public:
  virtual ~SyntheticSource() = default;
  virtual void fill(int rows, int T, int64_t step, int micro, int* inputs, int* targets) = 0;
};

// What a session trains with, where the caller supplies it: a test passes a fake communicator,
// another backend or a loader of its own, or wraps the run's own communicator (one that fails
// at a chosen call, say: tests/fault_injection.h). Null: the run's own, made from the config
// (the communicator per dist.* and the launcher's ranks, Ops per run.device, the loader over
// data.train for this rank).
struct TrainParts {
  // Complete: it carries the device collectives where the backend needs them.
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Ops> ops;
  std::unique_ptr<DataLoader> loader;  // B = train.batch_size, T = the training seq_len
  // A decorator of the session's communicator (`comm` or the run's own): it receives it once it
  // is complete and the ranks have agreed on the config, and returns the one the run uses.
  std::function<std::unique_ptr<Communicator>(std::unique_ptr<Communicator>)> wrap_comm;
  // Called at each phase of each checkpoint write (RunState::set_checkpoint_observer).
  std::function<void(int64_t step, const char* phase)> checkpoint_observer;
};

class TrainSession {
 public:
  TrainSession(const Config& cfg, const TrainOptions& opt, TrainParts parts = {});
  ~TrainSession();
  TrainSession(const TrainSession&) = delete;
  TrainSession& operator=(const TrainSession&) = delete;

  // Trains until `until` steps are done, the run's stop step is reached, or a stop signal
  // arrives (then the step is checkpointed). syn_rows of every micro-batch's B rows come from
  // `syn`. Returns false when the run must stop.
  bool run_until(int64_t until, SyntheticSource* syn = nullptr, int syn_rows = 0);
  // The end of a run: a checkpoint of the last step (if not written yet) and a final eval.
  TrainSummary finish();

  // Held-out loss over data.val (reduced over ranks); per-window losses when tails matter.
  EvalResult evaluate_val();

  // Everything a round may change, for an exact rollback.
  struct Snapshot {
    std::vector<float> params, adam_m, adam_v;
    int64_t step = 0, opt_steps = 0;
    LoaderPosition loader;
    int bad_streak = 0;
  };
  Snapshot snapshot();  // a collective under ZeRO-1 on devices (gathers the fp32 masters)
  void restore(const Snapshot& s);

  // The run directory, resume and checkpoint contents: components (the loop) register the
  // state their checkpoints carry there and read back what a resumed run saved.
  RunState& run_state();
  void save();  // checkpoint the current step
  // false: run_until neither checkpoints every checkpoint.every steps nor when a stop signal
  // arrives; the caller (the loop, which checkpoints only between rounds) does.
  void set_autosave(bool on) { autosave_ = on; }

  int64_t step() const { return step_; }
  int64_t last_step() const;  // where this run stops: train.steps or --stop-at
  bool stop_requested() const { return stopped_; }
  int stop_signal() const { return stop_signal_; }
  GPT2& model() { return *model_; }
  Ops& ops() { return *ops_; }
  Communicator& comm() { return *comm_; }
  const Config& config() const { return cfg_; }
  DataLoader& loader() { return *loader_; }
  double step_flops() const;  // FLOPs of one optimizer step over all ranks
  bool is_rank0() const { return comm_->rank() == 0; }

 private:
  // Over several ranks: every rank runs rank 0's config (checked where the host collectives
  // are), and the device communicator joins (own_comm: the session made the communicator).
  void agree_on_config(bool own_comm);
  void connect(TrainParts& parts);
  void load_start_state(std::unique_ptr<DataLoader> given);
  void next_batch_or_checkpoint(int* x, int* y);
  bool one_step(SyntheticSource* syn, int syn_rows);
  struct StepLoss {
    double loss, norm;
  };
  void run_micro_batches(SyntheticSource* syn, int syn_rows);
  StepLoss loss_and_norm();
  double lr_at(int64_t step) const;
  void skip_step(const StepLoss& r, double lr);
  void apply_update(double norm, double lr);
  // syn_rows < 0: a step without a synthetic source.
  void record_step(std::chrono::steady_clock::time_point started, const StepLoss& r, double lr,
                   int syn_rows);
  double run_eval();

  Config cfg_;
  TrainOptions opt_;
  std::string out_;
  std::unique_ptr<RunState> run_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Ops> ops_;
  std::unique_ptr<GPT2> model_;
  std::unique_ptr<DataLoader> loader_;
  std::unique_ptr<class MetricsWriter> metrics_;
  // The gradient exchange. Under ZeRO-1 on devices the fp32 masters outside this rank's shard
  // are stale after a step: they are gathered before they leave the model (save, snapshot) and
  // before run_until returns, so between calls of run_until (where the loop reads the weights)
  // they are whole.
  std::unique_ptr<class GradientSync> grads_;
  int64_t step_ = 0;        // steps completed
  int64_t opt_steps_ = 0;   // optimizer updates applied (skipped steps excluded)
  int64_t first_step_ = 0;  // where this process started
  int bad_streak_ = 0;
  double elapsed_ = 0;      // training seconds, including earlier (resumed-from) runs
  double last_val_ = -1;
  double last_loss_ = 0;
  int64_t saved_step_ = -1;
  bool stopped_ = false;
  int stop_signal_ = 0;
  bool autosave_ = true;
  bool graphs_ = false;  // train.cuda_graph in effect (train/graph_step.h)
  LoaderPosition step_start_position_;  // the loader's position when this step began
  std::chrono::steady_clock::time_point t0_;
  std::unique_ptr<class StopSignals> signals_;  // installed once the session is ready
};

}  // namespace ouro
