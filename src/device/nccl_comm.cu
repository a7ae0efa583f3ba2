// NcclComm: see nccl_comm.h. Compiled twice like every src/device/*.cu: by nvcc against the real
// NCCL (cuda) and by g++ against nccl_over_mpi.cu (simt), so CI runs this exact code multi-rank.
//
// The communicator is non-blocking (ncclConfig_t::blocking = 0): calls return at once and this
// code polls ncclCommGetAsyncError and the stream until done or dist.timeout_s has passed, then
// aborts the communicator (which frees a rank stuck in a kernel waiting for a dead peer) and
// exits naming the rank. A Watchdog a little later is the backstop for a call that blocks on the
// host (NCCL-over-MPI's MPI calls block). A collective captured into a CUDA graph (a data-parallel
// training step under train.cuda_graph) is waited for by nobody here: host nodes around it start
// and stop a second Watchdog at each launch of the graph, so dist.timeout_s bounds it too.
//
// Two communicators share NcclComm (NCCL, its polling, the device collectives) and differ in the
// host collectives, chosen once by make_nccl_comm: NcclPlusHostComm passes them to the wrapped
// host communicator (MPI); NcclOnlyComm, for a job without MPI (dist.init = file/tcp/env, the
// wrapped communicator only knows the ranks), runs them over NCCL on a device scratch buffer
// (upload, collective, download) under the same polling and timeout.
#include <ouro/cuda.h>

#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
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

// A scratch buffer grown past this for one large host collective (a checkpoint's gather) is
// released after it instead of pinning that much device memory for the rest of the run.
constexpr size_t kScratchKeep = size_t(64) << 20;

// The stream is being captured into a CUDA graph (the training step's, train.cuda_graph): work
// on it only becomes graph nodes, so nothing may wait for it (querying it would end the capture).
bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  return s && cudaStreamIsCapturing(s, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone;
}

ncclDataType_t nccl_type(DType d) { return d == DType::BF16 ? ncclBfloat16 : ncclFloat32; }

template <typename T> ncclDataType_t nccl_host_type();
template <> ncclDataType_t nccl_host_type<float>() { return ncclFloat32; }
template <> ncclDataType_t nccl_host_type<double>() { return ncclFloat64; }

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

// The NCCL communicator and the device collectives; the host collectives are the subclasses'.
class NcclComm : public Communicator {
 public:
  NcclComm(std::unique_ptr<Communicator> host, const RendezvousOptions& rv, double timeout_s)
      : host_(std::move(host)), timeout_s_(timeout_s) {
    const int rank = host_->rank(), world = host_->world();
    int devices = 0;
    OURO_CHECK(cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0,
               "rank {}: no CUDA device for the {} communicator", rank, kName);
    // One process per GPU: local rank r drives device r. Two ranks on one GPU are refused by
    // NCCL at init ("Duplicate GPU detected") after the rendezvous: say it here, at start.
    const int on_node = std::max(detect_dist_env().local_world, host_->local_rank() + 1);
    OURO_CHECK(on_node <= devices,
               "rank {}: {} ranks on this node but {} CUDA device(s): the {} communicator needs one GPU "
               "per rank; start at most {} rank(s) per node (mpirun -npernode {})",
               rank, on_node, devices, kName, devices, devices);
    device_ = host_->local_rank();
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
    OURO_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }

  ~NcclComm() override {
    close();
    if (ready_) cudaEventDestroy(ready_);
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
    watchdog_.reset();
  }

