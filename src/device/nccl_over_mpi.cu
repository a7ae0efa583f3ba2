// NCCL over MPI: the subset of the NCCL API that nccl_comm.cu calls, served on host memory by
// MPI, so that the simt backend (whose "device" memory is host memory and whose kernels finish
// before their launch returns) runs the very same communicator code multi-rank in CI.
//
// Only the simt half holds it: the cuda half of this file is empty and links the real NCCL.
//
// Determinism: every reduction sums the ranks' contributions in rank order, in fp32 (bf16 inputs
// are widened, summed in fp32 and rounded once to nearest-even at the end; float64 in double,
// for the host collectives that run over the device communicator), and each element is
// reduced by exactly one rank and then copied to the others (reduce-scatter + all-gather), so
// every rank ends with identical bits whatever MPI's own algorithms do.
//
// Calls run to completion before they return (MPI's blocking collectives; the emulator's stream
// is synchronised first), so grouped calls need no deferral: every rank issues the same sequence.
// Under OURO_SIMT_ASYNC they are queued on their stream instead and run, in issue order, when a
// synchronising call needs them (ouro/simt/async.h).
// Limits: float32/bfloat16/float64 reductions (any type for broadcast and all-gather), 2^31-1
// bytes per rank per call (MPI's int counts), ranks = MPI_COMM_WORLD's processes (mpirun
// launches them).
//
// MPI itself: a job without an MPI host communicator (dist.init = file/tcp/env) reaches
// ncclCommInitRank with MPI not yet initialised; the shim then initialises it and finalises it
// at exit, unless a communicator was aborted (a failing rank must not wait in MPI_Finalize for
// peers that may sit in a collective; leaving without it makes mpirun end the job).
#if defined(OURO_SIMT)

#include <ouro/cuda.h>

#include <mpi.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/hash.h"
#include "ouro/comm.h"

struct ncclComm {
  MPI_Comm mpi = MPI_COMM_NULL;
  int rank = 0, nranks = 1;
  ncclResult_t async_error = ncclSuccess;  // the first failure of a queued collective (OURO_SIMT_ASYNC)
};

namespace {

thread_local std::string t_last_error;

std::atomic<bool> g_aborted{false};  // a communicator was aborted: leave without MPI_Finalize

void finalize_owned_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && !g_aborted) MPI_Finalize();
}

ncclResult_t error(ncclResult_t rc, std::string msg) {
  t_last_error = "NCCL-over-MPI: " + std::move(msg);
  return rc;
}

ncclResult_t mpi_error(int rc, const char* what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return error(ncclSystemError, std::string(what) + ": " + std::string(msg, len));
}

#define SHIM_MPI(call)                                          \
  do {                                                          \
    int shim_rc_ = (call);                                      \
    if (shim_rc_ != MPI_SUCCESS) return mpi_error(shim_rc_, #call); \
  } while (0)

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}

