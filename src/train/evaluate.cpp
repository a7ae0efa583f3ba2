#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "ouro/data.h"
#include "ouro/error.h"

namespace ouro {

EvalResult evaluate(GPT2& model, const std::string& data, int B, int T, int batches,
                    Communicator* comm, double tail_frac) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
  DataLoader loader(data, B, T, rank, world, /*seed=*/0, /*shuffle=*/false);
  loader.check_vocabulary(model.config().vocab_size, "data " + data);
  // batches > 0: that many full batches of world*B windows. Otherwise every window once: the
  // full batches, then what is left as a last, smaller batch split across the ranks in order.
  const uint64_t step = static_cast<uint64_t>(world) * B;
  const uint64_t scored = batches > 0 ? std::min<uint64_t>(static_cast<uint64_t>(batches) * step,
                                                           loader.batches_per_epoch() * step)
                                      : loader.num_windows();
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  double sum = 0;
  size_t tokens = 0;
  // Window losses of every rank, each rank filling its own windows' slots, summed over ranks below.
  std::vector<double> windows(scored, 0.0);
  for (uint64_t first = 0; first < scored; first += step) {
    const uint64_t mine = first + static_cast<uint64_t>(rank) * B;
    const int rows = mine >= scored ? 0 : static_cast<int>(std::min<uint64_t>(B, scored - mine));
    if (rows == 0) continue;  // a last batch too small to reach this rank
    for (int b = 0; b < rows; ++b)
      loader.read_window(mine + b, x.data() + static_cast<size_t>(b) * T, y.data() + static_cast<size_t>(b) * T);
    const size_t n = static_cast<size_t>(rows) * T;
    sum += static_cast<double>(model.forward(x.data(), y.data(), rows, T)) * n;
    tokens += n;
    auto l = model.last_losses(rows, T);
    for (int b = 0; b < rows; ++b) {
      double w = 0;
      for (int t = 0; t < T; ++t) w += l[static_cast<size_t>(b) * T + t];
      windows[mine + b] = w / T;
    }
  }
  if (comm && !windows.empty()) comm->all_reduce(windows.data(), windows.size(), ReduceOp::Sum);
  double tail = 0;
  if (!windows.empty()) {
    std::sort(windows.begin(), windows.end(), std::greater<double>());
    const size_t k = std::max<size_t>(1, static_cast<size_t>(std::ceil(tail_frac * windows.size())));
    for (size_t i = 0; i < k; ++i) tail += windows[i];
    tail /= static_cast<double>(k);
  }
  if (comm) {
    double totals[2] = {sum, static_cast<double>(tokens)};
    comm->all_reduce(totals, 2, ReduceOp::Sum);
    sum = totals[0];
    tokens = static_cast<size_t>(totals[1]);
  }
  return {tokens ? sum / static_cast<double>(tokens) : 0.0, tokens, tail};
}

void check_val_data(const Config& cfg, int rank, int world) {
  if (cfg.data.val.empty()) return;
  try {
    DataLoader val(cfg.data.val, cfg.train.batch_size, cfg.train_seq_len(), rank, world, /*seed=*/0,
                   /*shuffle=*/false);
    OURO_CHECK(val.max_token() < cfg.model.vocab_size, "token id {} does not fit model.vocab_size {}",
               val.max_token(), cfg.model.vocab_size);
  } catch (const Error& e) {
    fail("data.val {}: {}", cfg.data.val, e.what());
  }
}

}  // namespace ouro
