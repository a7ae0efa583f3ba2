// Backend selection by name: the cpu reference always, plus the device backend registered by
// the binary's device object (src/device/device_ops.cu), if it links one.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <utility>

#include "cpu/cpu_ops.h"
#include "ouro/error.h"
#include "ouro/ops.h"

namespace ouro {

namespace {

struct DeviceBackend {
  std::string name;
  std::unique_ptr<Ops> (*factory)() = nullptr;
};

DeviceBackend& device_backend() {
  static DeviceBackend backend;  // function-local: registration runs during static init
  return backend;
}

}  // namespace

void register_device_backend(const std::string& name, std::unique_ptr<Ops> (*factory)()) {
  device_backend() = {name, factory};
}

std::vector<std::string> available_devices() {
  std::vector<std::string> out{"cpu"};
  if (device_backend().factory) out.push_back(device_backend().name);
  return out;
}

std::unique_ptr<Ops> make_ops(const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuOps>();
  if (device_backend().factory && device == device_backend().name) return device_backend().factory();
  if (device == "cuda" || device == "simt")
    fail("device '{}' is not built into this binary (it has: {}); the build makes `ouro` with the "
         "CUDA backend when nvcc is found and `ouro-simt` with the SIMT emulator",
         device, fmt::join(available_devices(), ", "));
  fail("unknown device '{}': available devices are {}", device,
       fmt::join(available_devices(), ", "));
}

}  // namespace ouro
