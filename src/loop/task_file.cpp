#include "loop/task_file.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "ouro/error.h"

namespace ouro {

namespace {

uint64_t offset_of(uint64_t seed) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::unique_ptr<FileTask> FileTask::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  OURO_CHECK(in.good(), "task file {}: cannot open it", path);
  auto t = std::make_unique<FileTask>();
  t->path_ = path;
  std::string line;
  for (size_t no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    OURO_CHECK(!j.is_discarded() && j.is_object(), "task file {}: line {}: not a JSON object", path, no);
    OURO_CHECK(j.contains("prompt") && j["prompt"].is_string() && !j["prompt"].get<std::string>().empty(),
               "task file {}: line {}: needs \"prompt\", a non-empty string", path, no);
    for (const auto& [key, value] : j.items())
      OURO_CHECK(key == "prompt" || key == "answer" || key == "difficulty",
                 "task file {}: line {}: unknown key \"{}\" (keys: prompt, answer, difficulty)", path, no, key);
    Problem p;
    p.prompt = j["prompt"].get<std::string>();
    p.difficulty = 1;
    if (j.contains("difficulty")) {
      OURO_CHECK(j["difficulty"].is_number_integer() && j["difficulty"].get<int64_t>() >= 1 &&
                     j["difficulty"].get<int64_t>() <= 1'000'000,
                 "task file {}: line {}: \"difficulty\" must be an integer in 1..1000000", path, no);
      p.difficulty = j["difficulty"].get<int>();
    }
    p.answer_known = j.contains("answer");
    if (p.answer_known) {
      OURO_CHECK(j["answer"].is_string(), "task file {}: line {}: \"answer\" must be a string", path, no);
      p.answer = j["answer"].get<std::string>();
      OURO_CHECK(p.answer.find('\n') == std::string::npos,
                 "task file {}: line {}: \"answer\" has a newline (answers are one line)", path, no);
      auto& len = t->answer_lengths_[p.difficulty];
      len.lo = std::min(len.lo, p.answer.size());
      len.hi = std::max(len.hi, p.answer.size());
    }
    t->by_difficulty_[p.difficulty].push_back(std::move(p));
  }
  OURO_CHECK(!in.bad(), "task file {}: read error", path);
  OURO_CHECK(!t->by_difficulty_.empty(), "task file {}: no prompts", path);
  return t;
}

int64_t FileTask::count(int difficulty) const {
  auto it = by_difficulty_.find(difficulty);
  return it == by_difficulty_.end() ? 0 : static_cast<int64_t>(it->second.size());
}

Problem FileTask::make(int difficulty, uint64_t seed, uint64_t index) const {
  auto it = by_difficulty_.find(difficulty);
  OURO_CHECK(it != by_difficulty_.end(), "task file {}: no prompt of difficulty {} (it has {}..{})", path_,
             difficulty, min_difficulty(), max_difficulty());
  const auto& v = it->second;
  return v[(offset_of(seed) + index) % v.size()];
}

bool FileTask::plausible(const Problem& p, const std::string& generated) const {
  const std::string a = extract_answer(generated);
  if (a.empty()) return false;
  auto it = answer_lengths_.find(p.difficulty);
  return it == answer_lengths_.end() || (a.size() >= it->second.lo && a.size() <= it->second.hi);
}

}  // namespace ouro
