// The CUDA runtime API subset that host code uses, served on the CPU for SIMT builds.
//
// Declared by the toolkit's own cuda_runtime_api.h (so host code is one source for nvcc and
// g++), defined here; simt builds link no libcudart. Everything runs in issue order on the
// calling thread: a kernel launch completes before ouro::launch returns, so streams only need
// to exist and events only need a timestamp. Device memory is host heap memory (an ASan build
// then puts redzones around every allocation), filled with 0xFF bytes, NaN in every float
// format, so reading memory nobody wrote shows up in results.
#include <cuda_runtime_api.h>
#include <sys/sysinfo.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "ouro/simt/device_model.h"
#include "ouro/simt/async.h"
#include "ouro/simt/launch.h"
#include "ouro/simt/report.h"
#include "ouro/simt/thread.h"
#include "simt/text.h"
#include "simt/async_engine.h"
#include "simt/capture.h"
#include "simt/runtime_state.h"


namespace ouro::simt::detail {

namespace {

constinit thread_local cudaError_t tl_last_error = cudaSuccess;
constinit thread_local int tl_device = 0;

struct Registry {
  std::mutex mu;
  std::map<const void*, std::size_t> device;   // device allocations -> size
  std::map<const void*, std::size_t> host;     // pinned host allocations
  std::unordered_map<const void*, int> max_shared; // cudaFuncAttributeMaxDynamicSharedMemorySize
};
Registry& registry() {
  static Registry* r = new Registry;  // outlives static destructors that free memory
  return *r;
}

cudaError_t fail(cudaError_t err) {
  tl_last_error = err;
  return err;
}

cudaError_t allocate(void** ptr, std::size_t size, bool device) {
  if (!ptr) return fail(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  void* p = nullptr;
  // 256-byte aligned like cudaMalloc; the exact size, so ASan's redzone starts right after it.
  if (posix_memalign(&p, device ? 256 : 4096, size) != 0 || !p) return fail(cudaErrorMemoryAllocation);
  std::memset(p, 0xFF, size);
  {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    (device ? r.device : r.host)[p] = size;
  }
  *ptr = p;
  return cudaSuccess;
}

cudaError_t release(void* ptr, bool device) {
  if (!ptr) return cudaSuccess;
  {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    auto& map = device ? r.device : r.host;
    if (map.erase(ptr) == 0) return fail(cudaErrorInvalidValue);
  }
  std::free(ptr);
  return cudaSuccess;
}

// Pinned host memory (cudaMallocHost / cudaHostAlloc) holds p.
bool pinned(const void* p) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (const auto& [base, size] : r.host)
    if (p >= base && p < static_cast<const char*>(base) + size) return true;
  return false;
}
bool bad_device(int device) { return device < 0 || device >= ouro::simt::device_count(); }

bool valid_kind(cudaMemcpyKind kind) {
  return kind == cudaMemcpyHostToHost || kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToHost ||
         kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDefault;
}

}  // namespace

MemKind classify(const void* p, const void** base, std::size_t* size) {
  if (!p) return MemKind::other;
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (auto* map : {&r.device, &r.host}) {
    auto it = map->upper_bound(p);
    if (it == map->begin()) continue;
    --it;
    const auto* b = static_cast<const char*>(it->first);
    if (static_cast<const char*>(p) < b + it->second) {
      if (base) *base = b;
      if (size) *size = it->second;
      return map == &r.device ? MemKind::device : MemKind::pinned;
    }
  }
  return MemKind::other;
}

void set_last_error(cudaError_t err) { tl_last_error = err; }

std::size_t max_dynamic_shared(const void* kernel) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.max_shared.find(kernel);
  return it == r.max_shared.end() ? kStaticSharedLimit : static_cast<std::size_t>(it->second);
}

}  // namespace ouro::simt::detail

using ouro::simt::detail::fail;
using ouro::simt::detail::registry;

