#include "train/graph_step.h"

#include "common/log.h"

namespace ouro {

bool use_step_graphs(const Config& cfg, const Ops& ops) {
  // cpu: nothing to capture. Data-parallel runs are captured too: the gradient exchange's
  // collectives and bucket waits are ops of the step (Ops::stream_op), nodes of its graphs.
  return cfg.train.cuda_graph && ops.supports_graphs();
}

void log_graph_notes(Ops& ops) {
  for (const std::string& note : ops.take_graph_notes()) logger()->info("train.cuda_graph: {}", note);
}

void log_graph_stats(const Ops& ops) {
  const auto s = ops.graph_stats();
  if (!s) return;
  logger()->info("train.cuda_graph: {} step(s) captured, {} replayed, {} uncaptured", s->captured, s->replayed,
                 s->uncaptured);
}

}  // namespace ouro
