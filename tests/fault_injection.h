// Fault injection for the tests, from outside the product: a Communicator decorator that a test
// wraps around a run's communicator (TrainParts::wrap_comm in-process, or the test-only binary
// tests/fault_worker.cpp under mpirun), making one rank die or hang on entering a chosen
// collective, or turning chosen steps' mean losses into NaN.
#pragma once
#include <csignal>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ouro/comm.h"

namespace ouro::test {

struct CommFault {
  // Rank `rank` raises `signal` (SIGKILL: it dies; SIGSTOP: it hangs) on entering its call
  // number `call` (1-based) of collective `op`: "all_reduce" (host, float or double),
  // "reduce_scatter", "all_gather", "broadcast", "barrier", "device_all_reduce",
  // "device_reduce_scatter", "device_all_gather", "device_broadcast",
  // "device_all_reduce_spans_start". rank -1: never.
  int rank = -1;
  std::string op;
  int call = 0;
  int signal = SIGKILL;
  // 0-based steps whose mean loss comes back NaN from its reduction: a step's loss is the run's
  // one all-reduce of a single double with ReduceOp::Avg (TrainSession::loss_and_norm), so the
  // k-th such call is step k's.
  std::set<int64_t> nan_loss_steps;
};

class FaultComm : public Communicator {
 public:
  FaultComm(std::unique_ptr<Communicator> inner, CommFault fault) : in_(std::move(inner)), f_(std::move(fault)) {}

  std::string name() const override { return in_->name(); }
  int rank() const override { return in_->rank(); }
  int world() const override { return in_->world(); }
  int local_rank() const override { return in_->local_rank(); }
  bool has_host_collectives() const override { return in_->has_host_collectives(); }
  bool has_device_collectives() const override { return in_->has_device_collectives(); }

  void all_reduce(float* buf, size_t n, ReduceOp op) override {
    enter("all_reduce");
    in_->all_reduce(buf, n, op);
  }
  void all_reduce(double* buf, size_t n, ReduceOp op) override {
    enter("all_reduce");
    in_->all_reduce(buf, n, op);
    if (n == 1 && op == ReduceOp::Avg && f_.nan_loss_steps.count(loss_reductions_++))
      buf[0] = std::numeric_limits<double>::quiet_NaN();
  }
  void reduce_scatter(float* buf, size_t n, ReduceOp op) override {
    enter("reduce_scatter");
    in_->reduce_scatter(buf, n, op);
  }
  void all_gather(float* buf, size_t n) override {
    enter("all_gather");
    in_->all_gather(buf, n);
  }
  void all_gather(double* buf, size_t n) override {
    enter("all_gather");
    in_->all_gather(buf, n);
  }
  void broadcast(void* buf, size_t bytes, int root) override {
    enter("broadcast");
    in_->broadcast(buf, bytes, root);
  }
  void barrier() override {
    enter("barrier");
    in_->barrier();
  }
  void device_all_reduce(void* buf, size_t n, DType dtype, ReduceOp op, void* stream) override {
    enter("device_all_reduce");
    in_->device_all_reduce(buf, n, dtype, op, stream);
  }
  void device_reduce_scatter(void* buf, size_t n, DType dtype, ReduceOp op, void* stream) override {
    enter("device_reduce_scatter");
    in_->device_reduce_scatter(buf, n, dtype, op, stream);
  }
  void device_all_gather(void* buf, size_t n, DType dtype, void* stream) override {
    enter("device_all_gather");
    in_->device_all_gather(buf, n, dtype, stream);
  }
  void device_broadcast(void* buf, size_t n, DType dtype, int root, void* stream) override {
    enter("device_broadcast");
    in_->device_broadcast(buf, n, dtype, root, stream);
  }
  void device_all_reduce_spans_start(void* buf, const std::vector<BufferSpan>& spans, DType dtype, ReduceOp op,
                                     void* after) override {
    enter("device_all_reduce_spans_start");
    in_->device_all_reduce_spans_start(buf, spans, dtype, op, after);
  }
  void device_wait_started(void* stream) override { in_->device_wait_started(stream); }

 private:
  void enter(const char* op) {
    if (f_.rank == in_->rank() && f_.op == op && ++calls_ == f_.call) std::raise(f_.signal);
  }

  std::unique_ptr<Communicator> in_;
  CommFault f_;
  int calls_ = 0;
  int64_t loss_reductions_ = 0;
};

// A TrainParts::wrap_comm / TrainHooks::wrap_comm that puts a FaultComm around the run's own.
inline std::function<std::unique_ptr<Communicator>(std::unique_ptr<Communicator>)> with_fault(CommFault f) {
  return [f](std::unique_ptr<Communicator> c) -> std::unique_ptr<Communicator> {
    return std::make_unique<FaultComm>(std::move(c), f);
  };
}

}  // namespace ouro::test
