// The sections the trainer reads (src/train, src/cli): [train] (optimizer, schedule, evaluation),
// [data], [run], [checkpoint] and [sample]. In the config layer for the reason config_model.h gives.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "ouro/backend.h"
#include "ouro/choice.h"

namespace ouro {

// The learning rate after warmup (src/train/lr_schedule.h): cosine or linear down to the floor,
// warmup-stable-decay (flat, then linear over the last decay_frac of the steps), or constant.
enum class LrScheduleKind { cosine, linear, wsd, constant };
constexpr std::array<std::string_view, 4> choice_names(LrScheduleKind) {
  return {"cosine", "linear", "wsd", "constant"};
}

struct TrainSection {
  int64_t steps = 100;
  int batch_size = 8;
  int seq_len = 0;            // training sequence length; 0 = model.seq_len
  int grad_accum = 1;
  double lr = 6e-4;
  double min_lr_frac = 0.1;   // the schedule's floor, as a fraction of lr
  int64_t warmup_steps = 0;
  LrScheduleKind schedule = LrScheduleKind::cosine;
  double decay_frac = 0.2;    // wsd: the final fraction of steps spent decaying
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;     // global-norm clip; 0 disables
  int64_t seed = 1337;
  int max_bad_steps = 5;      // consecutive non-finite steps before aborting
  int64_t eval_every = 50;    // 0 disables
  int eval_batches = 10;
  int64_t log_every = 1;
  // Recompute each layer's residual2 in the backward instead of keeping it (GPT2::ActivationOptions):
  // ~3% more FLOPs per step, N x C fewer activations per layer.
  bool recompute_residual = false;
  // Capture the training step as CUDA Graphs on the first step and replay it on the next ones
  // (device backends; src/device/step_graph.h). Data-parallel runs do not capture yet: their
  // gradient exchange is issued outside the device ops.
  bool cuda_graph = true;
};

struct DataSection {
  std::string train, val;
  std::string tokenizer;  // the BPE tokenizer the data was prepared with ("": byte-level, or none)
  // Each epoch reads the training windows in a seeded random order; false: in file order, so
  // another tool can reproduce the batches (window k of the run is window k of the shards).
  bool shuffle = true;
};

struct RunSection {
  std::string out_dir = "runs/default";
  Device device = Device::cpu;  // whether this binary has it is make_ops's question
  int threads = 0;              // OpenMP/BLAS threads; 0 = all cores
};

struct CheckpointSection {
  int64_t every = 0;  // steps; 0 = only at the end
  int keep = 3;       // newest checkpoints kept; 0 = all
};

struct SampleSection {
  int64_t every = 0;  // generate a sample during training every N steps; 0 = never
  int max_tokens = 128;
  double temperature = 1.0;
  int top_k = 0;      // 0 = off
  double top_p = 1.0; // 1 = off
  std::string prompt = "";
};

}  // namespace ouro
