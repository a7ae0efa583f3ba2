// NcclComm: see nccl_comm.h. Compiled twice like every src/device/*.cu: by nvcc against the real
// NCCL (cuda) and by g++ against nccl_over_mpi.cu (simt), so CI runs this exact code multi-rank.
//
// The communicator is non-blocking (ncclConfig_t::blocking = 0): calls return at once and this
// code polls ncclCommGetAsyncError and the stream until done or dist.timeout_s has passed, then
// aborts the communicator (which frees a rank stuck in a kernel waiting for a dead peer) and
// exits naming the rank. A Watchdog a little later is the backstop for a call that blocks on the
// host (NCCL-over-MPI's MPI calls block).
#include <ouro/cuda.h>

#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "common/trace.h"
#include "device/nccl_comm.h"
#include "dist/rendezvous.h"
#include "dist/watchdog.h"
#include "ouro/error.h"

namespace ouro {
namespace {

#if defined(OURO_SIMT)
constexpr const char* kName = "nccl-over-mpi";
#else
constexpr const char* kName = "nccl";
#endif

// Seconds the host-side backstop waits beyond dist.timeout_s for the polling loop to act first.
constexpr double kWatchdogGrace = 5.0;

ncclDataType_t nccl_type(DType d) { return d == DType::BF16 ? ncclBfloat16 : ncclFloat32; }

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

class NcclComm final : public Communicator {
 public:
  NcclComm(std::unique_ptr<Communicator> host, const RendezvousOptions& rv, double timeout_s)
      : host_(std::move(host)), timeout_s_(timeout_s) {
    const int rank = host_->rank(), world = host_->world();
    int devices = 0;
    OURO_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0,
               "rank {}: no CUDA device for the {} communicator", rank, kName);
    // One process per GPU: local ranks map onto the node's devices (more ranks than GPUs share).
    device_ = host_->local_rank() % devices;
    OURO_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id{};
    if (rank == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    const std::string got = rendezvous_bytes(rv, rank, world, std::string(id.internal, sizeof id.internal), *host_);
    OURO_CHECK(got.size() == sizeof id.internal, "rank {}: the rendezvous delivered {} bytes, NCCL's id has {}",
               rank, got.size(), sizeof id.internal);
    std::memcpy(id.internal, got.data(), sizeof id.internal);
    watchdog_ = std::make_unique<Watchdog>(rank, timeout_s_, kWatchdogGrace);
    {
      Watchdog::Scope guard(*watchdog_, "NCCL communicator init");
      ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
      cfg.blocking = 0;
      check(ncclCommInitRankConfig(&comm_, world, id, rank, &cfg), "ncclCommInitRankConfig");
      wait("NCCL communicator init", nullptr);
    }
    rendezvous_finished(rv, rank);
    OURO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    OURO_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  }

  ~NcclComm() override {
    // Unwinding from an error on this rank, peers may still be inside a collective with us:
    // abort (which never waits for them) rather than destroy (which may).
    if (comm_) std::uncaught_exceptions() ? ncclCommAbort(comm_) : ncclCommDestroy(comm_);
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
    watchdog_.reset();
  }

  std::string name() const override { return std::string(kName) + "+" + host_->name(); }
  int rank() const override { return host_->rank(); }
  int world() const override { return host_->world(); }
  int local_rank() const override { return host_->local_rank(); }

  // ---- host memory: the wrapped communicator ----
  void all_reduce(float* b, size_t n, ReduceOp op) override { host_->all_reduce(b, n, op); }
  void all_reduce(double* b, size_t n, ReduceOp op) override { host_->all_reduce(b, n, op); }
  void reduce_scatter(float* b, size_t n, ReduceOp op) override { host_->reduce_scatter(b, n, op); }
  void all_gather(float* b, size_t n) override { host_->all_gather(b, n); }
  void all_gather(double* b, size_t n) override { host_->all_gather(b, n); }
  void broadcast(void* b, size_t bytes, int root) override { host_->broadcast(b, bytes, root); }
  void barrier() override { host_->barrier(); }

  // ---- device memory ----
  bool has_device_collectives() const override { return true; }

  void device_all_reduce(void* buf, size_t n, DType dt, ReduceOp op, void* stream) override {
    run("device all-reduce", stream, [&](cudaStream_t s) {
      return ncclAllReduce(buf, buf, n, nccl_type(dt), nccl_op(op), comm_, s);
    });
  }

  // device_shard_of's layout: W equal shards of c = n / W elements, then a tail of n - W*c (< W)
  // elements that the last rank owns as well. One group: the equal part by NCCL's in-place
  // ReduceScatter / AllGather (recvbuff = sendbuff + rank * c), the tail by one Reduce to /
  // Broadcast from the last rank. Every rank computes the same c and tail, so all issue the
  // same calls (with c = 0, fewer elements than ranks, only the tail's).
  void device_reduce_scatter(void* buf, size_t n, DType dt, ReduceOp op, void* stream) override {
    const int W = world();
    char* b = static_cast<char*>(buf);
    const size_t esz = dtype_size(dt), c = n / W, tail = n - c * W;
    run("device reduce-scatter", stream, [&](cudaStream_t s) {
      ncclResult_t rc = ncclGroupStart();
      if (rc == ncclSuccess && c > 0)
        rc = ncclReduceScatter(b, b + rank() * c * esz, c, nccl_type(dt), nccl_op(op), comm_, s);
      if (rc == ncclSuccess && tail > 0)
        rc = ncclReduce(b + c * W * esz, b + c * W * esz, tail, nccl_type(dt), nccl_op(op), W - 1, comm_, s);
      const ncclResult_t end = ncclGroupEnd();
      return rc != ncclSuccess ? rc : end;
    });
  }

