// The trainer's side of train.cuda_graph: whether a session captures its step as CUDA Graphs,
// and the bracket around each optimizer step (Ops::begin_graph_step / end_graph_step; the
// capture and replay themselves are the backend's, src/device/step_graph.h).
#pragma once
#include <exception>

#include "ouro/config.h"
#include "ouro/ops.h"

namespace ouro {

// Whether the step is captured: train.cuda_graph on a backend with graphs, whatever the number
// of ranks (the gradient exchange is captured with the step).
bool use_step_graphs(const Config& cfg, const Ops& ops);

// The end of a session: how many steps were captured, replayed and run uncaptured.
void log_graph_stats(const Ops& ops);
// The backend's notes on its graphs (Ops::take_graph_notes), logged.
void log_graph_notes(Ops& ops);

// One optimizer step's bracket: an exception that leaves the step drops its graphs.
class GraphStepScope {
 public:
  GraphStepScope(Ops& ops, bool on) : ops_(ops), on_(on), exceptions_(std::uncaught_exceptions()) {
    if (on_) ops_.begin_graph_step();
  }
  ~GraphStepScope() {
    if (!on_) return;
    ops_.end_graph_step(std::uncaught_exceptions() == exceptions_);
    log_graph_notes(ops_);
  }
  GraphStepScope(const GraphStepScope&) = delete;
  GraphStepScope& operator=(const GraphStepScope&) = delete;

 private:
  Ops& ops_;
  bool on_;
  int exceptions_;
};

}  // namespace ouro
