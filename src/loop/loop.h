// The self-improvement loop: after `loop.start_step` steps of ordinary pretraining, each round
// (1) freezes a snapshot and generates K samples for each of its prompts (real-text prefixes or
// task problems) with the KV cache, recording per-token log-probs; (2) scores and (3) filters
// them; (4) accepts the survivors into the replay buffer; (5) trains `loop.round_steps` steps
// with `syn_frac` of every batch's rows drawn from the buffer; (6) checks the guards: if the
// held-out loss or its hardest tail worsened by more than `guard_tolerance`, the round is rolled
// back to the exact state before it and syn_frac is halved. Everything per round goes to
// run.out_dir/rounds.jsonl; 20 accepted and 20 rejected samples per round to samples.jsonl.
#pragma once
#include <functional>

#include "train/trainer.h"

namespace ouro {

// What a caller adds to the loop's own checks.
struct LoopParts {
  // A guard of the caller's: true fails round `round`'s guards (recorded as "fault_injection"),
  // so the round is rolled back. Tests use it to exercise the rollback.
  std::function<bool(int round)> extra_guard_fails;
};

TrainSummary run_loop(TrainSession& session, LoopParts parts = {});

}  // namespace ouro
