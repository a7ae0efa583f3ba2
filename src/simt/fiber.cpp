// See fiber.h. The switch is x86-64 System V only (the emulator targets the CI machines).
#include "simt/fiber.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#if !defined(__x86_64__)
#error "the SIMT emulator's fiber switch is written for x86-64"
#endif

// ouro_simt_swap(void** save_sp, void* load_sp): push the callee-saved registers, store rsp in
// *save_sp, load load_sp, pop the other context's registers and return into it. The x87
// control word and MXCSR are not saved: kernels never change the floating-point environment.
asm(R"(
  .text
  .globl ouro_simt_swap
  .type ouro_simt_swap, @function
  .p2align 4
ouro_simt_swap:
  .cfi_startproc
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .cfi_endproc
  .size ouro_simt_swap, .-ouro_simt_swap
  .section .note.GNU-stack,"",@progbits
  .text
)");
extern "C" void ouro_simt_swap(void** save_sp, void* load_sp);

namespace ouro::simt::detail {

namespace {
std::size_t page_size() {
  static const std::size_t p = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
}  // namespace

Stack::Stack(std::size_t usable) {
  const std::size_t page = page_size();
  size_ = (usable + page - 1) / page * page;
  map_size_ = size_ + page;
  map_ = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
              -1, 0);
  if (map_ == MAP_FAILED) {
    std::perror("ouro simt: mmap fiber stack");
    std::abort();
  }
  // Stacks grow down: the guard is the lowest page.
  if (mprotect(map_, page, PROT_NONE) != 0) {
    std::perror("ouro simt: mprotect guard page");
    std::abort();
  }
  base_ = static_cast<char*>(map_) + page;
}

Stack::~Stack() {
#if defined(__SANITIZE_ADDRESS__)
  // Frames abandoned on this stack leave poisoned redzones in ASan's shadow; a later mapping at
  // the same address must not inherit them.
  __asan_unpoison_memory_region(base_, size_);
#endif
  if (map_) munmap(map_, map_size_);
}

void make_context(Context& ctx, const Stack& stack, void (*entry)()) {
  // Initial frame, from the top: a fake return address (entry must not return), entry's
  // address for ouro_simt_swap's `ret`, six zeroed callee-saved registers. On entry rsp is then
  // 8 mod 16, as after a call.
  auto top = reinterpret_cast<std::uintptr_t>(stack.top()) & ~std::uintptr_t{15};
  auto* sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  ctx.sp = sp;
  ctx.stack_bottom = stack.bottom();
  ctx.stack_size = stack.size();
#if defined(__SANITIZE_THREAD__)
  ctx.tsan_fiber = __tsan_create_fiber(0);
  ctx.owns_tsan_fiber = true;
#endif
}

void init_thread_context(Context& ctx) {
  ctx = Context{};
  // ASan needs the bounds of the OS thread's own stack to switch back to it.
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    std::size_t size = 0;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
      ctx.stack_bottom = addr;
      ctx.stack_size = size;
    }
    pthread_attr_destroy(&attr);
  }
#if defined(__SANITIZE_THREAD__)
  ctx.tsan_fiber = __tsan_get_current_fiber();
#endif
}

void switch_context(Context& from, Context& to) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(&from.asan_fake_stack, to.stack_bottom, to.stack_size);
#endif
#if defined(__SANITIZE_THREAD__)
  // Fiber switches are not synchronisation on a GPU: happens-before edges come only from
  // __syncthreads/__syncwarp (and block boundaries), added explicitly by the scheduler.
  __tsan_switch_to_fiber(to.tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
  ouro_simt_swap(&from.sp, to.sp);
#if defined(__SANITIZE_ADDRESS__)
  // Back in `from`: learn the bounds of the stack we came from (needed by ASan only).
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(from.asan_fake_stack, &old_bottom, &old_size);
#endif
}

void fiber_started() {
#if defined(__SANITIZE_ADDRESS__)
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(nullptr, &old_bottom, &old_size);
#endif
}

void destroy_context(Context& ctx) {
  // TSan's fiber is deliberately not destroyed: a fiber is only ever dropped while suspended
  // inside the emulator, where it ignores memory accesses, and TSan would warn that it
  // "finished with ignores enabled". The handful dropped (thread exit, abandoned blocks in the
  // bug tests) cost a few KiB each.
  ctx = Context{};
}

void name_context(Context& ctx, const char* name) {
#if defined(__SANITIZE_THREAD__)
  if (ctx.tsan_fiber) __tsan_set_fiber_name(ctx.tsan_fiber, name);
#else
  (void)ctx;
  (void)name;
#endif
}

}  // namespace ouro::simt::detail
