// Exceptions and OpenMP: an exception that leaves an OpenMP structured block (a parallel region,
// one iteration of a worksharing loop) calls std::terminate, even on one thread. Every region
// whose body can throw (ouro::Error from a failed regex match, bad_alloc) runs its body through
// OmpErrors::run, which keeps the first exception (the one of the lowest iteration index, so the
// message does not depend on the thread count or the schedule), and rethrows it after the
// region with rethrow().
#pragma once
#include <cstddef>
#include <exception>
#include <limits>
#include <mutex>

namespace ouro {

class OmpErrors {
 public:
  // Runs fn(); an exception it throws is caught and kept if its index is the lowest so far.
  // Callable from any thread; iterations after a failure still run (cheap to allow, and it
  // keeps the region free of cancellation points).
  template <class F>
  void run(size_t index, F&& fn) noexcept {
    try {
      fn();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (index < index_) {
        index_ = index;
        error_ = std::current_exception();
      }
    }
  }
  // Whether some iteration failed (a loop may skip work once true; the check is a hint only).
  bool failed() const noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    return error_ != nullptr;
  }
  // Outside the region: rethrows the kept exception, if any.
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  mutable std::mutex mu_;
  size_t index_ = std::numeric_limits<size_t>::max();
  std::exception_ptr error_;
};

}  // namespace ouro
