#include "loop/task_data.h"

#include <algorithm>
#include <climits>

#include "common/hash.h"
#include "ouro/error.h"

namespace ouro {
namespace {

// The most tokens one shard holds (llm.c's header counts them in an int32).
constexpr uint64_t kShardTokenLimit = INT32_MAX;
constexpr uint64_t kDifficultySalt = 0xD1FF1C017ull;  // difficulty draws apart from the problems' digits

// One document: <|endoftext|> + prompt + answer + "\n".
std::vector<uint32_t> document(const Task& task, int d, uint64_t seed, uint64_t index) {
  const Problem p = task.make(d, seed, index);
  OURO_CHECK(p.answer_known, "prepare --task {}: the prompt '{}' (difficulty {}) has no answer; training "
             "documents need one", task.name(), p.prompt.substr(0, 60), p.difficulty);
  std::vector<uint32_t> doc{static_cast<uint32_t>(kByteEot)};
  for (unsigned char c : problem_text(p)) doc.push_back(c);
  return doc;
}

std::vector<uint32_t> task_tokens(const Task& task, int64_t count, const TaskDataOptions& o, uint64_t seed) {
  std::vector<uint32_t> toks;
  size_t row_used = 0;  // tokens of the current row (row_tokens > 0)
  const size_t R = static_cast<size_t>(std::max(0, o.row_tokens));
  for (int64_t i = 0; i < count; ++i) {
    const auto index = static_cast<uint64_t>(i);
    const auto doc = document(task, task_difficulty(o.min_d, o.max_d, seed, index), seed, index);
    if (R > 0) {
      OURO_CHECK(doc.size() <= R, "prepare --task {}: a problem of {} tokens does not fit --row-tokens {}; "
                 "raise it (and model.seq_len with it) or lower --max", task.name(), doc.size(), R);
      if (row_used + doc.size() > R) {  // the rest of this row is padding; the problem starts the next
        toks.insert(toks.end(), R - row_used, static_cast<uint32_t>(kByteEot));
        row_used = 0;
      }
      row_used += doc.size();
    }
    toks.insert(toks.end(), doc.begin(), doc.end());
    // The estimate in prepare_task can be off for tasks whose problems grow with the index:
    // this keeps memory bounded by the limit whatever happens.
    OURO_CHECK(toks.size() <= kShardTokenLimit, "prepare --task: --count {} makes more than {} tokens "
               "(a shard's limit) after {} problems; lower --count", count, kShardTokenLimit, i + 1);
  }
  // A whole last row, and the one token past it that the loader's last window reads as its
  // final target.
  if (R > 0 && row_used > 0) toks.insert(toks.end(), R - row_used, static_cast<uint32_t>(kByteEot));
  if (R > 0) toks.push_back(static_cast<uint32_t>(kByteEot));
  return toks;
}

// Checked before any memory grows: the first problems' average size times --count.
void check_task_size(const Task& task, const TaskDataOptions& o) {
  const int64_t probe = std::min<int64_t>(o.count, 256);
  const double per = static_cast<double>(task_tokens(task, probe, o, o.seed).size()) / probe;
  const double estimate = per * static_cast<double>(o.count);
  OURO_CHECK(estimate <= static_cast<double>(kShardTokenLimit),
             "prepare --task: --count {} would make about {:.3g} tokens ({:.1f} per problem), above a "
             "shard's limit of {}; lower --count (at most about {})",
             o.count, estimate, per, kShardTokenLimit, static_cast<int64_t>(kShardTokenLimit / per));
}

}  // namespace

int task_difficulty(int min_d, int max_d, uint64_t seed, uint64_t index) {
  const auto span = static_cast<uint64_t>(max_d - min_d + 1);
  return min_d + static_cast<int>(splitmix64_pair(seed ^ kDifficultySalt, index) % span);
}

PrepareResult prepare_task(const Task& task, const std::filesystem::path& out_prefix, const TaskDataOptions& o) {
  OURO_CHECK(o.count > 0, "prepare --task: --count must be positive");
  OURO_CHECK(o.min_d >= 1 && o.min_d <= o.max_d, "prepare --task: need 1 <= --min <= --max (got {}..{})", o.min_d,
             o.max_d);
  OURO_CHECK(o.val_frac > 0 && o.val_frac <= 0.5, "prepare --task: --val-frac must be in (0, 0.5]");
  OURO_CHECK(o.row_tokens >= 0, "prepare --task: --row-tokens must be >= 0 (got {})", o.row_tokens);
  PrepareResult r;
  r.train = out_prefix.string() + "_train.bin";
  r.val = out_prefix.string() + "_val.bin";
  check_task_size(task, o);
  auto train = task_tokens(task, o.count, o, o.seed);
  // The validation problems come from another seed: no problem is shared by construction
  // other than by chance collisions of short problems.
  auto val = task_tokens(task, std::max<int64_t>(1, static_cast<int64_t>(o.count * o.val_frac)), o,
                         o.seed ^ 0x5EED5EEDull);
  write_shard(r.train, train, kByteVocab);
  write_shard(r.val, val, kByteVocab);
  r.train_tokens = train.size();
  r.val_tokens = val.size();
  r.vocab_size = kByteVocab;
  return r;
}

}  // namespace ouro