extern "C" {

// ---- errors ---------------------------------------------------------------------------------
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = ouro::simt::detail::tl_last_error;
  ouro::simt::detail::tl_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return ouro::simt::detail::tl_last_error; }

#define OURO_SIMT_ERRORS(X)                                                              \
  X(cudaSuccess, "no error")                                                             \
  X(cudaErrorInvalidValue, "invalid argument")                                           \
  X(cudaErrorMemoryAllocation, "out of memory")                                          \
  X(cudaErrorInitializationError, "initialization error")                                \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument")                    \
  X(cudaErrorInvalidDevice, "invalid device ordinal")                                    \
  X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle")                           \
  X(cudaErrorNotReady, "device not ready")                                               \
  X(cudaErrorInvalidDevicePointer, "invalid device pointer")                             \
  X(cudaErrorNoDevice, "no CUDA-capable device is detected")                             \
  X(cudaErrorLaunchFailure, "unspecified launch failure")                                \
  X(cudaErrorNotSupported, "operation not supported")                                    \
  X(cudaErrorInvalidDeviceFunction, "invalid device function")                           \
  X(cudaErrorIllegalAddress, "an illegal memory access was encountered")                 \
  X(cudaErrorMisalignedAddress, "misaligned address")                                    \
  X(cudaErrorIllegalState, "the operation cannot be performed in the present state")     \
  X(cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing") \
  X(cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture") \
  X(cudaErrorStreamCaptureMerge, "operation would result in a merge of separate capture sequences") \
  X(cudaErrorStreamCaptureUnmatched, "capture was not ended in the same stream as it began") \
  X(cudaErrorStreamCaptureUnjoined, "capturing stream has unjoined work")                \
  X(cudaErrorStreamCaptureIsolation, "dependency created on uncaptured work in another stream") \
  X(cudaErrorStreamCaptureImplicit, "operation would make the legacy stream depend on a capturing blocking stream") \
  X(cudaErrorCapturedEvent, "operation not permitted on an event last recorded in a capturing stream") \
  X(cudaErrorStreamCaptureWrongThread, "attempt to terminate a thread-local capture sequence from another thread") \
  X(cudaErrorUnknown, "unknown error")

const char* cudaGetErrorName(cudaError_t error) {
#define X(code, text) \
  case code: return #code;
  switch (error) { OURO_SIMT_ERRORS(X) default: return "cudaErrorUnknown"; }
#undef X
}
const char* cudaGetErrorString(cudaError_t error) {
#define X(code, text) \
  case code: return text;
  switch (error) { OURO_SIMT_ERRORS(X) default: return "unrecognized error code"; }
#undef X
}

// ---- devices -------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue);
  *count = ouro::simt::device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue);
  *device = ouro::simt::detail::tl_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (ouro::simt::detail::bad_device(device)) return fail(cudaErrorInvalidDevice);
  ouro::simt::detail::tl_device = device;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  if (cudaError_t e = ouro::simt::detail::capture_device_sync(); e != cudaSuccess) return e;
  ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::device, nullptr, true);
  ouro::simt::detail::take_call_site();
  if (ouro::simt::async_mode()) ouro::simt::drain_all();
  return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

