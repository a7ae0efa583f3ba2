#include "train/gradient_sync.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/trace.h"
#include "ouro/error.h"
#include "train/run_log.h"

namespace ouro {

GradientSync::GradientSync(Communicator& comm, Ops& ops, size_t num_params, bool zero, double bucket_mb)
    : comm_(comm), ops_(ops), num_params_(num_params), zero_(zero && comm.world() > 1),
      bucket_mb_(bucket_mb), device_grads_(ops.act_dtype() != DType::F32) {
  shard_ = zero_ ? shard_for(comm_.rank()) : ShardRange{0, num_params_};
}

ShardRange GradientSync::shard_for(int r) const {
  return device_grads_ ? device_shard_of(num_params_, comm_.world(), r)
                       : shard_of(num_params_, comm_.world(), r);
}

void GradientSync::begin_step() {
  buckets_.reset();
  if (!bucketed()) return;
  // Clamped to [1 byte, 2^60]: any positive dist.bucket_mb is valid, however small or large.
  buckets_.emplace(static_cast<size_t>(std::clamp(bucket_mb_ * 1024 * 1024, 1.0, 0x1p60)),
                   dtype_size(ops_.act_dtype()),
                   [this](int i, const std::vector<BufferSpan>& spans) { launch_bucket(i, spans); });
}

GradientSync::BackwardWatch GradientSync::watch_backward(bool last_micro) {
  if (!buckets_ || !last_micro) return BackwardWatch(nullptr);
  model_->set_grad_ready_hook([this](const std::vector<ParamRange>& r) { buckets_->add(r); });
  return BackwardWatch(model_);
}

// Starts one bucket's average (device: on the communicator's stream, after the compute
// stream's work so far, as one op of the step so that a captured step holds it, forked off the
// compute stream; cpu: a blocking host all-reduce, the gradients being final already).
void GradientSync::launch_bucket(int index, const std::vector<BufferSpan>& spans) {
  const std::string name = "allreduce bucket " + std::to_string(index);
  TraceRange trace(name);
  if (!device_grads_) return comm_.all_reduce_spans(static_cast<float*>(model_->grads_data()), spans, ReduceOp::Avg);
  void* grads = model_->grads_data();
  std::vector<uint64_t> key{reinterpret_cast<uint64_t>(grads)};
  for (const BufferSpan& s : spans) key.insert(key.end(), {s.offset, s.count});
  ops_.stream_op("allreduce_bucket", key, [this, grads, spans](void* stream) {
    comm_.device_all_reduce_spans_start(grads, spans, ops_.act_dtype(), ReduceOp::Avg, stream);
  });
}

// Called once per optimizer step, after the last micro-step of gradient accumulation: the
// micro-steps accumulate into the local gradients, and only their sum crosses the wire.
void GradientSync::sync() {
  if (buckets_) buckets_->flush();
  if (comm_.world() == 1) return;
  if (buckets_) return wait_buckets();
  exchange_all();
}

void GradientSync::wait_buckets() {
  // The compute stream reads them next: it waits for them (in a captured step, through an event).
  if (device_grads_)
    ops_.stream_op("allreduce_buckets_wait", {}, [this](void* stream) { comm_.device_wait_started(stream); });
  // Every gradient element in exactly one bucket (the buckets' ranges never overlap), or the
  // ranks would step on gradients some of them never averaged.
  OURO_CHECK(buckets_->launched_elements() == model_->num_params(),
             "gradient buckets covered {} of {} gradients: the model's ready ranges are incomplete",
             buckets_->launched_elements(), model_->num_params());
  last_buckets_ = buckets_->launched();
  if (!buckets_logged_) {
    logger()->info("gradients averaged in {} bucket{} of ~{} MiB, started during the backward",
                   buckets_->launched(), buckets_->launched() == 1 ? "" : "s", bucket_mb_);
    buckets_logged_ = true;
  }
}

void GradientSync::exchange_all() {
  if (device_grads_) {
    // bf16 gradients are averaged as bf16: NCCL sums each element in fp32 and rounds to bf16 once
    // per hop (once in all for 2 ranks; NCCL-over-MPI sums all ranks in fp32, then rounds once).
    // That adds one bf16 rounding (relative 2^-9) to gradients that the backward has already
    // rounded to bf16 once per micro-step, and halves the bytes an fp32 reduction would move;
    // AdamW normalises the update by the gradient's own scale, so the extra rounding is noise
    // of the size the bf16 backward already makes.
    OURO_CHECK(comm_.has_device_collectives(), "data parallelism on the {} backend needs a device "
               "communicator; {} has none", ops_.name(), comm_.name());
    // ZeRO-1 reduces each rank's shard only: the same fp32 sum in rank order and one bf16
    // rounding per element as the all-reduce (on simt; NCCL's ring may order the sum by chunk),
    // so the shard's bits equal ZeRO-0's there.
    // On the ops stream, behind the backward's last kernels that write the gradients: one op of
    // the step, which a captured step holds as a node.
    void* grads = model_->grads_data();
    const size_t n = model_->num_params();
    const DType dt = ops_.act_dtype();
    if (zero_)
      ops_.stream_op("reduce_scatter_grads", {reinterpret_cast<uint64_t>(grads), n}, [this, grads, n, dt](void* s) {
        comm_.device_reduce_scatter(grads, n, dt, ReduceOp::Avg, s);
      });
    else
      ops_.stream_op("all_reduce_grads", {reinterpret_cast<uint64_t>(grads), n}, [this, grads, n, dt](void* s) {
        comm_.device_all_reduce(grads, n, dt, ReduceOp::Avg, s);
      });
    return;
  }
  auto* g = static_cast<float*>(model_->grads_data());
  if (zero_)
    comm_.reduce_scatter(g, model_->num_params(), ReduceOp::Avg);
  else
    comm_.all_reduce(g, model_->num_params(), ReduceOp::Avg);
}

std::vector<ParamRange> GradientSync::norm_ranges() const {
  std::vector<ParamRange> ranges;
  for (int r = 0; r < comm_.world(); ++r)
    if (!zero_ || r == comm_.rank()) ranges.push_back({shard_for(r).begin, shard_for(r).end});
  return ranges;
}

double GradientSync::global_norm(const std::vector<double>& range_sums) {
  // Per-shard partial sums (the ZeRO-1 shards of this backend) added in rank order: ZeRO-0 and
  // ZeRO-1 compute the same bits. range_sums: this rank's shard (ZeRO-1) or every shard.
  const int W = comm_.world();
  std::vector<double> part(W, 0.0);
  if (zero_) {
    part[comm_.rank()] = range_sums.at(0);
    comm_.all_gather(part.data(), W);
  } else {
    for (int r = 0; r < W; ++r) part[r] = range_sums.at(r);
  }
  double sum = 0;
  for (double p : part) sum += p;
  return std::sqrt(sum);
}

void GradientSync::share_update() {
  if (!zero_) return;
  if (device_grads_) {
    // Every rank needs the whole bf16 working weights for the next forward; the fp32 masters
    // only when they leave the optimizer (gather_masters): gathering them each step would add
    // 4 bytes per parameter to the 2 + 2 that the bf16 reduce-scatter and all-gather move.
    // On the ops stream behind AdamW's update: one op of the step (a node of a captured step).
    void* params = model_->params_data();
    const size_t n = model_->num_params();
    const DType dt = ops_.act_dtype();
    ops_.stream_op("all_gather_params", {reinterpret_cast<uint64_t>(params), n}, [this, params, n, dt](void* s) {
      comm_.device_all_gather(params, n, dt, s);
    });
    masters_partial_ = true;
  } else {
    comm_.all_gather(static_cast<float*>(model_->params_data()), model_->num_params());
  }
}

void GradientSync::gather_masters() {
  if (!masters_partial_) return;
  ops_.synchronize();
  comm_.device_all_gather(model_->master_data(), model_->num_params(), DType::F32, nullptr);
  masters_partial_ = false;
}

std::vector<float> GradientSync::full_moment(std::vector<float> part) const {
  if (!zero_) return part;
  std::vector<float> full(num_params_, 0.0f);
  std::copy(part.begin(), part.end(), full.begin() + shard_.begin);
  // Each rank's shard in turn, whichever backend's layout cut them (the host all-gather knows
  // shard_of's only); a checkpoint's rare cost, and the broadcast takes any size in pieces.
  for (int r = 0; r < comm_.world(); ++r) {
    const ShardRange s = shard_for(r);
    comm_.broadcast(full.data() + s.begin, s.size() * sizeof(float), r);
  }
  return full;
}

}  // namespace ouro
