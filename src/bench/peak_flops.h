// Peak dense bf16 tensor-core rates per GPU model, for MFU (model FLOPs utilisation). A model
// not in the table gets no MFU figure ("unknown device") rather than a wrong one.
#pragma once
#include <optional>
#include <string>

namespace ouro {

// FLOP/s for the device name cudaGetDeviceProperties reports (e.g. "NVIDIA H100 80GB HBM3").
std::optional<double> peak_bf16_flops(const std::string& device_name);

}  // namespace ouro
