#include "train/evaluate.h"

#include <algorithm>
#include <vector>

#include "ouro/data.h"

namespace ouro {

EvalResult evaluate(GPT2& model, const std::string& data, int B, int T, int batches) {
  DataLoader loader(data, B, T, /*rank=*/0, /*world=*/1, /*seed=*/0, /*shuffle=*/false);
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
  return {tokens ? sum / static_cast<double>(tokens) : 0.0, tokens};
}

}  // namespace ouro
