#include "dist/run_comm.h"

#include "common/log.h"
#include "dist/rendezvous.h"

namespace ouro {
namespace {

bool on_device(const RunCommOptions& o) { return !o.device.empty() && o.device != "cpu"; }

RendezvousOptions rendezvous_of(const RunCommOptions& o) {
  return resolve_rendezvous(o.init, o.init_path, o.init_addr, o.timeout_s);
}

}  // namespace

RunCommOptions run_comm_options(const DistSection& dist, const std::string& device) {
  RunCommOptions o;
  o.device = device;
  o.init = dist.init;
  o.init_path = dist.init_path;
  o.init_addr = dist.init_addr;
  o.timeout_s = dist.timeout_s;
  return o;
}

std::unique_ptr<Communicator> make_run_host_comm(const RunCommOptions& o) {
  const DistEnv env = detect_dist_env();
  if (env.world <= 1) return make_comm("local", o.timeout_s);
  if (!on_device(o)) {
    // "auto" is the default and means nothing here; a method the user chose deserves a word.
    if (o.init != "auto" && o.init != "mpi" && env.rank == 0)
      logger()->warn("dist.init = {} only affects device backends (it carries NCCL's id): run.device = cpu "
                     "exchanges over MPI, so launch every rank with mpirun (or srun --mpi=pmix)",
                     o.init);
    return make_comm("mpi", o.timeout_s);
  }
  // Resolved here too, so that a bad dist.init fails before MPI starts.
  if (rendezvous_of(o).method == "mpi") return make_comm("mpi", o.timeout_s);
  return make_launcher_ranks_comm();
}

std::unique_ptr<Communicator> add_run_device_comm(std::unique_ptr<Communicator> host, const RunCommOptions& o) {
  if (host->world() <= 1 || !on_device(o)) return host;
  return make_device_comm(std::move(host), rendezvous_of(o), o.timeout_s);
}

std::unique_ptr<Communicator> make_run_comm(const RunCommOptions& o) {
  return add_run_device_comm(make_run_host_comm(o), o);
}

}  // namespace ouro
