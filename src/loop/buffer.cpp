#include "loop/buffer.h"

#include <algorithm>

#include "common/hash.h"
#include "ouro/error.h"

namespace ouro {
void to_json(nlohmann::json& j, const BufferSample& s) {
  j = {{"tokens", s.tokens}, {"score", s.score}, {"round", s.round}, {"uses", s.uses}};
}
void from_json(const nlohmann::json& j, BufferSample& s) {
  s.tokens = j.at("tokens").get<std::vector<int>>();
  s.score = j.at("score").get<double>();
  s.round = j.at("round").get<int>();
  s.uses = j.at("uses").get<int>();
}

int64_t ReplayBuffer::tokens() const {
  int64_t n = 0;
  for (const auto& s : samples_) n += static_cast<int64_t>(s.tokens.size());
  return n;
}

void ReplayBuffer::add(BufferSample s) {
  samples_.push_back(std::move(s));
  while (tokens() > cap_ && samples_.size() > 1) {
    // age: the oldest round goes first; score: the lowest score. Ties: the earliest added.
    auto victim = samples_.begin();
    for (auto it = samples_.begin(); it != samples_.end(); ++it) {
      bool worse = evict_ == EvictPolicy::score ? it->score < victim->score : it->round < victim->round;
      if (worse) victim = it;
    }
    samples_.erase(victim);
  }
}

void ReplayBuffer::start_round() {
  for (auto& s : samples_) s.uses++;
  std::erase_if(samples_, [&](const BufferSample& s) { return s.uses > reuse_limit_; });
}

void ReplayBuffer::fill(int rows, int T, int64_t step, int micro, int* inputs, int* targets) {
  OURO_CHECK(!samples_.empty(), "the synthetic buffer is empty");
  std::vector<int> stream;
  for (const auto& s : samples_) stream.insert(stream.end(), s.tokens.begin(), s.tokens.end());
  // Short buffers repeat so that a window always fits.
  while (stream.size() < static_cast<size_t>(T) + 1) stream.insert(stream.end(), stream.begin(), stream.end());
  const uint64_t starts = stream.size() - T;
  for (int r = 0; r < rows; ++r) {
    const uint64_t row = static_cast<uint64_t>(rank_) * static_cast<uint64_t>(rows) + static_cast<uint64_t>(r);
    uint64_t h = splitmix64_pair(splitmix64_pair(seed_, static_cast<uint64_t>(step)), static_cast<uint64_t>(micro) * 1000003u + row);
    size_t p = h % starts;
    for (int t = 0; t < T; ++t) {
      inputs[static_cast<size_t>(r) * T + t] = stream[p + t];
      targets[static_cast<size_t>(r) * T + t] = stream[p + t + 1];
    }
  }
}

nlohmann::json ReplayBuffer::to_json() const { return samples_; }

void ReplayBuffer::from_json(const nlohmann::json& j) { samples_ = j.get<std::vector<BufferSample>>(); }

}  // namespace ouro
