// libFuzzer target (built with clang when available; ctest runs it for OURO_FUZZ_SECONDS): the
// reader of a checkpoint's state.json that --resume trusts (src/train/checkpoint_state.cpp).
// For arbitrary bytes it either returns a state that satisfies the trainer's invariants or
// throws ouro::Error; anything else (another exception, a sanitizer report) is a crash.
// The first byte picks the directory's step (0xFF: not checked), the rest is the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ouro/error.h"
#include "train/checkpoint_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int64_t dir_step = data[0] == 0xFF ? -1 : data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const ouro::CheckpointState s = ouro::parse_checkpoint_state_text(text, "state.json", dir_step);
    if (s.step < 0 || s.opt_steps < 0 || s.opt_steps > s.step || s.world <= 0 || s.elapsed_s < 0)
      std::abort();
    if (dir_step >= 0 && s.step != dir_step) std::abort();
    if (!s.loop.is_null() && !s.loop.is_object()) std::abort();
  } catch (const ouro::Error&) {
  }
  return 0;
}
