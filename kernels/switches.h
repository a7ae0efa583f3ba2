// The kernels' dispatch switches (ouro/env_switch.h: read once, again after
// ouro::reread_switches()) and the one rule that picks a family's sm_90a kernel.
#pragma once
#include "ouro/env_switch.h"

namespace ouro::kernels {

// OURO_SIMT_ARCH=90: the emulator plays a compute capability 9.0 device with sm_90a code.
inline constinit EnvSwitch simt_arch_90{"OURO_SIMT_ARCH", "90"};

// Whether a kernel family's dispatch takes its sm_90a kernel: never with the family's off switch
// set (a comparison, or a way around a suspected problem in that kernel); in the emulator when it
// plays a Hopper (OURO_SIMT_ARCH=90); on a GPU when `available` says the device is compute
// capability 9.0 and the runtime loaded the family's sm_90a code.
inline bool sm90_selected(const EnvSwitch& off, bool (*available)()) {
  if (off.on()) return false;
#if defined(OURO_SIMT)
  (void)available;
  return simt_arch_90.on();
#else
  return available();
#endif
}

}  // namespace ouro::kernels
