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
  // TSan: what the last thread did in `complete` (a wgmma's shared-memory reads at wait_group)
  // happens before every thread of the warpgroup returns from the instruction.
  char tsan_done = 0;
  // wgmma
  bool fenced = false;           // wgmma.fence since the last wait_group
  std::vector<WgmmaOp> ops;      // pending, in issue order
  long committed = 0;
};

// What the emulator keeps in a CUtensorMap's 128 opaque bytes (driver_entry.cpp encodes it).
struct TensorMap {
  static constexpr uint64_t kMagic = 0x4f55524f544d4150ull;  // "OUROTMAP"
  uint64_t magic;
  const unsigned char* addr;
  uint64_t dim[2];      // elements, innermost first
  uint64_t stride1;     // bytes between rows (dimension 1)
  uint32_t box[2];      // elements
  uint32_t esize;       // bytes per element
  uint32_t swizzle;     // bytes: 0, 32, 64, 128
  uint32_t rank;        // 1 or 2
  uint32_t oob_nan;     // fill out-of-bounds elements with NaN instead of zero (float types)
  uint32_t is_float;
};
static_assert(sizeof(TensorMap) <= 128);

// A cp.async.bulk.tensor load issued but not yet performed (it lands when a thread would have
// to wait for its mbarrier: the latest moment the ISA allows).
struct TmaLoad {
  TensorMap map;
  unsigned char* dst;
  int x, y;
  std::source_location where;
};
// A bulk tensor store, performed at cp.async.bulk.wait_group.
struct TmaStore {
  TensorMap map;
  const unsigned char* src;
  int x, y;
  long group;  // -1 while not committed
  std::source_location where;
};
struct BulkQueue {
  std::vector<TmaStore> stores;
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
  std::vector<TmaLoad> loads;    // issued TMA loads that will complete_tx on this barrier
  char tsan_issue = 0;           // issuer -> whoever performs the loads
};

// A named barrier (bar.sync / bar.arrive with an id 1..15): arrivals counted per thread toward
// the count the first arrival of the phase gave; the phase completes at that count.
struct NamedBarrier {
  uint32_t count = 0;            // threads expected in the current phase (0: no phase open)
  uint32_t arrived = 0;
  uint32_t phase = 0;            // completed phases
  std::source_location first_where;  // the phase's first arrival
  std::vector<unsigned> waiters; // tids blocked in bar.sync
  char tsan_sync[2]{};
};
inline constexpr unsigned kNamedBarriers = 16;

struct BlockState {
  const void* launch = nullptr;
  uint64_t run = 0;
  std::vector<Warpgroup> warpgroups;
  std::unordered_map<const void*, Mbarrier> mbarriers;
  std::vector<NamedBarrier> named;  // kNamedBarriers, index = barrier id
  std::vector<BulkQueue> bulk;   // per thread
  // Dynamic shared memory as the async proxy (wgmma) may see it: the block's 0xFF fill, then
  // a copy of shared memory at each fence.proxy.async, plus what TMA loads wrote. A wgmma
  // operand byte that differs from it was written by ordinary stores after the last fence.
  std::vector<unsigned char> async_view;
};

// The async view's copy of [offset, offset + n) of dynamic shared memory is brought up to date
// (TMA writes through the async proxy).
void async_view_update(std::size_t offset, std::size_t n);

// The state of the block the calling emulated thread belongs to (reset on a new block).
BlockState& block_state();

// The rendezvous of the caller's warpgroup: blocks until all 128 threads arrived at the same op
// and call site, the last one runs `complete`. Reports a block that is not whole warpgroups, a
// warp of the warpgroup with exited lanes, and threads meeting at different operations.
void warpgroup_rendezvous(WgArrival& a, WgComplete complete, void* ctx);

// Completes the barrier's current phase when no arrival and no transaction byte is missing
// (waking its waiters); performs the TMA loads queued on it (ptx_tma.cpp), which complete_tx.
void complete_phase_if_done(Mbarrier& m);
void perform_tma_loads(Mbarrier& m);

// Blocks the calling thread (state "waiting at op") until wake_thread(tid) of the same block.
void block_current(const char* op, std::source_location where);
void wake_thread(unsigned tid);

}  // namespace ouro::simt::sm90
