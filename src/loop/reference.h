// The reference copy of the model for the ref_logprob scorer: the weights at the start of a
// round, kept in memory and on disk so that --resume in the middle of a loop scores with the very
// same bits. "frozen" scores every round against the weights of round 0's start; "lagged"
// against the start of round R - ref_lag (round 0's start while R < ref_lag).
//
// Weights are far too big for the checkpoint's state.json: each is a file run.out_dir/
// ref_step_NNNNNN.f32 (named by the step the weights come from), written atomically by rank 0;
// the loop state records its name and a content hash, checked on resume. Files that neither the
// loop's state nor any remaining checkpoint refers to are deleted.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loop/selection.h"
#include "ouro/comm.h"
#include "ouro/config_loop.h"
#include "ouro/model.h"

namespace ouro {

struct ReferenceEntry {
  int round = 0;              // the round whose start these weights are
  int64_t step = 0;           // the training step they come from
  std::string file;           // name inside run.out_dir
  std::string hash;           // content_hash of the weights, 16 hex digits
  std::vector<float> weights; // fp32 master weights
};

// 64-bit hash of the weights' bytes (splitmix64 chained over 8-byte words), as 16 hex digits.
std::string content_hash(const std::vector<float>& w);
// The file format: "OUROREF1", uint64 count, count little-endian fp32.
void write_reference_file(const std::filesystem::path& path, const std::vector<float>& w);
// Reads and checks magic, size, count (== expect_count) and hash; errors name the file.
std::vector<float> read_reference_file(const std::filesystem::path& path, size_t expect_count,
                                       const std::string& expect_hash);

class ReferenceStore {
 public:
  ReferenceStore(ReferenceKind kind, int lag, std::filesystem::path out_dir, Communicator& comm)
      : kind_(kind), lag_(lag), out_(std::move(out_dir)), comm_(comm) {}

  // The round that round `r`'s reference comes from.
  int source_round(int r) const;
  // Round `r` starts with `weights` at `step`: keep them (rank 0 writes the file) if a present
  // or future round will score against them, and drop what no round can need any more
  // (a redone round, after an interruption, needs its own reference again, so that stays).
  void round_starts(int r, int64_t step, const std::vector<float>& weights);
  // The reference of round r (round_starts(r, ...) must have run).
  const ReferenceEntry& for_round(int r) const;

  nlohmann::json to_json() const;  // names, steps and hashes (not the weights)
  // Reloads the files the state names: rank 0 reads and checks them, the others receive the
  // weights by broadcast (a clear error on every rank when rank 0 cannot).
  void from_json(const nlohmann::json& j, size_t num_params);
  // Rank 0: delete ref_step_*.f32 files in run.out_dir that neither this store nor any
  // checkpoint's state.json (checkpoints/step_*/state.json, "loop"."ref") names.
  void collect_garbage() const;

 private:
  ReferenceKind kind_;
  int lag_;
  std::filesystem::path out_;
  Communicator& comm_;
  std::map<int, ReferenceEntry> entries_;  // by round
};

// Length-normalized log-prob of each candidate's generated tokens under `ref` (a model with room
// for K rows of prompt + max_new_tokens): one forward per prompt over its K samples, padded to
// T = min(seq_len, prompt length + max_new_tokens) so that a candidate's score does not depend
// on how prompts are spread over ranks. Fills Candidate::ref_logprob (-inf for an empty
// generation). Returns the FLOPs spent (forward FLOPs per padded token).
double score_with_reference(GPT2& ref, std::vector<Candidate>& cands, int k, int max_new_tokens,
                            double fwd_flops_per_token);

}  // namespace ouro
