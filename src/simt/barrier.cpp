// __syncthreads and its _count/_and/_or forms: arrival counting over the block's live threads.
#include <string>

#include "ouro/simt/report.h"
#include "simt/scheduler.h"
#include "simt/text.h"

namespace ouro::simt::detail {

void (*deadlock_hook)(Report& r) = nullptr;

namespace {
bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || std::string_view(a.file_name()) == b.file_name());
}
std::string site(const char* op, const std::source_location& w) {
  return cat(op, " at ", w.file_name(), ":", w.line());
}
}  // namespace

int Worker::barrier(BarrierKind kind, int predicate, const char* op, std::source_location where) {
  HideFromTsan hide;
  Fiber& f = current();
  {
    Barrier& b = barrier_;
    if (b.arrived == 0) {
      b.kind = kind;
      b.op = op;
      b.where = where;
      b.count = 0;
    } else if (b.kind != kind || !same_site(b.where, where)) {
      // Every thread of the block must wait at the same barrier instruction.
      report(BugKind::barrier_divergence,
             cat("thread arrives at ", site(op, where), " while other threads wait at ", site(b.op, b.where),
                 "\n", describe_threads()),
             where);
    }
    b.count += predicate != 0;
    ++b.arrived;
  }
  tsan_release(&barrier_.tsan_sync[barrier_.phase & 1]);
  {
    if (barrier_.arrived == live_) {
      const unsigned phase = barrier_.phase;
      complete_barrier();
      tsan_acquire(&barrier_.tsan_sync[phase & 1]);
      return f.barrier_result;
    }
    f.state = FiberState::at_barrier;
    f.wait_op = op;
    f.wait_where = where;
  }
  const unsigned phase = barrier_.phase;
  yield(f);
  tsan_acquire(&barrier_.tsan_sync[phase & 1]);
  return f.barrier_result;
}

void Worker::complete_barrier() {
  Barrier& b = barrier_;
  int result = 0;
  switch (b.kind) {
    case BarrierKind::sync: result = 0; break;
    case BarrierKind::count: result = static_cast<int>(b.count); break;
    case BarrierKind::and_: result = b.count == b.arrived; break;
    case BarrierKind::or_: result = b.count != 0; break;
  }
  for (unsigned i = 0; i < nthreads_; ++i) {
    Fiber& f = *fibers_[i];
    if (f.state == FiberState::at_barrier) f.state = FiberState::ready;
    if (f.state != FiberState::exited) f.barrier_result = result;
  }
  b.arrived = 0;
  ++b.phase;
}

std::string Worker::describe_threads() const {
  // One line per run of consecutive threads in the same state at the same place.
  std::string out;
  auto where_of = [](const Fiber& f) -> std::string {
    switch (f.state) {
      case FiberState::at_barrier:
      case FiberState::at_warp: return site(f.wait_op, f.wait_where);
      default: return to_string(f.state);
    }
  };
  unsigned start = 0;
  for (unsigned i = 1; i <= nthreads_; ++i) {
    if (i < nthreads_ && where_of(*fibers_[i]) == where_of(*fibers_[start])) continue;
    const Fiber& a = *fibers_[start];
    const Fiber& z = *fibers_[i - 1];
    append(out, cat("  thread ", format_dim(a.info.thread_idx)));
    if (i - 1 != start) append(out, cat("..", format_dim(z.info.thread_idx)));
    const std::string w = where_of(a);
    out += (a.state == FiberState::at_barrier || a.state == FiberState::at_warp) ? ": waiting at " : ": ";
    append(out, cat(w, "\n"));
    start = i;
  }
  return out;
}

void Worker::report_deadlock() {
  // Nobody can run: find the most telling waiter to blame (a barrier, else a collective).
  const Fiber* blame = nullptr;
  for (unsigned i = 0; i < nthreads_ && !blame; ++i)
    if (fibers_[i]->state == FiberState::at_barrier) blame = fibers_[i].get();
  for (unsigned i = 0; i < nthreads_ && !blame; ++i)
    if (fibers_[i]->state == FiberState::at_warp) blame = fibers_[i].get();
  Report r;
  r.kernel = kernel_name(launch_);
  r.in_kernel = true;
  r.block = block_idx_;
  r.thread = blame ? blame->info.thread_idx : uint3{};
  r.file = blame ? blame->wait_where.file_name() : "?";
  r.line = blame ? blame->wait_where.line() : 0;
  if (blame && blame->state == FiberState::at_barrier) {
    r.kind = BugKind::barrier_deadlock;
    r.message = cat(blame->wait_op, " not reached by every live thread of the block (", barrier_.arrived, " of ",
                    live_, " arrived)\n");
  } else {
    r.kind = BugKind::barrier_deadlock;
    r.message = "deadlock: every live thread waits and none can proceed\n";
  }
  r.message += describe_threads();
  if (deadlock_hook) deadlock_hook(r);
  report(std::move(r));
}

}  // namespace ouro::simt::detail

namespace ouro::simt::detail {
int block_barrier(int kind, int predicate, const char* op, std::source_location where) {
  return Worker::self().barrier(static_cast<BarrierKind>(kind), predicate, op, where);
}
}  // namespace ouro::simt::detail
