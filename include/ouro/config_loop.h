// The [loop] section: the self-improvement loop's settings (src/loop). In the config layer for
// the reason config_model.h gives.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "ouro/choice.h"

namespace ouro {

// loop: rounds train on the real data mixed with the accepted samples; baseline: the same rounds
// and FLOPs on real data only (the comparison arm); replace: each round's samples replace the
// buffer and fill whole batches (the model-collapse arm).
enum class LoopMode { loop, baseline, replace };
constexpr std::array<std::string_view, 3> choice_names(LoopMode) { return {"loop", "baseline", "replace"}; }

// The ref_logprob scorer's reference weights: those of the loop's start (frozen) or those of
// ref_lag rounds ago (lagged).
enum class ReferenceKind { frozen, lagged };
constexpr std::array<std::string_view, 2> choice_names(ReferenceKind) { return {"frozen", "lagged"}; }

// Which samples a full replay buffer drops first: the oldest (age) or the lowest-scored (score).
enum class EvictPolicy { age, score };
constexpr std::array<std::string_view, 2> choice_names(EvictPolicy) { return {"age", "score"}; }

// rounds = 0: plain training.
struct LoopSection {
  int rounds = 0;
  LoopMode mode = LoopMode::loop;
  int64_t start_step = 0;     // pretraining steps on real data before the first round
  int64_t round_steps = 50;   // training steps per round on the mix
  int prompts = 16;           // prompts per round, over all ranks (rank r generates for r, r+W, ...)
  int k = 4;                  // samples per prompt
  int prompt_tokens = 32;     // text: length of the real-text prefix used as a prompt
  int max_new_tokens = 64;
  double temperature = 1.0;
  int top_k = 0;
  double top_p = 1.0;
  double syn_frac = 0.25;     // fraction of each batch's rows drawn from the buffer
  std::string task = "";      // "" = text prompts; add | sort | copy | file
  std::string task_file = "";  // task = file: JSONL of {"prompt", "answer"?, "difficulty"?} (loop/task_file.h)
  // A checker program run once per round on JSONL {"prompt", "sample"} lines, writing one score per
  // line (>= 0.5: correct); empty: answers are compared with the task's (loop/verifier_command.h).
  std::string verifier_cmd = "";
  bool verifier_shell = false;      // run verifier_cmd through /bin/sh -c (default: no shell)
  double verifier_timeout_s = 60;   // per run; then the checker is killed and the run stops with an error
  int task_min = 1, task_max = 3;  // difficulties of the task's prompts (in round 0)
  int task_grow = 0;          // added to both per round: a curriculum that lengthens the problems
  std::string scorer = "logprob_band";  // comma list: logprob_band, min_prob, majority, verifier, answer_length, accept_all
  double band_lo = 0.25, band_hi = 0.75;  // quantiles of length-normalized log-prob kept
  double min_token_prob = 0.0;  // min_prob scorer: every token at least this likely
  // majority scorer: vote only among the answers answer_length passes (Lee et al. 2025's order:
  // filter, then vote); false: every stopped sample votes, so a wrong-length majority rejects
  // a right-length minority.
  bool majority_plausible_only = false;
  int majority_min_votes = 1;  // majority scorer: the winning answer needs at least this many of the K votes
  // ref_logprob scorer: the band of length-normalized log-probs under a reference copy of the
  // model: "frozen" (the weights when the loop started) or "lagged" (the weights ref_lag rounds ago).
  ReferenceKind ref = ReferenceKind::frozen;
  int ref_lag = 1;
  int dedup_n = 4;              // n-gram size for Jaccard dedup
  double dedup_threshold = 0.7; // reject when Jaccard with the buffer or real data >= this
  double max_repeat = 0.5;      // reject when one n-gram takes this fraction of a sample
  int min_new_tokens = 1;
  int per_prompt_cap = 2;       // accepted samples per prompt at most
  int64_t buffer_tokens = 100000;  // buffer cap
  EvictPolicy evict = EvictPolicy::age;
  int reuse_limit = 8;          // a sample leaves the buffer after this many rounds of use
  double guard_tolerance = 0.02;   // relative worsening of val loss (and tail) that rolls back
  double tail_frac = 0.1;          // the hardest fraction of validation windows
  double accept_min = 0.0, accept_max = 1.0;  // accept-rate bounds (outside: the round rolls back)
  // The accepted samples must keep this fraction of the real continuations' diversity
  // (distinct-2 and 1 - self-BLEU), text rounds only; 0: off.
  double diversity_guard = 0.5;
};

}  // namespace ouro
