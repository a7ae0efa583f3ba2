// Backend selection by name.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cpu/cpu_ops.h"
#include "ouro/error.h"
#include "ouro/ops.h"

namespace ouro {

std::vector<std::string> available_devices() { return {"cpu"}; }

std::unique_ptr<Ops> make_ops(const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuOps>();
  fail("unknown device '{}': available devices are {}", device,
       fmt::join(available_devices(), ", "));
}

}  // namespace ouro
