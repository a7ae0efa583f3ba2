// `ouro bench generate`: batched generation throughput with the KV cache on the current backend,
// and the share of a loop round's wall time that generation would take at the config's loop
// settings (prompts x k samples vs round_steps training steps, both measured in this run).
#pragma once
#include <nlohmann/json.hpp>

#include "ouro/config.h"

namespace ouro {

nlohmann::json bench_generate(const Config& cfg, int train_steps_timed);

}  // namespace ouro
