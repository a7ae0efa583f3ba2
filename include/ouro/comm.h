// Collective communication between the ranks of a data-parallel run: one interface, one
// implementation per transport (local: a single process; mpi: host buffers over MPI, for the cpu
// backend; NCCL for the device backends arrives with the CUDA kernels).
//
// Every collective is deterministic and leaves identical bits on every rank: all-reduce is a
// reduce-scatter (each element summed once, by its owner, in rank order) followed by an
// all-gather, so ranks never disagree by a rounding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ouro/ops.h"

namespace ouro {

enum class ReduceOp { Sum, Avg, Max };

// Where this process sits in the job, read from the launcher's environment.
struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string launcher = "none";  // openmpi, mpich, slurm, env, none
};
// OpenMPI (OMPI_COMM_WORLD_*), MPICH/Hydra (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID), Slurm
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID), or plain RANK / WORLD_SIZE / LOCAL_RANK.
DistEnv detect_dist_env();

// Element range [begin, end) that rank r owns when n elements are split over `world` ranks:
// contiguous, sizes differing by at most one, earlier ranks larger.
struct ShardRange {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};
ShardRange shard_of(size_t n, int world, int r);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual int local_rank() const = 0;

  // In place over n fp32 elements of host memory.
  virtual void all_reduce(float* buf, size_t n, ReduceOp op) = 0;
  virtual void all_reduce(double* buf, size_t n, ReduceOp op) = 0;
  // Reduces buf (n elements, every rank) and leaves rank r's shard_of(n, world, r) reduced in
  // place (the rest of buf is unspecified).
  virtual void reduce_scatter(float* buf, size_t n, ReduceOp op) = 0;
  // Each rank contributes its shard_of(n, world, rank) of buf; afterwards every rank holds all.
  virtual void all_gather(float* buf, size_t n) = 0;
  virtual void all_gather(double* buf, size_t n) = 0;
  virtual void broadcast(void* buf, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
};

// "local" (world 1) or "mpi". timeout_s: a collective that does not finish in time (a peer
// died or hung) aborts the whole job with a message naming this rank and the operation.
std::unique_ptr<Communicator> make_comm(const std::string& transport, double timeout_s);
// "mpi" when the environment says this process is one of several, else "local".
std::string default_transport();

}  // namespace ouro
