// Emulation of mbarrier.{init, arrive, arrive.expect_tx, expect_tx, complete_tx,
// try_wait.parity}, fence.proxy.async, elect.sync, setmaxnreg and the named barriers
// (bar.sync / bar.arrive with an id) (contract: <ouro/ptx_sm90.h>).
//
// An mbarrier's state lives beside it, in the block's table keyed by its address
// (sm90_state.h). try_wait blocks the thread until the phase completes; a phase that never can
// is a deadlock, which sm90_state.cpp turns into an mbarrier_hang report naming the barrier.
#include <ouro/ptx.h>
#include <ouro/ptx_sm90.h>
#include <ouro/simt/report.h>
#include <ouro/simt/thread.h>
#include <ouro/simt/warp.h>

#include <cstdio>
#include <string>

#include "simt/scheduler.h"
#include "simt/sm90_state.h"
#include "simt/text.h"

namespace ouro::ptx::emu {
namespace {

using simt::BugKind;
using simt::detail::cat;
using simt::sm90::Mbarrier;

std::string ptr_text(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

Mbarrier& lookup(uint64_t* bar, const char* op, std::source_location where) {
  auto& table = simt::sm90::block_state().mbarriers;
  auto it = table.find(bar);
  if (it == table.end())
    simt::report(BugKind::invalid_argument,
                 cat(op, " on ", ptr_text(bar), ", which no mbarrier.init of this block initialized"), where);
  return it->second;
}

void maybe_complete(Mbarrier& m) { simt::sm90::complete_phase_if_done(m); }

}  // namespace

void mbarrier_init(uint64_t* bar, uint32_t count, std::source_location where) {
  if (reinterpret_cast<uintptr_t>(bar) % 8 != 0)
    simt::report(BugKind::misaligned_address, cat("mbarrier.init on ", ptr_text(bar), ": not 8-byte aligned"),
                 where);
  if (count == 0 || count >= (1u << 20))
    simt::report(BugKind::invalid_argument, cat("mbarrier.init count ", count, " is outside 1..2^20-1"), where);
  *bar = 0;  // the object itself: a kernel write, as on the GPU (its contents are opaque)
  simt::detail::HideFromTsan hide;
  Mbarrier& m = simt::sm90::block_state().mbarriers[bar];
  if (!m.waiters.empty())
    simt::report(BugKind::invalid_argument,
                 cat("mbarrier.init on ", ptr_text(bar), " while ", m.waiters.size(), " thread(s) wait on it"),
                 where);
  m.count = count;
  m.pending = count;
  m.tx = 0;
  m.phase = 0;
  m.init_where = where;
}

uint64_t mbarrier_arrive(uint64_t* bar, uint32_t expect_tx, std::source_location where) {
  simt::detail::HideFromTsan hide;
  Mbarrier& m = lookup(bar, expect_tx ? "mbarrier.arrive.expect_tx" : "mbarrier.arrive", where);
  const uint64_t token = m.phase;
  simt::detail::tsan_release(&m.tsan_sync[m.phase & 1]);
  m.tx += expect_tx;
  if (m.pending == 0)
    simt::report(BugKind::async_protocol,
                 cat("mbarrier.arrive on ", ptr_text(bar), ": phase ", m.phase, " already has all ", m.count,
                     " arrivals (it waits for ", m.tx, " transaction bytes): more arrivals than the count given "
                     "to mbarrier.init is undefined"),
                 where);
  --m.pending;
  maybe_complete(m);
  return token;
}

void mbarrier_expect_tx(uint64_t* bar, uint32_t tx, std::source_location where) {
  simt::detail::HideFromTsan hide;
  Mbarrier& m = lookup(bar, "mbarrier.expect_tx", where);
  m.tx += tx;
  maybe_complete(m);
}

void mbarrier_complete_tx(uint64_t* bar, uint32_t tx, std::source_location where) {
  simt::detail::HideFromTsan hide;
  Mbarrier& m = lookup(bar, "mbarrier.complete_tx", where);
  simt::detail::tsan_release(&m.tsan_sync[m.phase & 1]);
  m.tx -= tx;
  maybe_complete(m);
}

bool mbarrier_try_wait_parity(uint64_t* bar, uint32_t parity, std::source_location where) {
  simt::detail::HideFromTsan hide;
  for (;;) {
    Mbarrier& m = lookup(bar, "mbarrier.try_wait.parity", where);
    if ((m.phase & 1u) != (parity & 1u)) {
      // The phase with this parity is the last completed one.
      simt::detail::tsan_acquire(&m.tsan_sync[parity & 1u]);
      return true;
    }
    if (!m.loads.empty()) {  // the TMA loads this barrier waits for land now, at the latest
      simt::detail::ShowToTsan show;
      simt::sm90::perform_tma_loads(m);
      continue;
    }
    m.waiters.push_back(simt::this_thread().tid);
    m.wait_where = where;
    simt::sm90::block_current("mbarrier.try_wait.parity", where);
  }
}

void fence_proxy_async(std::source_location) {
  // What the generic proxy wrote so far becomes what the async proxy sees (the whole dynamic
  // shared memory: the emulator cannot tell whose stores a fence covers, so a store made visible
  // only by another thread's later fence is not reported).
  simt::detail::HideFromTsan hide;
  simt::sm90::async_view_update(0, simt::sm90::block_state().async_view.size());
}

bool elect_sync(uint32_t mask, std::source_location where) {
  const int elected = simt::warp_collective<int>(
      mask, 0,
      [](const simt::Lanes<int>&, simt::Lanes<int>& out, unsigned m) {
        const unsigned leader = static_cast<unsigned>(__builtin_ctz(m));
        for (unsigned l = 0; l < simt::kWarpSize; ++l)
          if (m >> l & 1u) out[l] = l == leader;
      },
      "elect.sync", where);
  return elected != 0;
}

void setmaxnreg(bool inc, int regs, std::source_location where) {
  simt::sm90::WgArrival a{inc ? "setmaxnreg.inc" : "setmaxnreg.dec", where, &regs, nullptr};
  simt::sm90::warpgroup_rendezvous(
      a,
      [](simt::sm90::WgArrival* const* threads, unsigned g, void*) {
        simt::detail::HideFromTsan hide;  // the threads' arguments live on their stacks
        const int want = *static_cast<const int*>(threads[0]->in);
        for (unsigned i = 1; i < simt::sm90::kWarpgroupSize; ++i)
          if (*static_cast<const int*>(threads[i]->in) != want)
            simt::report(BugKind::warpgroup_mismatch,
                         cat(threads[0]->op, ": thread ", g * 128 + i, " asks for ",
                             *static_cast<const int*>(threads[i]->in), " registers, thread ", g * 128, " for ",
                             want, ": the count must be uniform across the warpgroup"),
                         threads[0]->where);
      },
      nullptr);
}

void named_barrier(bool wait, uint32_t id, uint32_t nthreads, std::source_location where) {
  simt::detail::HideFromTsan hide;
  const char* op = wait ? "bar.sync" : "bar.arrive";
  const simt::ThreadInfo& t = simt::this_thread();
  const unsigned block = t.block_dim.x * t.block_dim.y * t.block_dim.z;
  if (id == 0 || id >= simt::sm90::kNamedBarriers)
    simt::report(BugKind::invalid_argument,
                 cat(op, " ", id, ": named barrier ids are 1..15 (0 is __syncthreads's)"), where);
  if (nthreads == 0 || nthreads % 32 != 0 || nthreads > block)
    simt::report(BugKind::invalid_argument,
                 cat(op, " ", id, ", ", nthreads, ": the thread count must be a non-zero multiple of 32 and at most "
                     "the block's ", block),
                 where);
  simt::sm90::NamedBarrier& b = simt::sm90::block_state().named[id];
  if (b.arrived == 0) {
    b.count = nthreads;
    b.first_where = where;
  } else if (b.count != nthreads) {
    simt::report(BugKind::barrier_divergence,
                 cat(op, " ", id, ", ", nthreads, ": this phase of named barrier ", id, " was opened with count ",
                     b.count, " at ", b.first_where.file_name(), ":", b.first_where.line(),
                     " (every arrival of a phase must give the same count)"),
                 where);
  }
  const uint32_t phase = b.phase;
  simt::detail::tsan_release(&b.tsan_sync[phase & 1]);
  if (++b.arrived == b.count) {
    b.arrived = 0;
    ++b.phase;
    for (unsigned tid : b.waiters) simt::sm90::wake_thread(tid);
    b.waiters.clear();
    if (wait) simt::detail::tsan_acquire(&b.tsan_sync[phase & 1]);
    return;
  }
  if (!wait) return;
  b.waiters.push_back(t.tid);
  while (simt::sm90::block_state().named[id].phase == phase) simt::sm90::block_current(op, where);
  simt::detail::tsan_acquire(&simt::sm90::block_state().named[id].tsan_sync[phase & 1]);
}

}  // namespace ouro::ptx::emu
