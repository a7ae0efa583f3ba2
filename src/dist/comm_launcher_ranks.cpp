// The launcher-ranks communicator of a job without MPI (dist.init = file, tcp or env on a device
// backend): it knows where this process sits, from the launcher's environment, and nothing else.
// The device communicator that wraps it (src/device/nccl_comm.cu) serves the host collectives
// over NCCL; a collective reaching this communicator itself is a bug in the caller's order (a host
// collective before the device communicator exists), so it fails naming the operation.
#include "ouro/comm.h"
#include "ouro/error.h"

namespace ouro {
namespace {

class LauncherRanksComm final : public Communicator {
 public:
  LauncherRanksComm() : env_(detect_dist_env()) {}
  std::string name() const override { return "launcher ranks (from " + env_.launcher + ")"; }
  int rank() const override { return env_.rank; }
  int world() const override { return env_.world; }
  int local_rank() const override { return env_.local_rank; }
  bool has_host_collectives() const override { return false; }

  void all_reduce(float*, size_t, ReduceOp) override { refuse("all-reduce"); }
  void all_reduce(double*, size_t, ReduceOp) override { refuse("all-reduce"); }
  void reduce_scatter(float*, size_t, ReduceOp) override { refuse("reduce-scatter"); }
  void all_gather(float*, size_t) override { refuse("all-gather"); }
  void all_gather(double*, size_t) override { refuse("all-gather"); }
  void broadcast(void*, size_t, int) override { refuse("broadcast"); }
  void barrier() override { refuse("barrier"); }

 private:
  [[noreturn]] void refuse(const char* op) const {
    fail("rank {}: host {} before the device communicator exists: without MPI (dist.init = file, "
         "tcp or env) the host collectives run over the device communicator, so it must be "
         "created first (make_device_comm)",
         env_.rank, op);
  }

  DistEnv env_;
};

}  // namespace

std::unique_ptr<Communicator> make_launcher_ranks_comm() { return std::make_unique<LauncherRanksComm>(); }

}  // namespace ouro
