// Per-block Hopper state, the warpgroup rendezvous, and the deadlock explanation for threads that
// wait at a warpgroup operation or an mbarrier (see sm90_state.h).
#include "simt/sm90_state.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "ouro/simt/launch.h"

#include "ouro/simt/report.h"
#include "ouro/simt/thread.h"
#include "simt/scheduler.h"
#include "simt/text.h"

namespace ouro::simt::sm90 {
using detail::cat;
namespace {

thread_local BlockState tl_state;

bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || std::string_view(a.file_name()) == b.file_name());
}
bool same_op(const char* a, const char* b) { return a == b || std::string_view(a) == b; }
std::string site(const char* op, const std::source_location& w) {
  return cat(op, " at ", w.file_name(), ":", w.line());
}

// Rewrites a deadlock report when threads wait for an mbarrier phase or a warpgroup: the
// scheduler's text (every thread's state) stays below the explanation.
void explain_deadlock(Report& r) {
  detail::HideFromTsan hide;
  detail::Worker& w = detail::Worker::self();
  BlockState& s = tl_state;
  if (s.launch == nullptr || w.block_threads() == 0 || w.fiber(0).info.block_run != s.run) return;
  for (const auto& [addr, bar] : s.mbarriers) {
    if (bar.waiters.empty()) continue;
    const detail::Fiber& f = w.fiber(bar.waiters.front());
    r.kind = BugKind::mbarrier_hang;
    r.thread = f.info.thread_idx;
    r.file = bar.wait_where.file_name();
    r.line = bar.wait_where.line();
    char where[32];
    std::snprintf(where, sizeof where, "%p", addr);
    r.message = cat("mbarrier ", where, " (initialized at ", bar.init_where.file_name(), ":",
                    bar.init_where.line(), " with count ", bar.count, "): phase ", bar.phase,
                    " can never complete: ", bar.pending, " of ", bar.count, " arrivals and ", bar.tx,
                    " transaction bytes still expected; ", bar.waiters.size(),
                    " thread(s) wait for it\n", r.message);
    return;
  }
  for (unsigned id = 0; id < s.named.size(); ++id) {
    const NamedBarrier& nb = s.named[id];
    if (nb.waiters.empty()) continue;
    const detail::Fiber& f = w.fiber(nb.waiters.front());
    r.kind = BugKind::barrier_deadlock;
    r.thread = f.info.thread_idx;
    r.file = nb.first_where.file_name();
    r.line = nb.first_where.line();
    r.message = cat("named barrier ", id, " (first arrival of this phase at ", nb.first_where.file_name(), ":",
                    nb.first_where.line(), "): only ", nb.arrived, " of ", nb.count,
                    " threads arrived; the others never come\n", r.message);
    return;
  }
  for (unsigned g = 0; g < s.warpgroups.size(); ++g) {
    const Warpgroup& wg = s.warpgroups[g];
    if (wg.arrived == 0) continue;
    r.kind = BugKind::warpgroup_mismatch;
    r.file = wg.where.file_name();
    r.line = wg.where.line();
    r.message = cat(site(wg.op, wg.where), ": only ", wg.arrived, " of 128 threads of warpgroup ", g,
                    " (threads ", g * kWarpgroupSize, "..", g * kWarpgroupSize + 127,
                    ") arrived; the others never come\n", r.message);
    return;
  }
}

struct InstallHook {
  InstallHook() { detail::deadlock_hook = &explain_deadlock; }
} install_hook;

}  // namespace

BlockState& block_state() {
  BlockState& s = tl_state;
  const ThreadInfo& t = this_thread();
  if (s.launch != t.launch || s.run != t.block_run) {
    s.launch = t.launch;
    s.run = t.block_run;
    const unsigned n = t.block_dim.x * t.block_dim.y * t.block_dim.z;
    s.warpgroups.assign((n + kWarpgroupSize - 1) / kWarpgroupSize, Warpgroup{});
    s.mbarriers.clear();
    s.named.assign(kNamedBarriers, NamedBarrier{});
    s.bulk.assign(n, BulkQueue{});
    s.async_view.assign(t.launch->params.shared_bytes, 0xFF);  // the emulator's fill at block start
  }
  return s;
}