float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t float_to_bf16(float f) {  // round to nearest even; NaN stays a (quiet) NaN
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float load(const char* p, size_t i, ncclDataType_t t) {
  if (t == ncclBfloat16) {
    uint16_t b;
    std::memcpy(&b, p + 2 * i, 2);
    return bf16_to_float(b);
  }
  float f;
  std::memcpy(&f, p + 4 * i, 4);
  return f;
}

void store(char* p, size_t i, float v, ncclDataType_t t) {
  if (t == ncclBfloat16) {
    uint16_t b = float_to_bf16(v);
    std::memcpy(p + 2 * i, &b, 2);
  } else {
    std::memcpy(p + 4 * i, &v, 4);
  }
}

ncclResult_t check_reduction(ncclDataType_t t, ncclRedOp_t op) {
  if (t != ncclFloat32 && t != ncclBfloat16 && t != ncclFloat64)
    return error(ncclInvalidArgument, "reductions support float32, bfloat16 and float64 only");
  if (op != ncclSum && op != ncclAvg && op != ncclMax && op != ncclMin)
    return error(ncclInvalidArgument, "reductions support sum, avg, max and min only");
  return ncclSuccess;
}

ncclResult_t check_comm(ncclComm_t comm) {
  if (!comm || comm->mpi == MPI_COMM_NULL) return error(ncclInvalidArgument, "null or destroyed communicator");
  return ncclSuccess;
}

ncclResult_t to_int(size_t bytes, int& out) {
  if (bytes > static_cast<size_t>(INT_MAX)) return error(ncclInvalidArgument, "over 2^31-1 bytes per rank");
  out = static_cast<int>(bytes);
  return ncclSuccess;
}

// The stream's work must be done before the buffers are read (the emulator's kernels already
// are; the call keeps the contract visible).
ncclResult_t sync(cudaStream_t s) {
  return cudaStreamSynchronize(s) == cudaSuccess ? ncclSuccess
                                                 : error(ncclUnhandledCudaError, "stream synchronise failed");
}

// Runs a collective's body: at once after synchronising its stream, or (OURO_SIMT_ASYNC) queued
// on the stream, touching `accesses`, in issue order with the other collectives (NCCL's order
// per communicator, the same on every rank); a queued body's failure becomes the
// communicator's asynchronous error, as with NCCL. On a stream being captured (a CUDA graph,
// as NCCL >= 2.9 allows) the body becomes a node of the graph, run at each launch of it in the
// graph's order, in either mode; a capture already invalidated refuses it.
template <class Body>
ncclResult_t submit(ncclComm_t comm, cudaStream_t stream, const char* what, std::vector<ouro::simt::Access> accesses,
                    Body body) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (stream && cudaStreamIsCapturing(stream, &capture) != cudaSuccess)
    return error(ncclUnhandledCudaError, std::string(what) + ": cudaStreamIsCapturing failed");
  if (capture == cudaStreamCaptureStatusInvalidated)
    return error(ncclUnhandledCudaError, std::string(what) + ": the stream's capture was invalidated");
  if (capture == cudaStreamCaptureStatusActive) {
    ouro::simt::enqueue_host_op(
        stream, what, std::move(accesses),
        [comm, body, what] {
          const ncclResult_t rc = body();
          if (rc != ncclSuccess && comm->async_error == ncclSuccess) {
            comm->async_error = rc;
            std::fprintf(stderr, "[ouro] NCCL-over-MPI: %s in a graph failed: %s\n", what, t_last_error.c_str());
          }
        },
        true);
    return ncclSuccess;
  }
  if (!ouro::simt::async_mode()) {
    if (auto rc = sync(stream); rc != ncclSuccess) return rc;
    return body();
  }
  ouro::simt::enqueue_host_op(
      stream, what, std::move(accesses),
      [comm, body] {
        const ncclResult_t rc = body();
        if (rc != ncclSuccess && comm->async_error == ncclSuccess) comm->async_error = rc;
      },
      true);
  return ncclSuccess;
}

// The float64 version of the loop below: the host collectives' doubles, summed in double.
void reduce_doubles_in_rank_order(const char* contrib, size_t count, int W, ncclRedOp_t op, char* out) {
  for (size_t i = 0; i < count; ++i) {
    double acc;
    std::memcpy(&acc, contrib + 8 * i, 8);
    for (int r = 1; r < W; ++r) {
      double x;
      std::memcpy(&x, contrib + (r * count + i) * 8, 8);
      if (op == ncclMax) acc = x > acc || acc != acc ? x : acc;
      else if (op == ncclMin) acc = x < acc || acc != acc ? x : acc;
      else acc += x;
    }
    if (op == ncclAvg) acc /= static_cast<double>(W);
    std::memcpy(out + 8 * i, &acc, 8);
  }
}

// out[i] = op over ranks r = 0..W-1, in that order, of contrib[r * count + i].
void reduce_in_rank_order(const char* contrib, size_t count, int W, ncclDataType_t t, ncclRedOp_t op,
                          char* out) {
  if (t == ncclFloat64) return reduce_doubles_in_rank_order(contrib, count, W, op, out);
  const size_t esz = type_size(t);
  for (size_t i = 0; i < count; ++i) {
    float acc = load(contrib, i, t);
    for (int r = 1; r < W; ++r) {
      const float x = load(contrib + r * count * esz, i, t);
      if (op == ncclMax) acc = x > acc || acc != acc ? x : acc;
      else if (op == ncclMin) acc = x < acc || acc != acc ? x : acc;
      else acc += x;
    }
    if (op == ncclAvg) acc /= static_cast<float>(W);
    store(out, i, acc, t);
  }
}

