// `ouro train`'s run: a TrainSession, driven by the self-improvement loop when the config has a
// [loop] section. It lives in the cli, the one layer that sees both train and loop (loop drives
// a TrainSession; train knows nothing of the loop).
#pragma once
#include <functional>
#include <memory>

#include "loop/loop.h"
#include "ouro/config.h"
#include "train/trainer.h"

namespace ouro {

// What a caller adds around the run's own parts (empty for `ouro train`): the decorators and
// observers of TrainParts and LoopParts, copyable so that a command line can hold them. The
// tests' fault injection goes through them (tests/fault_injection.h, tests/fault_worker.cpp).
struct TrainHooks {
  std::function<std::unique_ptr<Communicator>(std::unique_ptr<Communicator>)> wrap_comm;
  std::function<void(int64_t step, const char* phase)> checkpoint_observer;
  std::function<bool(int round)> extra_guard_fails;
};

// Runs a whole training (or, with a [loop] section, the self-improvement loop).
// Throws ouro::Error on bad input and after too many consecutive non-finite steps.
TrainSummary train(const Config& cfg, const TrainOptions& opt, const TrainHooks& hooks = {});

}  // namespace ouro
