// Collective communication between the ranks of a data-parallel run: one interface, one
// implementation per transport (local: a single process; mpi: host buffers over MPI, for the cpu
// backend; nccl: device buffers for the device backends, src/device/nccl_comm.cu, with its host
// collectives delegated to the mpi communicator it wraps, or, when the job has no MPI (dist.init =
// file/tcp/env: srun without PMI, torchrun-style launchers, nodes mpirun cannot span), served by
// NCCL itself through a device scratch buffer; see make_run_comm in src/dist/run_comm.h).
//
// Every collective leaves identical bits on every rank: host all-reduce is a reduce-scatter
// (each element summed once, by its owner) followed by an all-gather, so ranks never disagree by
// a rounding; NCCL's ring/tree all-reduce likewise computes each element once and forwards it,
// and the simt backend's NCCL-over-MPI sums in rank order (src/device/nccl_over_mpi.cu).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ouro/ops.h"

namespace ouro {

enum class ReduceOp { Sum, Avg, Max };

// Where this process sits in the job, read from the launcher's environment.
struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  // Ranks on this node: OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS, Slurm's
  // SLURM_TASKS_PER_NODE at SLURM_NODEID, LOCAL_WORLD_SIZE; else local_rank + 1 (at least).
  int local_world = 1;
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
// The shards of the device collectives (and of ZeRO-1 on the device backends): floor(n / world)
// elements per rank, the remainder (fewer than `world` elements) appended to the last rank's.
// NCCL's ReduceScatter and AllGather take one count for every rank, so equal shards let one
// such call move all but that tail, which a single Reduce/Broadcast to the last rank carries;
// shard_of's shards (sizes differing by one) would need one Reduce or Broadcast per rank.
ShardRange device_shard_of(size_t n, int world, int r);

// `count` elements starting at element `offset` of a buffer: one piece of a gradient bucket.
struct BufferSpan {
  size_t offset = 0, count = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string name() const = 0;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual int local_rank() const = 0;
  // False only for the launcher-ranks communicator (make_launcher_ranks_comm), which stands in
  // for the host transport until a device communicator wraps it and serves the host collectives.
  virtual bool has_host_collectives() const { return true; }

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
  // all_reduce over several disjoint spans of buf as ONE collective (packed into a contiguous
  // copy and back): a gradient bucket. Every element is reduced as all_reduce would reduce it
  // (on 2 ranks: the same a + b, then the same scaling), so bucketing leaves the bits unchanged.
  void all_reduce_spans(float* buf, const std::vector<BufferSpan>& spans, ReduceOp op);

  // ---- device memory (device backends; the others refuse) ----
  // buf: n elements of `dtype` (BF16 or F32) in device memory; stream: a cudaStream_t (nullptr:
  // the communicator's own stream). Each call returns once the collective has completed (the
  // communicator waits on it under dist.timeout_s), so the buffer is ready for any stream; the
  // caller must have finished writing buf (e.g. Ops::synchronize) before the call, or pass the
  // stream that writes it. While `stream` is captured into a CUDA graph (train.cuda_graph) the
  // call only enqueues the collective (a node of the graph; the host cannot wait for it) and
  // returns: it completes when the graph runs, and whoever reads buf waits for that stream.
  // In place like the host versions, over device_shard_of's shards: reduce_scatter leaves rank
  // r's device_shard_of(n, world, r) reduced (the rest of buf is unspecified); all_gather spreads
  // every rank's device_shard_of slice.
  virtual bool has_device_collectives() const { return false; }
  virtual void device_all_reduce(void* buf, size_t n, DType dtype, ReduceOp op, void* stream);
  virtual void device_reduce_scatter(void* buf, size_t n, DType dtype, ReduceOp op, void* stream);
  virtual void device_all_gather(void* buf, size_t n, DType dtype, void* stream);
  virtual void device_broadcast(void* buf, size_t n, DType dtype, int root, void* stream);

  // Overlapped gradient averaging. Starts the all-reduce of several disjoint spans of buf (a
  // gradient bucket) as one launch (one NCCL group) on the communicator's own stream, ordered
  // after everything enqueued so far on `after` (the compute stream, via an event), and returns
  // without waiting, so the caller goes on enqueueing the backward. buf must not be written
  // inside the spans until device_wait_started returns. NCCL-over-MPI reduces each element the
  // same way whatever the span (rank order, one rounding), so buckets leave the bits of one
  // all-reduce; real NCCL may pick another algorithm or chunking for another message size, so
  // there a bucketed step can differ from one exchange by roundings (the ranks still agree).
  virtual void device_all_reduce_spans_start(void* buf, const std::vector<BufferSpan>& spans, DType dtype,
                                             ReduceOp op, void* after);
  // Orders `stream` (a cudaStream_t: the compute stream, which reads the averages next) after
  // every collective started by device_all_reduce_spans_start. Outside a graph the host waits
  // for them (within dist.timeout_s), and afterwards their results are ready for any stream.
  // While `stream` is captured into a CUDA graph (train.cuda_graph) it waits for them through an
  // event instead, a dependency the graph holds, and the host waits nowhere.
  virtual void device_wait_started(void* stream);
};

// "local" (world 1) or "mpi". timeout_s: a collective that does not finish in time (a peer
// died or hung) aborts the whole job with a message naming this rank and the operation.
std::unique_ptr<Communicator> make_comm(const std::string& transport, double timeout_s);
// No host transport at all: rank, world and local rank from the launcher's environment
// (detect_dist_env), has_host_collectives() false, and every collective fails naming itself.
// make_device_comm wraps it into a device communicator that serves the host collectives over
// the device, so a job needs no MPI (dist.init = file, tcp or env).
std::unique_ptr<Communicator> make_launcher_ranks_comm();

// ---- the device communicator (NCCL on cuda, NCCL-over-MPI on simt) ----

// How the ranks agree on NCCL's unique id (dist.init; src/dist/rendezvous.h).
// How rank 0's bootstrap bytes reach the other ranks (dist.init resolved: src/dist/rendezvous.h).
enum class RendezvousMethod { mpi, file, tcp };
constexpr std::array<std::string_view, 3> choice_names(RendezvousMethod) { return {"mpi", "file", "tcp"}; }

struct RendezvousOptions {
  RendezvousMethod method = RendezvousMethod::mpi;
  std::string path;            // file: a path every rank can read (a shared file system)
  std::string addr;            // tcp: host:port where rank 0 listens
  double timeout_s = 300;
};

// Wraps `host` with device collectives for the backend linked into this binary; binds this
// rank's GPU by local rank first. `host` keeps serving the host collectives, unless it is the
// launcher-ranks communicator (has_host_collectives() false): then the device communicator
// stages host buffers through device memory and runs them as NCCL collectives too (rv must not
// be mpi then). Fails clearly when the binary has no device backend.
std::unique_ptr<Communicator> make_device_comm(std::unique_ptr<Communicator> host,
                                               const RendezvousOptions& rv, double timeout_s);
// Called by the device half's registration object (src/device/nccl_comm.cu).
using DeviceCommFactory = std::unique_ptr<Communicator> (*)(std::unique_ptr<Communicator> host,
                                                            const RendezvousOptions& rv,
                                                            double timeout_s);
void register_device_comm(DeviceCommFactory factory);

}  // namespace ouro
