// The synthetic replay buffer: accepted samples accumulate across rounds (never replacing the
// real data), capped in tokens, evicted by age or score, and retired after `reuse_limit` rounds
// of use. It is also the SyntheticSource the trainer draws mixed rows from.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ouro/config_loop.h"
#include "train/trainer.h"

namespace ouro {

struct BufferSample {
  std::vector<int> tokens;  // a whole document: separator, prompt, generated tokens
  double score = 0;         // the self-score it was accepted with (higher is better)
  int round = 0;            // the round that produced it
  int uses = 0;             // rounds it has been trained on
};
void to_json(nlohmann::json& j, const BufferSample& s);
void from_json(const nlohmann::json& j, BufferSample& s);

class ReplayBuffer final : public SyntheticSource {
 public:
  // rank: this process's rank in a data-parallel run, whose rows of the global batch it fills.
  ReplayBuffer(int64_t cap_tokens, EvictPolicy evict, int reuse_limit, uint64_t seed, int rank = 0)
      : cap_(cap_tokens), evict_(evict), reuse_limit_(reuse_limit), seed_(seed), rank_(rank) {}
  void add(BufferSample s);  // evicts to stay under the cap
  // A round of training on the buffer is about to start: count the use, retire the worn out.
  void start_round();
  void clear() { samples_.clear(); }
  int64_t tokens() const;
  size_t size() const { return samples_.size(); }
  const std::vector<BufferSample>& samples() const { return samples_; }
  // Windows of T+1 tokens cut from the concatenated samples at positions drawn from
  // (seed, step, micro, row): a pure function, so rollback and resume redraw the same rows.
  // Rank r's rows are rows r*rows .. r*rows + rows-1 of the draw, so W ranks with `rows` each
  // draw exactly the windows one rank with W*rows draws (not W copies of the same ones).
  void fill(int rows, int T, int64_t step, int micro, int* inputs, int* targets) override;

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);

 private:
  int64_t cap_;
  EvictPolicy evict_;
  int reuse_limit_;
  uint64_t seed_;
  int rank_;
  std::vector<BufferSample> samples_;
};

}  // namespace ouro
