// Cooperative fibers: a guarded mmap'd stack and a hand-written x86-64 stack switch.
//
// glibc's swapcontext saves the signal mask with a syscall per switch (~360 ns measured); only
// the callee-saved registers need to survive a switch between C++ functions, so the switch is
// six pushes, a stack-pointer exchange and six pops (~15 ns with the surrounding bookkeeping).
// The sanitizers must be told about every switch (ASan: the new stack's bounds; TSan: the
// fiber's own vector clock); switch_fiber() below does both when they are compiled in.
#pragma once
#include <cstddef>

namespace ouro::simt::detail {

// A stack with a PROT_NONE guard page below it, so an overflow faults instead of corrupting a
// neighbour.
class Stack {
 public:
  static constexpr std::size_t kDefaultSize = 256 * 1024;  // register-heavy kernels at -O0 + ASan
  explicit Stack(std::size_t usable = kDefaultSize);
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  void* bottom() const { return base_; }  // lowest usable address
  void* top() const { return static_cast<char*>(base_) + size_; }
  std::size_t size() const { return size_; }

 private:
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

// Execution context of one fiber, or of the OS thread's own stack (the scheduler).
struct Context {
  void* sp = nullptr;            // saved stack pointer while switched out
  const void* stack_bottom = nullptr;  // for ASan; null for the OS thread's stack
  std::size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  void* tsan_fiber = nullptr;    // TSan's handle; the OS thread's own for the scheduler
  bool owns_tsan_fiber = false;
};

// Prepare `ctx` to start at entry() on `stack` at its first switch. entry never returns.
void make_context(Context& ctx, const Stack& stack, void (*entry)());
// The scheduler context of the calling OS thread (its own stack).
void init_thread_context(Context& ctx);
// Switch from the running context `from` to `to`. Returns when somebody switches back.
void switch_context(Context& from, Context& to);
// First thing a fiber's entry function must call (completes the sanitizers' switch protocol).
void fiber_started();
// Release sanitizer state of a fiber context that will never run again.
void destroy_context(Context& ctx);
// Name the fiber in TSan reports ("block (0,0,0) thread (5,0,0)").
void name_context(Context& ctx, const char* name);

}  // namespace ouro::simt::detail
