// Held-out evaluation: mean cross-entropy over the first `batches` batches of a shard read in
// file order (no shuffle), so every evaluation of a run sees the same tokens.
#pragma once
#include <string>

#include "ouro/comm.h"
#include "ouro/config.h"
#include "ouro/model.h"

namespace ouro {

struct EvalResult {
  double loss = 0;       // mean over tokens
  size_t tokens = 0;
  double tail_loss = 0;  // mean over the hardest tail_frac of windows (highest loss)
};

// batches > 0: the first `batches` full batches; batches <= 0: every window of the data once,
// the last batch partial. With a communicator of W ranks each rank evaluates its share of every
// batch of W*B windows and the result is reduced over ranks. A token outside the model's
// vocabulary is an error naming the shard and its byte offset.
EvalResult evaluate(GPT2& model, const std::string& data, int B, int T, int batches,
                    Communicator* comm = nullptr, double tail_frac = 0.1);

// Opens data.val (if set) as this rank of `world` will read it and checks its tokens fit the
// model: a missing or short validation shard must not end a run hundreds of steps in, at its
// first evaluation. Errors name data.val.
void check_val_data(const Config& cfg, int rank, int world);

}  // namespace ouro