// An sm_90-like device whose multiprocessors are the emulator's OS threads.
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!p) return fail(cudaErrorInvalidValue);
  if (ouro::simt::detail::bad_device(device)) return fail(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "ouro SIMT emulator (%u CPU threads)", ouro::simt::worker_threads());
  struct sysinfo si{};
  sysinfo(&si);
  p->totalGlobalMem = static_cast<size_t>(si.totalram) * si.mem_unit;
  p->sharedMemPerBlock = ouro::simt::kStaticSharedLimit;
  p->sharedMemPerBlockOptin = ouro::simt::smem_optin_bytes();
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->regsPerBlock = 65536;
  p->regsPerMultiprocessor = 65536;
  p->warpSize = 32;
  p->memPitch = SIZE_MAX;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->totalConstMem = 64 * 1024;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = static_cast<int>(ouro::simt::worker_threads());
  p->maxThreadsPerMultiProcessor = 2048;
  p->maxBlocksPerMultiProcessor = 32;
  p->l2CacheSize = 50 * 1024 * 1024;
  p->memoryBusWidth = 5120;
  p->concurrentKernels = 1;
  p->unifiedAddressing = 1;
  p->canMapHostMemory = 1;
  p->managedMemory = 1;
  p->cooperativeLaunch = 1;
  p->asyncEngineCount = 2;
  p->textureAlignment = 512;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value) return fail(cudaErrorInvalidValue);
  if (ouro::simt::detail::bad_device(device)) return fail(cudaErrorInvalidDevice);
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = static_cast<int>(p.sharedMemPerMultiprocessor); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    default: return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  struct sysinfo si{};
  sysinfo(&si);
  if (free_bytes) *free_bytes = static_cast<size_t>(si.freeram) * si.mem_unit;
  if (total) *total = static_cast<size_t>(si.totalram) * si.mem_unit;
  return cudaSuccess;
}

// ---- memory --------------------------------------------------------------------------------
// Under OURO_SIMT_ASYNC (include/ouro/simt/async.h) copies and memsets are queued operations;
// otherwise they run at the call, as everything did before.
}  // extern "C"

