// The rendezvous that gives every rank rank 0's bootstrap bytes (NCCL's unique id) before any
// device communicator exists (dist.init):
//   mpi   MPI_Bcast over the host communicator (mpirun, srun with PMIx)
//   file  rank 0 writes dist.init_path (atomically: a temporary file renamed into place), the
//         others poll it; for clusters with a shared file system and no MPI bootstrap
//   tcp   rank 0 listens on dist.init_addr (host:port), the others connect and receive
//   env   tcp at $OURO_INIT_ADDR, else $MASTER_ADDR:$MASTER_PORT (torchrun's convention)
// Every wait is bounded by dist.timeout_s and fails naming the rank, the method and the peer.
#pragma once
#include <string>

#include "ouro/comm.h"
#include "ouro/config_dist.h"

namespace ouro {

// dist.init resolved for this process: auto becomes mpi under mpirun (OpenMPI, MPICH), env
// when $OURO_INIT_ADDR or $MASTER_ADDR is set, else mpi; env becomes tcp with its address (which
// is checked here: it comes from the environment, not from the validated config).
RendezvousOptions resolve_rendezvous(const DistConfig& dist);

// Rank 0 passes `bytes`; every rank returns rank 0's bytes. `host` carries method mpi.
std::string rendezvous_bytes(const RendezvousOptions& rv, int rank, int world,
                             const std::string& bytes, Communicator& host);
// Called once every rank has used the bytes (after the collective init): rank 0 removes the
// file of method file so that the next job cannot read a stale id.
void rendezvous_finished(const RendezvousOptions& rv, int rank);

// host:port addresses: split_host_port / parse_host_port (ouro/config_dist.h).

}  // namespace ouro
