// Training data of a task: `ouro prepare --task`.
#pragma once
#include <cstdint>
#include <filesystem>

#include "loop/tasks.h"
#include "ouro/data.h"

namespace ouro {

struct TaskDataOptions {
  int64_t count = 100000;  // training problems
  int min_d = 1, max_d = 3;
  uint64_t seed = 1;
  double val_frac = 0.05;  // count*val_frac validation problems, from an independent seed
  // > 0: pack the documents into rows of this many tokens, each row starting with a document
  // and padded with <|endoftext|>, so that a loader reading windows of model.seq_len = row_tokens
  // starts every window at a problem (as `ouro eval --task` and the loop prompt: <|endoftext|> +
  // prompt at position 0) and never cuts a problem from its answer. 0: one stream of documents.
  int row_tokens = 0;
};

// Each problem's difficulty is drawn uniformly from [min_d, max_d] by (seed, index): a fixed
// rotation (1, 2, 3, 1, 2, 3, ...) made the next problem's length predictable from the last one,
// and a model leaned on that instead of reading its operands. Each document is <|endoftext|> +
// prompt + answer + "\n" in byte-level tokens, into <prefix>_train.bin and <prefix>_val.bin.
PrepareResult prepare_task(const Task& task, const std::filesystem::path& out_prefix, const TaskDataOptions& o);

// The difficulty of training problem `index` (exposed for tests).
int task_difficulty(int min_d, int max_d, uint64_t seed, uint64_t index);

}  // namespace ouro