// Each rank r receives every rank's elements [begin_r, begin_r + count_r) of send, in rank order,
// and reduces them into out (count_r elements).
ncclResult_t reduce_owned(const char* send, const std::vector<size_t>& begin, const std::vector<size_t>& count,
                          ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, std::vector<char>& out) {
  const int W = c->nranks, me = c->rank;
  const size_t esz = type_size(t);
  // Rank q sends me its elements of my shard (count[me] of them) and I send q its shard: the
  // receive counts are the same count[me] from everyone, whatever q's own shard size (ranks past
  // the end of a short buffer own empty shards and still take part, so every rank makes the call).
  // The limits are checked on what every rank knows alike (all shards, all offsets) before any
  // rank-dependent value: a rank that returned an error alone would leave the others waiting.
  for (int q = 0; q < W; ++q) {
    int ignored = 0;
    if (auto rc = to_int(static_cast<size_t>(W) * count[q] * esz, ignored); rc != ncclSuccess) return rc;
    if (auto rc = to_int(begin[q] * esz, ignored); rc != ncclSuccess) return rc;
  }
  const int mine_bytes = static_cast<int>(count[me] * esz);
  std::vector<int> scounts(W), sdispls(W), rcounts(W, mine_bytes), rdispls(W);
  for (int q = 0; q < W; ++q) {
    scounts[q] = static_cast<int>(count[q] * esz);
    sdispls[q] = static_cast<int>(begin[q] * esz);
    rdispls[q] = q * mine_bytes;
  }
  std::vector<char> contrib(static_cast<size_t>(W) * count[me] * esz);
  SHIM_MPI(MPI_Alltoallv(send, scounts.data(), sdispls.data(), MPI_BYTE, contrib.data(), rcounts.data(),
                         rdispls.data(), MPI_BYTE, c->mpi));
  out.resize(count[me] * esz);
  reduce_in_rank_order(contrib.data(), count[me], W, t, op, out.data());
  return ncclSuccess;
}

constexpr char kIdMagic[] = "ouro-nccl-over-mpi";

}  // namespace

