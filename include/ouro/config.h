// The run configuration: TOML files (toml++) validated against one schema. An unknown key, a
// wrong type or an out-of-range value is an error naming the file, line and key; --set
// section.key=value overrides any key with the same checks.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ouro/model_shape.h"

namespace ouro {

struct ModelSection {
  int n_layer = 4, n_head = 4, n_embd = 128, seq_len = 128, vocab_size = 257;
  // Device backends: the hand-written kernels ("native") or the vendor libraries' alternates.
  std::string matmul = "native";     // native | cublas (cuBLASLt)
  std::string attention = "native";  // native | cudnn
  // Position information: learned absolute embeddings (GPT-2's wpe), none at all (NoPE: the
  // causal mask alone lets a model infer order), or rotary embeddings on q and k. Only none and
  // rope can attempt sequences longer than any seen in training (design.md section 6).
  std::string pos = "learned";       // learned | none | rope
  double rope_theta = 10000.0;       // rope: the base of the rotation frequencies
  GPT2Config gpt2() const {
    return {n_layer, n_head, n_embd, seq_len, vocab_size, parse_pos_encoding(pos), rope_theta};
  }
};
struct TrainSection {
  int64_t steps = 100;
  int batch_size = 8;
  int seq_len = 0;            // training sequence length; 0 = model.seq_len
  int grad_accum = 1;
  double lr = 6e-4;
  double min_lr_frac = 0.1;   // the schedule's floor, as a fraction of lr
  int64_t warmup_steps = 0;
  std::string schedule = "cosine";  // cosine | linear | wsd | constant
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
  std::string device = "cpu";
  int threads = 0;  // OpenMP/BLAS threads; 0 = all cores
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

struct DistSection {
  int zero = 0;           // 1: ZeRO-1 (gradients reduce-scattered, AdamW sharded, weights all-gathered)
  double timeout_s = 300; // a collective taking longer aborts the job (a peer died or hung)
  // Gradients are averaged in buckets of about this many MiB, each launched as soon as the
  // backward has finished its gradients, overlapping the rest of the backward; 0: one exchange
  // after the backward.
  double bucket_mb = 25;
  // How the device backends' ranks exchange NCCL's unique id (src/dist/rendezvous.h):
  // auto (mpi under mpirun, else env when $OURO_INIT_ADDR/$MASTER_ADDR is set, else mpi),
  // mpi, file (init_path on a shared file system), tcp (rank 0 listens on init_addr), env.
  // file/tcp/env: no MPI at all on the device backends (the host collectives go over NCCL);
  // unused on cpu, whose collectives are MPI's.
  std::string init = "auto";
  std::string init_path = "";  // dist.init = file
  std::string init_addr = "";  // dist.init = tcp: host:port
};

// The self-improvement loop (src/loop). rounds = 0: plain training.
struct LoopSection {
  int rounds = 0;
  std::string mode = "loop";  // loop | baseline (same FLOPs, real data only) | replace (collapse arm)
  int64_t start_step = 0;     // pretraining steps on real data before the first round
  int64_t round_steps = 50;   // training steps per round on the mix
  int prompts = 16;           // prompts per round, over all ranks (rank r generates for r, r+W, ...)
  int k = 4;                  // samples per prompt
  int prompt_tokens = 32;     // text: length of the real-text prefix used as a prompt
  int max_new_tokens = 64;
  double temperature = 1.0;
  int top_k = 0;
  double top_p = 1.0;
  double syn_frac = 0.25;     // fraction of each batch's rows drawn from the buffer
  std::string task = "";      // "" = text prompts; add | sort | copy | file
  std::string task_file = "";  // task = file: JSONL of {"prompt", "answer"?, "difficulty"?} (loop/task_file.h)
  // A checker program run once per round on JSONL {"prompt", "sample"} lines, writing one score per
  // line (>= 0.5: correct); empty: answers are compared with the task's (loop/verifier_command.h).
  std::string verifier_cmd = "";
  bool verifier_shell = false;      // run verifier_cmd through /bin/sh -c (default: no shell)
  double verifier_timeout_s = 60;   // per run; then the checker is killed and the run stops with an error
  int task_min = 1, task_max = 3;  // difficulties of the task's prompts (in round 0)
  int task_grow = 0;          // added to both per round: a curriculum that lengthens the problems
  std::string scorer = "logprob_band";  // comma list: logprob_band, min_prob, majority, verifier, answer_length, accept_all
  double band_lo = 0.25, band_hi = 0.75;  // quantiles of length-normalized log-prob kept
  double min_token_prob = 0.0;  // min_prob scorer: every token at least this likely
  // ref_logprob scorer: the band of length-normalized log-probs under a reference copy of the
  // model: "frozen" (the weights when the loop started) or "lagged" (the weights ref_lag rounds ago).
  std::string ref = "frozen";   // frozen | lagged
  int ref_lag = 1;
  int dedup_n = 4;              // n-gram size for Jaccard dedup
  double dedup_threshold = 0.7; // reject when Jaccard with the buffer or real data >= this
  double max_repeat = 0.5;      // reject when one n-gram takes this fraction of a sample
  int min_new_tokens = 1;
  int per_prompt_cap = 2;       // accepted samples per prompt at most
  int64_t buffer_tokens = 100000;  // buffer cap
  std::string evict = "age";    // age | score
  int reuse_limit = 8;          // a sample leaves the buffer after this many rounds of use
  double guard_tolerance = 0.02;   // relative worsening of val loss (and tail) that rolls back
  double tail_frac = 0.1;          // the hardest fraction of validation windows
  double accept_min = 0.0, accept_max = 1.0;  // accept-rate bounds (outside: the round rolls back)
  // The accepted samples must keep this fraction of the real continuations' diversity
  // (distinct-2 and 1 - self-BLEU), text rounds only; 0: off.
  double diversity_guard = 0.5;
};

struct Config {
  ModelSection model;
  TrainSection train;
  DataSection data;
  RunSection run;
  CheckpointSection checkpoint;
  SampleSection sample;
  DistSection dist;
  LoopSection loop;
  std::string source;  // the file it came from ("" for defaults)
  std::set<std::string> set_keys;  // "section.key" of every key the file or an override set

  int train_seq_len() const { return train.seq_len > 0 ? train.seq_len : model.seq_len; }
  std::string to_toml() const;  // every key, resolved
  // Throws ouro::Error naming the offending key when values are inconsistent.
  void validate() const;
};

// A model whose shape supplies the config's model section (train --init, eval).
struct ModelFrom {
  GPT2Config model;
  std::string origin;  // "--init runs/x/checkpoints/step_000100", for errors
};
// Loads path (if non-empty) over the defaults, then applies "section.key=value" overrides.
// With model_from, every model.* shape key (n_layer, n_head, n_embd, seq_len, vocab_size, pos,
// rope_theta) that neither set comes from that model; one that is set must equal it.
// path must be a TOML file: a directory is an error, not an empty config.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {},
                   const ModelFrom* model_from = nullptr);
// Training on the cpu backend: refuses (naming the keys) a run whose weights, gradients, AdamW
// moments and activations (train.batch_size x train.seq_len) exceed this machine's memory, which
// would otherwise fail on allocation or be killed. Other commands need far less (eval, sample).
void check_training_memory(const Config& cfg);
// Parses TOML text (for checkpoints' resolved configs); `origin` names it in errors.
Config parse_config_text(const std::string& text, const std::string& origin);
// Keys whose values differ between a and b (for resume and multi-rank checks).
std::vector<std::string> config_differences(const Config& a, const Config& b);

}  // namespace ouro
