#include "bench/generate_bench.h"

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>

#include <fmt/format.h>

#include "common/log.h"
#include "common/threads.h"
#include "ouro/env_switch.h"
#include "model/generate.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "train/trainer.h"

namespace ouro {

GenerateBenchResult bench_generate(const Config& cfg, int train_steps_timed) {
  using Clock = std::chrono::steady_clock;
  set_compute_threads(cfg.run.threads);
  const GPT2Config mc = cfg.model.gpt2();
  const auto& L = cfg.loop;
  auto ops = make_ops(cfg.run.device);
  const auto params = gpt2_init_params(mc, 1);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> tok(0, mc.vocab_size - 1);

  // Generation as a round does it: one batch of k rows per prompt.
  GPT2 gen(mc, *ops, L.k, mc.seq_len);
  gen.set_params(params);
  SampleOptions so;
  so.max_tokens = L.max_new_tokens;
  so.temperature = static_cast<float>(L.temperature);
  so.stop_token = -1;  // full length: the worst case
  const int P = std::min(L.prompt_tokens, mc.seq_len - L.max_new_tokens);
  auto t0 = Clock::now();
  double new_tokens = 0;
  for (int p = 0; p < L.prompts; ++p) {
    std::vector<int> prompt(std::max(1, P));
    for (auto& x : prompt) x = tok(rng);
    std::vector<uint64_t> seeds(L.k);
    for (int k = 0; k < L.k; ++k) seeds[k] = static_cast<uint64_t>(p) * 31 + k;
    for (auto& g : generate_batch(gen, std::vector<std::vector<int>>(L.k, prompt), so, seeds))
      new_tokens += static_cast<double>(g.tokens.size());
  }
  const double gen_s = std::chrono::duration<double>(Clock::now() - t0).count();

  // Decode steps alone: a prefill of k copies of a prompt, then `steps` one-token steps of k rows
  // (the generation's shape, without sampling), timed between two synchronizations.
  const int steps = std::max(1, std::min(L.max_new_tokens, 32));
  auto time_decode = [&] {
    std::vector<int> prompt(static_cast<size_t>(L.k) * std::max(1, P)), next(L.k);
    for (auto& x : prompt) x = tok(rng);
    gen.kv_reset();
    gen.kv_step(prompt.data(), L.k, std::max(1, P));
    ops->synchronize();
    const auto ts = Clock::now();
    for (int s = 0; s < steps; ++s) {
      for (auto& x : next) x = tok(rng);
      gen.kv_step(next.data(), L.k, 1);
    }
    ops->synchronize();
    return std::chrono::duration<double>(Clock::now() - ts).count() / steps;
  };
  const double decode_s = time_decode();
  double decode_tiled_s = 0;
  if (ops->name() != "cpu") {  // the same steps with the tiled GEMMs (the skinny kernel switched off)
    const char* outer = std::getenv("OURO_MATMUL_SKINNY");
    const std::string saved = outer ? outer : "";
    setenv("OURO_MATMUL_SKINNY", "0", 1);
    ouro::reread_switches();  // the kernels read the switch once (ouro/env_switch.h)
    decode_tiled_s = time_decode();
    if (outer) setenv("OURO_MATMUL_SKINNY", saved.c_str(), 1);
    else unsetenv("OURO_MATMUL_SKINNY");
    ouro::reread_switches();
  }

  // Whole tokens (decode step + sampling + the tokens' readback, GPT2::kv_decode) with and without
  // the decode CUDA Graph: two untimed tokens first (the graph's warm-up step and its capture).
  const SamplingSpec spec = so.spec();
  std::vector<uint64_t> row_seeds(L.k);
  for (int k = 0; k < L.k; ++k) row_seeds[k] = static_cast<uint64_t>(k) + 1;
  const int token_steps = std::max(1, std::min(L.max_new_tokens, mc.seq_len - std::max(1, P) - 2));
  auto time_tokens = [&](bool graph) {
    std::vector<int> prompt(static_cast<size_t>(L.k) * std::max(1, P)), next(L.k);
    for (auto& x : prompt) x = tok(rng);
    gen.kv_reset();
    gen.kv_step(prompt.data(), L.k, std::max(1, P));
    gen.kv_sample(next.data(), nullptr, spec, row_seeds.data(), 0);
    uint64_t step = 1;
    for (int w = 0; w < 2 && gen.kv_pos() < mc.seq_len; ++w, ++step)
      gen.kv_decode(next.data(), L.k, next.data(), nullptr, spec, row_seeds.data(), step, graph);
    const int n = std::min(token_steps, mc.seq_len - gen.kv_pos());
    if (n <= 0) return 0.0;
    const auto ts = Clock::now();
    for (int s = 0; s < n; ++s, ++step)
      gen.kv_decode(next.data(), L.k, next.data(), nullptr, spec, row_seeds.data(), step, graph);
    return std::chrono::duration<double>(Clock::now() - ts).count() / n;
  };
  const double token_s = time_tokens(false);
  double token_graph_s = 0;
  int64_t replays = 0;
  if (ops->supports_graphs()) {
    const int64_t before = ops->decode_graph_stats() ? ops->decode_graph_stats()->replayed : 0;
    token_graph_s = time_tokens(true);
    replays = (ops->decode_graph_stats() ? ops->decode_graph_stats()->replayed : 0) - before;
  }

  // Training steps at the config's batch, to weigh generation against a round's training.
  const int B = cfg.train.batch_size, T = cfg.train_seq_len();
  GPT2 model(mc, *ops, B, T);
  model.set_params(params);
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  AdamWArgs args;
  args.lr = 1e-4f;
  double step_s = 0;
  for (int s = 0; s <= train_steps_timed; ++s) {  // step 0 warms up
    for (auto& v : x) v = tok(rng);
    for (auto& v : y) v = tok(rng);
    auto ts = Clock::now();
    model.zero_grad();
    for (int a = 0; a < cfg.train.grad_accum; ++a) model.forward_backward(x.data(), y.data(), B, T, 1.0f / cfg.train.grad_accum);
    args.step = s + 1;
    model.adamw_step(args);
    ops->synchronize();
    if (s > 0) step_s += std::chrono::duration<double>(Clock::now() - ts).count();
  }
  step_s /= std::max(1, train_steps_timed);
  GenerateBenchResult r;
  r.backend = ops->name();
  r.hardware = ops->device_name();
  r.prompts = L.prompts;
  r.k = L.k;
  r.prompt_tokens = P;
  r.max_new_tokens = L.max_new_tokens;
  r.new_tokens = new_tokens;
  r.generate_s = gen_s;
  r.train_step_s = step_s;
  r.round_steps = L.round_steps;
  r.generate_share = gen_s / (gen_s + step_s * static_cast<double>(L.round_steps));
  // Each decode step streams every weight once (the k rows share them) and each row's K and V
  // caches (2 x n_layer x context x C bf16) at a context of P + 1 .. P + max_new_tokens; the
  // prefill counts as one such step (it too reads the weights once).
  const double mean_ctx = P + (L.max_new_tokens + 1) / 2.0;
  r.decode_step_bytes = 2.0 * static_cast<double>(params.size()) +
                        2.0 * 2.0 * mc.n_layer * mean_ctx * mc.n_embd * L.k;
  r.decode_steps = static_cast<double>(L.prompts) * L.max_new_tokens;
  r.peak_memory_gbs = ops->peak_memory_gbs();
  r.decode_timed_steps = steps;
  r.decode_step_s = decode_s;
  r.decode_step_tiled_s = decode_tiled_s;
  r.weight_bytes = 2.0 * static_cast<double>(params.size());
  r.decode_token_s = token_s;
  r.decode_token_graph_s = token_graph_s;
  r.graph_replays = replays;
  return r;
}

std::vector<BenchRecord> GenerateBenchResult::records() const {
  const std::string shape = fmt::format("{} prompts x {} samples, prompt {} + {} new", prompts, k,
                                        prompt_tokens, max_new_tokens);
  std::vector<BenchRecord> rec{{"generate (KV cache)", shape, new_tokens_per_s(), "tokens/s", 0, "", 0, 0, generate_s},
          {"decode step memory traffic", fmt::format("{} rows, {:.1f} MB per step", k, decode_step_bytes / 1e6),
           decode_gbs(), "GB/s", peak_memory_gbs, peak_memory_gbs > 0 ? "memory peak" : "", 0, decode_step_bytes,
           decode_steps > 0 ? generate_s / decode_steps : 0},
          {"decode step (timed alone)", fmt::format("{} rows x 1 token, {} steps", k, decode_timed_steps),
           decode_tokens_per_s(), "tokens/s", 0, "", 0, 0, decode_step_s},
          {"decode weight streaming", fmt::format("{} rows, {:.1f} MB of bf16 weights per step", k, weight_bytes / 1e6),
           weight_gbs(), "GB/s", peak_memory_gbs, peak_memory_gbs > 0 ? "memory peak" : "", 0, weight_bytes,
           decode_step_s},
          {"generation share of a loop round", fmt::format("{} + {} training steps", shape, round_steps),
           100.0 * generate_share, "%", 0, "", 0, 0, 0}};
  if (decode_step_tiled_s > 0)
    rec.push_back({"decode step, tiled GEMMs (OURO_MATMUL_SKINNY=0)",
                   fmt::format("{} rows x 1 token, {} steps", k, decode_timed_steps), decode_tokens_per_s_tiled(),
                   "tokens/s", 0, "", 0, 0, decode_step_tiled_s});
  rec.push_back({"decode token (step + sampling), no graph", fmt::format("{} rows x 1 token", k),
                 sampled_tokens_per_s(), "tokens/s", 0, "", 0, 0, decode_token_s});
  if (decode_token_graph_s > 0)
    rec.push_back({"decode token (step + sampling), CUDA graph",
                   fmt::format("{} rows x 1 token, {} replays", k, graph_replays), sampled_tokens_per_s_graph(),
                   "tokens/s", 0, "", 0, 0, decode_token_graph_s});
  return rec;
}

nlohmann::json GenerateBenchResult::json() const {
  return {{"device", backend}, {"hardware", hardware}, {"new_tokens_per_s", new_tokens_per_s()},
          {"generate_s", generate_s}, {"train_step_s", train_step_s}, {"round_steps", round_steps},
          {"decode_step_bytes", decode_step_bytes}, {"decode_gbs", decode_gbs()},
          {"peak_memory_gbs", peak_memory_gbs}, {"bandwidth_fraction", bandwidth_fraction()},
          {"generate_share", generate_share}, {"decode_timed_steps", decode_timed_steps},
          {"decode_step_s", decode_step_s}, {"decode_tokens_per_s", decode_tokens_per_s()},
          {"decode_step_tiled_s", decode_step_tiled_s}, {"decode_tokens_per_s_tiled", decode_tokens_per_s_tiled()},
          {"weight_bytes", weight_bytes}, {"weight_gbs", weight_gbs()},
          {"decode_token_s", decode_token_s}, {"decode_token_graph_s", decode_token_graph_s},
          {"sampled_tokens_per_s", sampled_tokens_per_s()}, {"sampled_tokens_per_s_graph", sampled_tokens_per_s_graph()},
          {"graph_replays", graph_replays},
          {"weight_bandwidth_fraction", weight_bandwidth_fraction()}};
}

void log_generate_bench(const GenerateBenchResult& r) {
  auto log = logger();
  log->info("bench generate: {} prompts x {} samples, prompt {} + up to {} new tokens, device {}", r.prompts,
            r.k, r.prompt_tokens, r.max_new_tokens, r.backend);
  log->info("  generation      {:10.0f} new tokens/s ({:.2f} s per round)", r.new_tokens_per_s(), r.generate_s);
  log->info("  decode steps    {:10.1f} MB each (weights + KV caches), {:.1f} GB/s{}", r.decode_step_bytes / 1e6,
            r.decode_gbs(),
            r.peak_memory_gbs > 0 ? fmt::format(" = {:.1f}% of the memory's {:.0f} GB/s", 100.0 * r.bandwidth_fraction(),
                                                r.peak_memory_gbs)
                                  : std::string(" (memory bandwidth unknown on this backend)"));
  log->info("  decode alone    {:10.0f} tokens/s ({} rows, {:.3f} ms per step over {} steps){}", r.decode_tokens_per_s(),
            r.k, 1e3 * r.decode_step_s, r.decode_timed_steps,
            r.decode_step_tiled_s > 0 ? fmt::format("; tiled GEMMs (OURO_MATMUL_SKINNY=0): {:.0f} tokens/s, {:.2f}x",
                                                    r.decode_tokens_per_s_tiled(), r.decode_step_tiled_s / r.decode_step_s)
                                      : std::string());
  log->info("  decode tokens   {:10.0f} tokens/s without a graph, {} (step + sampling, {} rows)",
            r.sampled_tokens_per_s(),
            r.decode_token_graph_s > 0 ? fmt::format("{:.0f} tokens/s with the decode CUDA graph ({:.2f}x, {} replays)",
                                                     r.sampled_tokens_per_s_graph(),
                                                     r.decode_token_s / r.decode_token_graph_s, r.graph_replays)
                                       : std::string("no CUDA graph on this backend"),
            r.k);
  log->info("  weight stream   {:10.1f} GB/s ({:.1f} MB of weights per step){}", r.weight_gbs(), r.weight_bytes / 1e6,
            r.peak_memory_gbs > 0 ? fmt::format(" = {:.1f}% of the memory's {:.0f} GB/s", 100.0 * r.weight_bandwidth_fraction(),
                                                r.peak_memory_gbs)
                                  : std::string(" (memory bandwidth unknown on this backend)"));
  log->info("  training        {:10.3f} s per step x {} steps per round", r.train_step_s, r.round_steps);
  log->info("  generation + scoring share of a round: {:.1f}% (goal <= 20%; scoring reuses the "
            "log-probs recorded while generating)", 100.0 * r.generate_share);
}

}  // namespace ouro
