#include "cli/train.h"

#include "loop/loop.h"

namespace ouro {

TrainSummary train(const Config& cfg, const TrainOptions& opt) {
  TrainSession s(cfg, opt);
  if (cfg.loop.rounds > 0) return run_loop(s, opt.fault_rollback_rounds);
  s.run_until(s.last_step());
  return s.finish();
}

}  // namespace ouro