  int rank() const override { return host_->rank(); }
  int world() const override { return host_->world(); }
  int local_rank() const override { return host_->local_rank(); }

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
  // While `after` is captured into a graph, the event makes the communicator's stream join that
  // capture (CUDA's fork): the bucket's collectives become nodes that depend on the backward's
  // work so far, and device_wait_started joins them back.
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
    const bool captured = capturing(stream_);  // it joined the compute stream's capture above
    if (captured) watch_in_graph(stream_, what);
    ncclResult_t rc = ncclGroupStart();
    for (size_t i = 0; rc == ncclSuccess && i < spans.size(); ++i) {
      void* p = b + spans[i].offset * esz;
      rc = ncclAllReduce(p, p, spans[i].count, nccl_type(dt), nccl_op(op), comm_, stream_);
    }
    const ncclResult_t end = ncclGroupEnd();
    check(rc != ncclSuccess ? rc : end, what);
    wait(what, nullptr);
    if (captured) unwatch_in_graph(stream_);
    started_ = true;
  }

  void device_wait_started(void* stream) override {
    if (!started_) return;
    if (const auto s = static_cast<cudaStream_t>(stream); capturing(s)) {
      // The join of the fork above: the compute stream's next node depends on every bucket's.
      OURO_CUDA_CHECK(cudaEventRecord(done_, stream_));
      OURO_CUDA_CHECK(cudaStreamWaitEvent(s, done_, 0));
      started_ = false;
      return;
    }
    const char* what = "bucketed device all-reduce (completion)";
    Watchdog::Scope guard(*watchdog_, what);
    wait(what, stream_);
    started_ = false;
  }

 protected:
  // Unwinding from an error on this rank, peers may still be inside a collective with us:
  // abort (which never waits for them) rather than destroy (which may). Before any buffer a
  // collective may use is freed: a kernel waiting for a dead peer would block the free.
  void close() {
    if (comm_) std::uncaught_exceptions() ? ncclCommAbort(comm_) : ncclCommDestroy(comm_);
    comm_ = nullptr;
  }

  // Enqueues one collective (enqueue returns its ncclResult_t) and waits for it; on a stream
  // being captured, for the enqueue only (the collective is a node of the graph).
  template <class Enqueue>
  void run(const char* op, void* stream, Enqueue&& enqueue) {
    TraceRange trace(op);
    Watchdog::Scope guard(*watchdog_, op);
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : stream_;
    const bool captured = capturing(s);
    if (captured) watch_in_graph(s, op);
    check(enqueue(s), op);
    wait(op, captured ? nullptr : s);
    if (captured) unwatch_in_graph(s);
  }

  // What a begin node needs; lives as long as the communicator (graphs are replayed while it does).
  struct GraphWatch {
    Watchdog* watchdog;
    const char* op;
    static void CUDART_CB begin(void* p) {
      auto* w = static_cast<GraphWatch*>(p);
      w->watchdog->begin(w->op);
    }
    static void CUDART_CB end(void* p) { static_cast<Watchdog*>(p)->end(); }
  };
  // Host nodes before and after a collective captured on s: graph_watchdog_ times it at each
  // launch (past dist.timeout_s the process ends naming this rank and `op`), as wait() times the
  // collectives outside graphs. None with dist.timeout_s = 0 (no limit).
  void watch_in_graph(cudaStream_t s, const char* op) {
    if (timeout_s_ <= 0) return;
    if (!graph_watchdog_) graph_watchdog_ = std::make_unique<Watchdog>(rank(), timeout_s_);
    auto& w = graph_watches_[op];  // op: a string literal; one entry per kind of collective
    if (!w) w = std::make_unique<GraphWatch>(GraphWatch{graph_watchdog_.get(), op});
    OURO_CUDA_CHECK(cudaLaunchHostFunc(s, &GraphWatch::begin, w.get()));
  }
  void unwatch_in_graph(cudaStream_t s) {
    if (timeout_s_ <= 0) return;
    OURO_CUDA_CHECK(cudaLaunchHostFunc(s, &GraphWatch::end, graph_watchdog_.get()));
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
  cudaEvent_t done_ = nullptr;   // captured steps: the buckets' end, which the compute stream waits for
  bool started_ = false;         // buckets started and not yet waited for
  std::unique_ptr<Watchdog> watchdog_;
  // Captured collectives: their own watchdog (the host may be inside watchdog_'s scope meanwhile).
  std::unique_ptr<Watchdog> graph_watchdog_;
  std::map<const char*, std::unique_ptr<GraphWatch>> graph_watches_;
};

