// Internal state of the emulator: fibers, the block being run on this OS thread, and the
// scheduler loop that switches between a block's fibers.
#pragma once
#include <exception>
#include <memory>
#include <source_location>
#include <vector>

#include "ouro/simt/launch.h"
#include "ouro/simt/report.h"
#include "ouro/simt/thread.h"
#include "ouro/simt/warp.h"
#include "simt/fiber.h"

namespace ouro::simt {

// One kernel launch, shared by every OS thread running its blocks.
struct Launch {
  LaunchParams params;
  RunOrder order;
  SharedFill fill = SharedFill::nan;
  unsigned threads_per_block = 0;
  mutable const char* name = nullptr;  // resolved lazily (symbolize.cpp)
};

namespace detail {

enum class FiberState : unsigned char { ready, at_barrier, at_warp, exited, dead };
const char* to_string(FiberState s);

struct Fiber {
  ThreadInfo info;
  Context ctx;
  std::unique_ptr<Stack> stack;
  FiberState state = FiberState::exited;
  unsigned pos = 0;              // index in Worker::order
  const char* wait_op = nullptr; // what it waits at, for reports
  std::source_location wait_where;
  int barrier_result = 0;
};

enum class BarrierKind : unsigned char { sync, count, and_, or_ };

struct Barrier {
  unsigned arrived = 0;
  BarrierKind kind = BarrierKind::sync;
  const char* op = nullptr;
  std::source_location where;
  unsigned count = 0;  // threads with a non-zero predicate
  unsigned phase = 0;  // completed barriers; picks the TSan sync address
  char tsan_sync[2]{}; // alternating release/acquire addresses, one per phase parity
};

// One pending collective of a warp: the lanes named in `mask` meet at `op` / `where`.
struct WarpGroup {
  unsigned mask = 0;
  unsigned arrived = 0;       // lanes of mask waiting
  const char* op = nullptr;
  std::source_location where;
  bool orders_memory = false;
};

// A warp's rendezvous state. Groups with disjoint masks may be pending at once (two half-warps
// shuffling in different branches is legal since Volta); overlapping ones must agree.
struct WarpSlot {
  unsigned live = 0;          // lanes that exist and have not exited
  unsigned ngroups = 0;       // groups[0, ngroups) are pending
  WarpGroup groups[kWarpSize];
  WarpArrival* lanes[kWarpSize]{};
  // TSan release/acquire addresses of __syncwarp, per lowest lane of the mask and phase parity;
  // never reset (only their identity matters).
  unsigned phase[kWarpSize]{};
  char tsan_sync[kWarpSize][2]{};

  void reset(unsigned live_lanes) {  // at block start: cheap, groups are dead past ngroups
    live = live_lanes;
    ngroups = 0;
  }
};

// Everything one OS thread needs to run blocks; thread_local, created on first use.
class Worker {
 public:
  Worker();
  ~Worker();
  static Worker& self();

  // Runs one block of `launch` to completion (or rethrows a report raised in it).
  void run_block(const Launch& launch, unsigned block_linear);

  // Called by the running fiber.
  Fiber& current() { return *current_; }
  // The current fiber cannot continue (waiting or exited): run the next ready fiber in the run
  // order, or return to the scheduler. Returns when the fiber is resumed.
  void yield(Fiber& f);
  // The current fiber stays ready but lets the fibers after it in the run order go first.
  void spin_yield(Fiber& f);
  void thread_exited(Fiber& f);
  int barrier(BarrierKind kind, int predicate, const char* op, std::source_location where);
  void warp_arrive(WarpArrival& a);
  unsigned live_lanes(unsigned warp) const { return warps_[warp].live; }
  // Makes a fiber that waits (state at_warp, set by an emulation that then yield()s) ready
  // again: for rendezvous kept outside the scheduler (warpgroups, mbarriers; src/simt/ptx_*).
  void wake(unsigned tid) { fibers_[tid]->state = FiberState::ready; }
  const Fiber& fiber(unsigned tid) const { return *fibers_[tid]; }
  unsigned block_threads() const { return nthreads_; }

  const Launch* launch() const { return launch_; }
  std::uint64_t switches = 0;

 private:
  static void fiber_entry();
  Fiber* next_ready(unsigned after_pos);  // after_pos = ~0u: from the start
  void switch_to(Context& from, Fiber* to);
  void ensure_fibers(unsigned n);
  void prepare_shared(std::size_t bytes, SharedFill fill);
  void complete_barrier();
  void abandon_block();
  [[noreturn]] void report_deadlock();
  std::string describe_threads() const;

  Context sched_;
  std::vector<std::unique_ptr<Fiber>> fibers_;
  std::vector<unsigned> order_;  // fiber indices in run order
  unsigned nthreads_ = 0;
  unsigned live_ = 0;
  Fiber* current_ = nullptr;
  const Launch* launch_ = nullptr;
  uint3 block_idx_{};
  Barrier barrier_;
  std::vector<WarpSlot> warps_;
  std::exception_ptr error_;
  unsigned char* shared_map_ = nullptr;  // dynamic shared memory (mmap'd)
  std::size_t shared_map_size_ = 0;
  unsigned char* shared_ = nullptr;      // 1 KiB aligned start inside shared_map_
  std::size_t shared_ready_ = 0;         // unpoisoned bytes
  bool static_shared_filled_ = false;    // this OS thread's static shared memory was NaN-filled once
  // Happens-before from one block to the next on this OS thread (they share shared memory):
  // fibers release `exit` when they return, the scheduler acquires it at the block's end and
  // releases `start` for the next block, whose fibers acquire `start`. Two addresses, so that
  // a fiber never synchronises with a fiber of its own block that returned before it started.
  char tsan_block_start_ = 0;
  char tsan_block_exit_ = 0;
  char tsan_abandon_ = 0;                // from suspended fibers to the scheduler, see yield()
};

// Hide the emulator's own bookkeeping from TSan (fibers of one OS thread share it without
// synchronising: the scheduling itself is the synchronisation).
void tsan_acquire(void* addr);
void tsan_release(void* addr);

// Set by emulations that keep their own waiters (src/simt/ptx_sync90.cpp): called on a deadlock
// with the report the scheduler built, which it may rewrite to name what the threads wait for.
extern void (*deadlock_hook)(Report& r);

uint3 unflatten(unsigned linear, dim3 dims);
void install_sanitizer_hooks();  // sanitizer_hooks.cpp
std::string format_dim(uint3 v);

}  // namespace detail
}  // namespace ouro::simt
