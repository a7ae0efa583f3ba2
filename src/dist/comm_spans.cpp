// Communicator::all_reduce_spans: a gradient bucket's scattered spans reduced by one host
// collective. Packing costs two host copies of the bucket; one collective per bucket instead of
// one per span keeps the number of MPI calls (and their latencies) per step at the bucket count.
#include <algorithm>

#include "ouro/comm.h"

namespace ouro {

void Communicator::all_reduce_spans(float* buf, const std::vector<BufferSpan>& spans, ReduceOp op) {
  if (spans.empty()) return;
  if (spans.size() == 1) return all_reduce(buf + spans[0].offset, spans[0].count, op);
  size_t total = 0;
  for (const auto& s : spans) total += s.count;
  std::vector<float> packed(total);
  size_t at = 0;
  for (const auto& s : spans) {
    std::copy_n(buf + s.offset, s.count, packed.data() + at);
    at += s.count;
  }
  all_reduce(packed.data(), total, op);
  at = 0;
  for (const auto& s : spans) {
    std::copy_n(packed.data() + at, s.count, buf + s.offset);
    at += s.count;
  }
}

}  // namespace ouro
