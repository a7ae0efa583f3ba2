// Bug reports: formatting and the (settable) handler.
#include "ouro/simt/report.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "ouro/simt/thread.h"
#include "simt/scheduler.h"

namespace ouro::simt {

namespace {
std::atomic<ReportHandler> g_handler{&default_report_handler};
}

const char* to_string(BugKind kind) {
  switch (kind) {
    case BugKind::barrier_deadlock: return "barrier deadlock";
    case BugKind::barrier_divergence: return "barrier divergence";
    case BugKind::warp_mismatch: return "warp collective mismatch";
    case BugKind::warp_absent_lane: return "warp collective absent lane";
    case BugKind::warp_bad_mask: return "warp collective bad mask";
    case BugKind::misaligned_address: return "misaligned address";
    case BugKind::bad_launch: return "bad launch";
    case BugKind::invalid_argument: return "invalid argument";
    case BugKind::stream_race: return "stream race";
    case BugKind::host_buffer_changed: return "host buffer changed before its copy";
    case BugKind::warpgroup_mismatch: return "warpgroup mismatch";
    case BugKind::bad_descriptor: return "bad matrix descriptor";
    case BugKind::async_protocol: return "async protocol violation";
    case BugKind::mbarrier_hang: return "mbarrier hang";
  }
  return "?";
}

std::string Report::text() const {
  std::string s = "ouro simt: ";
  s += to_string(kind);
  if (in_kernel) {
    s += " in kernel " + kernel + " block " + detail::format_dim(block) + " thread " +
         detail::format_dim(thread);
  }
  if (!file.empty()) s += " at " + file + ":" + std::to_string(line);
  s += ": " + message;
  if (s.back() != '\n') s += '\n';
  return s;
}

ReportHandler set_report_handler(ReportHandler handler) {
  return g_handler.exchange(handler ? handler : &default_report_handler);
}

void default_report_handler(const Report& r) {
  const std::string t = r.text();
  // write(2) rather than stdio: other OS threads may be mid-printf, and we exit right away.
  [[maybe_unused]] auto n = ::write(2, t.data(), t.size());
  std::_Exit(kReportExitStatus);
}

void throwing_report_handler(const Report& r) { throw BugReport(r); }

void report(Report r) {
  g_handler.load()(r);
  std::abort();  // a handler that returns breaks the contract
}

void report(BugKind kind, std::string message, std::source_location where) {
  Report r;
  r.kind = kind;
  r.message = std::move(message);
  r.file = where.file_name();
  r.line = where.line();
  if (in_kernel()) {
    const ThreadInfo& t = this_thread();
    r.in_kernel = true;
    r.kernel = kernel_name(t.launch);
    r.block = t.block_idx;
    r.thread = t.thread_idx;
  }
  report(std::move(r));
}

}  // namespace ouro::simt
