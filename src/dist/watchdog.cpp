#include "dist/watchdog.h"

#include <cstdio>
#include <cstdlib>

namespace ouro {

Watchdog::Watchdog(int rank, double timeout_s, double grace_s)
    : rank_(rank), timeout_s_(timeout_s), grace_s_(grace_s) {
  if (timeout_s_ > 0) thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::begin(const char* op) {
  std::lock_guard<std::mutex> l(mu_);
  op_ = op;
  started_ = std::chrono::steady_clock::now();
}

void Watchdog::end() {
  std::lock_guard<std::mutex> l(mu_);
  op_ = nullptr;
}

void Watchdog::run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, std::chrono::milliseconds(250));
    if (!op_) continue;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    if (s > timeout_s_ + grace_s_) {
      // No logger here: it may be the logger's lock that is stuck. stderr is unbuffered.
      std::fprintf(stderr,
                   "[ouro] rank %d: %s did not complete within %.0f s (dist.timeout_s): another "
                   "rank died or hangs; aborting\n",
                   rank_, op_, timeout_s_);
      std::_Exit(3);
    }
  }
}

}  // namespace ouro
