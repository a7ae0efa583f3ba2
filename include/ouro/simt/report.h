// Bug reports of the SIMT emulator.
//
// A report names the kernel, the block, the thread and the source file:line at fault, then the
// process exits with status kReportExitStatus. Tests that want to assert on a report install a
// throwing handler (ThrowReports below): the emulator then abandons the launch and rethrows the
// report as simt::BugReport from ouro::launch in the launching thread, so no fork is needed.
#pragma once
#include <vector_types.h>

#include <source_location>
#include <stdexcept>
#include <string>

namespace ouro::simt {

// Exit status of a process stopped by an emulator report (sanitizers use their own).
inline constexpr int kReportExitStatus = 86;

enum class BugKind {
  barrier_deadlock,     // __syncthreads not reached by every live thread
  barrier_divergence,   // threads of one block wait at different __syncthreads call sites
  warp_mismatch,        // lanes of a warp collective disagree on mask, operation or call site
  warp_absent_lane,     // a collective names a lane that exited or does not exist
  warp_bad_mask,        // the calling lane is not in its own mask
  misaligned_address,   // ldmatrix/cp.async/... on an address the ISA forbids
  bad_launch,           // launch configuration the hardware refuses
  invalid_argument,     // misuse of an emulated API inside a kernel
  stream_race,          // OURO_SIMT_ASYNC: memory touched by two unordered streams / the host
  host_buffer_changed,  // OURO_SIMT_ASYNC: a pinned source changed before its queued copy ran
  warpgroup_mismatch,   // threads of a warpgroup disagree at wgmma/setmaxnreg, or do not all come
  bad_descriptor,       // a wgmma matrix descriptor the ISA forbids (address, offsets, swizzle)
  async_protocol,       // a wgmma/TMA/mbarrier ordering rule broken (missing fence, early access)
  mbarrier_hang,        // threads wait for an mbarrier phase that can never complete
};

const char* to_string(BugKind kind);

struct Report {
  BugKind kind{};
  std::string kernel;     // demangled kernel name, "" outside a launch
  bool in_kernel = false; // block/thread below are meaningful
  uint3 block{}, thread{};
  std::string file;       // source location at fault
  unsigned line = 0;
  std::string message;    // what happened, including each involved thread's state

  // "ouro simt: <kind> in kernel K block (x,y,z) thread (x,y,z) at file:line: message"
  std::string text() const;
};

// Thrown by ThrowReports' handler; the emulator carries it out of the kernel to launch().
struct BugReport : std::runtime_error {
  Report report;
  explicit BugReport(Report r) : std::runtime_error(r.text()), report(std::move(r)) {}
};

// A handler either does not return (exit) or throws. The default prints text() to stderr and
// calls _Exit(kReportExitStatus).
using ReportHandler = void (*)(const Report&);
ReportHandler set_report_handler(ReportHandler handler);  // returns the previous one
[[noreturn]] void default_report_handler(const Report& r);
[[noreturn]] void throwing_report_handler(const Report& r);

// RAII: throw BugReport instead of exiting, for the lifetime of this object.
class ThrowReports {
 public:
  ThrowReports() : prev_(set_report_handler(throwing_report_handler)) {}
  ~ThrowReports() { set_report_handler(prev_); }
  ThrowReports(const ThrowReports&) = delete;
  ThrowReports& operator=(const ThrowReports&) = delete;

 private:
  ReportHandler prev_;
};

// Report a bug seen by the running emulated thread (kernel/block/thread come from it; outside
// a kernel they are left out). Never returns.
[[noreturn]] void report(BugKind kind, std::string message,
                         std::source_location where = std::source_location::current());
// Report with explicit identity: used by the scheduler for deadlocks it finds between fibers.
[[noreturn]] void report(Report r);

}  // namespace ouro::simt
