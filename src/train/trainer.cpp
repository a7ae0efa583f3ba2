#include "train/trainer.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "common/threads.h"
#include "common/trace.h"
#include "dist/run_comm.h"
#include "io/atomic_file.h"
#include "ouro/checkpoint.h"
#include "ouro/error.h"
#include "train/gradient_sync.h"
#include "train/graph_step.h"
#include "train/periodic_sample.h"
#include "train/run_log.h"
#include "train/run_state.h"
#include "train/run_tokenizer.h"
#include "train/stop_signals.h"

namespace fs = std::filesystem;

namespace ouro {

TrainSession::TrainSession(const Config& cfg, const TrainOptions& opt, TrainParts parts) : cfg_(cfg), opt_(opt) {
  OURO_CHECK(!cfg_.data.train.empty(), "{}: key 'data.train' is not set",
             cfg_.source.empty() ? "config" : cfg_.source);
  out_ = cfg_.run.out_dir;
  run_ = std::make_unique<RunState>(cfg_);
  if (parts.checkpoint_observer) run_->set_checkpoint_observer(std::move(parts.checkpoint_observer));
  connect(parts);
  set_compute_threads(cfg_.run.threads);
  ops_ = parts.ops ? std::move(parts.ops) : make_ops(cfg_.run.device);
  grads_ = std::make_unique<GradientSync>(*comm_, *ops_, gpt2_num_params(cfg_.model.gpt2()),
                                          cfg_.dist.zero == 1, cfg_.dist.bucket_mb);
  ops_->select_alternates(cfg_.model.matmul, cfg_.model.attention);
  load_start_state(std::move(parts.loader));
  loader_->check_vocabulary(cfg_.model.vocab_size, "data.train " + cfg_.data.train);
  check_val_data(cfg_, comm_->rank(), comm_->world());
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
  graphs_ = use_step_graphs(cfg_, *ops_);
  signals_ = std::make_unique<StopSignals>();
  t0_ = std::chrono::steady_clock::now();
}

// The ranks, the run directory (rank 0 locks it before anything in it is read or written) and
// the check that every rank runs rank 0's config; then parts.wrap_comm, if any, wraps it.
void TrainSession::connect(TrainParts& parts) {
  std::unique_ptr<Communicator> given = std::move(parts.comm);
  // local, mpi, or (device backend without MPI: dist.init = file/tcp/env) the launcher-ranks
  // communicator, whose host collectives the device communicator below serves (src/dist/run_comm.h).
  const bool own_comm = !given;
  comm_ = given ? std::move(given) : make_run_host_comm(cfg_.dist, cfg_.run.device);
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
  if (comm_->world() > 1) agree_on_config(own_comm);
  if (parts.wrap_comm) comm_ = parts.wrap_comm(std::move(comm_));
}

void TrainSession::agree_on_config(bool own_comm) {
  // Every rank must run rank 0's config. Over MPI that is checked before NCCL starts: a rank
  // whose run.device differed would otherwise issue a different first collective than the
  // others. Without MPI the check needs the device communicator's collectives.
  const bool check_first = comm_->has_host_collectives();
  if (check_first) run_->check_same_config(*comm_);
  // Device backends keep bf16 gradients on the device: they are averaged (ZeRO-0) or
  // reduce-scattered (ZeRO-1) there by NCCL (the NCCL API over MPI on simt); the host
  // collectives (losses, checks, checkpoints) stay on MPI when there is one.
  if (own_comm) comm_ = add_run_device_comm(std::move(comm_), cfg_.dist, cfg_.run.device);
  if (!check_first) run_->check_same_config(*comm_);
  logger()->info("data parallel: {} ranks over {}, ZeRO-{}", comm_->world(), comm_->name(),
                 cfg_.dist.zero);
}

TrainSession::~TrainSession() = default;

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
    if (is_rank0()) log_periodic_sample(*model_, cfg_, step_);
    if (autosave_ && cfg_.checkpoint.every > 0 && step_ % cfg_.checkpoint.every == 0) save();
    // A signal may reach the ranks a step apart: they agree on stopping at the same step.
    double stop = signals_->received();
    comm_->all_reduce(&stop, 1, ReduceOp::Max);
    if (stop != 0.0) {
      stop_signal_ = static_cast<int>(stop);
      logger()->warn("interrupted by {} at step {}: checkpointing it, then exiting with status {}",
                     StopSignals::name(stop_signal_), step_, interrupted_exit_status(stop_signal_));
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