namespace ouro::simt::detail {
namespace {

bool async_now() { return async_mode() && !in_kernel(); }

const char* copy_name(bool async, cudaMemcpyKind kind, const void* dst, const void* src) {
  const bool dst_dev = classify(dst) == MemKind::device, src_dev = classify(src) == MemKind::device;
  const bool to_host = kind == cudaMemcpyDeviceToHost || (kind == cudaMemcpyDefault && !dst_dev && src_dev);
  const bool to_dev = kind == cudaMemcpyHostToDevice || (kind == cudaMemcpyDefault && dst_dev && !src_dev);
  if (async) return to_host ? "cudaMemcpyAsync (device to host)" : to_dev ? "cudaMemcpyAsync (host to device)" : "cudaMemcpyAsync";
  return to_host ? "cudaMemcpy (device to host)" : to_dev ? "cudaMemcpy (host to device)" : "cudaMemcpy";
}

std::uint64_t fnv(const void* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// cudaMemcpyAsync on a capturing stream: a node that copies at each replay. Pageable host
// memory is refused (graph.cpp says why).
cudaError_t capture_copy(void* dst, const void* src, std::size_t count, cudaMemcpyKind kind, cudaStream_t stream,
                         std::string site) {
  const MemKind dk = classify(dst), sk = classify(src);
  if (dk == MemKind::other || sk == MemKind::other)
    return capture_invalidate(stream, cudaErrorStreamCaptureUnsupported);
  NodeSpec node;
  node.what = copy_name(true, kind, dst, src);
  node.where = std::move(site);
  node.accesses.push_back(Access{dst, count, true});
  node.accesses.push_back(Access{src, count, false});
  node.run = [dst, src, count] { std::memcpy(dst, src, count); };
  if (dk == MemKind::pinned) node.poison = dst, node.poison_bytes = count;
  return capture_node(stream, std::move(node));
}

// One copy: `sync` (cudaMemcpy) waits for it; an asynchronous copy waits only where CUDA's
// does (to pageable host memory), stages a pageable source at the call, and checks that a
// pinned source did not change before it ran.
cudaError_t copy(void* dst, const void* src, std::size_t count, cudaMemcpyKind kind, cudaStream_t stream, bool sync) {
  std::string site = take_call_site();
  if (!valid_kind(kind)) return fail(cudaErrorInvalidMemcpyDirection);
  if (count == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue);
  if (!sync && capturing(stream)) return capture_copy(dst, src, count, kind, stream, std::move(site));
  if (sync || is_legacy(stream))
    if (cudaError_t e = capture_legacy_use(); e != cudaSuccess) return e;
  // Counted for `ouro bench train` (device_model.h): a synchronous copy between host and device
  // waits for the whole device (the legacy stream); an asynchronous one into pageable host memory
  // waits for its stream.
  if (sync) {
    if (kind != cudaMemcpyDeviceToDevice && kind != cudaMemcpyHostToHost) count_host_sync(SyncKind::copy, nullptr, true);
  } else {
    note_work(stream);
    if (kind == cudaMemcpyDeviceToHost && classify(dst) != MemKind::pinned) count_host_sync(SyncKind::copy, stream);
  }
  if (!async_now()) {
    std::memcpy(dst, src, count);  // overlapping ranges are an error on the GPU too (ASan says so)
    return cudaSuccess;
  }
  const MemKind dk = classify(dst), sk = classify(src);
  OpSpec spec;
  spec.stream = sync ? 0 : stream_id(stream);
  spec.what = copy_name(!sync, kind, dst, src);
  spec.where = std::move(site);
  if (dk != MemKind::other) spec.accesses.push_back(Access{dst, count, true});
  if (sk != MemKind::other) spec.accesses.push_back(Access{src, count, false});
  const bool wait = sync || dk == MemKind::other;  // to pageable host memory: the host waits
  if (sk == MemKind::other && !sync) {
    // Pageable source: staged now, so the caller may reuse its buffer as soon as we return.
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + count);
    spec.run = [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); };
  } else if (sk == MemKind::pinned && !sync) {
    const std::uint64_t before = fnv(src, count);
    const std::string where = spec.where;
    const char* what = spec.what;
    const unsigned sid = spec.stream;
    spec.run = [dst, src, count, before, where, what, sid] {
      if (fnv(src, count) != before) {
        Report r;
        r.kind = BugKind::host_buffer_changed;
        const auto colon = where.rfind(':');
        if (colon != std::string::npos) {
          r.file = where.substr(0, colon);
          r.line = static_cast<unsigned>(std::strtoul(where.c_str() + colon + 1, nullptr, 10));
        }
        r.message = cat("the pinned host buffer given to ", what, " on stream ", sid, " (", count,
                        " bytes) was changed by the host before the queued copy ran: the device gets the new "
                        "contents, not those of the call; synchronise (or record an event and wait for it) "
                        "before reusing a pinned staging buffer");
        report(std::move(r));
      }
      std::memcpy(dst, src, count);
    };
  } else {
    spec.run = [dst, src, count] { std::memcpy(dst, src, count); };
  }
  const std::uint64_t id = enqueue(std::move(spec));
  // A pinned destination reads as NaN until the copy runs: a host that reads it before a
  // synchronisation sees 0xFF bytes rather than plausible old values (the read itself is not
  // trapped).
  if (dk == MemKind::pinned && !wait) std::memset(dst, 0xFF, count);
  if (wait) complete(id);
  return cudaSuccess;
}

cudaError_t set(void* ptr, int value, std::size_t count, cudaStream_t stream, bool legacy, const char* what) {
  std::string site = take_call_site();
  if (count == 0) return cudaSuccess;
  if (!ptr) return fail(cudaErrorInvalidValue);
  if (!legacy && capturing(stream)) {
    NodeSpec node;
    node.what = what;
    node.where = std::move(site);
    if (classify(ptr) == MemKind::other) return capture_invalidate(stream, cudaErrorStreamCaptureUnsupported);
    node.accesses.push_back(Access{ptr, count, true});
    node.run = [ptr, value, count] { std::memset(ptr, value, count); };
    return capture_node(stream, std::move(node));
  }
  if (legacy || is_legacy(stream))
    if (cudaError_t e = capture_legacy_use(); e != cudaSuccess) return e;
  if (!async_now()) {
    std::memset(ptr, value, count);
    return cudaSuccess;
  }
  OpSpec spec;
  spec.stream = legacy ? 0 : stream_id(stream);
  spec.what = what;
  spec.where = std::move(site);
  if (classify(ptr) != MemKind::other) spec.accesses.push_back(Access{ptr, count, true});
  spec.run = [ptr, value, count] { std::memset(ptr, value, count); };
  const std::uint64_t id = enqueue(std::move(spec));
  if (classify(ptr) == MemKind::other) complete(id);  // host memory: CUDA does it at the call
  return cudaSuccess;
}

// cudaFree synchronises the device (CUDA does, implicitly); cudaFreeAsync is an operation of
// its stream that frees when it runs, and touches the whole allocation: a queued operation of
// another stream still using it, unordered, is reported.
cudaError_t free_device(void* ptr, cudaStream_t stream, bool async) {
  std::string site = take_call_site();
  if (!ptr) return cudaSuccess;
  // Memory nodes (cudaFreeAsync in a capture) are not emulated; cudaFree is a potentially
  // unsafe call during capture.
  if (async && capturing(stream)) return capture_invalidate(stream, cudaErrorStreamCaptureUnsupported);
  if (!async)
    if (cudaError_t e = capture_unsafe_call(); e != cudaSuccess) return e;
  if (!async_now()) return release(ptr, true);
  const void* base = nullptr;
  std::size_t size = 0;
  if (classify(ptr, &base, &size) != MemKind::device || base != ptr) return fail(cudaErrorInvalidValue);
  if (!async) {
    drain_all();
    return release(ptr, true);
  }
  OpSpec spec;
  spec.stream = stream_id(stream);
  spec.what = "cudaFreeAsync";
  spec.where = std::move(site);
  spec.accesses.push_back(Access{ptr, size, true});
  spec.run = [ptr] { release(ptr, true); };
  enqueue(std::move(spec));
  return cudaSuccess;
}

}  // namespace
}  // namespace ouro::simt::detail

