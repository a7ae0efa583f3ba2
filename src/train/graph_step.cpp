#include "train/graph_step.h"

#include "common/log.h"

namespace ouro {

bool use_step_graphs(const Config& cfg, const Ops& ops, int world) {
  if (!cfg.train.cuda_graph || !ops.supports_graphs()) return false;  // cpu: nothing to capture
  if (world > 1) {
    // The gradient exchange (buckets, reduce-scatter, all-gather) is issued on the comm stream
    // by the device communicator, outside the ops a graph step records: it would run at the
    // wrong point of a replay.
    logger()->info("train.cuda_graph: data-parallel runs ({} ranks) are not captured yet: the gradient "
                   "exchange runs outside the device ops; the step runs uncaptured", world);
    return false;
  }
  return true;
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
