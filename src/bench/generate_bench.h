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
