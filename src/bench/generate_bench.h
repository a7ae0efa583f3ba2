// `ouro bench generate`: batched generation throughput with the KV cache on the current backend,
// and the share of a loop round's wall time that generation would take at the config's loop
// settings (prompts x k samples vs round_steps training steps, both measured in this run).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_result.h"
#include "ouro/config.h"

namespace ouro {

struct GenerateBenchResult {
  std::string backend, hardware;  // ops->name(), ops->device_name()
  int prompts = 0, k = 0, prompt_tokens = 0, max_new_tokens = 0;
  double new_tokens = 0, generate_s = 0;  // one round's generation
  double train_step_s = 0;
  int64_t round_steps = 0;
  double generate_share = 0;  // generate_s / (generate_s + round_steps x train_step_s)
  // What one decode step (k rows, one new token each) must read at least once: the bf16 weights
  // and the k rows' bf16 KV caches at the round's mean context; decode_steps of them per round.
  double decode_step_bytes = 0, decode_steps = 0;
  double peak_memory_gbs = 0;  // the device's theoretical memory bandwidth; 0 = unknown
  // Decode steps timed alone (kv_step of k rows x 1 token after a prefill, no sampling, the device
  // synchronized once after decode_timed_steps of them): seconds per step with the skinny-M GEMM
  // (kernels/matmul_skinny.cu, automatic for M <= 64) and with OURO_MATMUL_SKINNY=0 (0 when not
  // measured: the cpu backend has no such kernel). weight_bytes: the bf16 weights one step streams.
  int decode_timed_steps = 0;
  double decode_step_s = 0, decode_step_tiled_s = 0, weight_bytes = 0;
  // Whole tokens timed alone (GPT2::kv_decode: the decode step and the sampling of k rows, the
  // host reading the k tokens back), uncaptured and replaying the backend's decode CUDA Graph
  // (after a warm-up step and the capture; graph_s stays 0 on a backend without graphs).
  // graph_replays: the timed tokens that did replay the graph.
  double decode_token_s = 0, decode_token_graph_s = 0;
  int64_t graph_replays = 0;

  double decode_tokens_per_s() const { return decode_step_s > 0 ? k / decode_step_s : 0; }
  double decode_tokens_per_s_tiled() const { return decode_step_tiled_s > 0 ? k / decode_step_tiled_s : 0; }
  double sampled_tokens_per_s() const { return decode_token_s > 0 ? k / decode_token_s : 0; }
  double sampled_tokens_per_s_graph() const { return decode_token_graph_s > 0 ? k / decode_token_graph_s : 0; }
  // The weights' bytes per second of a timed decode step (a lower bound on the GEMMs' own rate:
  // the step's attention, LayerNorms and launches are in the time) and its share of the memory
  // bandwidth (0 when unknown).
  double weight_gbs() const { return decode_step_s > 0 ? weight_bytes / decode_step_s / 1e9 : 0; }
  double weight_bandwidth_fraction() const { return peak_memory_gbs > 0 ? weight_gbs() / peak_memory_gbs : 0; }

  double new_tokens_per_s() const { return new_tokens / generate_s; }
  // Bytes the decode steps moved per second of generation (the prefills' time included, so a
  // lower bound), and its share of the memory bandwidth (0 when that is unknown).
  double decode_gbs() const { return decode_step_bytes * decode_steps / generate_s / 1e9; }
  double bandwidth_fraction() const { return peak_memory_gbs > 0 ? decode_gbs() / peak_memory_gbs : 0; }
  std::vector<BenchRecord> records() const;
  nlohmann::json json() const;  // what `ouro bench generate --json` prints
};

GenerateBenchResult bench_generate(const Config& cfg, int train_steps_timed);
void log_generate_bench(const GenerateBenchResult& r);  // the console lines

}  // namespace ouro
