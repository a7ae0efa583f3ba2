// The device backend of ouro::Ops (the hand-written kernels), built as "cuda" by nvcc and as
// "simt" by g++ against the SIMT emulator. Linking its object registers it with make_ops.
#pragma once
#include <memory>
#include <string>

#include "ouro/ops.h"

namespace ouro {

// The backend this binary was linked with; throws ouro::Error when no device is present.
std::unique_ptr<Ops> make_device_ops();

// The hardware the device backend runs on: the current GPU's name, or "SIMT emulator".
std::string device_hardware_name();

}  // namespace ouro
