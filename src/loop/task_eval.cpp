#include "loop/task_eval.h"

#include <algorithm>
#include <climits>
#include <map>

#include "model/generate.h"
#include "ouro/error.h"

namespace ouro {
namespace {

// The most tokens one shard holds (llm.c's header counts them in an int32).
constexpr uint64_t kShardTokenLimit = INT32_MAX;

std::vector<uint32_t> task_tokens(const Task& task, int64_t count, int min_d, int max_d, uint64_t seed) {
  std::vector<uint32_t> toks;
  const int span = max_d - min_d + 1;
  for (int64_t i = 0; i < count; ++i) {
    toks.push_back(kByteEot);
    const Problem p = task.make(min_d + static_cast<int>(i % span), seed, static_cast<uint64_t>(i));
    OURO_CHECK(p.answer_known, "prepare --task {}: the prompt '{}' (difficulty {}) has no answer; training "
               "documents need one", task.name(), p.prompt.substr(0, 60), p.difficulty);
    for (unsigned char c : problem_text(p)) toks.push_back(c);
    // The estimate in prepare_task can be off for tasks whose problems grow with the index:
    // this keeps memory bounded by the limit whatever happens.
    OURO_CHECK(toks.size() <= kShardTokenLimit, "prepare --task: --count {} makes more than {} tokens "
               "(a shard's limit) after {} problems; lower --count", count, kShardTokenLimit, i + 1);
  }
  return toks;
}

// Checked before any memory grows: the first problems' average size times --count.
void check_task_size(const Task& task, int64_t count, int min_d, int max_d, uint64_t seed) {
  const int64_t probe = std::min<int64_t>(count, 256);
  const double per = static_cast<double>(task_tokens(task, probe, min_d, max_d, seed).size()) / probe;
  const double estimate = per * static_cast<double>(count);
  OURO_CHECK(estimate <= static_cast<double>(kShardTokenLimit),
             "prepare --task: --count {} would make about {:.3g} tokens ({:.1f} per problem), above a "
             "shard's limit of {}; lower --count (at most about {})",
             count, estimate, per, kShardTokenLimit, static_cast<int64_t>(kShardTokenLimit / per));
}

std::string bytes_text(const std::vector<int>& t) {
  std::string s;
  for (int x : t)
    if (x >= 0 && x < 256) s += static_cast<char>(x);
  return s;
}

}  // namespace

PrepareResult prepare_task(const Task& task, const std::filesystem::path& out_prefix, int64_t count,
                           int min_d, int max_d, uint64_t seed, double val_frac) {
  OURO_CHECK(count > 0, "prepare --task: --count must be positive");
  OURO_CHECK(min_d >= 1 && min_d <= max_d, "prepare --task: need 1 <= --min <= --max (got {}..{})", min_d, max_d);
  OURO_CHECK(val_frac > 0 && val_frac <= 0.5, "prepare --task: --val-frac must be in (0, 0.5]");
  PrepareResult r;
  r.train = out_prefix.string() + "_train.bin";
  r.val = out_prefix.string() + "_val.bin";
  check_task_size(task, count, min_d, max_d, seed);
  auto train = task_tokens(task, count, min_d, max_d, seed);
  // The validation problems come from another seed: no problem is shared by construction
  // other than by chance collisions of short problems.
  auto val = task_tokens(task, std::max<int64_t>(1, static_cast<int64_t>(count * val_frac)), min_d, max_d,
                         seed ^ 0x5EED5EEDull);
  write_shard(r.train, train, kByteVocab);
  write_shard(r.val, val, kByteVocab);
  r.train_tokens = train.size();
  r.val_tokens = val.size();
  r.vocab_size = kByteVocab;
  return r;
}

nlohmann::json evaluate_task(GPT2& model, const Task& task, const TaskEvalOptions& opt) {
  nlohmann::json greedy = nlohmann::json::object(), majority = nlohmann::json::object();
  const int ctx = model.config().seq_len;
  for (int d = opt.min_d; d <= opt.max_d; ++d) {
    const int64_t available = task.count(d);
    if (available == 0) continue;
    const int n = available < 0 ? opt.problems : static_cast<int>(std::min<int64_t>(opt.problems, available));
    std::vector<Problem> probs;
    std::vector<std::vector<int>> prompts;
    for (int i = 0; i < n; ++i) {
      probs.push_back(task.make(d, opt.seed, static_cast<uint64_t>(i)));
      std::vector<int> p{kByteEot};
      for (unsigned char c : probs.back().prompt) p.push_back(c);
      prompts.push_back(std::move(p));
    }
    if (static_cast<int>(prompts[0].size()) >= ctx) break;
    SampleOptions so;
    so.max_tokens = opt.max_new_tokens;
    so.stop_token = '\n';
    so.temperature = 0;
    std::vector<std::string> answers, major_answers;
    for (int i = 0; i < n; ++i) {
      auto g = generate_batch(model, {prompts[i]}, so, {0});
      answers.push_back(bytes_text(g[0].tokens));
      if (opt.k > 1) {
        SampleOptions sk = so;
        sk.temperature = opt.temperature;
        std::vector<uint64_t> seeds(opt.k);
        for (int k = 0; k < opt.k; ++k) seeds[k] = opt.seed * 7919 + static_cast<uint64_t>(i) * 131 + k;
        auto gs = generate_batch(model, std::vector<std::vector<int>>(opt.k, prompts[i]), sk, seeds);
        std::map<std::string, int> votes;
        for (auto& x : gs) votes[Task::extract_answer(bytes_text(x.tokens))]++;
        auto best = votes.begin();
        for (auto it = votes.begin(); it != votes.end(); ++it)
          if (it->second > best->second) best = it;
        major_answers.push_back(best->first);
      }
    }
    // Judged in one batch per difficulty (one run of a checker program).
    auto correct = [&](const std::vector<std::string>& a) {
      int ok = 0;
      for (int v : verify_answers(task, opt.verifier, probs, a)) ok += v == 1;
      return static_cast<double>(ok) / n;
    };
    greedy[std::to_string(d)] = correct(answers);
    if (opt.k > 1) majority[std::to_string(d)] = correct(major_answers);
  }
  nlohmann::json out = {{"greedy", greedy}};
  if (opt.k > 1) out["majority"] = majority;
  return out;
}

}  // namespace ouro
