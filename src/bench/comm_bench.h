// `ouro bench comm`: collective bandwidth over message sizes, reported as nccl-tests does:
// algorithm bandwidth = bytes / time, and bus bandwidth = algbw x 2(n-1)/n for all-reduce and
// algbw x (n-1)/n for reduce-scatter and all-gather (the per-link traffic of a ring), so figures
// compare across world sizes and against the link's peak.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_result.h"

namespace ouro {

struct CommBenchOptions {
  size_t min_bytes = 1 << 12;
  size_t max_bytes = 1 << 26;
  int factor = 4;  // size multiplier between rows
  int iters = 20;
  int warmup = 3;
  std::string op = "all_reduce";  // all_reduce | reduce_scatter | all_gather
  // "" or "cpu": host buffers over the host transport (MPI); "cuda" / "simt": the backend's
  // device buffers through its device communicator (NCCL; NCCL-over-MPI on simt), as training
  // all-reduces its gradients.
  std::string device;
  std::string dtype = "f32";  // f32 | bf16 (device buffers only: the gradients' type)
};

nlohmann::json bench_comm(const CommBenchOptions& opt);

// bench_comm's figures as records: each message size's bus bandwidth (no ceiling: no link peak is
// measured). Throws ouro::Error naming the key when `figures` lacks one.
std::vector<BenchRecord> comm_bench_records(const nlohmann::json& figures);

}  // namespace ouro
