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
  {
    if (!(a.mask & bit)) {
      report(BugKind::warp_bad_mask,
             cat("lane ", lane, " calls ", a.op, " with mask ", hex(a.mask), " that does not name it"),
             a.where);
    }
    if (a.mask & ~slot.live) {
      const unsigned absent = a.mask & ~slot.live;
      report(BugKind::warp_absent_lane,
             cat(a.op, " with mask ", hex(a.mask), " names lanes ", hex(absent),
                 " that have exited or do not exist (live lanes of warp ", f.info.warp, ": ", hex(slot.live), ")"),
             a.where);
    }
    if (slot.arrived == 0) {
      slot.mask = a.mask;
      slot.op = a.op;
      slot.where = a.where;
      slot.orders_memory = a.orders_memory;
    } else if (slot.mask != a.mask || !same_op(slot.op, a.op) || !same_site(slot.where, a.where)) {
      std::string waiting;
      for (unsigned l = 0; l < kWarpSize; ++l)
        if (slot.arrived >> l & 1u) append(waiting, cat(waiting.empty() ? "" : ",", l));
      report(BugKind::warp_mismatch,
             cat("lane ", lane, " arrives at ", site(a.op, a.where), " with mask ", hex(a.mask), " while lanes ",
                 waiting, " wait at ", site(slot.op, slot.where), " with mask ", hex(slot.mask)),
             a.where);
    }
    slot.lanes[lane] = &a;
    slot.arrived |= bit;
  }
  // __syncwarp orders memory: release at arrival, acquire once complete. Alternating addresses
  // per phase, so that a lane acquiring late does not also take the releases of lanes that
  // already went on to the next __syncwarp (which would hide races in between).
  const unsigned phase = slot.phase;
  if (a.orders_memory) tsan_release(&slot.tsan_sync[phase & 1]);
  if (slot.arrived == slot.mask) {
    // Everybody is here: compute every lane's result (visible to sanitizers), wake the others.
    {
      ShowToTsan show;
      a.complete(slot.lanes, slot.mask, a.ctx);
    }
    const unsigned mask = slot.mask;
    slot.arrived = 0;
    ++slot.phase;
    const unsigned base = f.info.warp * kWarpSize;
    for (unsigned l = 0; l < kWarpSize; ++l)
      if ((mask >> l & 1u) && l != lane) fibers_[base + l]->state = FiberState::ready;
  } else {
    f.state = FiberState::at_warp;
    f.wait_op = a.op;
    f.wait_where = a.where;
    yield(f);
  }
  if (a.orders_memory) tsan_acquire(&slot.tsan_sync[phase & 1]);
}

void warp_arrive(WarpArrival& a) { Worker::self().warp_arrive(a); }

}  // namespace detail
}  // namespace ouro::simt