extern "C" {

const char* ncclGetErrorString(ncclResult_t rc) {
  switch (rc) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error (here: an MPI call failed)";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t) { return t_last_error.c_str(); }

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return error(ncclInvalidArgument, "null unique id");
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, kIdMagic, sizeof kIdMagic);
  // Random bytes after the magic: ranks given different ids are told apart at init.
  std::random_device rd;
  std::mt19937_64 g((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid()) ^
                    static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (size_t i = sizeof kIdMagic; i + 8 <= sizeof id->internal; i += 8) {
    const uint64_t x = g();
    std::memcpy(id->internal + i, &x, 8);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId id, int rank) {
  if (!out) return error(ncclInvalidArgument, "null communicator pointer");
  *out = nullptr;
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    // No MPI host communicator started it (dist.init = file/tcp/env): the shim needs MPI anyway.
    int provided = 0;
    if (int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided); rc != MPI_SUCCESS)
      return mpi_error(rc, "MPI_Init_thread");
    std::atexit(finalize_owned_mpi);
  }
  if (std::memcmp(id.internal, kIdMagic, sizeof kIdMagic) != 0)
    return error(ncclInvalidArgument, "the unique id was not made by ncclGetUniqueId");
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (nranks != world)
    return error(ncclInvalidUsage, "a communicator of " + std::to_string(nranks) + " ranks, but MPI has " +
                                       std::to_string(world) + " processes (launch every rank with mpirun)");
  if (rank < 0 || rank >= nranks) return error(ncclInvalidArgument, "rank " + std::to_string(rank) + " out of range");
  auto* c = new ncclComm;
  c->nranks = nranks;
  // Ordered by the caller's rank (which need not be MPI's), errors returned rather than fatal.
  int rc = MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &c->mpi);
  if (rc != MPI_SUCCESS) {
    delete c;
    return mpi_error(rc, "MPI_Comm_split");
  }
  MPI_Comm_set_errhandler(c->mpi, MPI_ERRORS_RETURN);
  MPI_Comm_rank(c->mpi, &c->rank);
  // Every rank must hold the same id and a distinct rank.
  const uint64_t mine[2] = {ouro::fnv1a(id.internal, sizeof id.internal, ouro::kFnv1aShortOffset),
                            static_cast<uint64_t>(rank)};
  std::vector<uint64_t> all(2 * static_cast<size_t>(nranks));
  rc = MPI_Allgather(mine, 2, MPI_UINT64_T, all.data(), 2, MPI_UINT64_T, c->mpi);
  std::string problem;
  if (rc != MPI_SUCCESS) problem = "MPI_Allgather failed";
  for (int q = 0; q < nranks && problem.empty(); ++q) {
    if (all[2 * q] != mine[0]) problem = "the ranks were given different unique ids";
    if (all[2 * q + 1] != static_cast<uint64_t>(q)) problem = "two processes claim the same rank";
  }
  if (!problem.empty()) {
    MPI_Comm_free(&c->mpi);
    delete c;
    return error(ncclInvalidUsage, problem);
  }
  *out = c;
  return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* out, int nranks, ncclUniqueId id, int rank, ncclConfig_t*) {
  // Non-blocking or not, the init below completes before it returns.
  return ncclCommInitRank(out, nranks, id, rank);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async) {
  if (auto rc = check_comm(comm); rc != ncclSuccess) return rc;
  *async = comm->async_error;  // synchronous mode: every call has finished (or failed) by the time it returned
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  if (ouro::simt::async_mode()) ouro::simt::drain_all();  // its queued collectives first
  if (comm->mpi != MPI_COMM_NULL) MPI_Comm_free(&comm->mpi);
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  // A peer may be gone: no collective call (MPI_Comm_free may synchronise), just let it go.
  g_aborted = true;
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t t,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  if (auto rc = check_comm(comm); rc != ncclSuccess) return rc;
  if (auto rc = check_reduction(t, op); rc != ncclSuccess) return rc;
  const std::vector<ouro::simt::Access> touched = {{sendbuff, count * type_size(t), false},
                                                    {recvbuff, count * type_size(t), true}};
  return submit(comm, stream, "ncclAllReduce", touched, [=]() -> ncclResult_t {
    const int W = comm->nranks;
    const size_t esz = type_size(t);
    std::vector<size_t> begin(W), cnt(W);
    std::vector<int> rcounts(W), rdispls(W);
    for (int q = 0; q < W; ++q) {
      const ouro::ShardRange s = ouro::shard_of(count, W, q);
      begin[q] = s.begin, cnt[q] = s.size();
      if (auto rc = to_int(cnt[q] * esz, rcounts[q]); rc != ncclSuccess) return rc;
      if (auto rc = to_int(begin[q] * esz, rdispls[q]); rc != ncclSuccess) return rc;
    }
    std::vector<char> mine;
    if (auto rc = reduce_owned(static_cast<const char*>(sendbuff), begin, cnt, t, op, comm, mine); rc != ncclSuccess)
      return rc;
    SHIM_MPI(MPI_Allgatherv(mine.data(), rcounts[comm->rank], MPI_BYTE, recvbuff, rcounts.data(), rdispls.data(),
                            MPI_BYTE, comm->mpi));
    return ncclSuccess;
  });
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, ncclDataType_t t,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  if (auto rc = check_comm(comm); rc != ncclSuccess) return rc;
  if (auto rc = check_reduction(t, op); rc != ncclSuccess) return rc;
  const std::vector<ouro::simt::Access> touched = {{sendbuff, recvcount * type_size(t) * size_t(comm->nranks), false},
                                                    {recvbuff, recvcount * type_size(t), true}};
  return submit(comm, stream, "ncclReduceScatter", touched, [=]() -> ncclResult_t {
    const int W = comm->nranks;
    std::vector<size_t> begin(W), cnt(W, recvcount);
    for (int q = 0; q < W; ++q) begin[q] = static_cast<size_t>(q) * recvcount;
    std::vector<char> mine;
    if (auto rc = reduce_owned(static_cast<const char*>(sendbuff), begin, cnt, t, op, comm, mine); rc != ncclSuccess)
      return rc;
    if (!mine.empty()) std::memcpy(recvbuff, mine.data(), mine.size());  // may be inside sendbuff: read already
    return ncclSuccess;
  });
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t t,
                           ncclComm_t comm, cudaStream_t stream) {
  if (auto rc = check_comm(comm); rc != ncclSuccess) return rc;
  if (type_size(t) == 0) return error(ncclInvalidArgument, "unknown data type");
  const std::vector<ouro::simt::Access> touched = {{sendbuff, sendcount * type_size(t), false},
                                                    {recvbuff, sendcount * type_size(t) * size_t(comm->nranks), true}};
  return submit(comm, stream, "ncclAllGather", touched, [=]() -> ncclResult_t {
    int bytes = 0;
    if (auto rc = to_int(sendcount * type_size(t), bytes); rc != ncclSuccess) return rc;
    const bool in_place = sendbuff == static_cast<const char*>(recvbuff) + static_cast<size_t>(comm->rank) * bytes;
    SHIM_MPI(MPI_Allgather(in_place ? MPI_IN_PLACE : sendbuff, bytes, MPI_BYTE, recvbuff, bytes, MPI_BYTE,
                           comm->mpi));
    return ncclSuccess;
  });
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t t, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  if (auto rc = check_comm(comm); rc != ncclSuccess) return rc;
  if (type_size(t) == 0) return error(ncclInvalidArgument, "unknown data type");
  if (root < 0 || root >= comm->nranks) return error(ncclInvalidArgument, "root out of range");
  const std::vector<ouro::simt::Access> touched = {{sendbuff, count * type_size(t), false},
                                                    {recvbuff, count * type_size(t), true}};
  return submit(comm, stream, "ncclBroadcast", touched, [=]() -> ncclResult_t {
    int bytes = 0;
    if (auto rc = to_int(count * type_size(t), bytes); rc != ncclSuccess) return rc;
    if (comm->rank == root && sendbuff != recvbuff && bytes) std::memmove(recvbuff, sendbuff, bytes);
    SHIM_MPI(MPI_Bcast(recvbuff, bytes, MPI_BYTE, root, comm->mpi));
    return ncclSuccess;
  });
}

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t t, ncclRedOp_t op,
                        int root, ncclComm_t comm, cudaStream_t stream) {
  if (auto rc = check_comm(comm); rc != ncclSuccess) return rc;
  if (auto rc = check_reduction(t, op); rc != ncclSuccess) return rc;
  if (root < 0 || root >= comm->nranks) return error(ncclInvalidArgument, "root out of range");
  const std::vector<ouro::simt::Access> touched = {{sendbuff, count * type_size(t), false},
                                                    {recvbuff, comm->rank == root ? count * type_size(t) : 0, true}};
  return submit(comm, stream, "ncclReduce", touched, [=]() -> ncclResult_t {
    int bytes = 0;
    if (auto rc = to_int(count * type_size(t), bytes); rc != ncclSuccess) return rc;
    const bool at_root = comm->rank == root;
    std::vector<char> contrib(at_root ? static_cast<size_t>(bytes) * comm->nranks : 0);
    SHIM_MPI(MPI_Gather(sendbuff, bytes, MPI_BYTE, contrib.data(), bytes, MPI_BYTE, root, comm->mpi));
    if (at_root) reduce_in_rank_order(contrib.data(), count, comm->nranks, t, op, static_cast<char*>(recvbuff));
    return ncclSuccess;
  });
}

}  // extern "C"

#endif  // OURO_SIMT
