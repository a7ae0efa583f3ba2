// The warp rendezvous core (see include/ouro/simt/warp.h for the contract).
#include <cstdio>
#include <string>

#include "ouro/simt/report.h"
#include "simt/scheduler.h"
#include "simt/text.h"

namespace ouro::simt {
namespace detail {

namespace {
std::string hex(unsigned m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", m);
  return buf;
}
std::string site(const char* op, const std::source_location& w) {
  return cat(op, " at ", w.file_name(), ":", w.line());
}
bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || std::string_view(a.file_name()) == b.file_name());
}
bool same_op(const char* a, const char* b) { return a == b || std::string_view(a) == b; }
}  // namespace

void Worker::warp_arrive(WarpArrival& a) {
  HideFromTsan hide;  // see worker.cpp; only the compute callback is shown to TSan
  Fiber& f = current();
  const unsigned lane = f.info.lane;
  const unsigned bit = 1u << lane;
  WarpSlot& slot = warps_[f.info.warp];
  if (!(a.mask & bit)) {
    report(BugKind::warp_bad_mask,
           cat("lane ", lane, " calls ", a.op, " with mask ", hex(a.mask), " that does not name it"), a.where);
  }
  if (a.mask & ~slot.live) {
    const unsigned absent = a.mask & ~slot.live;
    report(BugKind::warp_absent_lane,
           cat(a.op, " with mask ", hex(a.mask), " names lanes ", hex(absent),
               " that have exited or do not exist (live lanes of warp ", f.info.warp, ": ", hex(slot.live), ")"),
           a.where);
  }
  // Join the pending group with this mask, or open one; a pending group whose mask overlaps
  // but differs, or that waits at another operation or call site, is a bug.
  unsigned g = 0;
  while (g < slot.ngroups && !(slot.groups[g].mask & a.mask)) ++g;
  if (g == slot.ngroups) {
    slot.groups[slot.ngroups++] = WarpGroup{a.mask, 0, a.op, a.where, a.orders_memory};
  } else {
    const WarpGroup& group = slot.groups[g];
    if (group.mask != a.mask || !same_op(group.op, a.op) || !same_site(group.where, a.where)) {
      std::string waiting;
      for (unsigned l = 0; l < kWarpSize; ++l)
        if (group.arrived >> l & 1u) append(waiting, cat(waiting.empty() ? "" : ",", l));
      report(BugKind::warp_mismatch,
             cat("lane ", lane, " arrives at ", site(a.op, a.where), " with mask ", hex(a.mask), " while lanes ",
                 waiting, " wait at ", site(group.op, group.where), " with mask ", hex(group.mask)),
             a.where);
    }
  }
  slot.lanes[lane] = &a;
  slot.groups[g].arrived |= bit;

  // __syncwarp orders memory: release at arrival, acquire once complete. Alternating addresses
  // per phase, so that a lane acquiring late does not also take the releases of lanes that
  // already went on to the next __syncwarp (which would hide races in between).
  const unsigned key = static_cast<unsigned>(__builtin_ctz(a.mask));
  const unsigned phase = slot.phase[key];
  if (a.orders_memory) tsan_release(&slot.tsan_sync[key][phase & 1]);
  if (slot.groups[g].arrived == a.mask) {
    // Everybody is here: close the group, compute every lane's result (visible to sanitizers),
    // wake the others.
    slot.groups[g] = slot.groups[--slot.ngroups];
    ++slot.phase[key];
    {
      ShowToTsan show;
      a.complete(slot.lanes, a.mask, a.ctx);
    }
    const unsigned base = f.info.warp * kWarpSize;
    for (unsigned l = 0; l < kWarpSize; ++l)
      if ((a.mask >> l & 1u) && l != lane) fibers_[base + l]->state = FiberState::ready;
  } else {
    f.state = FiberState::at_warp;
    f.wait_op = a.op;
    f.wait_where = a.where;
    yield(f);
  }
  if (a.orders_memory) tsan_acquire(&slot.tsan_sync[key][phase & 1]);
}

void warp_arrive(WarpArrival& a) { Worker::self().warp_arrive(a); }

}  // namespace detail
}  // namespace ouro::simt
