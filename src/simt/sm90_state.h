// Per-block state of the Hopper emulations (wgmma, mbarrier, setmaxnreg; see <ouro/ptx_sm90.h>)
// and the warpgroup rendezvous they share.
//
// A block runs on one OS thread, so the state is thread_local and keyed by the block's run
// serial (ThreadInfo::block_run): the first use in a new block starts it afresh. Like the warp
// slots it is the emulator's bookkeeping, shared by the block's fibers without synchronisation
// (cooperative scheduling): touch it under HideFromTsan.
#pragma once
#include <cstdint>
#include <source_location>
#include <unordered_map>
#include <vector>

namespace ouro::simt::sm90 {

inline constexpr unsigned kWarpgroupSize = 128;

// One thread's arrival at a warpgroup-wide operation; lives on its fiber stack while it waits.
struct WgArrival {
  const char* op;
  std::source_location where;
  const void* in;  // the operation's per-thread input
  void* out;       // and output (may be null)
};
// Run once by the last thread to arrive, over all 128 arrivals (index = thread in warpgroup).
using WgComplete = void (*)(WgArrival* const* threads, unsigned warpgroup, void* ctx);

// One wgmma.mma_async, from issue to the wait_group that performs it.
struct WgmmaOp {
  std::source_location where;
  int n = 0;
  bool trans_a = false, trans_b = false, a_from_regs = false;
  int scale_d = 1;
  uint64_t desc_a = 0, desc_b = 0;
  long group = -1;                       // commit number, -1 while not committed
  float* d[kWarpgroupSize]{};            // each thread's accumulator registers
  bool chained[kWarpgroupSize]{};        // C comes from an earlier pending wgmma on the same d
  std::vector<float> c;                  // [thread][n/2] captured accumulator (when not chained)
  std::vector<uint32_t> a;               // [thread][4] A registers (a_from_regs)
};

struct Warpgroup {
  // rendezvous
  unsigned arrived = 0;
  const char* op = nullptr;
  std::source_location where;
  WgArrival* threads[kWarpgroupSize]{};
  // wgmma
  bool fenced = false;           // wgmma.fence since the last wait_group
  std::vector<WgmmaOp> ops;      // pending, in issue order
  long committed = 0;
};

struct Mbarrier {
  uint32_t count = 0;            // arrivals per phase (init)
  uint32_t pending = 0;          // arrivals still missing in the current phase
  int64_t tx = 0;                // transaction bytes still expected in the current phase
  uint32_t phase = 0;            // completed phases
  std::source_location init_where;
  std::vector<unsigned> waiters; // tids blocked in try_wait on this barrier
  std::source_location wait_where;
  char tsan_sync[2]{};           // release at arrival / acquire at wait, per phase parity
};

struct BlockState {
  const void* launch = nullptr;
  uint64_t run = 0;
  std::vector<Warpgroup> warpgroups;
  std::unordered_map<const void*, Mbarrier> mbarriers;
};

// The state of the block the calling emulated thread belongs to (reset on a new block).
BlockState& block_state();

// The rendezvous of the caller's warpgroup: blocks until all 128 threads arrived at the same op
// and call site, the last one runs `complete`. Reports a block that is not whole warpgroups, a
// warp of the warpgroup with exited lanes, and threads meeting at different operations.
void warpgroup_rendezvous(WgArrival& a, WgComplete complete, void* ctx);

// Blocks the calling thread (state "waiting at op") until wake_thread(tid) of the same block.
void block_current(const char* op, std::source_location where);
void wake_thread(unsigned tid);

}  // namespace ouro::simt::sm90
