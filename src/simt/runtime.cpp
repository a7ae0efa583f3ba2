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
#include <unordered_map>

#include "ouro/simt/device_model.h"
#include "ouro/simt/launch.h"
#include "simt/runtime_state.h"

struct CUstream_st {
  unsigned flags = 0;
};
struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;
  std::chrono::steady_clock::time_point when;
};

namespace ouro::simt::detail {

namespace {

constinit thread_local cudaError_t tl_last_error = cudaSuccess;
constinit thread_local int tl_device = 0;

struct Registry {
  std::mutex mu;
  std::unordered_map<void*, std::size_t> device;   // device allocations -> size
  std::unordered_map<void*, std::size_t> host;     // pinned host allocations
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
  if (posix_memalign(&p, 256, size) != 0 || !p) return fail(cudaErrorMemoryAllocation);
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
  ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::device, nullptr, true);
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
cudaError_t cudaMalloc(void** ptr, size_t size) { return ouro::simt::detail::allocate(ptr, size, true); }
cudaError_t cudaFree(void* ptr) {
  if (ptr) ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::free, nullptr, true);  // implicitly synchronises
  return ouro::simt::detail::release(ptr, true);
}
cudaError_t cudaMallocAsync(void** ptr, size_t size, cudaStream_t) {
  return ouro::simt::detail::allocate(ptr, size, true);
}
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t) { return ouro::simt::detail::release(ptr, true); }
cudaError_t cudaMallocHost(void** ptr, size_t size) { return ouro::simt::detail::allocate(ptr, size, false); }
cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned int) {
  return ouro::simt::detail::allocate(ptr, size, false);
}
cudaError_t cudaFreeHost(void* ptr) { return ouro::simt::detail::release(ptr, false); }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (!ouro::simt::detail::valid_kind(kind)) return fail(cudaErrorInvalidMemcpyDirection);
  if (count == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue);
  if (kind != cudaMemcpyDeviceToDevice && kind != cudaMemcpyHostToHost)  // the legacy stream: waits for all
    ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::copy, nullptr, true);
  std::memcpy(dst, src, count);  // overlapping ranges are an error on the GPU too (ASan says so)
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!ouro::simt::detail::valid_kind(kind)) return fail(cudaErrorInvalidMemcpyDirection);
  if (count == 0) return cudaSuccess;
  if (!dst || !src) return fail(cudaErrorInvalidValue);
  ouro::simt::detail::note_work(stream);
  // Into pageable host memory the copy completes before the call returns: the host waits.
  if (kind == cudaMemcpyDeviceToHost && !ouro::simt::detail::pinned(dst))
    ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::copy, stream);
  std::memcpy(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind) {
  if (!ouro::simt::detail::valid_kind(kind)) return fail(cudaErrorInvalidMemcpyDirection);
  if (width > dpitch || width > spitch) return fail(cudaErrorInvalidValue);
  for (size_t r = 0; r < height; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                              size_t height, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}
cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  if (count == 0) return cudaSuccess;
  if (!ptr) return fail(cudaErrorInvalidValue);
  std::memset(ptr, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  ouro::simt::detail::note_work(stream);
  return cudaMemset(ptr, value, count);
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
                                    cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpyToSymbol(symbol, src, count, offset, kind);
}
cudaError_t cudaMemcpyFromSymbolAsync(void* dst, const void* symbol, size_t count, size_t offset,
                                      cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpyFromSymbol(dst, symbol, count, offset, kind);
}
cudaError_t cudaGetSymbolAddress(void** dev_ptr, const void* symbol) {
  if (!dev_ptr || !symbol) return fail(cudaErrorInvalidValue);
  *dev_ptr = const_cast<void*>(symbol);
  return cudaSuccess;
}

// ---- streams and events ----------------------------------------------------------------------
cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  if (!stream) return fail(cudaErrorInvalidValue);
  *stream = new CUstream_st{};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream) return fail(cudaErrorInvalidValue);
  *stream = new CUstream_st{flags};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned int flags, int) {
  return cudaStreamCreateWithFlags(stream, flags);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return fail(cudaErrorInvalidResourceHandle);
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::stream, stream);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t event, unsigned int) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (!event) return fail(cudaErrorInvalidValue);
  *event = new CUevent_st{};
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event) return fail(cudaErrorInvalidValue);
  *event = new CUevent_st{};
  (*event)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  ouro::simt::detail::note_event_record(event, stream);
  event->recorded = true;
  event->when = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream, unsigned int) {
  return cudaEventRecord(event, stream);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  ouro::simt::detail::count_host_sync(ouro::simt::detail::SyncKind::event, ouro::simt::detail::event_stream(event));
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!event) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return fail(cudaErrorInvalidValue);
  if (!start || !end) return fail(cudaErrorInvalidResourceHandle);
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
