#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "ouro/data.h"

namespace ouro {

EvalResult evaluate(GPT2& model, const std::string& data, int B, int T, int batches,
                    Communicator* comm, double tail_frac) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
  DataLoader loader(data, B, T, rank, world, /*seed=*/0, /*shuffle=*/false);
  const int n = batches > 0 ? std::min<int>(batches, static_cast<int>(loader.batches_per_epoch()))
                            : static_cast<int>(loader.batches_per_epoch());
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  double sum = 0;
  size_t tokens = 0;
  // Window losses of every rank, each rank filling its own slots, summed over ranks below.
  std::vector<double> windows(static_cast<size_t>(n) * world * B, 0.0);
  for (int i = 0; i < n; ++i) {
    loader.next_batch(x.data(), y.data());
    sum += static_cast<double>(model.forward(x.data(), y.data(), B, T)) * x.size();
    tokens += x.size();
    auto l = model.last_losses(B, T);
    for (int b = 0; b < B; ++b) {
      double w = 0;
      for (int t = 0; t < T; ++t) w += l[static_cast<size_t>(b) * T + t];
      windows[(static_cast<size_t>(i) * world + rank) * B + b] = w / T;
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

}  // namespace ouro
