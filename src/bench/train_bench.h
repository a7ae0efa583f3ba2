// `ouro bench train`: throughput of the training step against the BLAS ceiling measured in the
// same run on the model's own GEMM shapes.
#pragma once
#include <nlohmann/json.hpp>

#include "ouro/config.h"

namespace ouro {

struct TrainBenchOptions {
  int warmup = 1;
  int steps = 3;
  int gemm_reps = 3;
};

// Returns the figures as JSON (also logged as a table).
nlohmann::json bench_train(const Config& cfg, const TrainBenchOptions& opt);

}  // namespace ouro
