#include "train/trainer.h"

#include <fcntl.h>
#include <omp.h>
#include <cblas.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>

#include "common/trace.h"
#include "io/atomic_file.h"
#include "dist/run_comm.h"
#include "loop/loop.h"
#include "model/generate.h"
#include "ouro/checkpoint.h"
#include "ouro/error.h"
#include "train/checkpoint_state.h"
#include "train/grad_buckets.h"
#include "train/lr_schedule.h"
#include "train/run_log.h"
#include "train/run_tokenizer.h"

namespace fs = std::filesystem;

namespace ouro {

void set_compute_threads(int threads) {
  int n = threads > 0 ? threads : omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

// Weights beyond this magnitude mean the run diverged: a trained GPT's fp32 weights stay within
// a few hundred, and a value this large only grows until the loss is non-finite.
constexpr double kMaxSaneWeight = 1e6;

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int s = static_cast<int>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// Keys that must not change when a run resumes: they decide what the next steps compute.
bool resume_sensitive(const std::string& diff) {
  for (const char* k : {"model.", "train.batch_size", "train.seq_len", "train.grad_accum",
                        "train.seed", "data.train", "data.shuffle", "loop."})
    if (diff.rfind(k, 0) == 0) return true;
  return false;
}

// FNV-1a over the bytes of a float vector: a cheap fingerprint to prove ranks agree bitwise.
uint64_t fingerprint(const std::vector<float>& v) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

TrainSession::TrainSession(const Config& cfg, const TrainOptions& opt) : cfg_(cfg), opt_(opt) {
  OURO_CHECK(!cfg_.data.train.empty(), "{}: key 'data.train' is not set",
             cfg_.source.empty() ? "config" : cfg_.source);
  out_ = cfg_.run.out_dir;
  // local, mpi, or (device backend without MPI: dist.init = file/tcp/env) the launcher-ranks
  // communicator, whose host collectives the device communicator below serves (src/dist/run_comm.h).
  const RunCommOptions comm_opts = run_comm_options(cfg_.dist, cfg_.run.device);
  comm_ = make_run_host_comm(comm_opts);
  if (lead()) {
    io::create_dirs(out_, fmt::format("run.out_dir '{}'", out_));
    lock_out_dir();  // before anything in it is read or written
    attach_log_file(fs::path(out_) / "train.log");
    // Checks data.tokenizer against the model and keeps a copy for `ouro sample`.
    load_run_tokenizer(cfg_.data.tokenizer, cfg_.model.vocab_size, out_);
  } else {
    logger()->set_level(spdlog::level::warn);  // one voice on the console: rank 0's
    // Every rank checks every input before the first step (a rank may see other files).
    load_run_tokenizer(cfg_.data.tokenizer, cfg_.model.vocab_size, {});
  }
  if (comm_->world() > 1) {
    // Every rank must run rank 0's config. Over MPI that is checked before NCCL starts: a rank
    // whose run.device differed would otherwise issue a different first collective than the
    // others. Without MPI the check needs the device communicator's collectives.
    const bool check_first = comm_->has_host_collectives();
    if (check_first) check_same_config();
    // Device backends keep bf16 gradients on the device: they are averaged (ZeRO-0) or
    // reduce-scattered (ZeRO-1) there by NCCL (the NCCL API over MPI on simt); the host
    // collectives (losses, checks, checkpoints) stay on MPI when there is one.
    comm_ = add_run_device_comm(std::move(comm_), comm_opts);
    if (!check_first) check_same_config();
    logger()->info("data parallel: {} ranks over {}, ZeRO-{}", comm_->world(), comm_->name(),
                   cfg_.dist.zero);
  }
  set_compute_threads(cfg_.run.threads);
  ops_ = make_ops(cfg_.run.device);
  device_grads_ = ops_->act_dtype() != DType::F32;
  zero_ = cfg_.dist.zero == 1 && comm_->world() > 1;
  shard_ = {0, gpt2_num_params(cfg_.model.gpt2())};
  if (zero_) shard_ = shard_for(comm_->rank());
  ops_->select_alternates(cfg_.model.matmul, cfg_.model.attention);
  load_start_state();
  loader_->check_vocabulary(cfg_.model.vocab_size, "data.train " + cfg_.data.train);
  check_val_data();
  // A resumed run first drops records past its checkpoint (a crash may have left some), so the
  // file reads as one uninterrupted run.
  const fs::path metrics_file = fs::path(out_) / "metrics.jsonl";
  if (step_ > 0 && lead()) truncate_metrics_after(metrics_file, step_);
  if (lead()) metrics_ = std::make_unique<MetricsWriter>(metrics_file, step_ > 0);
  first_step_ = step_;
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len(), A = cfg_.train.grad_accum;
  logger()->info("model: {} parameters ({} layers, {} heads, {} channels), device {}",
                 model_->num_params(), cfg_.model.n_layer, cfg_.model.n_head, cfg_.model.n_embd,
                 ops_->name());
  logger()->info("training steps {}..{} of {}, batch {} x {} x accum {} x ranks {} = {} tokens/step",
                 step_, last_step(), cfg_.train.steps, B, T, A, comm_->world(),
                 static_cast<int64_t>(B) * T * A * comm_->world());
  logger()->info("memory at batch {} x {}: {}", B, T, describe_memory_plan(model_->memory_plan()));
  g_stop_signal = 0;
  old_int_ = std::signal(SIGINT, on_stop_signal);
  old_term_ = std::signal(SIGTERM, on_stop_signal);
  // A closed terminal or ssh session stops the run like SIGTERM, unless it was started to
  // ignore hangups (nohup): that choice stands.
  old_hup_ = std::signal(SIGHUP, SIG_IGN);
  if (old_hup_ != SIG_IGN) std::signal(SIGHUP, on_stop_signal);
  t0_ = std::chrono::steady_clock::now();
}

TrainSession::~TrainSession() {
  std::signal(SIGINT, old_int_);
  std::signal(SIGTERM, old_term_);
  std::signal(SIGHUP, old_hup_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

void TrainSession::lock_out_dir() {
  // flock, not a pid file: the kernel drops it when the process ends however it ends (kill -9
  // included), so a stale lock never blocks a --resume.
  const fs::path file = fs::path(out_) / "ouro.lock";
  lock_fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) fail("run.out_dir {}: cannot open the lock file {}: {}", out_, file.string(), std::strerror(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[64] = {};
    const ssize_t n = ::pread(lock_fd_, buf, sizeof(buf) - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (err == EWOULDBLOCK)
      fail("run.out_dir {} is in use by another ouro process (pid {}, lock {}); two runs must not "
           "share a directory: wait for that run to end, or choose another run.out_dir",
           out_, holder.empty() ? "unknown" : holder, file.string());
    fail("run.out_dir {}: cannot lock {}: {}", out_, file.string(), std::strerror(err));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    fail("run.out_dir {}: cannot write the lock file {}: {}", out_, file.string(), std::strerror(errno));
}

void TrainSession::check_val_data() {
  if (cfg_.data.val.empty()) return;
  // Opened and checked now, on every rank, as the first evaluation will read it: a missing or
  // short validation shard must not end a run hundreds of steps in.
  try {
    DataLoader val(cfg_.data.val, cfg_.train.batch_size, cfg_.train_seq_len(), comm_->rank(),
                   comm_->world(), /*seed=*/0, /*shuffle=*/false);
    OURO_CHECK(val.max_token() < cfg_.model.vocab_size, "token id {} does not fit model.vocab_size {}",
               val.max_token(), cfg_.model.vocab_size);
  } catch (const Error& e) {
    fail("data.val {}: {}", cfg_.data.val, e.what());
  }
}

void TrainSession::check_weights_sane(const std::vector<float>& params, int64_t step) const {
  size_t bad = 0;
  double max_abs = 0;
  for (float w : params) {
    if (!std::isfinite(w)) ++bad;
    else max_abs = std::max(max_abs, static_cast<double>(std::fabs(w)));
  }
  if (bad == 0 && max_abs <= kMaxSaneWeight) return;
  const auto good = latest_checkpoint(out_);
  fail("step {}: the run diverged: the weights hold {} non-finite value(s) and max |w| = {:.3g} "
       "(sane: <= {:g}); they are not checkpointed. The last good weights are {}; resume from "
       "there with a lower train.lr (or a stronger train.grad_clip)",
       step, bad, max_abs, kMaxSaneWeight,
       good ? "in the checkpoint of step " + std::to_string(checkpoint_dir_step(*good)) + " (" +
                  good->string() + ")"
            : std::string("in no checkpoint (none was written before the divergence)"));
}

int64_t TrainSession::last_step() const {
  return opt_.stop_at >= 0 ? std::min(cfg_.train.steps, opt_.stop_at) : cfg_.train.steps;
}

double TrainSession::step_flops() const {
  const double tokens = static_cast<double>(cfg_.train.batch_size) * cfg_.train_seq_len() *
                        cfg_.train.grad_accum * comm_->world();
  return gpt2_flops_per_token(model_->config(), cfg_.train_seq_len()) * tokens;
}

void TrainSession::load_start_state() {
  const GPT2Config mc = cfg_.model.gpt2();
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len();
  std::optional<fs::path> ckpt;
  if (opt_.resume) {
    ckpt = latest_checkpoint(out_);
    if (!ckpt) logger()->warn("--resume: no checkpoint in {}, starting fresh", out_);
  } else if (auto old = latest_checkpoint(out_)) {
    // A fresh run must not mix its checkpoints with an older run's: a later --resume would
    // pick whichever step number is highest.
    fail("run.out_dir {} already holds checkpoints (newest {}); pass --resume to continue that "
         "run, or choose another run.out_dir",
         out_, old->filename().string());
  }
  loader_ = std::make_unique<DataLoader>(cfg_.data.train, B, T, comm_->rank(), comm_->world(),
                                         static_cast<uint64_t>(cfg_.train.seed), cfg_.data.shuffle);
  model_ = std::make_unique<GPT2>(mc, *ops_, B, T);
  model_->set_activation_options({0, cfg_.train.recompute_residual});
  if (ckpt) {
    // A resumable checkpoint is complete: weights, optimizer moments and training state. Without
    // the moments AdamW would restart cold; without the state the run would restart at step 0
    // on trained weights and overwrite newer checkpoints.
    for (const char* f : {"optimizer.safetensors", "state.json"}) {
      std::error_code ec;
      OURO_CHECK(fs::is_regular_file(*ckpt / f, ec),
                 "--resume from {}: {} is missing, so the checkpoint is incomplete; restore the "
                 "file, or remove the directory to resume from an older checkpoint",
                 ckpt->string(), (*ckpt / f).string());
    }
    TrainingCheckpoint ck = load_checkpoint(*ckpt);
    const CheckpointState st = parse_checkpoint_state(ck.state, (*ckpt / "state.json").string(),
                                                      checkpoint_dir_step(*ckpt));
    {
      Config saved = parse_config_text(st.config, (*ckpt / "state.json").string());
      const int64_t saved_world = st.world;
      const bool same_global_batch = static_cast<int64_t>(saved.train.batch_size) * saved_world ==
                                     static_cast<int64_t>(cfg_.train.batch_size) * comm_->world();
      for (const auto& d : config_differences(saved, cfg_)) {
        // A different world size may re-split the same global batch across its ranks.
        if (d.rfind("train.batch_size", 0) == 0 && same_global_batch) {
          logger()->info("resume: {} across {} ranks (was {} ranks): same global batch", d,
                         comm_->world(), saved_world);
          continue;
        }
        if (resume_sensitive(d))
          fail("--resume from {}: key {} differs from the checkpoint's; a resumed run must keep it",
               ckpt->string(), d);
        logger()->info("resume: {} changed", d);
      }
    }
    OURO_CHECK(ck.model.config == mc, "--resume from {}: the checkpoint's model ({}) differs from the config's ({})",
               ckpt->string(), describe_model(ck.model.config), describe_model(mc));
    model_->set_params(ck.model.params);
    model_->set_optimizer_range(shard_.begin, shard_.end);
    // Moments are saved whole, so any world size re-cuts them into its own shards.
    model_->set_adam_state({ck.adam_m.begin() + shard_.begin, ck.adam_m.begin() + shard_.end},
                           {ck.adam_v.begin() + shard_.begin, ck.adam_v.begin() + shard_.end});
    step_ = st.step;
    opt_steps_ = st.opt_steps;
    elapsed_ = st.elapsed_s;
    loader_->set_position(st.loader);
    resumed_loop_state_ = st.loop;
    saved_step_ = step_;
    logger()->info("resumed from {} at step {}", ckpt->string(), step_);
    return;
  }
  std::vector<float> params;
  if (!opt_.init.empty()) {
    LoadedModel lm = load_model(opt_.init);
    OURO_CHECK(lm.config == mc,
               "--init {}: its model ({}) differs from the config's ({}); set model.* (model.pos, "
               "model.rope_theta, ...) to match",
               opt_.init, describe_model(lm.config), describe_model(mc));
    params = std::move(lm.params);
    logger()->info("initialised from {}", opt_.init);
  } else {
    params = gpt2_init_params(mc, static_cast<uint64_t>(cfg_.train.seed));
  }
  model_->set_params(params);
  model_->set_optimizer_range(shard_.begin, shard_.end);
}

void TrainSession::check_same_config() {
  // Rank 0's resolved config is the reference; every rank compares its own against it, and all
  // ranks learn whether any differed so that none starts a run the others refuse.
  std::string mine = cfg_.to_toml(), ref = mine;
  uint64_t len = ref.size();
  comm_->broadcast(&len, sizeof(len), 0);
  ref.resize(len);
  comm_->broadcast(ref.data(), len, 0);
  auto diffs = config_differences(parse_config_text(ref, "rank 0's config"), cfg_);
  double differs = diffs.empty() ? 0.0 : 1.0;
  comm_->all_reduce(&differs, 1, ReduceOp::Max);
  if (differs == 0.0) return;
  if (!diffs.empty()) {
    std::string keys;
    for (const auto& d : diffs) keys += (keys.empty() ? "" : ", ") + d;
    fail("rank {} runs a different config than rank 0 (rank 0's value vs this rank's): {}",
         comm_->rank(), keys);
  }
  fail("rank {}: another rank runs a different config than rank 0; refusing to start", comm_->rank());
}

ShardRange TrainSession::shard_for(int r) const {
  const size_t n = gpt2_num_params(cfg_.model.gpt2());
  return device_grads_ ? device_shard_of(n, comm_->world(), r) : shard_of(n, comm_->world(), r);
}

std::vector<float> TrainSession::full_moment(std::vector<float> part) const {
  if (!zero_) return part;
  std::vector<float> full(model_->num_params(), 0.0f);
  std::copy(part.begin(), part.end(), full.begin() + shard_.begin);
  // Each rank's shard in turn, whichever backend's layout cut them (the host all-gather knows
  // shard_of's only); a checkpoint's rare cost, and the broadcast takes any size in pieces.
  for (int r = 0; r < comm_->world(); ++r) {
    const ShardRange s = shard_for(r);
    comm_->broadcast(full.data() + s.begin, s.size() * sizeof(float), r);
  }
  return full;
}

void TrainSession::gather_masters() {
  if (!masters_partial_) return;
  ops_->synchronize();
  comm_->device_all_gather(model_->master_data(), model_->num_params(), DType::F32, nullptr);
  masters_partial_ = false;
}

bool TrainSession::bucketed() const {
  // ZeRO-1 keeps its one reduce-scatter after the backward: a per-bucket reduce-scatter would
  // cut each bucket into per-rank shards that no longer match the optimizer's contiguous shard.
  return comm_->world() > 1 && !zero_ && cfg_.dist.bucket_mb > 0;
}

void TrainSession::launch_bucket(int index, const std::vector<BufferSpan>& spans) {
  const std::string name = "allreduce bucket " + std::to_string(index);
  TraceRange trace(name);
  if (device_grads_)
    comm_->device_all_reduce_spans_start(model_->grads_data(), spans, ops_->act_dtype(), ReduceOp::Avg,
                                         ops_->stream());
  else
    comm_->all_reduce_spans(static_cast<float*>(model_->grads_data()), spans, ReduceOp::Avg);
}

// Called once per optimizer step, after the last micro-step of gradient accumulation: the
// micro-steps accumulate into the local gradients, and only their sum crosses the wire.
void TrainSession::sync_gradients(GradBucketer* buckets) {
  if (comm_->world() == 1) return;
  if (buckets) {
    if (device_grads_) comm_->device_wait_started();  // the compute stream reads them next
    // Every gradient element in exactly one bucket (the buckets' ranges never overlap), or the
    // ranks would step on gradients some of them never averaged.
    OURO_CHECK(buckets->launched_elements() == model_->num_params(),
               "gradient buckets covered {} of {} gradients: the model's ready ranges are incomplete",
               buckets->launched_elements(), model_->num_params());
    if (!buckets_logged_) {
      logger()->info("gradients averaged in {} bucket{} of ~{} MiB, started during the backward",
                     buckets->launched(), buckets->launched() == 1 ? "" : "s", cfg_.dist.bucket_mb);
      buckets_logged_ = true;
    }
    return;
  }
  if (ops_->act_dtype() != DType::F32) {
    // bf16 gradients are averaged as bf16: NCCL sums each element in fp32 and rounds to bf16 once
    // per hop (once in all for 2 ranks; NCCL-over-MPI sums all ranks in fp32, then rounds once).
    // That adds one bf16 rounding (relative 2^-9) to gradients that the backward has already
    // rounded to bf16 once per micro-step, and halves the bytes an fp32 reduction would move;
    // AdamW normalises the update by the gradient's own scale, so the extra rounding is noise
    // of the size the bf16 backward already makes.
    OURO_CHECK(comm_->has_device_collectives(), "data parallelism on the {} backend needs a device "
               "communicator; {} has none", ops_->name(), comm_->name());
    // ZeRO-1 reduces each rank's shard only: the same fp32 sum in rank order and one bf16
    // rounding per element as the all-reduce (on simt; NCCL's ring may order the sum by chunk),
    // so the shard's bits equal ZeRO-0's there.
    ops_->synchronize();  // the backward's last kernels write the gradients on the ops stream
    if (zero_)
      comm_->device_reduce_scatter(model_->grads_data(), model_->num_params(), ops_->act_dtype(),
                                   ReduceOp::Avg, nullptr);
    else
      comm_->device_all_reduce(model_->grads_data(), model_->num_params(), ops_->act_dtype(),
                               ReduceOp::Avg, nullptr);
    return;
  }
  auto* g = static_cast<float*>(model_->grads_data());
  if (zero_)
    comm_->reduce_scatter(g, model_->num_params(), ReduceOp::Avg);
  else
    comm_->all_reduce(g, model_->num_params(), ReduceOp::Avg);
}

double TrainSession::global_grad_norm(const std::vector<double>& shard_sums) {
  // Per-shard partial sums (the ZeRO-1 shards of this backend) added in rank order: ZeRO-0 and
  // ZeRO-1 compute the same bits. shard_sums: this rank's shard (ZeRO-1) or every shard.
  const int W = comm_->world();
  std::vector<double> part(W, 0.0);
  if (zero_) {
    part[comm_->rank()] = shard_sums.at(0);
    comm_->all_gather(part.data(), W);
  } else {
    for (int r = 0; r < W; ++r) part[r] = shard_sums.at(r);
  }
  double sum = 0;
  for (double p : part) sum += p;
  return std::sqrt(sum);
}

void TrainSession::save() {
  const int64_t step = step_;
  gather_masters();
  auto params = model_->get_params();
  check_weights_sane(params, step);  // the same verdict on every rank: their weights agree
  auto m = full_moment(model_->get_adam_m()), v = full_moment(model_->get_adam_v());
  if (comm_->world() > 1) {
    // Every rank must hold the same weights; a checkpoint is the moment to prove it. Both copies
    // count: the fp32 masters and the weights the backend computes with (bf16 on devices).
    const size_t wbytes = model_->num_params() * dtype_size(ops_->act_dtype());
    std::vector<float> working(wbytes / sizeof(float) + 1, 0.0f);
    ops_->to_host(working.data(), model_->params_data(), wbytes);
    uint64_t mine = fingerprint(params) ^ (fingerprint(working) * 31), ref = mine;
    comm_->broadcast(&ref, sizeof(ref), 0);
    double differs = mine != ref ? 1.0 : 0.0;
    comm_->all_reduce(&differs, 1, ReduceOp::Max);
    OURO_CHECK(differs == 0.0, "rank {}: the ranks' weights diverged at step {}", comm_->rank(), step);
    logger()->info("step {}: the {} ranks' weights are bitwise identical (fingerprint {:016x})", step,
                   comm_->world(), mine);
  }
  if (lead()) {
    CheckpointData d;
    d.config = model_->config();
    d.params = &params;
    d.adam_m = &m;
    d.adam_v = &v;
    d.state = {{"step", step},
               {"opt_steps", opt_steps_},
               {"world", comm_->world()},
               {"loader", loader_->position()},
               {"elapsed_s", elapsed_},
               // Nothing in training draws from a stateful generator: the data order is a
               // function of (seed, epoch) and samples of (seed, step), so the seed is the state.
               {"rng", {{"seed", cfg_.train.seed}, {"scheme", "counter-based splitmix64"}}},
               {"config", cfg_.to_toml()}};
    if (!loop_state_.is_null()) d.state["loop"] = loop_state_;
    if (!opt_.fault_checkpoint_phase.empty() && step == opt_.fault_checkpoint_step)
      d.on_phase = [phase = opt_.fault_checkpoint_phase](const char* p) {
        if (phase == p) std::raise(SIGKILL);
      };
    auto dir = save_checkpoint(out_, step, d, cfg_.checkpoint.keep);
    logger()->info("checkpoint {}", dir.string());
  }
  saved_step_ = step;
  if (comm_->world() > 1) comm_->barrier();  // nobody races ahead of the file
}

EvalResult TrainSession::evaluate_val() {
  TraceRange trace("eval");
  return evaluate(*model_, cfg_.data.val, cfg_.train.batch_size, cfg_.train_seq_len(),
                  cfg_.train.eval_batches, comm_.get(), cfg_.loop.tail_frac);
}

double TrainSession::run_eval() {
  if (cfg_.data.val.empty()) return -1;
  auto r = evaluate_val();
  if (metrics_) metrics_->write({{"step", step_}, {"val_loss", r.loss}, {"val_tokens", r.tokens}});
  logger()->info("step {} | val loss {:.4f} ({} tokens)", step_, r.loss, r.tokens);
  last_val_ = r.loss;
  return r.loss;
}

void TrainSession::maybe_sample() {
  if (!lead() || cfg_.sample.every <= 0 || step_ % cfg_.sample.every != 0) return;
  // The KV path reuses the training buffers: no second model in memory.
  // Text needs a tokenizer: data.tokenizer, or bytes for a 257-token model; none: no sample.
  const auto tok = load_run_tokenizer(cfg_.data.tokenizer, cfg_.model.vocab_size, {});
  if (!tok) return;
  std::vector<int> prompt{static_cast<int>(tok->eot_id())};
  for (uint32_t id : tok->encode(cfg_.sample.prompt)) prompt.push_back(static_cast<int>(id));
  SampleOptions so;
  so.max_tokens = cfg_.sample.max_tokens;
  so.temperature = static_cast<float>(cfg_.sample.temperature);
  so.top_k = cfg_.sample.top_k;
  so.top_p = static_cast<float>(cfg_.sample.top_p);
  so.seed = static_cast<uint64_t>(cfg_.train.seed) + static_cast<uint64_t>(step_);
  so.stop_token = prompt[0];  // a document ends at <|endoftext|>
  TraceRange trace("sample");
  auto toks = generate(*model_, prompt, so);
  logger()->info("sample at step {}: {}", step_, cfg_.sample.prompt + decode_sample(*tok, toks));
}

TrainSession::Snapshot TrainSession::snapshot() {
  gather_masters();
  return {model_->get_params(), model_->get_adam_m(), model_->get_adam_v(), step_, opt_steps_,
          loader_->position(), bad_streak_};
}

void TrainSession::restore(const Snapshot& s) {
  model_->set_params(s.params);
  masters_partial_ = false;
  model_->set_adam_state(s.adam_m, s.adam_v);
  step_ = s.step;
  opt_steps_ = s.opt_steps;
  loader_->set_position(s.loader);
  bad_streak_ = s.bad_streak;
}

// A shard that fails mid-run (changed or truncated in place, an I/O error) fails the run after
// a checkpoint of the steps done: the weights are untouched this step, and the loader goes back
// to the step's first batch, so a --resume (with the data repaired) continues exactly.
void TrainSession::next_batch_or_checkpoint(int* x, int* y) {
  try {
    loader_->next_batch(x, y);
  } catch (const Error& e) {
    loader_->set_position(step_start_position_);
    // One rank's failure cannot be agreed on here (the others are inside collectives): with
    // several ranks the job ends and the newest periodic checkpoint is the one to resume.
    if (!autosave_ || comm_->world() > 1) throw;
    if (step_ > 0 && saved_step_ != step_) save();
    if (step_ > 0)
      fail("{}; the run stopped at step {}, whose checkpoint is in {}", e.what(), step_,
           (fs::path(out_) / "checkpoints" / fmt::format("step_{:06d}", step_)).string());
    throw;
  }
}

// One optimizer step. Returns false if it was skipped (non-finite loss or gradient).
bool TrainSession::one_step(SyntheticSource* syn, int syn_rows) {
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len(), A = cfg_.train.grad_accum;
  const int W = comm_->world();
  LrSchedule sched{cfg_.train.lr, cfg_.train.min_lr_frac, cfg_.train.decay_frac,
                   cfg_.train.warmup_steps, cfg_.train.steps, cfg_.train.schedule};
  const auto ts = std::chrono::steady_clock::now();
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  const int real_rows = syn ? B - syn_rows : B;
  model_->zero_grad();
  step_start_position_ = loader_->position();
  // Gradients cross the wire on the last micro-step only: earlier ones just accumulate.
  std::optional<GradBucketer> buckets;
  if (bucketed())
    // Clamped to [1 byte, 2^60]: any positive dist.bucket_mb is valid, however small or large.
    buckets.emplace(static_cast<size_t>(std::clamp(cfg_.dist.bucket_mb * 1024 * 1024, 1.0, 0x1p60)),
                    dtype_size(ops_->act_dtype()),
                    [this](int i, const std::vector<BufferSpan>& spans) { launch_bucket(i, spans); });
  double loss = 0;
  for (int a = 0; a < A; ++a) {
    // Unhooked on every exit (an exception in the backward included): the hook refers to `buckets`.
    struct Unhook {
      GPT2& m;
      ~Unhook() { m.set_grad_ready_hook({}); }
    } unhook{*model_};
    if (buckets && a == A - 1)
      model_->set_grad_ready_hook([&buckets](const std::vector<ParamRange>& r) { buckets->add(r); });
    // Real rows first (the loader always reads full batches, so the real data order does not
    // depend on the mix), then the synthetic rows over the tail of the batch.
    next_batch_or_checkpoint(x.data(), y.data());
    if (syn && syn_rows > 0)
      syn->fill(syn_rows, T, step_, a, x.data() + static_cast<size_t>(real_rows) * T,
                y.data() + static_cast<size_t>(real_rows) * T);
    // The loss stays on the device: one readback per step brings it with the norm (issue 15).
    model_->forward_backward_deferred(x.data(), y.data(), B, T, 1.0f / A);
  }
  if (buckets) buckets->flush();
  if (comm_->rank() == opt_.fault_kill_rank && step_ == opt_.fault_kill_step) std::raise(opt_.fault_signal);
  sync_gradients(buckets ? &*buckets : nullptr);
  std::vector<ParamRange> shards;
  for (int r = 0; r < W; ++r)
    if (!zero_ || r == comm_->rank()) shards.push_back({shard_for(r).begin, shard_for(r).end});
  const GPT2::StepReadback rb = model_->step_readback(shards);
  for (float l : rb.losses) loss += l / A;
  if (opt_.fault_nan_steps.count(step_)) loss = std::nan("");
  comm_->all_reduce(&loss, 1, ReduceOp::Avg);
  const double norm = global_grad_norm(rb.sum_squares);
  const double lr = sched.at(step_);
  const int64_t step_no = step_ + 1;
  if (!std::isfinite(loss) || !std::isfinite(norm)) {
    ++bad_streak_;
    logger()->warn("step {}: non-finite loss {} or grad norm {}; update skipped ({} of {} in a row)",
                   step_no, loss, norm, bad_streak_, cfg_.train.max_bad_steps);
    if (metrics_)
      metrics_->write({{"step", step_no}, {"loss", nullptr}, {"grad_norm", nullptr},
                       {"skipped", true}, {"lr", lr}});
    step_ = step_no;
    if (bad_streak_ >= cfg_.train.max_bad_steps) {
      // Skipped steps leave the weights as the last update made them, which may already be
      // exploded: save() refuses those, naming the newest good checkpoint instead.
      save();
      fail("aborting: {} consecutive steps with a non-finite loss or gradient (train.max_bad_steps); "
           "the last good weights are in the checkpoint of step {} ({})",
           bad_streak_, step_, (fs::path(out_) / "checkpoints" / fmt::format("step_{:06d}", step_)).string());
    }
    return false;
  }
  bad_streak_ = 0;
  AdamWArgs args;
  args.lr = static_cast<float>(lr);
  args.beta1 = static_cast<float>(cfg_.train.beta1);
  args.beta2 = static_cast<float>(cfg_.train.beta2);
  args.eps = static_cast<float>(cfg_.train.eps);
  args.weight_decay = static_cast<float>(cfg_.train.weight_decay);
  args.grad_scale = clip_coefficient(norm, cfg_.train.grad_clip);
  args.step = ++opt_steps_;
  model_->adamw_step(args);
  if (zero_ && device_grads_) {
    // Every rank needs the whole bf16 working weights for the next forward; the fp32 masters
    // only when they leave the optimizer (gather_masters): gathering them each step would add
    // 4 bytes per parameter to the 2 + 2 that the bf16 reduce-scatter and all-gather move.
    ops_->synchronize();
    comm_->device_all_gather(model_->params_data(), model_->num_params(), ops_->act_dtype(), nullptr);
    masters_partial_ = true;
  } else if (zero_) {
    comm_->all_gather(static_cast<float*>(model_->params_data()), model_->num_params());
  }
  step_ = step_no;  // no wait for the update here: the next step's readback orders after it

  const auto now = std::chrono::steady_clock::now();
  const double dt = std::chrono::duration<double>(now - ts).count();
  const double run_s = std::chrono::duration<double>(now - t0_).count();
  const double tok_s = static_cast<double>(x.size()) * A * W / dt;
  elapsed_ += dt;
  last_loss_ = loss;
  if (metrics_) {
    nlohmann::json rec = {{"step", step_}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm},
                          {"tokens_per_s", tok_s}, {"elapsed_s", elapsed_}};
    if (syn) rec["syn_rows"] = syn_rows;
    metrics_->write(rec);
  }
  const int64_t last = last_step();
  if (step_ % cfg_.train.log_every == 0 || step_ == last) {
    const double eta = run_s / static_cast<double>(step_ - first_step_) * static_cast<double>(last - step_);
    logger()->info("step {:>6}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s | ETA {}",
                   step_, cfg_.train.steps, loss, lr, norm, tok_s, format_eta(eta));
  }
  return true;
}

bool TrainSession::run_until(int64_t until, SyntheticSource* syn, int syn_rows) {
  OURO_CHECK(syn_rows >= 0 && syn_rows <= cfg_.train.batch_size,
             "synthetic rows {} outside [0, batch {}]", syn_rows, cfg_.train.batch_size);
  const int64_t last = std::min(until, last_step());
  while (step_ < last) {
    // cudaProfilerStart/Stop (Ops::profiler_*) around exactly the requested steps: Nsight runs
    // with --capture-range=cudaProfilerApi record those and nothing of start-up or evaluation.
    if (step_ == opt_.profile_first_step) ops_->profiler_start();
    one_step(syn, syn_rows);
    if (step_ == opt_.profile_last_step) ops_->profiler_stop();
    if (cfg_.train.eval_every > 0 && step_ % cfg_.train.eval_every == 0) run_eval();
    maybe_sample();
    if (autosave_ && cfg_.checkpoint.every > 0 && step_ % cfg_.checkpoint.every == 0) save();
    // A signal may reach the ranks a step apart: they agree on stopping at the same step.
    double stop = g_stop_signal;
    comm_->all_reduce(&stop, 1, ReduceOp::Max);
    if (stop != 0.0) {
      stop_signal_ = static_cast<int>(stop);
      logger()->warn("interrupted by {} at step {}: checkpointing it, then exiting with status {}",
                     signal_name(stop_signal_), step_, interrupted_exit_status(stop_signal_));
      if (autosave_ && saved_step_ != step_) save();
      gather_masters();
      stopped_ = true;
      return false;
    }
  }
  gather_masters();
  return step_ < last_step();
}

TrainSummary TrainSession::finish() {
  TrainSummary sum;
  if (!stopped_) {
    if (saved_step_ != step_ || step_ == first_step_) save();
    if (step_ == cfg_.train.steps && !cfg_.data.val.empty() && step_ > first_step_ &&
        !(cfg_.train.eval_every > 0 && step_ % cfg_.train.eval_every == 0))
      run_eval();
  }
  sum.steps_done = step_;
  sum.last_loss = last_loss_;
  sum.val_loss = last_val_;
  sum.stop_signal = stop_signal_;
  return sum;
}

TrainSummary train(const Config& cfg, const TrainOptions& opt) {
  TrainSession s(cfg, opt);
  if (cfg.loop.rounds > 0) return run_loop(s, opt.fault_rollback_rounds);
  s.run_until(s.last_step());
  return s.finish();
}

}  // namespace ouro