using ouro::simt::detail::take_call_site;

extern "C" {

cudaError_t cudaMalloc(void** ptr, size_t size) {
  take_call_site();
  if (cudaError_t e = ouro::simt::detail::capture_unsafe_call(); e != cudaSuccess) return e;
  return ouro::simt::detail::allocate(ptr, size, true);
}
cudaError_t cudaFree(void* ptr) {
  // cudaFree implicitly synchronises the device: counted (device_model.h).
  if (ptr) ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::free, nullptr, true);
  return ouro::simt::detail::free_device(ptr, nullptr, false);
}
cudaError_t cudaMallocAsync(void** ptr, size_t size, cudaStream_t stream) {
  take_call_site();
  if (ouro::simt::detail::capturing(stream))  // memory nodes are not emulated
    return ouro::simt::detail::capture_invalidate(stream, cudaErrorStreamCaptureUnsupported);
  return ouro::simt::detail::allocate(ptr, size, true);
}
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) { return ouro::simt::detail::free_device(ptr, stream, true); }
cudaError_t cudaMallocHost(void** ptr, size_t size) {
  take_call_site();
  if (cudaError_t e = ouro::simt::detail::capture_unsafe_call(); e != cudaSuccess) return e;
  return ouro::simt::detail::allocate(ptr, size, false);
}
cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned int) {
  take_call_site();
  if (cudaError_t e = ouro::simt::detail::capture_unsafe_call(); e != cudaSuccess) return e;
  return ouro::simt::detail::allocate(ptr, size, false);
}
cudaError_t cudaFreeHost(void* ptr) {
  take_call_site();
  if (cudaError_t e = ouro::simt::detail::capture_unsafe_call(); e != cudaSuccess) return e;
  if (ouro::simt::async_mode()) ouro::simt::drain_all();  // like cudaFree, it synchronises
  return ouro::simt::detail::release(ptr, false);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return ouro::simt::detail::copy(dst, src, count, kind, nullptr, true);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  return ouro::simt::detail::copy(dst, src, count, kind, stream, false);
}
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind) {
  take_call_site();
  if (!ouro::simt::detail::valid_kind(kind)) return fail(cudaErrorInvalidMemcpyDirection);
  if (width > dpitch || width > spitch) return fail(cudaErrorInvalidValue);
  if (ouro::simt::async_mode()) ouro::simt::drain_all();  // rows: kept synchronous (unused by the engine)
  for (size_t r = 0; r < height; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                              size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  if (ouro::simt::detail::capturing(stream))  // runs at the call: it cannot be a node
    return ouro::simt::detail::capture_invalidate(stream, cudaErrorStreamCaptureUnsupported);
  return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}
// cudaMemset is asynchronous to the host for device memory (CUDA's "API synchronization
// behavior"): a legacy-stream operation.
cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  return ouro::simt::detail::set(ptr, value, count, nullptr, true, "cudaMemset");
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  ouro::simt::detail::note_work(stream);
  return ouro::simt::detail::set(ptr, value, count, stream, false, "cudaMemsetAsync");
}
// __device__ variables are ordinary globals in SIMT builds: the symbol is its own address.
cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t count, size_t offset,
                               cudaMemcpyKind kind) {
  return cudaMemcpy(static_cast<char*>(const_cast<void*>(symbol)) + offset, src, count, kind);
}
cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count, size_t offset, cudaMemcpyKind kind) {
  return cudaMemcpy(dst, static_cast<const char*>(symbol) + offset, count, kind);
}
cudaError_t cudaMemcpyToSymbolAsync(const void* symbol, const void* src, size_t count, size_t offset,
                                    cudaMemcpyKind kind, cudaStream_t stream) {
  return cudaMemcpyAsync(static_cast<char*>(const_cast<void*>(symbol)) + offset, src, count, kind, stream);
}
cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const void* symbol, size_t count, size_t offset,
                                      cudaMemcpyKind kind, cudaStream_t stream) {
  return cudaMemcpyAsync(dst, static_cast<const char*>(symbol) + offset, count, kind, stream);
}
cudaError_t cudaGetSymbolAddress(void** dev_ptr, const void* symbol) {
  if (!dev_ptr || !symbol) return fail(cudaErrorInvalidValue);
  *dev_ptr = const_cast<void*>(symbol);
  return cudaSuccess;
}

