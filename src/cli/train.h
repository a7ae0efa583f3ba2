// `ouro train`'s run: a TrainSession, driven by the self-improvement loop when the config has a
// [loop] section. It lives in the cli, the one layer that sees both train and loop (loop drives
// a TrainSession; train knows nothing of the loop).
#pragma once
#include "ouro/config.h"
#include "train/trainer.h"

namespace ouro {

// Runs a whole training (or, with a [loop] section, the self-improvement loop).
// Throws ouro::Error on bad input and after too many consecutive non-finite steps.
TrainSummary train(const Config& cfg, const TrainOptions& opt);

}  // namespace ouro
