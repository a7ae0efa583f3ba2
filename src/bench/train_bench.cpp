#include "bench/train_bench.h"

#include <cblas.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cmath>
#include <algorithm>
#include <functional>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "bench/peak_flops.h"
#include "common/threads.h"
#include "dist/run_comm.h"
#include "ouro/comm.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "train/gradient_sync.h"
#include "train/graph_step.h"
#include "train/run_log.h"
#include "train/trainer.h"

namespace ouro {
namespace {

using Clock = std::chrono::steady_clock;
// null where the backend cannot count them.
nlohmann::json r_host_syncs(double v) { return v >= 0 ? nlohmann::json(v) : nlohmann::json(); }
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
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

TrainBenchResult bench_train(const Config& cfg, const TrainBenchOptions& opt) {
  set_compute_threads(cfg.run.threads);
  const GPT2Config mc = cfg.model.gpt2();
  const int B = cfg.train.batch_size, T = cfg.train_seq_len();
  // The communicator before the backend: the device one binds this rank's GPU by local rank,
  // and the backend's stream and buffers must live there (the trainer's order).
  std::unique_ptr<Communicator> comm;
  if (opt.data_parallel && detect_dist_env().world > 1)
    comm = make_run_comm(cfg.dist, cfg.run.device);
  auto ops = make_ops(cfg.run.device);
  GPT2 model(mc, *ops, B, T);
  model.set_params(gpt2_init_params(mc, 1));
  std::mt19937 rng(7 + (comm ? comm->rank() : 0));  // each rank its own batch, as in training
  std::uniform_int_distribution<int> tok(0, mc.vocab_size - 1);
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  AdamWArgs args;
  args.lr = 1e-4f;
  // The trainer's exchange (plain, bucketed with dist.bucket_mb > 0, or ZeRO-1 with dist.zero = 1):
  // bf16 gradients averaged on the device, fp32 ones over the host collectives.
  std::optional<GradientSync> sync;
  if (comm) {
    sync.emplace(*comm, *ops, model.num_params(), cfg.dist.zero == 1, cfg.dist.bucket_mb);
    sync->attach(model);
  }
  // Under ZeRO-1 this rank's optimizer owns its shard only, in every step timed (the range is
  // fixed once AdamW state exists): the step alone updates that shard, as a ZeRO-1 rank would.
  if (sync) model.set_optimizer_range(sync->shard().begin, sync->shard().end);
  int buckets_per_step = 0;
  // The trainer's step without the host waiting on the device more than once: the losses stay
  // on the device until one readback brings them with the gradient norm (GPT2::step_readback).
  // The backend counts the waits where it can (simt): host_syncs is their number per step.
  uint64_t step_syncs = 0;
  // train.cuda_graph as the trainer applies it: the single-rank step captured once and replayed.
  const bool graphs = use_step_graphs(cfg, *ops);
  auto step = [&](int64_t s, bool exchange) {
    const std::optional<uint64_t> syncs0 = ops->host_syncs();
    GraphStepScope graph(*ops, graphs && !exchange);
    for (auto& v : x) v = tok(rng);
    for (auto& v : y) v = tok(rng);
    model.zero_grad();
    if (exchange) {
      sync->begin_step();
      const auto watch = sync->watch_backward(/*last_micro=*/true);
      model.forward_backward_deferred(x.data(), y.data(), B, T, 1.0f);
    } else {
      model.forward_backward_deferred(x.data(), y.data(), B, T, 1.0f);
    }
    double norm;
    if (exchange) {
      sync->sync();
      buckets_per_step = sync->last_step_buckets();
      norm = sync->global_norm(model.step_readback(sync->norm_ranges()).sum_squares);
    } else {
      norm = std::sqrt(model.step_readback({{0, model.num_params()}}).sum_squares[0]);
    }
    args.grad_scale = 1.0f / static_cast<float>(std::max(1.0, norm));
    args.step = s;
    model.adamw_step(args);
    if (exchange) sync->share_update();
    if (syncs0) step_syncs += *ops->host_syncs() - *syncs0;
  };
  // Seconds per call of `body`, the slowest rank's: ranks start together (barrier) and a step
  // of the job lasts as long as its slowest rank.
  auto per_call = [&](int n, const std::function<void(int)>& body) {
    if (comm) comm->barrier();
    auto t = Clock::now();
    for (int i = 0; i < n; ++i) body(i);
    ops->synchronize();
    double s = seconds_since(t) / n;
    if (comm) comm->all_reduce(&s, 1, ReduceOp::Max);
    return s;
  };
  int64_t s = 0;
  for (int i = 0; i < opt.warmup; ++i) step(++s, comm != nullptr);

  TrainBenchResult r;
  step_syncs = 0;
  // CPU seconds of the whole process (every thread) over the timed steps: on a machine shared
  // with other work the wall time carries the load's noise, the CPU time barely does.
  const double cpu0 = process_cpu_seconds();
  r.step_s = per_call(opt.steps, [&](int) { step(++s, false); });
  r.cpu_s_per_step = (process_cpu_seconds() - cpu0) / opt.steps;
  if (ops->host_syncs()) r.host_syncs_per_step = static_cast<double>(step_syncs) / opt.steps;
  if (comm) {
    r.world = comm->world();
    r.transport = comm->name();
    r.dp_step_s = per_call(opt.steps, [&](int) { step(++s, true); });
    r.buckets = buckets_per_step;
    // The exchange alone: all gradients at once after the backward (ZeRO-1: the reduce-scatter).
    r.allreduce_s = per_call(opt.steps, [&](int) { sync->exchange_all(); });
  }
  r.backend = ops->name();
  r.hardware = ops->device_name();
  r.params = model.num_params();
  r.batch = B;
  r.seq = T;
  r.bf16 = ops->act_dtype() == DType::BF16;
  const double tokens = static_cast<double>(B) * T;
  r.tokens_per_s = tokens / r.step_s;
  r.step_flops = gpt2_flops_per_token(mc, T) * tokens;
  r.step_gflops = r.step_flops / r.step_s / 1e9;
  if (r.bf16) {
    r.peak_flops = peak_bf16_flops(r.hardware).value_or(0.0);
    return r;
  }
  double gemm_flops = 0, gemm_s = 0;
  for (const auto& g : step_gemms(mc, B * T)) {
    double s = time_gemm(g, opt.gemm_reps);
    double f = 2.0 * g.M * g.N * g.K;
    gemm_flops += f * g.count;
    gemm_s += s * g.count;
    r.shapes.push_back({g.what, g.M, g.N, g.K, g.trans_a, g.trans_b, f / s / 1e9});
  }
  r.sgemm_gflops = gemm_flops / gemm_s / 1e9;
  r.gemm_share = gemm_s / r.step_s;
  return r;
}

std::vector<BenchRecord> TrainBenchResult::records() const {
  const std::string shape = fmt::format("{} params, batch {} x {}", params, batch, seq);
  std::vector<BenchRecord> out;
  out.push_back({"train step", shape, tokens_per_s, "tokens/s", 0, "", 0, 0, step_s});
  if (world > 1)  // weak scaling: the job's tokens/s against world x one rank's alone
    out.push_back({"train step, data parallel", fmt::format("{}, {} ranks ({})", shape, world, transport),
                   world * tokens_per_s * scaling_efficiency(), "tokens/s", world * tokens_per_s,
                   fmt::format("{} x one rank alone", world), 0, 0, dp_step_s});
  if (bf16)  // MFU: the step's model FLOP/s against the datasheet peak
    out.push_back({"train step", shape, step_flops / step_s / 1e12, "TFLOP/s", peak_flops / 1e12,
                   "bf16 peak (table)", step_flops, 0, step_s});
  else
    out.push_back({"train step", shape, step_gflops, "GFLOP/s", sgemm_gflops,
                   "OpenBLAS sgemm, model's GEMMs", step_flops, 0, step_s});
  return out;
}

nlohmann::json TrainBenchResult::json() const {
  nlohmann::json shape_rows = nlohmann::json::array();
  for (const auto& g : shapes)
    shape_rows.push_back({{"gemm", g.gemm}, {"M", g.M}, {"N", g.N}, {"K", g.K},
                          {"trans_a", g.trans_a}, {"trans_b", g.trans_b}, {"gflops", g.gflops}});
  auto positive = [](double v) { return v > 0 ? nlohmann::json(v) : nlohmann::json(); };
  return {{"device", backend},
          {"hardware", hardware},
          {"params", params},
          {"batch", batch},
          {"seq", seq},
          {"step_s", step_s},
          {"tokens_per_s", tokens_per_s},
          {"cpu_s_per_1k_tokens", 1000 * cpu_s_per_step / (double(batch) * seq)},
          {"step_gflops", step_gflops},
          {"sgemm_gflops", positive(sgemm_gflops)},
          {"ratio", sgemm_gflops > 0 ? nlohmann::json(step_gflops / sgemm_gflops) : nlohmann::json()},
          {"gemm_share_of_step", positive(gemm_share)},
          {"shapes", shape_rows},
          {"world", world},
          {"data_parallel", world > 1 ? nlohmann::json({{"transport", transport},
                                                        {"step_s", dp_step_s},
                                                        {"allreduce_s", allreduce_s},
                                                        {"buckets", buckets},
                                                        {"tokens_per_s", world * tokens_per_s * scaling_efficiency()},
                                                        {"scaling_efficiency", scaling_efficiency()}})
                                      : nlohmann::json()},
          {"host_syncs_per_step", r_host_syncs(host_syncs_per_step)},
          // MFU against the GPU's datasheet peak; none for the CPU or an unknown GPU.
          {"mfu", peak_flops > 0 ? nlohmann::json(step_flops / step_s / peak_flops) : nlohmann::json()}};
}

void log_train_bench(const TrainBenchResult& r) {
  auto log = logger();
  log->info("bench train: {} params, batch {} x {}, device {} ({})", r.params, r.batch, r.seq, r.backend, r.hardware);
  log->info("  step          {:10.3f} s   {:10.0f} tokens/s", r.step_s, r.tokens_per_s);
  log->info("  host CPU      {:10.3f} s   per 1k tokens (user + sys, every thread)",
            1000 * r.cpu_s_per_step / (double(r.batch) * r.seq));
  if (r.bf16) {
    if (r.peak_flops > 0)
      log->info("  MFU           {:10.1f} %   (of {:.0f} TFLOP/s bf16 dense)",
                100 * r.step_flops / r.step_s / r.peak_flops, r.peak_flops / 1e12);
    else
      log->info("  MFU           unknown device ({}): no peak rate in src/bench/peak_flops.cpp", r.hardware);
  }
  log->info("  training step {:10.1f} GFLOP/s", r.step_gflops);
  if (r.host_syncs_per_step >= 0)
    log->info("  host syncs    {:10.2f} per step (the host waiting on the device; goal <= 1)", r.host_syncs_per_step);
  if (r.world > 1) {
    log->info("  data parallel {:10.3f} s   {:10.0f} tokens/s over {} ranks ({})", r.dp_step_s,
              r.world * r.tokens_per_s * r.scaling_efficiency(), r.world, r.transport);
    log->info("  all-reduce    {:10.3f} s   all gradients at once, alone (the data-parallel step {})",
              r.allreduce_s,
              r.buckets > 0 ? fmt::format("overlaps {} buckets with the backward", r.buckets)
                            : std::string("exchanges after the backward: dist.bucket_mb = 0"));
    log->info("  weak scaling  {:10.1f} %   (one rank alone: {:.3f} s per step; goal >= 95% at 8 GPUs)",
              100 * r.scaling_efficiency(), r.step_s);
  }
  if (r.sgemm_gflops <= 0) return;  // device backends: MFU is the ratio
  log->info("  sgemm ceiling {:10.1f} GFLOP/s (OpenBLAS, the model's GEMM shapes, same run)", r.sgemm_gflops);
  log->info("  ratio         {:10.3f}   (goal >= 0.5)", r.step_gflops / r.sgemm_gflops);
  log->info("  GEMMs would take {:.0f}% of the step at the ceiling rate", 100.0 * r.gemm_share);
}

TrainMemoryPlan plan_train_memory(const Config& cfg, double fit_gb) {
  const GPT2Config mc = cfg.model.gpt2();
  auto ops = make_ops(cfg.run.device);
  TrainMemoryPlan m;
  m.backend = ops->name();
  m.batch = cfg.train.batch_size;
  m.seq = cfg.train_seq_len();
  const ActivationOptions options{0, cfg.train.recompute_residual};
  m.recompute_residual = options.recompute_residual;
  m.plan = GPT2::plan_memory(mc, *ops, m.batch, m.seq, options);
  m.fit_gb = fit_gb;
  m.largest_batch = largest_batch_that_fits(mc, *ops, m.seq, static_cast<size_t>(fit_gb * 1e9), options);
  return m;
}

nlohmann::json TrainMemoryPlan::json() const {
  return {{"backend", backend},
          {"batch", batch},
          {"seq", seq},
          {"loss_chunk_rows", plan.loss_rows},
          {"recompute_residual", recompute_residual},
          {"bytes",
           {{"activations", plan.activations},
            {"parameters", plan.params},
            {"master_weights", plan.master},
            {"gradients", plan.grads},
            {"optimizer_state", plan.optimizer},
            {"workspace", plan.workspace},
            {"total", plan.total()}}},
          {"fit_gb", fit_gb},
          {"largest_batch", largest_batch}};
}

void log_train_memory_plan(const TrainMemoryPlan& m) {
  auto row = [](const char* what, size_t bytes) {
    std::printf("  %-16s %14zu bytes %12.1f MiB\n", what, bytes, bytes / 1048576.0);
  };
  std::printf("memory plan on %s at batch %d x %d (planning only: no step ran)\n", m.backend.c_str(), m.batch, m.seq);
  row("activations", m.plan.activations);
  std::printf("  %-16s loss chunks of %d rows (inside the activation arena), residual2 %s\n", "", m.plan.loss_rows,
              m.recompute_residual ? "recomputed (train.recompute_residual)" : "kept per layer");
  row("parameters", m.plan.params);
  row("master weights", m.plan.master);
  row("gradients", m.plan.grads);
  row("optimizer state", m.plan.optimizer);
  row("workspace", m.plan.workspace);
  row("total", m.plan.total());
  std::printf("largest micro-batch at T = %d within %.0f GB: %d\n", m.seq, m.fit_gb, m.largest_batch);
}

}  // namespace ouro
