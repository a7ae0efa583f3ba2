// train.sample.*: every sample.every steps, rank 0 logs a sample of the model being trained
// (sample.prompt continued), so a run's log shows what it has learned as it goes.
#pragma once
#include <cstdint>

#include "ouro/config.h"
#include "ouro/model.h"

namespace ouro {

// Logs the sample of `step` when sample.every divides it; nothing without a tokenizer
// (data.tokenizer, or bytes for a 257-token model). The KV path reuses the training buffers:
// no second model in memory.
void log_periodic_sample(GPT2& model, const Config& cfg, int64_t step);

}  // namespace ouro