  void device_all_gather(void* buf, size_t n, DType dt, void* stream) override {
    const int W = world();
    char* b = static_cast<char*>(buf);
    const size_t esz = dtype_size(dt), c = n / W, tail = n - c * W;
    run("device all-gather", stream, [&](cudaStream_t s) {
      ncclResult_t rc = ncclGroupStart();
      if (rc == ncclSuccess && c > 0) rc = ncclAllGather(b + rank() * c * esz, b, c, nccl_type(dt), comm_, s);
      if (rc == ncclSuccess && tail > 0)
        rc = ncclBroadcast(b + c * W * esz, b + c * W * esz, tail, nccl_type(dt), W - 1, comm_, s);
      const ncclResult_t end = ncclGroupEnd();
      return rc != ncclSuccess ? rc : end;
    });
  }

  void device_broadcast(void* buf, size_t n, DType dt, int root, void* stream) override {
    OURO_CHECK(root >= 0 && root < world(), "device broadcast: root {} outside {} ranks", root, world());
    run("device broadcast", stream, [&](cudaStream_t s) {
      return ncclBroadcast(buf, buf, n, nccl_type(dt), root, comm_, s);
    });
  }

  // One event serves every bucket: cudaStreamWaitEvent captures the event's work as of the call,
  // so re-recording it for the next bucket cannot release this one early. The group is only
  // enqueued here; with the non-blocking communicator, NCCL requires its state to leave
  // ncclInProgress (the enqueue, not the transfer, finishing) before the next NCCL call.
  void device_all_reduce_spans_start(void* buf, const std::vector<BufferSpan>& spans, DType dt, ReduceOp op,
                                     void* after) override {
    const char* what = "bucketed device all-reduce";
    Watchdog::Scope guard(*watchdog_, what);  // NCCL-over-MPI runs the transfer right here
    if (after) {
      OURO_CUDA_CHECK(cudaEventRecord(ready_, static_cast<cudaStream_t>(after)));
      OURO_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    }
    char* b = static_cast<char*>(buf);
    const size_t esz = dtype_size(dt);
    ncclResult_t rc = ncclGroupStart();
    for (size_t i = 0; rc == ncclSuccess && i < spans.size(); ++i) {
      void* p = b + spans[i].offset * esz;
      rc = ncclAllReduce(p, p, spans[i].count, nccl_type(dt), nccl_op(op), comm_, stream_);
    }
    const ncclResult_t end = ncclGroupEnd();
    check(rc != ncclSuccess ? rc : end, what);
    wait(what, nullptr);
    started_ = true;
  }

  void device_wait_started() override {
    if (!started_) return;
    const char* what = "bucketed device all-reduce (completion)";
    Watchdog::Scope guard(*watchdog_, what);
    wait(what, stream_);
    started_ = false;
  }

 private:
  // Enqueues one collective (enqueue returns its ncclResult_t) and waits for it.
  template <class Enqueue>
  void run(const char* op, void* stream, Enqueue&& enqueue) {
    TraceRange trace(op);
    Watchdog::Scope guard(*watchdog_, op);
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : stream_;
    check(enqueue(s), op);
    wait(op, s);
  }

  // ncclSuccess and ncclInProgress (a non-blocking call under way) go on; anything else fails.
  void check(ncclResult_t rc, const char* what) {
    if (rc == ncclSuccess || rc == ncclInProgress) return;
    const char* detail = comm_ ? ncclGetLastError(comm_) : ncclGetLastError(nullptr);
    fail("rank {}: {} failed: {} ({})", rank(), what, ncclGetErrorString(rc), detail ? detail : "");
  }

  // Polls until the communicator is idle and (if s) the stream has drained, or the deadline.
  void wait(const char* op, cudaStream_t s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    for (;;) {
      ncclResult_t st = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &st), "ncclCommGetAsyncError");
      if (st != ncclSuccess && st != ncclInProgress) {
        const char* detail = ncclGetLastError(comm_);
        ncclCommAbort(comm_);
        comm_ = nullptr;
        fail("rank {}: {} failed: {} ({})", rank(), op, ncclGetErrorString(st), detail ? detail : "");
      }
      if (st == ncclSuccess) {
        if (!s) return;
        const cudaError_t q = cudaStreamQuery(s);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) OURO_CUDA_CHECK(q);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        // stderr first: the abort may take a while, and the launcher may kill us meanwhile.
        std::fprintf(stderr,
                     "[ouro] rank %d: %s did not complete within %.0f s (dist.timeout_s): another "
                     "rank died or hangs; aborting the NCCL communicator\n",
                     rank(), op, timeout_s_);
        ncclCommAbort(comm_);
        std::_Exit(3);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  std::unique_ptr<Communicator> host_;
  double timeout_s_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // the compute stream's progress, for the bucket that follows it
  bool started_ = false;         // buckets started and not yet waited for
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_comm(std::unique_ptr<Communicator> host, const RendezvousOptions& rv,
                                             double timeout_s) {
  return std::make_unique<NcclComm>(std::move(host), rv, timeout_s);
}

// Registered with make_device_comm (src/dist/device_comm.cpp) when this object is linked in.
static const bool registered = (register_device_comm(&make_nccl_comm), true);

}  // namespace ouro
