// `ouro bench train`: throughput of the training step against a ceiling measured in the same
// run: on the cpu backend OpenBLAS sgemm on the model's own GEMM shapes; on a device backend the
// peak table's bf16 rate (MFU), since a host BLAS says nothing about a GPU step.
// Under mpirun it also measures weak scaling: every rank times the same steps twice, alone (no
// gradient exchange: what one GPU does with the batch) and data parallel (the gradients averaged
// over the ranks as training does: NCCL on the device backends, MPI on cpu); the efficiency is
// alone / data-parallel step time, the slowest rank's time counting for each.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_result.h"
#include "ouro/config.h"
#include "ouro/model.h"

namespace ouro {

struct TrainBenchOptions {
  int warmup = 1;
  int steps = 3;
  int gemm_reps = 3;
  bool data_parallel = true;  // under mpirun: measure weak scaling (every rank must call)
};

// One sgemm shape of the step, timed on the host BLAS (cpu backend only).
struct TrainGemmFigure {
  std::string gemm;  // "qkv", "fc", "logits", ...
  int M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false;
  double gflops = 0;
};

struct TrainBenchResult {
  std::string backend, hardware;  // ops->name(), ops->device_name()
  size_t params = 0;
  int batch = 0, seq = 0;
  bool bf16 = false;          // activations in bf16 (device backends): MFU applies
  double step_s = 0, tokens_per_s = 0;
  double cpu_s_per_step = 0;  // host CPU seconds (process, all threads) per timed step
  // Times the host waited for the device per step (not data parallel), where the backend counts
  // them (simt); -1 elsewhere. At most 1: the readback of the losses and gradient norm.
  double host_syncs_per_step = -1;
  double step_flops = 0;      // model FLOPs of one step (6 x weights + attention, per token)
  double step_gflops = 0;
  double sgemm_gflops = 0;    // cpu backend: the ceiling; 0 on device backends
  double gemm_share = 0;      // cpu backend: GEMM time at the ceiling rate / step time
  double peak_flops = 0;      // bf16 peak from the table; 0 = cpu or unknown device
  std::vector<TrainGemmFigure> shapes;
  // Weak scaling under mpirun (world > 1); world 1 leaves these at 0.
  int world = 1;
  std::string transport;      // the communicator that averaged the gradients
  double dp_step_s = 0;       // one data-parallel step, slowest rank (step_s: alone, slowest rank)
  double allreduce_s = 0;     // one all-reduce of every gradient alone, slowest rank
  int buckets = 0;            // gradient buckets per data-parallel step (0: one exchange after the backward)
  double scaling_efficiency() const { return dp_step_s > 0 ? step_s / dp_step_s : 0; }

  std::vector<BenchRecord> records() const;
  nlohmann::json json() const;  // what `ouro bench train --json` prints
};

TrainBenchResult bench_train(const Config& cfg, const TrainBenchOptions& opt);

// `ouro bench train --memory`: the memory a training run of cfg's micro-batch holds on cfg's
// backend (GPT2::plan_memory; planning only, no step runs) and the largest micro-batch at the
// same sequence length within fit_gb * 1e9 bytes.
struct TrainMemoryPlan {
  std::string backend;
  int batch = 0, seq = 0;
  bool recompute_residual = false;
  GPT2::MemoryPlan plan;
  double fit_gb = 0;
  int largest_batch = 0;
  nlohmann::json json() const;
};
TrainMemoryPlan plan_train_memory(const Config& cfg, double fit_gb);
void log_train_memory_plan(const TrainMemoryPlan& m);  // the console table
void log_train_bench(const TrainBenchResult& r);  // the console table

}  // namespace ouro
