// Held-out evaluation: mean cross-entropy over the first `batches` batches of a shard read in
// file order (no shuffle), so every evaluation of a run sees the same tokens.
#pragma once
#include <string>

#include "ouro/model.h"

namespace ouro {

struct EvalResult {
  double loss = 0;    // mean over tokens
  size_t tokens = 0;
};

// batches <= 0: every full batch of the shard.
EvalResult evaluate(GPT2& model, const std::string& data, int B, int T, int batches);

}  // namespace ouro
