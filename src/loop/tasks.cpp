#include "loop/tasks.h"

#include <algorithm>

#include "loop/task_file.h"
#include "ouro/error.h"

namespace ouro {
namespace {

// splitmix64 of (seed, index, salt): problems are a pure function of their coordinates, so a
// test set never depends on how many problems were drawn before it.
uint64_t mix(uint64_t seed, uint64_t index, uint64_t salt) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ (index + 0x632BE59BD9B4E019ull) * 0xD1B54A32D192ED03ull ^ salt;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

bool all_of(const std::string& s, char lo, char hi) {
  return std::all_of(s.begin(), s.end(), [&](char c) { return c >= lo && c <= hi; });
}

struct Digits {
  uint64_t seed, index;
  uint64_t n = 0;
  char next() { return static_cast<char>('0' + mix(seed, index, n++) % 10); }
  char letter() { return static_cast<char>('a' + mix(seed, index, n++) % 26); }
};

class AddTask final : public Task {
 public:
  std::string name() const override { return "add"; }
  Problem make(int digits, uint64_t seed, uint64_t index) const override {
    OURO_CHECK(digits >= 1, "add: difficulty (digits) must be >= 1, got {}", digits);
    Digits d{seed, index};
    // Reversed operands: position i holds the digit of 10^i.
    std::string a(digits, '0'), b(digits, '0');
    for (auto& c : a) c = d.next();
    for (auto& c : b) c = d.next();
    std::string sum;
    int carry = 0;
    for (int i = 0; i < digits; ++i) {
      int s = (a[i] - '0') + (b[i] - '0') + carry;
      sum += static_cast<char>('0' + s % 10);
      carry = s / 10;
    }
    if (carry) sum += '1';
    return {a + "+" + b + "=", sum, digits};
  }
  // A d-digit sum has d or d+1 digits.
  bool plausible(const Problem& p, const std::string& generated) const override {
    const std::string a = extract_answer(generated);
    const int n = static_cast<int>(a.size());
    return (n == p.difficulty || n == p.difficulty + 1) && all_of(a, '0', '9');
  }
};

class SortTask final : public Task {
 public:
  std::string name() const override { return "sort"; }
  Problem make(int len, uint64_t seed, uint64_t index) const override {
    OURO_CHECK(len >= 1, "sort: difficulty (length) must be >= 1, got {}", len);
    Digits d{seed, index};
    std::string s(len, '0');
    for (auto& c : s) c = d.next();
    std::string sorted = s;
    std::sort(sorted.begin(), sorted.end());
    return {"sort " + s + "=", sorted, len};
  }
  bool plausible(const Problem& p, const std::string& generated) const override {
    const std::string a = extract_answer(generated);
    return static_cast<int>(a.size()) == p.difficulty && all_of(a, '0', '9');
  }
};

class CopyTask final : public Task {
 public:
  std::string name() const override { return "copy"; }
  Problem make(int len, uint64_t seed, uint64_t index) const override {
    OURO_CHECK(len >= 1, "copy: difficulty (length) must be >= 1, got {}", len);
    Digits d{seed, index};
    std::string s(len, 'a');
    for (auto& c : s) c = d.letter();
    return {"copy " + s + "=", s, len};
  }
  bool plausible(const Problem& p, const std::string& generated) const override {
    const std::string a = extract_answer(generated);
    return static_cast<int>(a.size()) == p.difficulty && all_of(a, 'a', 'z');
  }
};

// len distinct letters, uniformly drawn: the first len steps of a Fisher-Yates shuffle.
std::string distinct_letters(Digits& d, int len) {
  std::string letters = "abcdefghijklmnopqrstuvwxyz";
  for (int i = 0; i < len; ++i) {
    const auto j = i + static_cast<int>(mix(d.seed, d.index, d.n++) % static_cast<uint64_t>(26 - i));
    std::swap(letters[i], letters[j]);
  }
  return letters.substr(0, len);
}

// copy with no letter twice in a string: "copy qxzab=" -> "qxzab", at most 26 letters. Each
// letter then occurs once in the prompt, so "find the letter just written, copy the one after it"
// (an induction head) is unambiguous at every length, which a model can carry past the lengths it
// was trained on; with repeats that rule is ambiguous and a model tends to learn one fixed look-back
// offset per length instead (docs/experiments.md, "E1 on the copy task").
class CopyDistinctTask final : public Task {
 public:
  std::string name() const override { return "copyd"; }
  Problem make(int len, uint64_t seed, uint64_t index) const override {
    OURO_CHECK(len >= 1 && len <= 26, "copyd: difficulty (length) must be in 1..26 (distinct letters), got {}", len);
    Digits d{seed, index};
    const std::string s = distinct_letters(d, len);
    return {"copy " + s + "=", s, len};
  }
  bool plausible(const Problem& p, const std::string& generated) const override {
    const std::string a = extract_answer(generated);
    return static_cast<int>(a.size()) == p.difficulty && all_of(a, 'a', 'z');
  }
};

// Reversal: "rev qxzab=" -> "bazxq" (difficulty = length), letters drawn as for copy.
class ReverseTask final : public Task {
 public:
  std::string name() const override { return "rev"; }
  Problem make(int len, uint64_t seed, uint64_t index) const override {
    OURO_CHECK(len >= 1, "rev: difficulty (length) must be >= 1, got {}", len);
    Digits d{seed, index};
    std::string s(len, 'a');
    for (auto& c : s) c = d.letter();
    return {"rev " + s + "=", std::string(s.rbegin(), s.rend()), len};
  }
  bool plausible(const Problem& p, const std::string& generated) const override {
    const std::string a = extract_answer(generated);
    return static_cast<int>(a.size()) == p.difficulty && all_of(a, 'a', 'z');
  }
};

// Reversal of distinct letters between runs of 0..4 filler dots: "rev ..qxzab...=" -> "bazxq".
// The random runs move every letter by a different offset from "rev " and from "=" in every
// problem, so neither "the letter j places before '='" nor "the letter i places after 'rev '"
// locates the answer's letters: the model must find them by content (the letter it just wrote,
// the dot or '=' next to the last one), which does not depend on the length. Plain `rev`, where
// those offsets exist, gets no foothold beyond its longest trained length (docs/experiments.md).
class ReversePaddedTask final : public Task {
 public:
  static constexpr int kMaxFill = 4;
  std::string name() const override { return "revpad"; }
  Problem make(int len, uint64_t seed, uint64_t index) const override {
    OURO_CHECK(len >= 1 && len <= 26, "revpad: difficulty (length) must be in 1..26 (distinct letters), got {}",
               len);
    Digits d{seed, index};
    const std::string s = distinct_letters(d, len);
    const auto fill = [&] { return std::string(mix(seed, index, d.n++) % (kMaxFill + 1), '.'); };
    const std::string before = fill(), after = fill();
    return {"rev " + before + s + after + "=", std::string(s.rbegin(), s.rend()), len};
  }
  bool plausible(const Problem& p, const std::string& generated) const override {
    const std::string a = extract_answer(generated);
    return static_cast<int>(a.size()) == p.difficulty && all_of(a, 'a', 'z');
  }
};

}  // namespace

std::string Task::extract_answer(const std::string& generated) {
  return generated.substr(0, generated.find('\n'));
}

std::vector<std::string> task_names() { return {"add", "sort", "copy", "copyd", "rev", "revpad"}; }

std::unique_ptr<Task> make_task(const std::string& name, const std::string& task_file) {
  OURO_CHECK(name == "file" || task_file.empty(), "a task file ({}) is for task 'file', not '{}'", task_file, name);
  if (name == "file") {
    OURO_CHECK(!task_file.empty(), "task 'file' needs a task file (loop.task_file, or --task-file)");
    return FileTask::load(task_file);
  }
  if (name == "add") return std::make_unique<AddTask>();
  if (name == "sort") return std::make_unique<SortTask>();
  if (name == "copy") return std::make_unique<CopyTask>();
  if (name == "copyd") return std::make_unique<CopyDistinctTask>();
  if (name == "rev") return std::make_unique<ReverseTask>();
  if (name == "revpad") return std::make_unique<ReversePaddedTask>();
  fail("unknown task '{}': built-in tasks are add, sort, copy, copyd, rev, revpad; 'file' reads a task file", name);
}

}  // namespace ouro
