// Sanitizer reports name the emulated thread at fault.
//
// ASan, UBSan and TSan print the faulting source line themselves but only know OS threads (and,
// for TSan, our fiber names). Their "on report" hooks run on the OS thread that found the bug,
// where tl_thread is the fiber running the kernel, so they add the line that matters for a
// kernel: "ouro simt: in kernel K block (x,y,z) thread (x,y,z)". The hooks are weak symbols in
// the sanitizer runtimes; defining them here overrides them (the object is pulled into every
// program that launches a kernel by Worker's constructor).
#include <unistd.h>

#include <string>

#include "simt/scheduler.h"
#include "simt/text.h"

namespace ouro::simt::detail {

namespace {
void print_current_thread(const char* what) {
  const ThreadInfo* t = tl_thread;
  if (!t) return;
  const std::string s = cat("ouro simt: ", what, " in kernel ", kernel_name(t->launch), " block ",
                            format_dim(t->block_idx), " thread ", format_dim(t->thread_idx), "\n");
  [[maybe_unused]] auto n = ::write(2, s.data(), s.size());
}
}  // namespace

void install_sanitizer_hooks() {}  // referenced so that the linker keeps this object

}  // namespace ouro::simt::detail

extern "C" {
#if defined(__SANITIZE_ADDRESS__)
void __asan_on_error() { ouro::simt::detail::print_current_thread("AddressSanitizer report"); }
#endif
#if defined(__SANITIZE_THREAD__)
void __tsan_on_report(void*) { ouro::simt::detail::print_current_thread("ThreadSanitizer report"); }
#endif
// UBSan has no predefined macro; the hook is harmless where UBSan is absent.
void __ubsan_on_report() { ouro::simt::detail::print_current_thread("UndefinedBehaviorSanitizer report"); }
}
