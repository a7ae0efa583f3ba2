// Gradient buckets for data parallelism: the backward reports the parameter ranges whose
// gradients it has finished (GPT2's GradReadyHook, last layer first); this groups them, in that
// order, into buckets of about dist.bucket_mb and hands each bucket to the communicator as soon
// as it is full, so its all-reduce overlaps the rest of the backward.
#pragma once
#include <cstddef>
#include <functional>
#include <vector>

#include "ouro/comm.h"
#include "ouro/model.h"

namespace ouro {

class GradBucketer {
 public:
  // Receives a full bucket: its spans in ascending offset, adjacent ranges merged.
  using Launch = std::function<void(int index, const std::vector<BufferSpan>& spans)>;
  // bucket_bytes > 0; elem_bytes: the gradient dtype's size.
  GradBucketer(size_t bucket_bytes, size_t elem_bytes, Launch launch);

  // Adds ranges that just became final; launches the bucket once it holds bucket_bytes or more
  // (a bucket never splits a range: one layer's tensors go together).
  void add(const std::vector<ParamRange>& ready);
  // Launches whatever is left (the end of the backward).
  void flush();
  int launched() const { return launched_; }
  size_t launched_elements() const { return launched_elems_; }

 private:
  size_t bucket_bytes_, elem_bytes_;
  Launch launch_;
  std::vector<ParamRange> pending_;
  size_t pending_elems_ = 0;
  int launched_ = 0;
  size_t launched_elems_ = 0;
};

}  // namespace ouro
