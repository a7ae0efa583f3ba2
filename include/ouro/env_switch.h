// Environment switches read once instead of on every call. The kernels' dispatch has several
// (kernels/switches.h: OURO_MATMUL_SKINNY=0, OURO_MATMUL_SM90=0, OURO_ATTENTION_SM90=0,
// OURO_ATTENTION_DETERMINISTIC=0, OURO_SIMT_ARCH=90): getenv walks the whole environment and
// races with a setenv on another thread, and a GEMM launch should do neither. A test or a
// benchmark that flips a switch in the middle of a process calls reread_switches() after its
// setenv / unsetenv: every switch reads the environment again at its next use.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace ouro {

namespace switch_detail {
inline std::atomic<uint64_t> generation{1};  // bumped by reread_switches
}  // namespace switch_detail

// Every switch reads the environment again at its next use.
inline void reread_switches() { switch_detail::generation.fetch_add(1, std::memory_order_acq_rel); }

// Whether environment variable `name` equals `value` (an unset variable equals nothing), read at
// the first use after construction or after reread_switches().
class EnvSwitch {
 public:
  constexpr EnvSwitch(const char* name, const char* value) : name_(name), value_(value) {}
  EnvSwitch(const EnvSwitch&) = delete;
  EnvSwitch& operator=(const EnvSwitch&) = delete;

  bool on() const {
    const uint64_t gen = switch_detail::generation.load(std::memory_order_acquire);
    uint64_t s = state_.load(std::memory_order_relaxed);
    if ((s >> 1) != gen) {  // two threads may both read it: the same answer
      const char* v = std::getenv(name_);
      s = gen << 1 | uint64_t(v != nullptr && std::strcmp(v, value_) == 0);
      state_.store(s, std::memory_order_relaxed);
    }
    return (s & 1) != 0;
  }

 private:
  const char* name_;
  const char* value_;
  mutable std::atomic<uint64_t> state_{0};  // generation << 1 | value; generation 0: never read
};

}  // namespace ouro