// NCCL for the device buffers, the wrapped host communicator (MPI) for the host ones.
class NcclPlusHostComm final : public NcclComm {
 public:
  using NcclComm::NcclComm;
  std::string name() const override { return std::string(kName) + "+" + host_->name(); }
  void all_reduce(float* b, size_t n, ReduceOp op) override { host_->all_reduce(b, n, op); }
  void all_reduce(double* b, size_t n, ReduceOp op) override { host_->all_reduce(b, n, op); }
  void reduce_scatter(float* b, size_t n, ReduceOp op) override { host_->reduce_scatter(b, n, op); }
  void all_gather(float* b, size_t n) override { host_->all_gather(b, n); }
  void all_gather(double* b, size_t n) override { host_->all_gather(b, n); }
  void broadcast(void* b, size_t bytes, int root) override { host_->broadcast(b, bytes, root); }
  void barrier() override { host_->barrier(); }
};

// NCCL for everything: the wrapped communicator only knows the ranks (a job without MPI), so the
// host collectives run over NCCL through a device scratch buffer.
class NcclOnlyComm final : public NcclComm {
 public:
  using NcclComm::NcclComm;
  ~NcclOnlyComm() override {
    close();
    if (scratch_) cudaFree(scratch_);
  }
  std::string name() const override { return std::string(kName) + " (host collectives over " + kName + ")"; }
  void all_reduce(float* b, size_t n, ReduceOp op) override { host_all_reduce(b, n, op); }
  void all_reduce(double* b, size_t n, ReduceOp op) override { host_all_reduce(b, n, op); }
  void reduce_scatter(float* b, size_t n, ReduceOp op) override { host_reduce_scatter(b, n, op); }
  void all_gather(float* b, size_t n) override { host_all_gather(b, n); }
  void all_gather(double* b, size_t n) override { host_all_gather(b, n); }
  void broadcast(void* b, size_t bytes, int root) override { host_broadcast(b, bytes, root); }
  void barrier() override { host_barrier(); }

 private:
  // The host collectives compute what MpiComm computes: each element reduced once and the result copied to
  // every rank (NCCL's all-reduce and reduce; NCCL-over-MPI sums in rank order), Avg as the sum
  // times 1/world on the host (MpiComm's scaling, so the bits match it on two ranks, where the
  // sum a + b is the same in any order), and shard_of's shards for reduce-scatter / all-gather.

  template <typename T>
  void host_all_reduce(T* buf, size_t n, ReduceOp op) {
    if (n == 0) return;  // every rank has the same n, so all skip alike
    const size_t bytes = n * sizeof(T);
    over_device("host all-reduce", buf, bytes, true, 0, bytes, [&](char* d) {
      return ncclAllReduce(d, d, n, nccl_host_type<T>(), op == ReduceOp::Max ? ncclMax : ncclSum, comm_, stream_);
    });
    if (op == ReduceOp::Avg) scale(buf, n, T(1) / static_cast<T>(world()));
  }

  // Only rank r's shard is specified afterwards, so one Reduce to each shard's owner (a group,
  // every rank issuing the same calls) moves half an all-reduce's data.
  void host_reduce_scatter(float* buf, size_t n, ReduceOp op) {
    if (n == 0) return;
    const int W = world();
    const ShardRange mine = shard_of(n, W, rank());
    over_device("host reduce-scatter", buf, n * sizeof(float), true, mine.begin * sizeof(float),
                mine.size() * sizeof(float), [&](char* d) {
                  float* f = reinterpret_cast<float*>(d);
                  const ncclRedOp_t rop = op == ReduceOp::Max ? ncclMax : ncclSum;
                  ncclResult_t rc = ncclGroupStart();
                  for (int r = 0; rc == ncclSuccess && r < W; ++r) {
                    const ShardRange s = shard_of(n, W, r);
                    if (s.size() > 0)
                      rc = ncclReduce(f + s.begin, f + s.begin, s.size(), ncclFloat32, rop, r, comm_, stream_);
                  }
                  const ncclResult_t end = ncclGroupEnd();
                  return rc != ncclSuccess ? rc : end;
                });
    if (op == ReduceOp::Avg) scale(buf + mine.begin, mine.size(), 1.0f / static_cast<float>(W));
  }

