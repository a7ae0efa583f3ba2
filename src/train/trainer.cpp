#include "train/trainer.h"

#include <omp.h>
#include <cblas.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>

#include "model/generate.h"
#include "ouro/checkpoint.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "train/evaluate.h"
#include "train/lr_schedule.h"
#include "train/run_log.h"

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

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int s = static_cast<int>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string decode_bytes(const std::vector<int>& toks) {
  std::string s;
  for (int t : toks) {
    if (t == kByteEot) s += "<|endoftext|>";
    else if (t >= 0 && t < 256) s += static_cast<char>(t);
  }
  return s;
}

// Keys that must not change when a run resumes: they decide what the next steps compute.
bool resume_sensitive(const std::string& diff) {
  for (const char* k : {"model.", "train.batch_size", "train.seq_len", "train.grad_accum",
                        "train.seed", "data.train"})
    if (diff.rfind(k, 0) == 0) return true;
  return false;
}

class Trainer {
 public:
  Trainer(const Config& cfg, const TrainOptions& opt) : cfg_(cfg), opt_(opt) {}
  TrainSummary run();

 private:
  void load_start_state();
  void save(int64_t step);
  double run_eval(int64_t step);
  void maybe_sample(int64_t step);

  Config cfg_;
  TrainOptions opt_;
  fs::path out_;
  std::unique_ptr<Ops> ops_;
  std::unique_ptr<GPT2> model_;
  std::unique_ptr<DataLoader> loader_;
  std::unique_ptr<MetricsWriter> metrics_;
  int64_t step_ = 0;        // steps completed
  int64_t opt_steps_ = 0;   // optimizer updates applied (skipped steps excluded)
  int bad_streak_ = 0;
  double elapsed_before_ = 0;  // seconds spent by earlier (resumed-from) runs
  double last_val_ = -1;
};

void Trainer::load_start_state() {
  const GPT2Config mc = cfg_.model.gpt2();
  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len();
  std::optional<fs::path> ckpt;
  if (opt_.resume) {
    ckpt = latest_checkpoint(out_);
    if (!ckpt) logger()->warn("--resume: no checkpoint in {}, starting fresh", out_.string());
  }
  if (!opt_.resume) {
    // A fresh run must not mix its checkpoints with an older run's: a later --resume would
    // pick whichever step number is highest.
    if (auto old = latest_checkpoint(out_))
      fail("run.out_dir {} already holds checkpoints (newest {}); pass --resume to continue that "
           "run, or choose another run.out_dir",
           out_.string(), old->filename().string());
  }
  std::vector<float> params;
  loader_ = std::make_unique<DataLoader>(cfg_.data.train, B, T, 0, 1,
                                         static_cast<uint64_t>(cfg_.train.seed), true);
  if (ckpt) {
    TrainingCheckpoint ck = load_checkpoint(*ckpt);
    if (ck.state.contains("config")) {
      Config saved = parse_config_text(ck.state["config"].get<std::string>(),
                                       (*ckpt / "state.json").string());
      for (const auto& d : config_differences(saved, cfg_)) {
        if (resume_sensitive(d))
          fail("--resume from {}: key {} differs from the checkpoint's; a resumed run must keep it",
               ckpt->string(), d);
        logger()->info("resume: {} changed", d);
      }
    }
    OURO_CHECK(ck.model.config == mc, "--resume from {}: the checkpoint's model shape differs",
               ckpt->string());
    model_ = std::make_unique<GPT2>(mc, *ops_, B, T);
    model_->set_params(ck.model.params);
    if (!ck.adam_m.empty()) model_->set_adam_state(ck.adam_m, ck.adam_v);
    step_ = ck.state.value("step", int64_t{0});
    opt_steps_ = ck.state.value("opt_steps", int64_t{0});
    elapsed_before_ = ck.state.value("elapsed_s", 0.0);
    if (ck.state.contains("loader")) loader_->set_position(ck.state["loader"].get<LoaderPosition>());
    logger()->info("resumed from {} at step {}", ckpt->string(), step_);
    return;
  }
  if (!opt_.init.empty()) {
    LoadedModel lm = load_model(opt_.init);
    OURO_CHECK(lm.config == mc,
               "--init {}: its model (L={} NH={} C={} T={} V={}) differs from the config's "
               "(L={} NH={} C={} T={} V={}); set model.* to match",
               opt_.init, lm.config.n_layer, lm.config.n_head, lm.config.n_embd,
               lm.config.seq_len, lm.config.vocab_size, mc.n_layer, mc.n_head, mc.n_embd,
               mc.seq_len, mc.vocab_size);
    params = std::move(lm.params);
    logger()->info("initialised from {}", opt_.init);
  } else {
    params = gpt2_init_params(mc, static_cast<uint64_t>(cfg_.train.seed));
  }
  model_ = std::make_unique<GPT2>(mc, *ops_, B, T);
  model_->set_params(params);
}

