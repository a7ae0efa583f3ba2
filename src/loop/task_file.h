// A user's task: prompts from a JSON Lines file (`loop.task = "file"`, `loop.task_file`).
//
// One object per line: {"prompt": "...", "answer": "...", "difficulty": 2}; `answer` is optional
// (without it a checker program judges samples: loop/verifier_command.h), `difficulty` is an
// integer >= 1, 1 when absent. Blank lines are skipped. A prompt is the exact text the model
// continues (put a separator such as "=" at its end); an answer is one line. The model must be
// byte-level, as for the built-in tasks.
//
// make(d, seed, i) walks the prompts of difficulty d from an offset the seed picks, so indices
// 0..count(d)-1 give each of them once.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loop/tasks.h"

namespace ouro {

class FileTask final : public Task {
 public:
  // Errors name the file and the line.
  static std::unique_ptr<FileTask> load(const std::string& path);

  std::string name() const override { return "file"; }
  Problem make(int difficulty, uint64_t seed, uint64_t index) const override;
  int64_t count(int difficulty) const override;
  // Non-empty, one line, and where the file has answers of this difficulty, no shorter than the
  // shortest and no longer than the longest of them (the label-free length filter).
  bool plausible(const Problem& p, const std::string& generated) const override;

  const std::string& path() const { return path_; }
  int min_difficulty() const { return by_difficulty_.begin()->first; }
  int max_difficulty() const { return by_difficulty_.rbegin()->first; }

 private:
  struct Lengths {
    size_t lo = SIZE_MAX, hi = 0;
  };
  std::string path_;
  std::map<int, std::vector<Problem>> by_difficulty_;
  std::map<int, Lengths> answer_lengths_;
};

}  // namespace ouro
