// Emulation of cp.async.{ca,cg}.shared.global, cp.async.commit_group, cp.async.wait_group.
//
// Each emulated thread has its own queue of issued copies. Issue validates the operands and
// fills the destination with 0xFF (NaN as fp32, bf16 and f16), so that a read before the wait
// shows; commit_group closes a group (an empty one too, as the ISA says); wait_group N performs
// every copy of the groups older than the N newest, in issue order. Performing a copy at the
// wait is the latest moment the ISA allows: a kernel that changes the source, or reads the
// destination, between issue and wait sees it fail. The copy runs on the issuing thread, so the
// data is visible to other threads only through a barrier (TSan sees exactly that).
#include <ouro/ptx.h>
#include <ouro/simt/report.h>
#include <ouro/simt/thread.h>
#include <ouro/simt/warp.h>  // detail::HideFromTsan

#include <cstdarg>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace ouro::ptx::emu {
namespace {

struct Copy {
  unsigned char* dst;
  const unsigned char* src;
  int size;
  int src_bytes;
  long group;  // commit number, -1 while not yet committed
};

struct ThreadQueue {
  std::vector<Copy> copies;  // issue order
  long committed = 0;        // groups committed so far
};

// The queues of the block running on this OS thread (a block runs on one OS thread).
// A queue left with pending copies by a thread that exited dies with its block: the next block
// run on this OS thread starts empty queues. The queues are the emulator's bookkeeping, shared
// by the block's fibers without synchronisation (scheduling is cooperative): TSan must not see
// them (HideFromTsan), only the copies' own reads and writes, which are the kernel's.
struct BlockQueues {
  const simt::Launch* launch = nullptr;
  uint3 block{~0u, ~0u, ~0u};
  std::uint64_t run = 0;
  std::vector<ThreadQueue> threads;
};
thread_local BlockQueues tl_queues;

// Which execution of a block the thread belongs to. Launch address and blockIdx alone repeat
// when the same kernel is launched again from the same place (the Launch lives on the stack), so
// copies a thread left pending at exit would leak into the next run of that block on this OS
// thread; the scheduler's per-run serial (ThreadInfo::block_run) tells them apart.
ThreadQueue& my_queue() {
  BlockQueues& q = tl_queues;
  const simt::ThreadInfo& t = simt::this_thread();
  const std::uint64_t run = t.block_run;
  if (q.launch != t.launch || q.run != run || q.block.x != t.block_idx.x ||
      q.block.y != t.block_idx.y || q.block.z != t.block_idx.z) {
    q.launch = t.launch;
    q.block = t.block_idx;
    q.run = run;
    q.threads.assign(t.block_dim.x * t.block_dim.y * t.block_dim.z, ThreadQueue{});
  }
  return q.threads[t.tid];
}

[[noreturn]] void fail(simt::BugKind kind, std::source_location where, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fail(simt::BugKind kind, std::source_location where, const char* fmt, ...) {
  char msg[256];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, args);
  va_end(args);
  simt::report(kind, msg, where);
}

// Under ASan, an operand outside any live allocation (or past the launch's dynamic shared
// memory) is reported here, at the cp.async's own line, rather than later inside the wait.
void check_addressable(const void* p, int bytes, const char* what, std::source_location where) {
#if defined(__SANITIZE_ADDRESS__)
  if (bytes > 0 && __asan_region_is_poisoned(const_cast<void*>(p), bytes))
    fail(simt::BugKind::invalid_argument, where,
         "cp.async %s [%p, +%d) is not addressable memory (out of bounds or freed)", what, p, bytes);
#endif
}

void perform(const Copy& c) {
  if (c.src_bytes > 0) std::memcpy(c.dst, c.src, c.src_bytes);
  std::memset(c.dst + c.src_bytes, 0, c.size - c.src_bytes);
}

}  // namespace

void cp_async(void* smem, const void* gmem, int size, int src_bytes, std::source_location where) {
  const char* op = size == 16 ? "cp.async.cg" : "cp.async.ca";
  if (src_bytes < 0 || src_bytes > size)
    fail(simt::BugKind::invalid_argument, where, "%s size %d: src_bytes %d is outside 0..%d", op,
         size, src_bytes, size);
  if (smem == nullptr || (gmem == nullptr && src_bytes > 0))
    fail(simt::BugKind::invalid_argument, where, "%s size %d: null %s address", op, size,
         smem == nullptr ? "shared" : "global");
  const auto misaligned = [size](const void* p) { return reinterpret_cast<uintptr_t>(p) % size; };
  if (misaligned(smem) || misaligned(gmem))
    fail(simt::BugKind::misaligned_address, where,
         "%s size %d: %s address %p is not %d-byte aligned", op, size,
         misaligned(smem) ? "shared" : "global", misaligned(smem) ? smem : gmem, size);
  check_addressable(smem, size, "shared destination", where);
  check_addressable(gmem, src_bytes, "global source", where);

  std::memset(smem, 0xFF, size);
  simt::detail::HideFromTsan hide;
  my_queue().copies.push_back(Copy{static_cast<unsigned char*>(smem),
                                   static_cast<const unsigned char*>(gmem), size, src_bytes, -1});
}

void cp_async_commit(std::source_location) {
  simt::detail::HideFromTsan hide;
  ThreadQueue& q = my_queue();
  for (auto it = q.copies.rbegin(); it != q.copies.rend() && it->group < 0; ++it)
    it->group = q.committed;
  ++q.committed;
}

void cp_async_wait(int pending, std::source_location) {
  std::vector<Copy> due;  // performed outside HideFromTsan: these accesses are the kernel's
  {
    simt::detail::HideFromTsan hide;
    ThreadQueue& q = my_queue();
    const long done_below = q.committed - pending;  // groups [0, done_below) must be complete
    std::size_t kept = 0;
    for (std::size_t i = 0; i < q.copies.size(); ++i) {
      const Copy& c = q.copies[i];
      if (c.group >= 0 && c.group < done_below)
        due.push_back(c);
      else
        q.copies[kept++] = c;
    }
    q.copies.resize(kept);
  }
  for (const Copy& c : due) perform(c);
}

}  // namespace ouro::ptx::emu
