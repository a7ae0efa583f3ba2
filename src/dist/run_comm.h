// The communicator of a run, built in one place for `ouro train`, `bench train` and `bench comm`
// from the run's DistConfig (validated with the config) and its run.device.
//
//   one process                      local
//   run.device = cpu                 mpi (the cpu backend's collectives are MPI's; dist.init is
//                                    unused, and a warning says so when it was set to file/tcp/env)
//   device backend, dist.init = mpi  the device communicator (NCCL; NCCL-over-MPI on simt) around
//                                    mpi, which serves the host collectives
//   device backend, file/tcp/env     the device communicator around the launcher-ranks
//                                    communicator: no MPI at all, the host collectives (losses,
//                                    config check, evaluation, checkpoint gathers) run over NCCL too
//
// Two halves, so that a caller can check the ranks' agreement (the trainer's config check) on
// the MPI communicator before NCCL is initialised; without MPI that check can only follow.
#pragma once
#include <memory>

#include "ouro/backend.h"
#include "ouro/comm.h"
#include "ouro/config_dist.h"

namespace ouro {

// The first half: local, mpi, or the launcher-ranks communicator whose host collectives the
// device communicator will serve (has_host_collectives() false until add_run_device_comm wraps it).
std::unique_ptr<Communicator> make_run_host_comm(const DistConfig& dist, Device device);
// The second half: wraps `host` into the device communicator when the run has several ranks on
// a device backend; otherwise returns it unchanged.
std::unique_ptr<Communicator> add_run_device_comm(std::unique_ptr<Communicator> host, const DistConfig& dist,
                                                  Device device);
// Both halves.
std::unique_ptr<Communicator> make_run_comm(const DistConfig& dist, Device device);

}  // namespace ouro
