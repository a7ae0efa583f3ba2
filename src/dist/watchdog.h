// A collective that never returns (a peer rank died or hangs) must not hang this rank forever:
// the watchdog thread ends the process, naming the rank and the operation, once an operation
// outlives its deadline. The launcher (mpirun, srun) then tears the job down.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace ouro {

class Watchdog {
 public:
  // Fires grace_s after timeout_s (a backstop behind a caller that polls its own deadline of
  // timeout_s); the message names timeout_s, the limit the user set.
  Watchdog(int rank, double timeout_s, double grace_s = 0);
  ~Watchdog();
  // One operation begins / has ended. Besides Scope, host nodes of a CUDA graph call them
  // (cudaLaunchHostFunc): around a collective captured into the graph, at each launch.
  void begin(const char* op);
  void end();
  // RAII guard around one operation.
  class Scope {
   public:
    Scope(Watchdog& w, const char* op) : w_(w) { w_.begin(op); }
    ~Scope() { w_.end(); }
   private:
    Watchdog& w_;
  };

 private:
  void run();
  int rank_;
  double timeout_s_, grace_s_;
  std::mutex mu_;
  std::condition_variable cv_;
  const char* op_ = nullptr;
  std::chrono::steady_clock::time_point started_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ouro