// ---- streams and events ----------------------------------------------------------------------
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  take_call_site();
  if (!stream) return fail(cudaErrorInvalidValue);
  *stream = new CUstream_st{flags, ouro::simt::detail::new_stream_id((flags & cudaStreamNonBlocking) == 0)};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned int flags, int) {
  return cudaStreamCreateWithFlags(stream, flags);
}
// The stream's queued work still runs (CUDA lets it finish); only the handle goes.
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  take_call_site();
  if (!stream) return fail(cudaErrorInvalidResourceHandle);
  ouro::simt::detail::capture_forget_stream(stream);
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (cudaError_t e = ouro::simt::detail::capture_stream_sync(stream); e != cudaSuccess) return e;
  if (ouro::simt::detail::is_legacy(stream))
    if (cudaError_t e = ouro::simt::detail::capture_legacy_use(); e != cudaSuccess) return e;
  ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::stream, stream);
  take_call_site();
  if (ouro::simt::async_mode()) ouro::simt::detail::complete_stream(ouro::simt::detail::stream_id(stream));
  return cudaSuccess;
}
// Asked whether the stream is idle, the emulator makes it so (callers poll until it is). Not a
// counted host synchronisation: a poll does not make the host wait on a GPU.
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  take_call_site();
  if (cudaError_t e = ouro::simt::detail::capture_stream_sync(stream); e != cudaSuccess) return e;
  if (ouro::simt::detail::is_legacy(stream))
    if (cudaError_t e = ouro::simt::detail::capture_legacy_use(); e != cudaSuccess) return e;
  if (ouro::simt::async_mode()) ouro::simt::detail::complete_stream(ouro::simt::detail::stream_id(stream));
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  std::string site = take_call_site();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  if (cudaError_t e; ouro::simt::detail::capture_stream_wait(stream, event, &e)) return e;
  if (ouro::simt::detail::is_legacy(stream))
    if (cudaError_t e = ouro::simt::detail::capture_legacy_use(); e != cudaSuccess) return e;
  if (!ouro::simt::async_mode() || !event->op) return cudaSuccess;
  ouro::simt::detail::OpSpec spec;
  spec.stream = ouro::simt::detail::stream_id(stream);
  spec.what = "cudaStreamWaitEvent";
  spec.where = std::move(site);
  spec.wait_op = event->op;
  spec.wait_vc = &event->vc;
  ouro::simt::detail::enqueue(std::move(spec));
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  take_call_site();
  if (!event) return fail(cudaErrorInvalidValue);
  *event = new CUevent_st{};
  (*event)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  take_call_site();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  ouro::simt::detail::capture_forget_event(event);
  if (ouro::simt::async_mode() && event->op) ouro::simt::detail::complete(event->op);  // its marker refers to it
  delete event;
  return cudaSuccess;
}
// Asynchronous mode: a marker operation on the stream stamps the time when it runs; the event
// carries the stream's clock as of the call (what a wait on it orders after).
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  std::string site = take_call_site();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  if (cudaError_t e; ouro::simt::detail::capture_event_record(event, stream, &e)) return e;
  if (ouro::simt::detail::is_legacy(stream))
    if (cudaError_t e = ouro::simt::detail::capture_legacy_use(); e != cudaSuccess) return e;
  ouro::simt::detail::note_event_record(event, stream);
  event->recorded = true;
  if (!ouro::simt::async_mode()) {
    event->when = std::chrono::steady_clock::now();
    return cudaSuccess;
  }
  ouro::simt::detail::OpSpec spec;
  spec.stream = ouro::simt::detail::stream_id(stream);
  spec.what = "cudaEventRecord";
  spec.where = std::move(site);
  spec.run = [event] { event->when = std::chrono::steady_clock::now(); };
  event->op = ouro::simt::detail::enqueue(std::move(spec), &event->vc);
  return cudaSuccess;
}
cudaError_t cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream, unsigned int) {
  return cudaEventRecord(event, stream);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  take_call_site();
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  if (cudaError_t e = ouro::simt::detail::capture_event_use(event); e != cudaSuccess) return e;
  ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::event, ouro::simt::detail::event_stream(event));
  if (ouro::simt::async_mode() && event->op) {
    ouro::simt::detail::complete(event->op);
    ouro::simt::detail::host_learns(event->vc);
  }
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  take_call_site();
  if (!ms) return fail(cudaErrorInvalidValue);
  if (!start || !end) return fail(cudaErrorInvalidResourceHandle);
  for (cudaEvent_t e : {start, end})
    if (cudaError_t err = ouro::simt::detail::capture_event_use(e); err != cudaSuccess) return err;
  if ((start->flags | end->flags) & cudaEventDisableTiming) return fail(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded) return fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}

// ---- kernels -----------------------------------------------------------------------------------
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func) return fail(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > ouro::simt::smem_optin_bytes()) return fail(cudaErrorInvalidValue);
    auto& r = registry();
    std::lock_guard lock(r.mu);
    r.max_shared[func] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return cudaSuccess;  // other attributes only tune the GPU's scheduling
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (!attr || !func) return fail(cudaErrorInvalidValue);
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->maxDynamicSharedSizeBytes = static_cast<int>(ouro::simt::detail::max_dynamic_shared(func));
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num_blocks, const void* func, int block_size,
                                                          size_t) {
  if (!num_blocks || !func || block_size <= 0) return fail(cudaErrorInvalidValue);
  *num_blocks = std::max(1, 2048 / block_size);
  return cudaSuccess;
}

}  // extern "C"
