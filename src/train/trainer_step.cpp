// TrainSession's optimizer step and what surrounds it: the batches (a shard failing mid-run
// checkpoints first), micro-batches -> gradient sync -> norm -> optimizer -> metrics, a skipped
// non-finite step. The session's life (start, resume, checkpoints, evaluation) is trainer.cpp's.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "ouro/error.h"
#include "train/gradient_sync.h"
#include "train/graph_step.h"
#include "train/lr_schedule.h"
#include "train/run_log.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace ouro {

namespace {

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int s = static_cast<int>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace

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

}  // namespace ouro