void block_current(const char* op, std::source_location where) {
  detail::Worker& w = detail::Worker::self();
  detail::Fiber& f = w.current();
  f.state = detail::FiberState::at_warp;
  f.wait_op = op;
  f.wait_where = where;
  w.yield(f);
}

void wake_thread(unsigned tid) { detail::Worker::self().wake(tid); }

namespace {
// Copies shared memory that may hold TMA destinations still poisoned for ASan (ptx_tma.cpp): the
// emulator's own read, not the kernel's.
__attribute__((no_sanitize("address"))) void copy_unchecked(unsigned char* dst, const unsigned char* src,
                                                             std::size_t n) {
  const volatile unsigned char* s = src;  // a loop, not a memcpy call ASan would intercept
  for (std::size_t i = 0; i < n; ++i) dst[i] = s[i];
}
}  // namespace

void async_view_update(std::size_t offset, std::size_t n) {
  BlockState& s = block_state();
  if (offset >= s.async_view.size()) return;
  n = std::min(n, s.async_view.size() - offset);
  copy_unchecked(s.async_view.data() + offset, detail::tl_dynamic_shared + offset, n);
}

void complete_phase_if_done(Mbarrier& m) {
  if (m.pending != 0 || m.tx != 0) return;
  ++m.phase;
  m.pending = m.count;
  for (unsigned tid : m.waiters) wake_thread(tid);
  m.waiters.clear();
}

void warpgroup_rendezvous(WgArrival& a, WgComplete complete, void* ctx) {
  detail::HideFromTsan hide;
  const ThreadInfo& t = this_thread();
  const unsigned nthreads = t.block_dim.x * t.block_dim.y * t.block_dim.z;
  if (nthreads % kWarpgroupSize != 0)
    report(BugKind::warpgroup_mismatch,
           cat(a.op, " is a warpgroup instruction but the block has ", nthreads,
               " threads, not a multiple of 128 (the last warpgroup is incomplete)"),
           a.where);
  detail::Worker& w = detail::Worker::self();
  const unsigned g = t.tid / kWarpgroupSize;
  for (unsigned wi = 0; wi < 4; ++wi) {
    const unsigned live = w.live_lanes(4 * g + wi);
    if (live != 0xffffffffu) {
      char mask[16];
      std::snprintf(mask, sizeof mask, "0x%08x", live);
      report(BugKind::warpgroup_mismatch,
             cat(site(a.op, a.where), ": warp ", 4 * g + wi, " of warpgroup ", g,
                 " has exited lanes (live lanes ", mask, "): every thread of the warpgroup must execute it"),
             a.where);
    }
  }
  Warpgroup& wg = block_state().warpgroups[g];
  if (wg.arrived == 0) {
    wg.op = a.op;
    wg.where = a.where;
  } else if (!same_op(wg.op, a.op) || !same_site(wg.where, a.where)) {
    report(BugKind::warpgroup_mismatch,
           cat("thread ", t.tid, " (warp ", t.warp, ") arrives at ", site(a.op, a.where), " while ", wg.arrived,
               " thread(s) of its warpgroup wait at ", site(wg.op, wg.where),
               ": the four warps of a warpgroup must execute the same instruction"),
           a.where);
  }
  wg.threads[t.tid % kWarpgroupSize] = &a;
  if (++wg.arrived == kWarpgroupSize) {
    wg.arrived = 0;
    {
      detail::ShowToTsan show;
      complete(wg.threads, g, ctx);
    }
    detail::tsan_release(&wg.tsan_done);
    for (unsigned i = 0; i < kWarpgroupSize; ++i)
      if (g * kWarpgroupSize + i != t.tid) w.wake(g * kWarpgroupSize + i);
  } else {
    block_current(a.op, a.where);
    detail::tsan_acquire(&block_state().warpgroups[g].tsan_done);
  }
}

}  // namespace ouro::simt::sm90
