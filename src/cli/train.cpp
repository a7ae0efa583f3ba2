#include "cli/train.h"

#include <utility>

namespace ouro {

TrainSummary train(const Config& cfg, const TrainOptions& opt, const TrainHooks& hooks) {
  TrainParts parts;
  parts.wrap_comm = hooks.wrap_comm;
  parts.checkpoint_observer = hooks.checkpoint_observer;
  TrainSession s(cfg, opt, std::move(parts));
  if (cfg.loop.rounds > 0) return run_loop(s, LoopParts{hooks.extra_guard_fails});
  s.run_until(s.last_step());
  return s.finish();
}

}  // namespace ouro