  // shard_of's shards differ in size by one, which NCCL's AllGather (one count for all) cannot
  // express: each shard is broadcast from its owner instead, all in one group. Bytes, so one
  // code serves float and double.
  template <typename T>
  void host_all_gather(T* buf, size_t n) {
    if (n == 0) return;
    const int W = world();
    over_device("host all-gather", buf, n * sizeof(T), true, 0, n * sizeof(T), [&](char* d) {
      ncclResult_t rc = ncclGroupStart();
      for (int r = 0; rc == ncclSuccess && r < W; ++r) {
        const ShardRange s = shard_of(n, W, r);
        char* p = d + s.begin * sizeof(T);
        if (s.size() > 0) rc = ncclBroadcast(p, p, s.size() * sizeof(T), ncclUint8, r, comm_, stream_);
      }
      const ncclResult_t end = ncclGroupEnd();
      return rc != ncclSuccess ? rc : end;
    });
  }

  void host_broadcast(void* buf, size_t bytes, int root) {
    OURO_CHECK(root >= 0 && root < world(), "host broadcast: root {} outside {} ranks", root, world());
    if (bytes == 0) return;
    const bool me = rank() == root;  // only the root's bytes travel; only the others take them
    over_device("host broadcast", buf, bytes, me, 0, me ? 0 : bytes, [&](char* d) {
      return ncclBroadcast(d, d, bytes, ncclUint8, root, comm_, stream_);
    });
  }

  // A one-element all-reduce: it completes on no rank before every rank has joined it.
  void host_barrier() {
    float one = 1.0f;
    over_device("barrier", &one, sizeof one, true, 0, 0, [&](char* d) {
      return ncclAllReduce(d, d, 1, ncclFloat32, ncclSum, comm_, stream_);
    });
  }

  template <typename T>
  static void scale(T* p, size_t n, T by) {
    for (size_t i = 0; i < n; ++i) p[i] *= by;
  }

  // Uploads `bytes` of host (when `upload`), runs enqueue(scratch) on the communicator's stream,
  // waits for it as every collective is waited for, and downloads [back_off, back_off + back_bytes).
  template <class Enqueue>
  void over_device(const char* op, void* host, size_t bytes, bool upload, size_t back_off, size_t back_bytes,
                   Enqueue&& enqueue) {
    TraceRange trace(op);
    Watchdog::Scope guard(*watchdog_, op);
    char* d = scratch(std::max<size_t>(bytes, sizeof(double)));
    if (upload && bytes) OURO_CUDA_CHECK(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, stream_));
    check(enqueue(d), op);
    wait(op, stream_);
    // Downloaded only once the collective is known complete: a copy to pageable host memory
    // blocks the host until the stream reaches it, which would bypass the timeout above.
    if (back_bytes) {
      OURO_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(host) + back_off, d + back_off, back_bytes,
                                      cudaMemcpyDeviceToHost, stream_));
      OURO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    if (scratch_bytes_ > kScratchKeep) release_scratch();
  }

  // The device buffer of the host collectives: grown on demand and kept (every step's loss
  // reduction would otherwise allocate), except past kScratchKeep.
  char* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      release_scratch();
      void* p = nullptr;
      OURO_CUDA_CHECK(cudaMalloc(&p, bytes));
      scratch_ = static_cast<char*>(p);
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }
  void release_scratch() {
    if (scratch_) OURO_CUDA_CHECK(cudaFree(scratch_));
    scratch_ = nullptr;
    scratch_bytes_ = 0;
  }

  char* scratch_ = nullptr;  // device staging buffer of the host collectives
  size_t scratch_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_comm(std::unique_ptr<Communicator> host, const RendezvousOptions& rv,
                                             double timeout_s) {
  if (host->has_host_collectives()) return std::make_unique<NcclPlusHostComm>(std::move(host), rv, timeout_s);
  OURO_CHECK(rv.method != RendezvousMethod::mpi,
             "rank {}: dist.init = mpi needs an MPI host communicator; without MPI use file, tcp or env", host->rank());
  return std::make_unique<NcclOnlyComm>(std::move(host), rv, timeout_s);
}

// Registered with make_device_comm (src/dist/device_comm.cpp) when this object is linked in.
static const bool registered = (register_device_comm(&make_nccl_comm), true);

}  // namespace ouro
