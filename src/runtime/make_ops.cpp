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

Device parse_device(const std::string& name) {
  if (auto d = parse_choice<Device>(name)) return *d;
  fail("unknown device '{}': available devices are {}", name, fmt::join(available_devices(), ", "));
}

std::unique_ptr<Ops> make_ops(Device device) {
  if (device == Device::cpu) return std::make_unique<CpuOps>();
  const std::string name(name_of(device));
  if (device_backend().factory && name == device_backend().name) return device_backend().factory();
  fail("device '{}' is not built into this binary (it has: {}); the build makes `ouro` with the "
       "CUDA backend when nvcc is found and `ouro-simt` with the SIMT emulator",
       name, fmt::join(available_devices(), ", "));
}

std::unique_ptr<Ops> make_ops(const std::string& device) { return make_ops(parse_device(device)); }

}  // namespace ouro
