// Scoring and filtering of one round's generated candidates. Scorers judge quality without an
// external model; filters reject by rule. Each rejected candidate names the first filter that
// rejected it, so rounds.jsonl can say where samples go.
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "loop/text_metrics.h"
#include "ouro/config.h"

namespace ouro {

struct Candidate {
  int prompt = 0;            // index of its prompt in this round
  int sample = 0;            // which of the prompt's K samples (its sampling seed)
  Tokens prompt_tokens;      // the prompt
  Tokens gen;                // generated tokens (the stop token excluded)
  std::vector<float> logprobs;
  bool stopped = false;      // the model ended it itself
  Tokens reference;          // text: the real continuation of the prompt (for dedup, metrics)
  std::string answer;        // task: the extracted answer
  int verified = -1;         // task: 1 correct, 0 wrong, -1 no verifier
  int plausible = -1;        // task: 1 when the answer has a possible length/alphabet (Task::plausible)
  // filled by score_candidates
  double mean_logprob = 0;   // length-normalized log-prob: the self-score
  double min_prob = 0;
  // filled by score_with_reference (loop/reference.h) when the ref_logprob scorer is on
  double ref_logprob = std::nan("");
  bool accepted = false;
  std::string rejected_by;
};

// Fills mean_logprob and min_prob.
void score_candidates(std::vector<Candidate>& c);

// Applies the filters and the scorers of `loop.scorer` in a fixed order: length, repetition,
// each scorer (logprob_band, ref_logprob, min_prob, majority, verifier, answer_length, accept_all),
// dedup (against
// `existing` n-gram sets, the accepted so far, and the real continuation), per-prompt cap.
// logprob_band and ref_logprob keep the [band_lo, band_hi] quantile band of their score over
// the candidates the length and repetition filters left.
// Returns counts per rejecting filter.
std::map<std::string, int> select_candidates(std::vector<Candidate>& c, const LoopSection& cfg,
                                             const std::vector<Tokens>& existing);

}  // namespace ouro
