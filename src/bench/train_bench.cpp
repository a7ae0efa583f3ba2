#include "bench/train_bench.h"

#include <cblas.h>

#include <chrono>
#include <random>

#include "bench/peak_flops.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "train/run_log.h"
#include "train/trainer.h"

namespace ouro {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One sgemm of the step: C(M,N) = op(A) op(B) with K the reduction, `count` times per step.
struct Gemm {
  const char* what;
  int M, N, K;
  bool trans_a, trans_b;
  int count;
};

std::vector<Gemm> step_gemms(const GPT2Config& c, int Ntok) {
  const int C = c.n_embd, L = c.n_layer, Vp = c.padded_vocab();
  std::vector<Gemm> g;
  auto linear = [&](const char* what, int in, int out, int count) {
    g.push_back({what, Ntok, out, in, false, true, count});     // forward: X W^T
    g.push_back({what, Ntok, in, out, false, false, count});    // dX = dY W
    g.push_back({what, out, in, Ntok, true, false, count});     // dW = dY^T X
  };
  linear("qkv", C, 3 * C, L);
  linear("attproj", C, C, L);
  linear("fc", C, 4 * C, L);
  linear("fcproj", 4 * C, C, L);
  linear("logits", C, Vp, 1);
  return g;
}

// Seconds for one call of each GEMM shape (best of reps), on random data.
double time_gemm(const Gemm& g, int reps) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(static_cast<size_t>(g.M) * g.K), b(static_cast<size_t>(g.K) * g.N),
      c(static_cast<size_t>(g.M) * g.N);
  for (auto& x : a) x = u(rng);
  for (auto& x : b) x = u(rng);
  double best = 1e30;
  for (int r = 0; r < reps + 1; ++r) {  // the first call warms caches and thread pools
    auto t = Clock::now();
    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                g.trans_b ? CblasTrans : CblasNoTrans, g.M, g.N, g.K, 1.0f, a.data(),
                g.trans_a ? g.M : g.K, b.data(), g.trans_b ? g.K : g.N, 0.0f, c.data(), g.N);
    double s = seconds_since(t);
    if (r > 0) best = std::min(best, s);
  }
  return best;
}

}  // namespace

nlohmann::json bench_train(const Config& cfg, const TrainBenchOptions& opt) {
  set_compute_threads(cfg.run.threads);
  const GPT2Config mc = cfg.model.gpt2();
  const int B = cfg.train.batch_size, T = cfg.train_seq_len();
  auto ops = make_ops(cfg.run.device);
  GPT2 model(mc, *ops, B, T);
  model.set_params(gpt2_init_params(mc, 1));
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> tok(0, mc.vocab_size - 1);
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  AdamWArgs args;
  args.lr = 1e-4f;
  auto step = [&](int64_t s) {
    for (auto& v : x) v = tok(rng);
    for (auto& v : y) v = tok(rng);
    model.zero_grad();
    model.forward_backward(x.data(), y.data(), B, T, 1.0f);
    args.grad_scale = 1.0f / static_cast<float>(std::max(1.0, model.grad_norm()));
    args.step = s;
    model.adamw_step(args);
    ops->synchronize();
  };
  for (int i = 0; i < opt.warmup; ++i) step(i + 1);
  auto t0 = Clock::now();
  for (int i = 0; i < opt.steps; ++i) step(opt.warmup + i + 1);
  const double step_s = seconds_since(t0) / opt.steps;
  const double tokens = static_cast<double>(B) * T;
  const double step_flops = gpt2_flops_per_token(mc, T) * tokens;

  double gemm_flops = 0, gemm_s = 0;
  nlohmann::json shapes = nlohmann::json::array();
  for (const auto& g : step_gemms(mc, B * T)) {
    double s = time_gemm(g, opt.gemm_reps);
    double f = 2.0 * g.M * g.N * g.K;
    gemm_flops += f * g.count;
    gemm_s += s * g.count;
    shapes.push_back({{"gemm", g.what}, {"M", g.M}, {"N", g.N}, {"K", g.K},
                      {"trans_a", g.trans_a}, {"trans_b", g.trans_b}, {"gflops", f / s / 1e9}});
  }
  const double step_gflops = step_flops / step_s / 1e9;
  const double sgemm_gflops = gemm_flops / gemm_s / 1e9;
  nlohmann::json r = {
      {"device", ops->name()},
      {"params", model.num_params()},
      {"batch", B},
      {"seq", T},
      {"step_s", step_s},
      {"tokens_per_s", tokens / step_s},
      {"step_gflops", step_gflops},
      {"sgemm_gflops", sgemm_gflops},
      {"ratio", step_gflops / sgemm_gflops},
      {"gemm_share_of_step", gemm_s / step_s},
      {"shapes", shapes},
  };
  // MFU against the GPU's datasheet peak; none for the CPU or an unknown GPU.
  const std::string hw = ops->device_name();
  const double peak = ops->act_dtype() == DType::BF16 ? peak_bf16_flops(hw).value_or(0.0) : 0.0;
  r["hardware"] = hw;
  r["mfu"] = peak > 0 ? nlohmann::json(step_flops / step_s / peak) : nlohmann::json();
  auto log = logger();
  log->info("bench train: {} params, batch {} x {}, device {} ({})", model.num_params(), B, T, ops->name(), hw);
  log->info("  step          {:10.3f} s   {:10.0f} tokens/s", step_s, tokens / step_s);
  if (ops->act_dtype() == DType::BF16) {
    if (peak > 0)
      log->info("  MFU           {:10.1f} %   (of {:.0f} TFLOP/s bf16 dense)", 100 * step_flops / step_s / peak, peak / 1e12);
    else
      log->info("  MFU           unknown device ({}): no peak rate in src/bench/peak_flops.cpp", hw);
  }
  log->info("  training step {:10.1f} GFLOP/s", step_gflops);
  log->info("  sgemm ceiling {:10.1f} GFLOP/s (OpenBLAS, the model's GEMM shapes, same run)", sgemm_gflops);
  log->info("  ratio         {:10.3f}   (goal >= 0.5)", step_gflops / sgemm_gflops);
  log->info("  GEMMs would take {:.0f}% of the step at the ceiling rate", 100.0 * gemm_s / step_s);
  return r;
}

}  // namespace ouro
