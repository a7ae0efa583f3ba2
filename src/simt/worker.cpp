// The per-OS-thread scheduler: runs a block's threads as fibers in the chosen run order.
//
// A fiber runs until it waits (barrier, warp collective) or exits; it then switches straight to
// the next ready fiber after it in the run order, and the last one of a sweep returns to the
// scheduler, which starts the next sweep. One switch per waiting thread per sweep keeps a
// __syncthreads at a few tens of ns per thread. Scheduling is cooperative, so "no fiber is
// ready and some are not exited" is an exact deadlock.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "ouro/simt/report.h"
#include "simt/scheduler.h"
#include "simt/static_shared.h"
#include "simt/text.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace ouro::simt {
namespace detail {

constinit thread_local ThreadInfo* tl_thread = nullptr;
constinit thread_local unsigned char* tl_dynamic_shared = nullptr;

void tsan_acquire(void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(addr);
#else
  (void)addr;
#endif
}
void tsan_release(void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(addr);
#else
  (void)addr;
#endif
}

const char* to_string(FiberState s) {
  switch (s) {
    case FiberState::ready: return "running";
    case FiberState::at_barrier: return "waiting at";
    case FiberState::at_warp: return "waiting at";
    case FiberState::exited: return "exited";
    case FiberState::dead: return "aborted";
  }
  return "?";
}

uint3 unflatten(unsigned linear, dim3 d) {
  return uint3{linear % d.x, linear / d.x % d.y, linear / (d.x * d.y)};
}

std::string format_dim(uint3 v) {
  return cat("(", v.x, ",", v.y, ",", v.z, ")");
}

namespace {
constinit thread_local Worker* tl_worker = nullptr;
constexpr std::size_t kSharedAlign = 1024;
}  // namespace

Worker& Worker::self() {
  if (!tl_worker) {
    static thread_local Worker w;
    tl_worker = &w;
  }
  return *tl_worker;
}

Worker::Worker() {
  install_sanitizer_hooks();
  init_thread_context(sched_);
  warps_.resize(1024 / kWarpSize);
  // Dynamic shared memory: the largest block allowance plus alignment slack, mapped once.
  shared_map_size_ = kMaxDynamicShared + kSharedAlign;
  void* m = mmap(nullptr, shared_map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    std::perror("ouro simt: mmap shared memory");
    std::abort();
  }
  shared_map_ = static_cast<unsigned char*>(m);
  auto addr = reinterpret_cast<std::uintptr_t>(shared_map_);
  shared_ = reinterpret_cast<unsigned char*>((addr + kSharedAlign - 1) & ~(kSharedAlign - 1));
  // NaN from the start: under OURO_SIMT_SMEM=stale the first block of this OS thread sees this.
  std::memset(shared_map_, 0xFF, shared_map_size_);
#if defined(__SANITIZE_ADDRESS__)
  ASAN_POISON_MEMORY_REGION(shared_map_, shared_map_size_);
#endif
  shared_ready_ = 0;
}

Worker::~Worker() {
  for (auto& f : fibers_) destroy_context(f->ctx);
  fibers_.clear();
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(shared_map_, shared_map_size_);
#endif
  munmap(shared_map_, shared_map_size_);
  if (tl_worker == this) tl_worker = nullptr;
}

void Worker::ensure_fibers(unsigned n) {
  while (fibers_.size() < n) {
    auto f = std::make_unique<Fiber>();
    f->stack = std::make_unique<Stack>();
    make_context(f->ctx, *f->stack, &Worker::fiber_entry);
    f->state = FiberState::exited;
    fibers_.push_back(std::move(f));
  }
}

void Worker::prepare_shared(std::size_t bytes, SharedFill fill) {
#if defined(__SANITIZE_ADDRESS__)
  // Exactly the launch's bytes are addressable: a kernel reading past them is an ASan report.
  // Every block: a TMA load keeps its destination poisoned until it lands (ptx_tma.cpp), and a
  // block abandoned by a report may leave it so.
  ASAN_POISON_MEMORY_REGION(shared_, kMaxDynamicShared);
  ASAN_UNPOISON_MEMORY_REGION(shared_, bytes);
#endif
  shared_ready_ = bytes;
  tl_dynamic_shared = shared_;
  if (fill == SharedFill::stale) {
    // What the previous block of this OS thread left (any kernel's), as a GPU's SM hands it on.
    if (!static_shared_filled_) fill_static_shared();
    static_shared_filled_ = true;
    return;
  }
  // 0xFF bytes are a NaN in fp32, bf16 and fp16: reading shared memory never written shows.
  std::memset(shared_, 0xFF, bytes);
  // Static shared variables too: each block starts from NaN, not from the previous block's data.
  fill_static_shared();
  static_shared_filled_ = true;
}

// Under TSan every emulator function hides its own bookkeeping (HideFromTsan) for its whole
// body: fibers of one OS thread share that state with no synchronisation TSan could see (the
// cooperative scheduling is the synchronisation). Only kernel code is shown to TSan.
void Worker::fiber_entry() {
  fiber_started();
  HideFromTsan hide;
  for (;;) {
    Worker& w = *tl_worker;
    Fiber& f = *w.current_;
    tsan_acquire(&w.tsan_block_start_);
    const Launch* launch = w.launch_;
    try {
      {
        ShowToTsan show;
        launch->params.body(launch->params.closure);
      }
      tsan_release(&w.tsan_block_exit_);
      w.thread_exited(f);  // may report (an exit others wait for); returns in the next block
    } catch (...) {
      // A throwing report handler (tests): hand the exception to the scheduler, which abandons
      // the block; this fiber is never resumed.
      w.error_ = std::current_exception();
      f.state = FiberState::dead;
      tl_thread = nullptr;
      tsan_release(&w.tsan_abandon_);
      switch_context(f.ctx, w.sched_);
      std::abort();  // unreachable
    }
  }
}

Fiber* Worker::next_ready(unsigned after_pos) {
  for (unsigned i = after_pos + 1; i < nthreads_; ++i) {
    Fiber* f = fibers_[order_[i]].get();
    if (f->state == FiberState::ready) return f;
  }
  return nullptr;
}

void Worker::switch_to(Context& from, Fiber* to) {
  HideFromTsan hide;
  ++switches;
  if (to) {
    current_ = to;
    tl_thread = &to->info;
    switch_context(from, to->ctx);
  } else {
    current_ = nullptr;
    tl_thread = nullptr;
    switch_context(from, sched_);
  }
}

void Worker::yield(Fiber& f) {
  HideFromTsan hide;
  // If the block is abandoned (a report in test mode) this fiber never runs again; the
  // scheduler then acquires this, so that it may reuse what the fiber read (its launch's
  // arguments on the launching stack). Fibers never acquire it: no edge between fibers.
  tsan_release(&tsan_abandon_);
  switch_to(f.ctx, next_ready(f.pos));
}

void Worker::spin_yield(Fiber& f) {
  HideFromTsan hide;
  tsan_release(&tsan_abandon_);
  switch_to(f.ctx, next_ready(f.pos));  // none after it: the scheduler starts the next sweep
}

void Worker::thread_exited(Fiber& f) {
  HideFromTsan hide;
  {
    f.state = FiberState::exited;
    --live_;
    WarpSlot& slot = warps_[f.info.warp];
    const unsigned bit = 1u << f.info.lane;
    slot.live &= ~bit;
    for (unsigned g = 0; g < slot.ngroups; ++g) {
      const WarpGroup& group = slot.groups[g];
      if (group.mask & bit) {
        // Lanes wait at a collective that names this lane, which will now never come.
        report(BugKind::warp_absent_lane,
               cat("lane ", f.info.lane, " exits while lanes of its warp wait for it at ", group.op, " (",
                   group.where.file_name(), ":", group.where.line(), ")"),
               group.where);
      }
    }
    // The barrier's quorum shrank: the waiting threads may now all be there.
    if (barrier_.arrived && barrier_.arrived == live_) complete_barrier();
  }
  yield(f);
}

void Worker::abandon_block() {
  tsan_acquire(&tsan_abandon_);
  // Fibers stopped mid-kernel hold frames that will never unwind: throw them away whole.
  for (unsigned i = 0; i < nthreads_; ++i) {
    auto& f = fibers_[i];
    if (f->state != FiberState::exited) {
      destroy_context(f->ctx);
      f.reset();
    }
  }
  std::erase(fibers_, nullptr);
  barrier_ = Barrier{};
  for (auto& s : warps_) s.reset(0);
}

void Worker::run_block(const Launch& launch, unsigned block_linear) {
  HideFromTsan hide;
  const LaunchParams& p = launch.params;
  nthreads_ = launch.threads_per_block;
  ensure_fibers(nthreads_);
  launch_ = &launch;
  block_idx_ = unflatten(block_linear, p.grid);
  live_ = nthreads_;
  barrier_ = Barrier{};
  const unsigned nwarps = (nthreads_ + kWarpSize - 1) / kWarpSize;
  for (unsigned w = 0; w < nwarps; ++w) {
    const unsigned lanes = std::min(kWarpSize, nthreads_ - w * kWarpSize);
    warps_[w].reset(lanes == kWarpSize ? kFullMask : (1u << lanes) - 1);
  }
  prepare_shared(p.shared_bytes, launch.fill);
  static std::atomic<uint64_t> block_runs{0};
  const uint64_t run = ++block_runs;

  // Run order of the block's threads.
  order_.resize(nthreads_);
  for (unsigned i = 0; i < nthreads_; ++i) order_[i] = i;
  if (launch.order.order == Order::reverse) {
    std::reverse(order_.begin(), order_.end());
  } else if (launch.order.order == Order::shuffle) {
    std::mt19937_64 rng(launch.order.seed * 0x9E3779B97F4A7C15ull + block_linear);
    std::shuffle(order_.begin(), order_.end(), rng);
  }
  for (unsigned i = 0; i < nthreads_; ++i) {
    Fiber& f = *fibers_[order_[i]];
    const unsigned tid = order_[i];
    f.pos = i;
    f.state = FiberState::ready;
    f.info.thread_idx = unflatten(tid, p.block);
    f.info.block_idx = block_idx_;
    f.info.block_dim = p.block;
    f.info.grid_dim = p.grid;
    f.info.tid = tid;
    f.info.warp = tid / kWarpSize;
    f.info.lane = tid % kWarpSize;
    f.info.launch = &launch;
    f.info.block_run = run;
#if defined(__SANITIZE_THREAD__)
    char name[96];
    std::snprintf(name, sizeof name, "block %s thread %s", format_dim(block_idx_).c_str(),
                  format_dim(f.info.thread_idx).c_str());
    name_context(f.ctx, name);
#endif
  }
  // Happens-before from the previous block on this OS thread (it used the same shared memory).
  tsan_release(&tsan_block_start_);

  try {
    for (;;) {
      if (live_ == 0) break;
      Fiber* f = next_ready(~0u);
      if (!f) report_deadlock();
      switch_to(sched_, f);
      if (error_) {
        std::exception_ptr e = std::exchange(error_, nullptr);
        std::rethrow_exception(e);
      }
    }
  } catch (...) {
    abandon_block();
    launch_ = nullptr;
    throw;
  }
  tsan_acquire(&tsan_block_exit_);
  launch_ = nullptr;
}

}  // namespace detail

void spin_yield() {
  if (!in_kernel()) return;
  auto& w = detail::Worker::self();
  w.spin_yield(w.current());
}

unsigned live_lanes() {
  auto& w = detail::Worker::self();
  return w.live_lanes(this_thread().warp);
}
unsigned lane_id() { return this_thread().lane; }
unsigned warp_id() { return this_thread().warp; }

}  // namespace ouro::simt
