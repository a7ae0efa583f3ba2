// What each phase of a self-improvement round hands to the next (src/loop/loop.cpp runs them):
// begin (snapshot, held-out loss before) -> generate -> score -> select (into the replay buffer)
// -> train -> guard (commit or roll back) -> record (rounds.jsonl). The guards and the record
// are pure functions of these results, so they live here.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loop/selection.h"
#include "ouro/config.h"
#include "train/evaluate.h"
#include "train/trainer.h"

namespace ouro {

using RoundClock = std::chrono::steady_clock;

// The state before the round, to compare against and to roll back to.
struct RoundStart {
  RoundClock::time_point started;
  int64_t step = 0;
  TrainSession::Snapshot snapshot;
  nlohmann::json buffer;  // the replay buffer before the round
  double syn_frac = 0;
  EvalResult val;  // held-out loss before the round
  double fwd_flops_per_token = 0;
};

// This rank's candidates, as generation made them.
struct Generated {
  std::vector<Candidate> prompts;  // every prompt of the round (every rank knows them all)
  std::vector<Candidate> mine;     // this rank's share of the samples
  double seconds = 0;              // this rank's
};

// Every rank's candidates, gathered, completed and scored.
struct Scored {
  std::vector<Candidate> cands;
  double generate_s = 0;  // the slowest rank's
  double score_s = 0;     // the slowest rank's reference scoring, before the gather
  RoundClock::time_point gathered;  // selection's time counts as scoring from here
  double gen_tokens = 0;
  double score_flops = 0;
};

// What selection put into the replay buffer.
struct Selected {
  int generated = 0, accepted = 0;
  std::map<std::string, int> rejected_by;
  double score_s = 0;       // scoring and selection, all ranks
  int64_t extra_steps = 0;  // baseline: real-data steps worth the generation it skipped
};

struct Trained {
  int rows = 0;  // synthetic rows of each rank's batch
  double seconds = 0;
  EvalResult val;  // held-out loss after the round's training
};

// The accepted samples' diversity against the real text, and the guards' verdict.
struct Guards {
  double distinct_2 = 0, real_distinct_2 = 0, self_bleu = 0, real_self_bleu = 0;
  double distinct_1 = 0, distinct_3 = 0;
  double accept_rate = 0;
  std::vector<std::string> failed;  // the guards that failed, in a fixed order
  bool rolled_back = false;
};

// Guards, each a reason to roll back: the real held-out loss, overall or on its hardest tail,
// worse by more than guard_tolerance; the accepted samples' diversity below diversity_guard
// of the real continuations' (distinct-2, and novelty = 1 - self-BLEU; only where the round
// has real text to compare, not for tasks); the accept rate outside [accept_min, accept_max].
// forced: a failure injected for tests. The baseline never rolls back.
Guards check_guards(const LoopSection& L, const std::vector<Candidate>& cands, const Selected& sel,
                    const EvalResult& before, const EvalResult& after, bool forced);

// The round's rounds.jsonl record (task_accuracy and ref fields are the loop's to add).
// The replay buffer after the round, as the record shows it.
struct BufferSummary {
  int64_t tokens = 0;
  std::string fingerprint;  // equal fingerprints: bitwise equal buffers
};
nlohmann::json round_record(const LoopSection& L, int round, const RoundStart& start, const Scored& scored,
                            const Selected& sel, const Trained& trained, const Guards& g, int64_t step_end,
                            double step_flops, int world, const BufferSummary& buffer);
// The ref_logprob scorer's fields: which reference scored, its scores of the accepted and the
// rejected, and how well it predicts the verifier's labels.
void add_reference_record(nlohmann::json& rec, const LoopSection& L, const std::vector<Candidate>& cands,
                          const struct ReferenceEntry& ref);

}  // namespace ouro
