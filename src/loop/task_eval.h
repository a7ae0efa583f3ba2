// Task evaluation: `ouro eval --task` (the data of `ouro prepare --task`: loop/task_data.h).
#pragma once
#include <cstdint>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "loop/task_data.h"
#include "loop/tasks.h"
#include "loop/verifier_command.h"
#include "ouro/data.h"
#include "ouro/model.h"

namespace ouro {

struct TaskEvalOptions {
  int min_d = 1, max_d = 3;
  int problems = 64;       // per difficulty
  int k = 1;               // > 1: also majority-of-K at `temperature`
  float temperature = 1.0f;
  int max_new_tokens = 32;
  uint64_t seed = 0xE7A1;  // the held-out problems: a seed the training data does not use
  VerifierCommand verifier;  // a checker program instead of the task's answers (run once per difficulty)
};

// Exact-match accuracy per difficulty: {"greedy": {"3": 0.9, ...}, "majority": {...}} (majority
// only with k > 1), over min(problems, task.count(d)) problems. Difficulties whose prompt does not
// fit the context, or that the task has no problem of, are skipped; problems without an answer
// count as wrong unless a checker program judges them.
nlohmann::json evaluate_task(GPT2& model, const Task& task, const TaskEvalOptions& opt);

}  // namespace ouro