void Trainer::save(int64_t step) {
  auto params = model_->get_params();
  auto m = model_->get_adam_m(), v = model_->get_adam_v();
  CheckpointData d;
  d.config = model_->config();
  d.params = &params;
  d.adam_m = &m;
  d.adam_v = &v;
  d.state = {{"step", step},
             {"opt_steps", opt_steps_},
             {"loader", loader_->position()},
             {"elapsed_s", elapsed_before_},
             // Nothing in training draws from a stateful generator: the data order is a
             // function of (seed, epoch) and samples of (seed, step), so the seed is the state.
             {"rng", {{"seed", cfg_.train.seed}, {"scheme", "counter-based splitmix64"}}},
             {"config", cfg_.to_toml()}};
  auto dir = save_checkpoint(out_, step, d, cfg_.checkpoint.keep);
  logger()->info("checkpoint {}", dir.string());
}

double Trainer::run_eval(int64_t step) {
  if (cfg_.data.val.empty()) return -1;
  auto r = evaluate(*model_, cfg_.data.val, cfg_.train.batch_size, cfg_.train_seq_len(),
                    cfg_.train.eval_batches);
  metrics_->write({{"step", step}, {"val_loss", r.loss}, {"val_tokens", r.tokens}});
  logger()->info("step {} | val loss {:.4f} ({} tokens)", step, r.loss, r.tokens);
  return r.loss;
}

void Trainer::maybe_sample(int64_t step) {
  if (cfg_.sample.every <= 0 || step % cfg_.sample.every != 0) return;
  // A separate inference model would double memory; the KV path reuses the training buffers.
  std::vector<int> prompt{kByteEot};
  for (unsigned char ch : cfg_.sample.prompt) prompt.push_back(ch);
  SampleOptions so;
  so.max_tokens = cfg_.sample.max_tokens;
  so.temperature = static_cast<float>(cfg_.sample.temperature);
  so.top_k = cfg_.sample.top_k;
  so.top_p = static_cast<float>(cfg_.sample.top_p);
  so.seed = static_cast<uint64_t>(cfg_.train.seed) + static_cast<uint64_t>(step);
  if (cfg_.model.vocab_size != kByteVocab) return;  // byte decoding only for byte-level data
  auto toks = generate(*model_, prompt, so);
  logger()->info("sample at step {}: {}", step, cfg_.sample.prompt + decode_bytes(toks));
}

