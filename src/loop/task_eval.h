// Task data and task evaluation: `ouro prepare --task` and `ouro eval --task`.
#pragma once
#include <cstdint>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "loop/tasks.h"
#include "loop/verifier_command.h"
#include "ouro/data.h"
#include "ouro/model.h"

namespace ouro {

// `count` problems with difficulties cycling over [min_d, max_d] (seed `seed`) into
// <prefix>_train.bin, and count*val_frac problems from an independent seed into <prefix>_val.bin;
// each document is <|endoftext|> + prompt + answer + "\n" in byte-level tokens.
PrepareResult prepare_task(const Task& task, const std::filesystem::path& out_prefix, int64_t count,
                           int min_d, int max_d, uint64_t seed, double val_frac);

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
