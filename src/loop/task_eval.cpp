#include "loop/task_eval.h"

#include <algorithm>
#include <climits>
#include <map>

#include "model/generate.h"
#include "ouro/error.h"

namespace ouro {
namespace {

std::string bytes_text(const std::vector<int>& t) {
  std::string s;
  for (int x : t)
    if (x >= 0 && x < 256) s += static_cast<char>(x);
  return s;
}

}  // namespace

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