TrainSummary Trainer::run() {
  out_ = cfg_.run.out_dir;
  fs::create_directories(out_);
  attach_log_file(out_ / "train.log");
  set_compute_threads(cfg_.run.threads);
  ops_ = make_ops(cfg_.run.device);
  load_start_state();
  OURO_CHECK(loader_->max_token() < cfg_.model.vocab_size,
             "data.train {}: token id {} does not fit model.vocab_size {}", cfg_.data.train,
             loader_->max_token(), cfg_.model.vocab_size);
  // A resumed run first drops records past its checkpoint (a crash may have left some), so the
  // file reads as one uninterrupted run.
  if (step_ > 0) truncate_metrics_after(out_ / "metrics.jsonl", step_);
  metrics_ = std::make_unique<MetricsWriter>(out_ / "metrics.jsonl", step_ > 0);

  const int B = cfg_.train.batch_size, T = cfg_.train_seq_len(), A = cfg_.train.grad_accum;
  const int64_t total = cfg_.train.steps;
  const int64_t last = opt_.stop_at >= 0 ? std::min(total, opt_.stop_at) : total;
  LrSchedule sched{cfg_.train.lr, cfg_.train.min_lr_frac, cfg_.train.decay_frac,
                   cfg_.train.warmup_steps, total, cfg_.train.schedule};
  logger()->info("model: {} parameters ({} layers, {} heads, {} channels), device {}",
                 model_->num_params(), cfg_.model.n_layer, cfg_.model.n_head, cfg_.model.n_embd,
                 ops_->name());
  logger()->info("training steps {}..{} of {}, batch {} x {} x accum {} = {} tokens/step", step_,
                 last, total, B, T, A, static_cast<int64_t>(B) * T * A);

  g_stop_signal = 0;
  auto old_int = std::signal(SIGINT, on_stop_signal);
  auto old_term = std::signal(SIGTERM, on_stop_signal);
  struct RestoreSignals {
    decltype(old_int) i, t;
    ~RestoreSignals() { std::signal(SIGINT, i), std::signal(SIGTERM, t); }
  } restore{old_int, old_term};

  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  TrainSummary sum;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first = step_;
  bool saved_last = false;
  while (step_ < last) {
    const auto ts = std::chrono::steady_clock::now();
    model_->zero_grad();
    double loss = 0;
    for (int a = 0; a < A; ++a) {
      loader_->next_batch(x.data(), y.data());
      loss += model_->forward_backward(x.data(), y.data(), B, T, 1.0f / A) / A;
    }
    if (opt_.fault_nan_steps.count(step_)) loss = std::nan("");
    const double norm = model_->grad_norm();
    const double lr = sched.at(step_);
    const int64_t step_no = step_ + 1;
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++bad_streak_;
      logger()->warn("step {}: non-finite loss {} or grad norm {}; update skipped ({} of {} in a row)",
                     step_no, loss, norm, bad_streak_, cfg_.train.max_bad_steps);
      metrics_->write({{"step", step_no}, {"loss", nullptr}, {"grad_norm", nullptr},
                       {"skipped", true}, {"lr", lr}});
      step_ = step_no;
      if (bad_streak_ >= cfg_.train.max_bad_steps) {
        save(step_);
        fail("aborting: {} consecutive steps with a non-finite loss or gradient (train.max_bad_steps); "
             "the last good weights are in the checkpoint of step {}",
             bad_streak_, step_);
      }
      continue;
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
    step_ = step_no;
    ops_->synchronize();

    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - ts).count();
    const double run_s = std::chrono::duration<double>(now - t0).count();
    const double tok_s = static_cast<double>(x.size()) * A / dt;
    elapsed_before_ += dt;
    metrics_->write({{"step", step_}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm},
                     {"tokens_per_s", tok_s}, {"elapsed_s", elapsed_before_}});
    sum.last_loss = loss;
    if (step_ % cfg_.train.log_every == 0 || step_ == last) {
      const double eta = run_s / static_cast<double>(step_ - first) * static_cast<double>(last - step_);
      logger()->info("step {:>6}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s | ETA {}",
                     step_, total, loss, lr, norm, tok_s, format_eta(eta));
    }
    if (cfg_.train.eval_every > 0 && step_ % cfg_.train.eval_every == 0) last_val_ = run_eval(step_);
    maybe_sample(step_);
    const bool at_end = step_ == last;
    if ((cfg_.checkpoint.every > 0 && step_ % cfg_.checkpoint.every == 0) || at_end) {
      save(step_);
      saved_last = at_end;
    }
    if (g_stop_signal) {
      logger()->warn("signal {} received: checkpointing at step {} and stopping", g_stop_signal.load(), step_);
      if (!(cfg_.checkpoint.every > 0 && step_ % cfg_.checkpoint.every == 0)) save(step_);
      break;
    }
  }
  if (!saved_last && step_ == last && step_ == first) save(step_);  // nothing to do: still leave a checkpoint
  if (step_ == total && !cfg_.data.val.empty() &&
      !(cfg_.train.eval_every > 0 && total % cfg_.train.eval_every == 0) && step_ > first)
    last_val_ = run_eval(step_);
  sum.steps_done = step_;
  sum.val_loss = last_val_;
  return sum;
}

}  // namespace

TrainSummary train(const Config& cfg, const TrainOptions& opt) {
  OURO_CHECK(!cfg.data.train.empty(), "{}: key 'data.train' is not set",
             cfg.source.empty() ? "config" : cfg.source);
  Trainer t(cfg, opt);
  return t.run();
}

}  // namespace ouro
