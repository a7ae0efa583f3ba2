// The training loop: data, model, optimizer, schedule, evaluation, checkpoints, metrics.
#pragma once
#include <cstdint>
#include <set>
#include <string>

#include "ouro/config.h"

namespace ouro {

struct TrainOptions {
  std::string init;         // weights to start from (checkpoint dir, HF dir, llm.c .bin)
  bool resume = false;      // continue from the newest checkpoint in run.out_dir
  int64_t stop_at = -1;     // save a checkpoint and stop after this many steps (a partial run)
  std::set<int64_t> fault_nan_steps;  // testing: treat these steps' losses as NaN
  int fault_kill_rank = -1;           // testing: this rank sends itself fault_signal ...
  int64_t fault_kill_step = -1;       // ... when it reaches this 0-based step
  int fault_signal = 9;               // SIGKILL: the rank dies; SIGSTOP: it hangs
};

struct TrainSummary {
  int64_t steps_done = 0;
  double last_loss = 0;
  double val_loss = -1;     // -1 when no evaluation ran
};

// Throws ouro::Error on bad input and after too many consecutive non-finite steps.
TrainSummary train(const Config& cfg, const TrainOptions& opt);

// Applies run.threads to OpenMP and OpenBLAS (0 = every core).
void set_compute_threads(int threads);

}  // namespace ouro
