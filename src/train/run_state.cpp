#include "train/run_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/hash.h"
#include "ouro/error.h"
#include "train/run_log.h"

namespace fs = std::filesystem;

namespace ouro {
namespace {

// Weights beyond this magnitude mean the run diverged: a trained GPT's fp32 weights stay within
// a few hundred, and a value this large only grows until the loss is non-finite.
constexpr double kMaxSaneWeight = 1e6;

// Keys that must not change when a run resumes: they decide what the next steps compute.
bool resume_sensitive(const std::string& diff) {
  for (const char* k : {"model.", "train.batch_size", "train.seq_len", "train.grad_accum",
                        "train.seed", "data.train", "data.shuffle", "loop."})
    if (diff.rfind(k, 0) == 0) return true;
  return false;
}

// The keys of state.json the trainer itself writes; any other key is a component's.
bool trainer_key(const std::string& k) {
  for (const char* t : {"step", "opt_steps", "world", "loader", "elapsed_s", "rng", "config"})
    if (k == t) return true;
  return false;
}

// FNV-1a over the bytes of a float vector: a cheap fingerprint to prove ranks agree bitwise.
uint64_t fingerprint(const std::vector<float>& v) {
  return fnv1a(v.data(), v.size() * sizeof(float), kFnv1aShortOffset);
}

}  // namespace

RunState::RunState(const Config& cfg) : cfg_(cfg), out_(cfg.run.out_dir) {}

RunState::~RunState() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

void RunState::lock_out_dir() {
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

void RunState::register_state(const std::string& name, std::function<nlohmann::json()> save) {
  OURO_CHECK(!trainer_key(name), "state.json key '{}' is the trainer's own", name);
  savers_[name] = std::move(save);
}

const nlohmann::json& RunState::resumed(const std::string& name) const {
  static const nlohmann::json none;
  auto it = resumed_.find(name);
  return it == resumed_.end() ? none : *it;
}

std::optional<fs::path> RunState::start_checkpoint(bool resume) const {
  if (resume) {
    auto ckpt = latest_checkpoint(out_);
    if (!ckpt) logger()->warn("--resume: no checkpoint in {}, starting fresh", out_);
    return ckpt;
  }
  if (auto old = latest_checkpoint(out_))
    // A fresh run must not mix its checkpoints with an older run's: a later --resume would
    // pick whichever step number is highest.
    fail("run.out_dir {} already holds checkpoints (newest {}); pass --resume to continue that "
         "run, or choose another run.out_dir",
         out_, old->filename().string());
  return std::nullopt;
}

RunState::Resumed RunState::load(const fs::path& dir, const GPT2Config& model, int world) {
  // A resumable checkpoint is complete: weights, optimizer moments and training state. Without
  // the moments AdamW would restart cold; without the state the run would restart at step 0
  // on trained weights and overwrite newer checkpoints.
  for (const char* f : {"optimizer.safetensors", "state.json"}) {
    std::error_code ec;
    OURO_CHECK(fs::is_regular_file(dir / f, ec),
               "--resume from {}: {} is missing, so the checkpoint is incomplete; restore the "
               "file, or remove the directory to resume from an older checkpoint",
               dir.string(), (dir / f).string());
  }
  Resumed r;
  r.checkpoint = load_checkpoint(dir);
  const std::string state_file = (dir / "state.json").string();
  const CheckpointState st = parse_checkpoint_state(r.checkpoint.state, state_file, checkpoint_dir_step(dir));
  const Config saved = parse_config_text(st.config, state_file);
  const bool same_global_batch = static_cast<int64_t>(saved.train.batch_size) * st.world ==
                                 static_cast<int64_t>(cfg_.train.batch_size) * world;
  for (const auto& d : config_differences(saved, cfg_)) {
    // A different world size may re-split the same global batch across its ranks.
    if (d.rfind("train.batch_size", 0) == 0 && same_global_batch) {
      logger()->info("resume: {} across {} ranks (was {} ranks): same global batch", d,
                     world, st.world);
      continue;
    }
    if (resume_sensitive(d))
      fail("--resume from {}: key {} differs from the checkpoint's; a resumed run must keep it",
           dir.string(), d);
    logger()->info("resume: {} changed", d);
  }
  OURO_CHECK(r.checkpoint.model.config == model,
             "--resume from {}: the checkpoint's model ({}) differs from the config's ({})",
             dir.string(), describe_model(r.checkpoint.model.config), describe_model(model));
  for (const auto& [k, v] : r.checkpoint.state.items())
    if (!trainer_key(k)) resumed_[k] = v;
  r.counters = {st.step, st.opt_steps, st.elapsed_s, st.loader};
  return r;
}

void RunState::check_weights_sane(const std::vector<float>& params, int64_t step) const {
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

void RunState::check_ranks_agree(Communicator& comm, const std::vector<float>& params, GPT2& model, Ops& ops,
                                 int64_t step) {
  const size_t wbytes = model.num_params() * dtype_size(ops.act_dtype());
  std::vector<float> working(wbytes / sizeof(float) + 1, 0.0f);
  ops.to_host(working.data(), model.params_data(), wbytes);
  uint64_t mine = fingerprint(params) ^ (fingerprint(working) * 31), ref = mine;
  comm.broadcast(&ref, sizeof(ref), 0);
  double differs = mine != ref ? 1.0 : 0.0;
  comm.all_reduce(&differs, 1, ReduceOp::Max);
  OURO_CHECK(differs == 0.0, "rank {}: the ranks' weights diverged at step {}", comm.rank(), step);
  logger()->info("step {}: the {} ranks' weights are bitwise identical (fingerprint {:016x})", step,
                 comm.world(), mine);
}

fs::path RunState::write(CheckpointData d, const RunCounters& c, int world) {
  d.state = {{"step", c.step},
             {"opt_steps", c.opt_steps},
             {"world", world},
             {"loader", c.loader},
             {"elapsed_s", c.elapsed_s},
             // Nothing in training draws from a stateful generator: the data order is a
             // function of (seed, epoch) and samples of (seed, step), so the seed is the state.
             {"rng", {{"seed", cfg_.train.seed}, {"scheme", "counter-based splitmix64"}}},
             {"config", cfg_.to_toml()}};
  for (const auto& [name, save] : savers_) {
    nlohmann::json j = save();
    if (!j.is_null()) d.state[name] = std::move(j);
  }
  if (observer_) d.on_phase = [f = observer_, step = c.step](const char* phase) { f(step, phase); };
  auto dir = save_checkpoint(out_, c.step, d, cfg_.checkpoint.keep);
  logger()->info("checkpoint {}", dir.string());
  return dir;
}

void RunState::check_same_config(Communicator& comm) const {
  std::string mine = cfg_.to_toml(), ref = mine;
  uint64_t len = ref.size();
  comm.broadcast(&len, sizeof(len), 0);
  ref.resize(len);
  comm.broadcast(ref.data(), len, 0);
  auto diffs = config_differences(parse_config_text(ref, "rank 0's config"), cfg_);
  double differs = diffs.empty() ? 0.0 : 1.0;
  comm.all_reduce(&differs, 1, ReduceOp::Max);
  if (differs == 0.0) return;
  if (!diffs.empty()) {
    std::string keys;
    for (const auto& d : diffs) keys += (keys.empty() ? "" : ", ") + d;
    fail("rank {} runs a different config than rank 0 (rank 0's value vs this rank's): {}", comm.rank(), keys);
  }
  fail("rank {}: another rank runs a different config than rank 0; refusing to start", comm.rank());
}

}  // namespace ouro
