// One line that says where a training run's memory goes (GPT2::MemoryPlan), for `ouro train`'s
// start and `ouro bench train --memory`.
#include <fmt/format.h>

#include "ouro/model.h"

namespace ouro {

namespace {
std::string mib(size_t bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }
}  // namespace

std::string describe_memory_plan(const GPT2::MemoryPlan& m) {
  return fmt::format("activations {} (arena; loss chunks of {} rows), parameters {}, master weights {}, "
                     "gradients {}, optimizer state {}, workspace {}: total {} ({} bytes)",
                     mib(m.activations), m.loss_rows, mib(m.params), mib(m.master), mib(m.grads),
                     mib(m.optimizer), mib(m.workspace), mib(m.total()), m.total());
}

int largest_batch_that_fits(const GPT2Config& cfg, const Ops& ops, int T, size_t budget_bytes,
                            const ActivationOptions& o) {
  // total() grows with B: double, then bisect between the last fit and the first miss.
  if (GPT2::plan_memory(cfg, ops, 1, T, o).total() > budget_bytes) return 0;
  int lo = 1, hi = 2;
  while (GPT2::plan_memory(cfg, ops, hi, T, o).total() <= budget_bytes) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (GPT2::plan_memory(cfg, ops, mid, T, o).total() <= budget_bytes ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace ouro
