// Collectives over MPI on host buffers (the cpu backend's data parallelism). All-reduce is
// reduce-scatter + all-gather so that every element is reduced exactly once, by its owner, and
// every rank ends with the same bits regardless of the MPI library's algorithm choice.
#include <mpi.h>

#include <climits>
#include <cstring>
#include <exception>
#include <vector>

#include "dist/watchdog.h"
#include "ouro/comm.h"
#include "ouro/error.h"

namespace ouro {
namespace {

void check_mpi(int rc, const char* op) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("MPI {} failed: {}", op, std::string(msg, len));
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::Max ? MPI_MAX : MPI_SUM; }

template <typename T> MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

int to_int(size_t n, const char* what) {
  OURO_CHECK(n <= static_cast<size_t>(INT_MAX), "MPI {}: {} elements exceed MPI's int counts", what, n);
  return static_cast<int>(n);
}

}  // namespace

class MpiComm final : public Communicator {
 public:
  explicit MpiComm(double timeout_s) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
      owns_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    const DistEnv env = detect_dist_env();
    local_rank_ = env.local_rank;
    // Ranks started without an MPI launcher (RANK/WORLD_SIZE, srun without PMI) each see a
    // world of one: say so instead of training W unrelated copies.
    OURO_CHECK(env.world <= 1 || env.world == world_,
               "the launcher ({}) says {} ranks but MPI sees {} process(es): the host collectives "
               "run over MPI, so launch with mpirun (or srun --mpi=pmix)",
               env.launcher, env.world, world_);
    watchdog_ = std::make_unique<Watchdog>(rank_, timeout_s);
  }
  ~MpiComm() override {
    watchdog_.reset();
    // MPI_Finalize waits for every rank. Unwinding from an error that this rank alone hit, the
    // others may sit in a collective: finalizing would block here until their dist.timeout_s,
    // and the error (printed once unwinding ends) would never show. Leaving without it makes
    // the launcher end the whole job at once instead.
    if (owns_ && std::uncaught_exceptions() == 0) MPI_Finalize();
  }
  std::string name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int local_rank() const override { return local_rank_; }

  void all_reduce(float* buf, size_t n, ReduceOp op) override { all_reduce_t(buf, n, op); }
  void all_reduce(double* buf, size_t n, ReduceOp op) override { all_reduce_t(buf, n, op); }
  void reduce_scatter(float* buf, size_t n, ReduceOp op) override { reduce_scatter_t(buf, n, op); }
  void all_gather(float* buf, size_t n) override { all_gather_t(buf, n); }
  void all_gather(double* buf, size_t n) override { all_gather_t(buf, n); }

  void broadcast(void* buf, size_t bytes, int root) override {
    Watchdog::Scope s(*watchdog_, "broadcast");
    auto* p = static_cast<char*>(buf);
    for (size_t off = 0; off < bytes;) {  // MPI counts are ints: large buffers go in pieces
      size_t n = std::min<size_t>(bytes - off, 1u << 30);
      check_mpi(MPI_Bcast(p + off, static_cast<int>(n), MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
      off += n;
    }
  }
  void barrier() override {
    Watchdog::Scope s(*watchdog_, "barrier");
    check_mpi(MPI_Barrier(MPI_COMM_WORLD), "barrier");
  }

 private:
  template <typename T>
  void reduce_scatter_t(T* buf, size_t n, ReduceOp op) {
    Watchdog::Scope s(*watchdog_, "reduce-scatter");
    std::vector<int> counts(world_);
    for (int r = 0; r < world_; ++r) counts[r] = to_int(shard_of(n, world_, r).size(), "reduce-scatter");
    const ShardRange mine = shard_of(n, world_, rank_);
    std::vector<T> out(mine.size());
    check_mpi(MPI_Reduce_scatter(buf, out.data(), counts.data(), mpi_type<T>(), mpi_op(op), MPI_COMM_WORLD),
              "reduce-scatter");
    if (op == ReduceOp::Avg) {
      const T inv = T(1) / static_cast<T>(world_);
      for (auto& x : out) x *= inv;
    }
    if (!out.empty()) std::memcpy(buf + mine.begin, out.data(), out.size() * sizeof(T));
  }

  template <typename T>
  void all_gather_t(T* buf, size_t n) {
    Watchdog::Scope s(*watchdog_, "all-gather");
    std::vector<int> counts(world_), displs(world_);
    for (int r = 0; r < world_; ++r) {
      ShardRange sh = shard_of(n, world_, r);
      counts[r] = to_int(sh.size(), "all-gather");
      displs[r] = to_int(sh.begin, "all-gather");
    }
    check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts.data(), displs.data(),
                             mpi_type<T>(), MPI_COMM_WORLD),
              "all-gather");
  }

  template <typename T>
  void all_reduce_t(T* buf, size_t n, ReduceOp op) {
    reduce_scatter_t(buf, n, op);
    all_gather_t(buf, n);
  }

  int rank_ = 0, world_ = 1, local_rank_ = 0;
  bool owns_ = false;
  std::unique_ptr<Watchdog> watchdog_;
};

std::unique_ptr<Communicator> make_local_comm();

std::unique_ptr<Communicator> make_comm(const std::string& transport, double timeout_s) {
  if (transport == "local") return make_local_comm();
  if (transport == "mpi") return std::make_unique<MpiComm>(timeout_s);
  fail("unknown communicator '{}': use local or mpi", transport);
}

}  // namespace ouro
