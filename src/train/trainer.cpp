#include "train/trainer.h"

#include <omp.h>
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <optional>

#include "common/hash.h"
#include "common/threads.h"
#include "common/trace.h"
#include "io/atomic_file.h"
#include "dist/run_comm.h"
#include "model/generate.h"
#include "ouro/checkpoint.h"
#include "ouro/error.h"
#include "train/gradient_sync.h"
#include "train/graph_step.h"
#include "train/lr_schedule.h"
#include "train/run_state.h"
#include "train/run_log.h"
#include "train/run_tokenizer.h"

namespace fs = std::filesystem;

namespace ouro {

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

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int s = static_cast<int>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace

TrainSession::TrainSession(const Config& cfg, const TrainOptions& opt, TrainParts parts) : cfg_(cfg), opt_(opt) {
  OURO_CHECK(!cfg_.data.train.empty(), "{}: key 'data.train' is not set",
             cfg_.source.empty() ? "config" : cfg_.source);
  out_ = cfg_.run.out_dir;
  run_ = std::make_unique<RunState>(cfg_);
  if (!opt_.fault_checkpoint_phase.empty())
    run_->set_checkpoint_observer([phase = opt_.fault_checkpoint_phase, at = opt_.fault_checkpoint_step](
                                      int64_t step, const char* p) {
      if (step == at && phase == p) std::raise(SIGKILL);
    });
  connect(std::move(parts.comm));
  set_compute_threads(cfg_.run.threads);
  ops_ = parts.ops ? std::move(parts.ops) : make_ops(cfg_.run.device);
  grads_ = std::make_unique<GradientSync>(*comm_, *ops_, gpt2_num_params(cfg_.model.gpt2()),
                                          cfg_.dist.zero == 1, cfg_.dist.bucket_mb);
  ops_->select_alternates(cfg_.model.matmul, cfg_.model.attention);
  load_start_state(std::move(parts.loader));
  loader_->check_vocabulary(cfg_.model.vocab_size, "data.train " + cfg_.data.train);
  check_val_data();
  // A resumed run first drops records past its checkpoint (a crash may have left some), so the
  // file reads as one uninterrupted run.
  const fs::path metrics_file = fs::path(out_) / "metrics.jsonl";
  if (step_ > 0 && is_rank0()) truncate_metrics_after(metrics_file, step_);
  if (is_rank0()) metrics_ = std::make_unique<MetricsWriter>(metrics_file, step_ > 0);
  first_step_ = step_;
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len(), A = cfg_.train.grad_accum;
  logger()->info("model: {} parameters ({} layers, {} heads, {} channels), device {}",
                 model_->num_params(), cfg_.model.n_layer, cfg_.model.n_head, cfg_.model.n_embd,
                 ops_->name());
  logger()->info("training steps {}..{} of {}, batch {} x {} x accum {} x ranks {} = {} tokens/step",
                 step_, last_step(), cfg_.train.steps, B, T, A, comm_->world(),
                 static_cast<int64_t>(B) * T * A * comm_->world());
  logger()->info("memory at batch {} x {}: {}", B, T, describe_memory_plan(model_->memory_plan()));
  graphs_ = use_step_graphs(cfg_, *ops_, comm_->world());
  g_stop_signal = 0;
  old_int_ = std::signal(SIGINT, on_stop_signal);
  old_term_ = std::signal(SIGTERM, on_stop_signal);
  // A closed terminal or ssh session stops the run like SIGTERM, unless it was started to
  // ignore hangups (nohup): that choice stands.
  old_hup_ = std::signal(SIGHUP, SIG_IGN);
  if (old_hup_ != SIG_IGN) std::signal(SIGHUP, on_stop_signal);
  t0_ = std::chrono::steady_clock::now();
}

// The ranks, the run directory (rank 0 locks it before anything in it is read or written) and
// the check that every rank runs rank 0's config.
void TrainSession::connect(std::unique_ptr<Communicator> given) {
  // local, mpi, or (device backend without MPI: dist.init = file/tcp/env) the launcher-ranks
  // communicator, whose host collectives the device communicator below serves (src/dist/run_comm.h).
  std::optional<RunCommOptions> comm_opts;
  if (!given) comm_opts = run_comm_options(cfg_.dist, cfg_.run.device);
  comm_ = given ? std::move(given) : make_run_host_comm(*comm_opts);
  if (is_rank0()) {
    io::create_dirs(out_, fmt::format("run.out_dir '{}'", out_));
    run_->lock_out_dir();  // before anything in it is read or written
    attach_log_file(fs::path(out_) / "train.log");
    // Checks data.tokenizer against the model and keeps a copy for `ouro sample`.
    load_run_tokenizer(cfg_.data.tokenizer, cfg_.model.vocab_size, out_);
  } else {
    logger()->set_level(spdlog::level::warn);  // one voice on the console: rank 0's
    // Every rank checks every input before the first step (a rank may see other files).
    load_run_tokenizer(cfg_.data.tokenizer, cfg_.model.vocab_size, {});
  }
  if (comm_->world() == 1) return;
  // Every rank must run rank 0's config. Over MPI that is checked before NCCL starts: a rank
  // whose run.device differed would otherwise issue a different first collective than the
  // others. Without MPI the check needs the device communicator's collectives.
  const bool check_first = comm_->has_host_collectives();
  if (check_first) check_same_config();
  // Device backends keep bf16 gradients on the device: they are averaged (ZeRO-0) or
  // reduce-scattered (ZeRO-1) there by NCCL (the NCCL API over MPI on simt); the host
  // collectives (losses, checks, checkpoints) stay on MPI when there is one.
  if (comm_opts) comm_ = add_run_device_comm(std::move(comm_), *comm_opts);
  if (!check_first) check_same_config();
  logger()->info("data parallel: {} ranks over {}, ZeRO-{}", comm_->world(), comm_->name(),
                 cfg_.dist.zero);
}

TrainSession::~TrainSession() {
  std::signal(SIGINT, old_int_);
  std::signal(SIGTERM, old_term_);
  std::signal(SIGHUP, old_hup_);
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

RunState& TrainSession::run_state() { return *run_; }

int64_t TrainSession::last_step() const {
  return opt_.stop_at >= 0 ? std::min(cfg_.train.steps, opt_.stop_at) : cfg_.train.steps;
}

double TrainSession::step_flops() const {
  const double tokens = static_cast<double>(cfg_.train.batch_size) * cfg_.train_seq_len() *
                        cfg_.train.grad_accum * comm_->world();
  return gpt2_flops_per_token(model_->config(), cfg_.train_seq_len()) * tokens;
}

void TrainSession::load_start_state(std::unique_ptr<DataLoader> given) {
  const GPT2Config mc = cfg_.model.gpt2();
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len();
  const std::optional<fs::path> ckpt = run_->start_checkpoint(opt_.resume);
  loader_ = given ? std::move(given)
                  : std::make_unique<DataLoader>(cfg_.data.train, B, T, comm_->rank(), comm_->world(),
                                                 static_cast<uint64_t>(cfg_.train.seed), cfg_.data.shuffle);
  model_ = std::make_unique<GPT2>(mc, *ops_, B, T);
  model_->set_activation_options({0, cfg_.train.recompute_residual});
  grads_->attach(*model_);
  const ShardRange shard = grads_->shard();
  if (ckpt) {
    RunState::Resumed r = run_->load(*ckpt, mc, comm_->world());
    model_->set_params(r.checkpoint.model.params);
    model_->set_optimizer_range(shard.begin, shard.end);
    // Moments are saved whole, so any world size re-cuts them into its own shards.
    const auto& m = r.checkpoint.adam_m;
    const auto& v = r.checkpoint.adam_v;
    model_->set_adam_state({m.begin() + shard.begin, m.begin() + shard.end},
                           {v.begin() + shard.begin, v.begin() + shard.end});
    step_ = r.counters.step;
    opt_steps_ = r.counters.opt_steps;
    elapsed_ = r.counters.elapsed_s;
    loader_->set_position(r.counters.loader);
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
  model_->set_optimizer_range(shard.begin, shard.end);
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

void TrainSession::save() {
  const int64_t step = step_;
  grads_->gather_masters();
  auto params = model_->get_params();
  run_->check_weights_sane(params, step);  // the same verdict on every rank: their weights agree
  auto m = grads_->full_moment(model_->get_adam_m()), v = grads_->full_moment(model_->get_adam_v());
  if (comm_->world() > 1) run_->check_ranks_agree(*comm_, params, *model_, *ops_, step);
  if (is_rank0()) {
    CheckpointData d;
    d.config = model_->config();
    d.params = &params;
    d.adam_m = &m;
    d.adam_v = &v;
    run_->write(std::move(d), {step, opt_steps_, elapsed_, loader_->position()}, comm_->world());
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
  if (!is_rank0() || cfg_.sample.every <= 0 || step_ % cfg_.sample.every != 0) return;
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
  grads_->gather_masters();
  return {model_->get_params(), model_->get_adam_m(), model_->get_adam_v(), step_, opt_steps_,
          loader_->position(), bad_streak_};
}

void TrainSession::restore(const Snapshot& s) {
  model_->set_params(s.params);
  grads_->masters_set();
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

// One optimizer step: micro-batches -> gradient sync -> norm -> optimizer -> metrics.
// Returns false if it was skipped (non-finite loss or gradient).
bool TrainSession::one_step(SyntheticSource* syn, int syn_rows) {
  const auto started = std::chrono::steady_clock::now();
  GraphStepScope graph(*ops_, graphs_);  // train.cuda_graph: captured once, then replayed
  run_micro_batches(syn, syn_rows);
  if (comm_->rank() == opt_.fault_kill_rank && step_ == opt_.fault_kill_step) std::raise(opt_.fault_signal);
  grads_->sync();
  const StepLoss r = loss_and_norm();
  const double lr = lr_at(step_);
  if (!std::isfinite(r.loss) || !std::isfinite(r.norm)) {
    skip_step(r, lr);
    return false;
  }
  apply_update(r.norm, lr);
  record_step(started, r, lr, syn ? syn_rows : -1);
  return true;
}

// The forward and backward of the step's grad_accum micro-batches, accumulating gradients.
void TrainSession::run_micro_batches(SyntheticSource* syn, int syn_rows) {
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len(), A = cfg_.train.grad_accum;
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  const int real_rows = syn ? B - syn_rows : B;
  model_->zero_grad();
  step_start_position_ = loader_->position();
  grads_->begin_step();
  for (int a = 0; a < A; ++a) {
    const auto watch = grads_->watch_backward(a == A - 1);
    // Real rows first (the loader always reads full batches, so the real data order does not
    // depend on the mix), then the synthetic rows over the tail of the batch.
    next_batch_or_checkpoint(x.data(), y.data());
    if (syn && syn_rows > 0)
      syn->fill(syn_rows, T, step_, a, x.data() + static_cast<size_t>(real_rows) * T,
                y.data() + static_cast<size_t>(real_rows) * T);
    // The loss stays on the device: one readback per step brings it with the norm (issue 15).
    model_->forward_backward_deferred(x.data(), y.data(), B, T, 1.0f / A);
  }
}

// The step's mean loss over the ranks and the global gradient norm, from ONE readback.
TrainSession::StepLoss TrainSession::loss_and_norm() {
  const int A = cfg_.train.grad_accum;
  const GPT2::StepReadback rb = model_->step_readback(grads_->norm_ranges());
  double loss = 0;
  for (float l : rb.losses) loss += l / A;
  if (opt_.fault_nan_steps.count(step_)) loss = std::nan("");
  comm_->all_reduce(&loss, 1, ReduceOp::Avg);
  return {loss, grads_->global_norm(rb.sum_squares)};
}

double TrainSession::lr_at(int64_t step) const {
  const LrSchedule sched{cfg_.train.lr, cfg_.train.min_lr_frac, cfg_.train.decay_frac,
                         cfg_.train.warmup_steps, cfg_.train.steps, cfg_.train.schedule};
  return sched.at(step);
}

// A step whose loss or gradient is not finite leaves the weights alone; too many in a row end
// the run.
void TrainSession::skip_step(const StepLoss& r, double lr) {
  const int64_t step_no = step_ + 1;
  ++bad_streak_;
  logger()->warn("step {}: non-finite loss {} or grad norm {}; update skipped ({} of {} in a row)",
                 step_no, r.loss, r.norm, bad_streak_, cfg_.train.max_bad_steps);
  if (metrics_)
    metrics_->write({{"step", step_no}, {"loss", nullptr}, {"grad_norm", nullptr},
                     {"skipped", true}, {"lr", lr}});
  step_ = step_no;
  if (bad_streak_ < cfg_.train.max_bad_steps) return;
  // Skipped steps leave the weights as the last update made them, which may already be
  // exploded: save() refuses those, naming the newest good checkpoint instead.
  save();
  fail("aborting: {} consecutive steps with a non-finite loss or gradient (train.max_bad_steps); "
       "the last good weights are in the checkpoint of step {} ({})",
       bad_streak_, step_, (fs::path(out_) / "checkpoints" / fmt::format("step_{:06d}", step_)).string());
}

void TrainSession::apply_update(double norm, double lr) {
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
  grads_->share_update();
  ++step_;  // no wait for the update here: the next step's readback orders after it
}

// metrics.jsonl's record of the step just done and, every log_every steps, a console line.
void TrainSession::record_step(std::chrono::steady_clock::time_point started, const StepLoss& r,
                               double lr, int syn_rows) {
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len(), A = cfg_.train.grad_accum;
  const auto now = std::chrono::steady_clock::now();
  const double dt = std::chrono::duration<double>(now - started).count();
  const double run_s = std::chrono::duration<double>(now - t0_).count();
  const double tok_s = static_cast<double>(static_cast<size_t>(B) * T) * A * comm_->world() / dt;
  elapsed_ += dt;
  last_loss_ = r.loss;
  if (metrics_) {
    nlohmann::json rec = {{"step", step_}, {"loss", r.loss}, {"lr", lr}, {"grad_norm", r.norm},
                          {"tokens_per_s", tok_s}, {"elapsed_s", elapsed_}};
    if (syn_rows >= 0) rec["syn_rows"] = syn_rows;
    metrics_->write(rec);
  }
  const int64_t last = last_step();
  if (step_ % cfg_.train.log_every == 0 || step_ == last) {
    const double eta = run_s / static_cast<double>(step_ - first_step_) * static_cast<double>(last - step_);
    logger()->info("step {:>6}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s | ETA {}",
                   step_, cfg_.train.steps, r.loss, lr, r.norm, tok_s, format_eta(eta));
  }
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
      grads_->gather_masters();
      stopped_ = true;
      return false;
    }
  }
  grads_->gather_masters();
  return step_ < last_step();
}

TrainSummary TrainSession::finish() {
  TrainSummary sum;
  if (graphs_) log_graph_stats(*ops_);
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

}  // namespace ouro
