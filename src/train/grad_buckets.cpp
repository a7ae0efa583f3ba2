#include "train/grad_buckets.h"

#include <algorithm>

#include "ouro/error.h"

namespace ouro {

GradBucketer::GradBucketer(size_t bucket_bytes, size_t elem_bytes, Launch launch)
    : bucket_bytes_(bucket_bytes), elem_bytes_(elem_bytes), launch_(std::move(launch)) {
  OURO_CHECK(bucket_bytes_ > 0 && elem_bytes_ > 0, "gradient buckets need a positive size");
}

void GradBucketer::add(const std::vector<ParamRange>& ready) {
  for (const auto& r : ready) {
    if (r.size() == 0) continue;
    pending_.push_back(r);
    pending_elems_ += r.size();
  }
  if (pending_elems_ * elem_bytes_ >= bucket_bytes_) flush();
}

void GradBucketer::flush() {
  if (pending_.empty()) return;
  // Several layers in one bucket: the same tensor's slices of consecutive layers are adjacent
  // in the stacked layout, so merging cuts a bucket to at most one span per tensor (fewer
  // calls inside the NCCL group, fewer copies on the host path).
  std::sort(pending_.begin(), pending_.end(), [](const ParamRange& a, const ParamRange& b) { return a.begin < b.begin; });
  std::vector<BufferSpan> spans;
  for (const auto& r : pending_) {
    if (!spans.empty() && spans.back().offset + spans.back().count == r.begin) {
      spans.back().count += r.size();
    } else {
      OURO_CHECK(spans.empty() || spans.back().offset + spans.back().count < r.begin,
                 "gradient bucket: range [{}, {}) overlaps an earlier one", r.begin, r.end);
      spans.push_back({r.begin, r.size()});
    }
  }
  launched_elems_ += pending_elems_;
  pending_.clear();
  pending_elems_ = 0;
  launch_(launched_++, spans);
}

}  // namespace ouro
