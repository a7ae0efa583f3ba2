#include "train/evaluate.h"

#include <algorithm>
#include <vector>

#include "ouro/data.h"

namespace ouro {

EvalResult evaluate(GPT2& model, const std::string& data, int B, int T, int batches,
                    Communicator* comm) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
  DataLoader loader(data, B, T, rank, world, /*seed=*/0, /*shuffle=*/false);
  const int n = batches > 0 ? std::min<int>(batches, static_cast<int>(loader.batches_per_epoch()))
                            : static_cast<int>(loader.batches_per_epoch());
  std::vector<int> x(static_cast<size_t>(B) * T), y(x.size());
  double sum = 0;
  size_t tokens = 0;
  for (int i = 0; i < n; ++i) {
    loader.next_batch(x.data(), y.data());
    sum += static_cast<double>(model.forward(x.data(), y.data(), B, T)) * x.size();
    tokens += x.size();
  }
  if (comm) {
    double totals[2] = {sum, static_cast<double>(tokens)};
    comm->all_reduce(totals, 2, ReduceOp::Sum);
    sum = totals[0];
    tokens = static_cast<size_t>(totals[1]);
  }
  return {tokens ? sum / static_cast<double>(tokens) : 0.0, tokens};
}

}  // namespace ouro
