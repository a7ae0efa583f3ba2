// Built-in tasks with programmatic verifiers, written as byte-level text so that any model
// (byte vocabulary or BPE) can learn them. A problem is `prompt` + `answer` + "\n"; the model
// reads the prompt and must produce the answer, then a newline.
//
//   add:  operands and sum written least-significant digit first (Lee et al. 2025), operands
//         zero-padded to the difficulty's digit count so a batch shares one prompt length:
//         "0321+6540=" -> "6861"          (1230 + 0456 = 1686, reversed)
//   sort: "sort 31415=" -> "11345"         (difficulty = number of digits)
//   copy: "copy qxzab=" -> "qxzab"         (difficulty = length)
//   copyd: as copy, no letter twice in a string (lengths 1..26)
//   rev:  "rev qxzab=" -> "bazxq"          (difficulty = length)
//   revpad: "rev ..qxzab...=" -> "bazxq"   (distinct letters, 0..4 filler dots on each side)
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ouro {

struct Problem {
  std::string prompt;
  std::string answer;
  int difficulty = 0;
  bool answer_known = true;  // false: a user's prompt without an answer (a checker program judges it)
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  // A problem of the given difficulty; `seed` and `index` determine it completely.
  virtual Problem make(int difficulty, uint64_t seed, uint64_t index) const = 0;
  // How many distinct problems of this difficulty exist; -1: unbounded (generated).
  virtual int64_t count(int /*difficulty*/) const { return -1; }
  // The model's answer: the text it generated up to (not including) the first newline.
  static std::string extract_answer(const std::string& generated);
  bool verify(const Problem& p, const std::string& generated) const {
    return extract_answer(generated) == p.answer;
  }
  // Whether the answer has the form a correct one must have at the problem's difficulty (length
  // and alphabet), without knowing the answer: the label-free length filter of Lee et al. 2025,
  // which removes the truncated or run-on answers that dominate a model's errors out of its range.
  virtual bool plausible(const Problem& p, const std::string& generated) const = 0;
};

// "add", "sort", "copy", "copyd", "rev" or "revpad"; anything else is an error listing them. "file" reads the user's
// prompts from `task_file` (loop/task_file.h).
std::unique_ptr<Task> make_task(const std::string& name, const std::string& task_file = "");
std::vector<std::string> task_names();

// The text a training document holds for a problem.
inline std::string problem_text(const Problem& p) { return p.prompt + p.answer + "\n"; }

}  // namespace ouro
