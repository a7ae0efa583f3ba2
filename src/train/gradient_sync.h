// The data-parallel gradient exchange of one optimizer step, in its three forms:
// - plain: every gradient averaged over the ranks after the backward (one all-reduce);
// - bucketed (dist.bucket_mb > 0, ZeRO-0): buckets of finished gradients averaged while the
//   backward still runs (GradBucketer), so the exchange overlaps the compute;
// - ZeRO-1 (dist.zero = 1): one reduce-scatter after the backward leaves each rank its shard of
//   the averaged gradients; AdamW updates that shard only, and an all-gather spreads the result.
// On host (fp32 gradients, the cpu backend) over the host collectives; on devices (bf16
// gradients) over the device collectives. The trainer and `ouro bench train` both step through
// this one class, so the benchmark measures the exchange training runs.
#pragma once
#include <cstddef>
#include <optional>
#include <vector>

#include "ouro/comm.h"
#include "ouro/model.h"
#include "ouro/ops.h"
#include "train/grad_buckets.h"

namespace ouro {

class GradientSync {
 public:
  // zero: ZeRO-1 (sharded optimizer); bucket_mb > 0: overlapped buckets (ZeRO-0 only).
  // num_params: the model's; the model itself comes later (attach), as its optimizer range
  // (set_optimizer_range(shard())) must be known when it is built.
  GradientSync(Communicator& comm, Ops& ops, size_t num_params, bool zero, double bucket_mb);
  void attach(GPT2& model) { model_ = &model; }

  bool zero() const { return zero_; }
  // ZeRO-1 keeps its one reduce-scatter after the backward: a per-bucket reduce-scatter would
  // cut each bucket into per-rank shards that no longer match the optimizer's contiguous shard.
  bool bucketed() const { return comm_.world() > 1 && !zero_ && bucket_mb_ > 0; }
  // The parameter range this rank's optimizer updates (everything without ZeRO-1).
  ShardRange shard() const { return shard_; }
  // The ZeRO-1 shard rank r owns: device_shard_of where gradients live on the device (the
  // device collectives' layout), shard_of on the cpu backend (the host collectives').
  ShardRange shard_for(int r) const;

  // Opens one optimizer step's exchange: fresh buckets (bucketed runs).
  void begin_step();
  // Watches one micro-batch's backward for as long as the returned guard lives. Gradients
  // cross the wire on the last micro-batch only (earlier ones just accumulate): there, on a
  // bucketed run, the model's ready hook starts each full bucket's average.
  class BackwardWatch {
   public:
    explicit BackwardWatch(GPT2* hooked) : hooked_(hooked) {}
    BackwardWatch(const BackwardWatch&) = delete;
    BackwardWatch& operator=(const BackwardWatch&) = delete;
    ~BackwardWatch() {
      if (hooked_) hooked_->set_grad_ready_hook({});  // the hook refers to this step's buckets
    }

   private:
    GPT2* hooked_;
  };
  [[nodiscard]] BackwardWatch watch_backward(bool last_micro);
  // After the last micro-batch: averages the gradients over the ranks (ZeRO-1: reduce-scatters
  // them). On a bucketed run the buckets' averages were started during the backward: this
  // starts the rest and waits for them all. On devices every collective and the buckets' wait
  // go through Ops::stream_op, as ops of the step: a captured step (train.cuda_graph) holds them
  // as graph nodes, the wait as an event the compute stream waits on.
  void sync();
  // The whole exchange after the backward (no buckets), as sync does it on an unbucketed run.
  void exchange_all();
  int last_step_buckets() const { return last_buckets_; }

  // The ranges whose squared gradient sums the norm needs from this rank: its shard under
  // ZeRO-1, every rank's shard otherwise (added in rank order, so ZeRO-0 and ZeRO-1 agree).
  std::vector<ParamRange> norm_ranges() const;
  // The global gradient norm from the per-range sums of norm_ranges (a collective under ZeRO-1).
  double global_norm(const std::vector<double>& range_sums);
  // After AdamW: ZeRO-1 spreads every rank's updated shard of the working weights.
  void share_update();
  // ZeRO-1 on devices: AdamW updates only this rank's shard of the fp32 masters; this
  // all-gathers them whole again (a collective: every rank calls it at the same point).
  void gather_masters();
  // An optimizer moment whole from every rank's shard of it (ZeRO-1; otherwise `part` as is).
  std::vector<float> full_moment(std::vector<float> part) const;
  // Marks the fp32 masters whole (they were just set from a whole copy).
  void masters_set() { masters_partial_ = false; }

 private:
  void launch_bucket(int index, const std::vector<BufferSpan>& spans);
  void wait_buckets();

  Communicator& comm_;
  Ops& ops_;
  GPT2* model_ = nullptr;
  size_t num_params_;
  bool zero_;
  double bucket_mb_;
  bool device_grads_;  // bf16 gradients on the device, reduced by device collectives
  ShardRange shard_;
  std::optional<GradBucketer> buckets_;
  int last_buckets_ = 0;
  bool buckets_logged_ = false;
  // ZeRO-1 on devices: the masters outside this rank's shard are stale since the last step.
  bool masters_partial_ = false;
};

}  // namespace ouro
