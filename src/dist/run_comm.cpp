#include "dist/run_comm.h"

#include "common/log.h"
#include "dist/rendezvous.h"

namespace ouro {

std::unique_ptr<Communicator> make_run_host_comm(const DistConfig& dist, Device device) {
  const DistEnv env = detect_dist_env();
  if (env.world <= 1) return make_comm("local", dist.timeout_s);
  if (device == Device::cpu) {
    // "auto" is the default and means nothing here; a method the user chose deserves a word.
    if (dist.init != DistInit::auto_ && dist.init != DistInit::mpi && env.rank == 0)
      logger()->warn("dist.init = {} only affects device backends (it carries NCCL's id): run.device = cpu "
                     "exchanges over MPI, so launch every rank with mpirun (or srun --mpi=pmix)",
                     name_of(dist.init));
    return make_comm("mpi", dist.timeout_s);
  }
  // Resolved here too, so that dist.init = env without its variables fails before MPI starts.
  if (resolve_rendezvous(dist).method == RendezvousMethod::mpi) return make_comm("mpi", dist.timeout_s);
  return make_launcher_ranks_comm();
}

std::unique_ptr<Communicator> add_run_device_comm(std::unique_ptr<Communicator> host, const DistConfig& dist,
                                                  Device device) {
  if (host->world() <= 1 || device == Device::cpu) return host;
  return make_device_comm(std::move(host), resolve_rendezvous(dist), dist.timeout_s);
}

std::unique_ptr<Communicator> make_run_comm(const DistConfig& dist, Device device) {
  return add_run_device_comm(make_run_host_comm(dist, device), dist, device);
}

}  // namespace ouro
