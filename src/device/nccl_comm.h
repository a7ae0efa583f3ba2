// The device communicator: NCCL collectives on device buffers (cuda: the real NCCL; simt: the
// NCCL API served over MPI on host memory, src/device/nccl_over_mpi.cu), wrapped around a host
// communicator that keeps serving the host collectives (losses, config checks, checkpoints), or,
// when that one only knows the ranks (a job without MPI), serving them over NCCL itself.
// Linking this object registers it with make_device_comm (include/ouro/comm.h).
#pragma once
#include <memory>

#include "ouro/comm.h"

namespace ouro {

// Binds the GPU local_rank % device count, exchanges NCCL's unique id by rv (mpi, file or tcp)
// and creates the NCCL communicator. Every wait (init and collectives) is bounded by timeout_s:
// past it the communicator is aborted and the process exits non-zero naming its rank.
std::unique_ptr<Communicator> make_nccl_comm(std::unique_ptr<Communicator> host,
                                             const RendezvousOptions& rv, double timeout_s);

}  // namespace ouro
