#include "bench/peak_flops.h"

#include <array>
#include <utility>

namespace ouro {

std::optional<double> peak_bf16_flops(const std::string& name) {
  // Dense (not sparse) bf16 with fp32 accumulation, from NVIDIA's datasheets. The first entry
  // whose key the name contains wins: the specific variants come before their family.
  static const std::array<std::pair<const char*, double>, 10> table{{
      {"H100 PCIe", 756e12},
      {"H100 NVL", 835e12},
      {"GH200", 989e12},
      {"H200", 989e12},
      {"H100", 989e12},  // SXM5 (e.g. "NVIDIA H100 80GB HBM3")
      {"H800", 989e12},
      {"B200", 2250e12},
      {"A100", 312e12},
      {"A800", 312e12},
      {"L40S", 362e12},
  }};
  for (const auto& [key, flops] : table)
    if (name.find(key) != std::string::npos) return flops;
  return std::nullopt;
}

}  // namespace ouro
