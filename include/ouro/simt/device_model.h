// What the emulated device looks like to host code, and what host code asked of it.
//
// Test hooks for host logic that depends on the GPU it runs on (read at every query, so a test
// can set them around one check):
//   OURO_SIMT_DEVICES=N       the node has N devices (default 8, like a DGX node; all of them
//                             are this emulator): cudaGetDeviceCount, cudaSetDevice(< N).
//   OURO_SIMT_SMEM_OPTIN=B    cudaDevAttrMaxSharedMemoryPerBlockOptin (default 227 KiB, sm_90);
//                             e.g. 101376 (99 KiB) is an sm_86/sm_89 GPU. cudaFuncSetAttribute
//                             refuses a larger MaxDynamicSharedMemorySize, as the GPU does.
// Host synchronisations: every call that makes the host wait for the device (stream, device
// and event synchronisation, synchronous copies between host and device, a copy to pageable
// host memory, cudaFree) while work is queued on what it waits for (kernel launches, async
// copies and memsets since that stream's last wait) is counted, so tests and `ouro bench train`
// can say how often a training step drains the GPU. A wait that finds nothing queued returns at
// once on a GPU too and is not counted (a stream synchronisation right after a copy that waited).
#pragma once
#include <cstddef>
#include <cstdint>

namespace ouro::simt {

int device_count();
std::size_t smem_optin_bytes();

struct HostSyncCounts {
  std::uint64_t stream = 0, device = 0, event = 0, copy = 0, free = 0;
  std::uint64_t total() const { return stream + device + event + copy + free; }
};
// Since the process started (all threads).
HostSyncCounts host_syncs();

namespace detail {
enum class SyncKind { stream, device, event, copy, free };
// Work queued on `stream` (a launch, an async copy or memset).
void note_work(const void* stream);
// The host waits for `stream` (every stream when `all`): counted if work was queued there.
void count_host_sync(SyncKind kind, const void* stream, bool all = false);
// cudaEventRecord(event, stream): a later cudaEventSynchronize(event) waits for that stream.
void note_event_record(const void* event, const void* stream);
const void* event_stream(const void* event);
}  // namespace detail

}  // namespace ouro::simt
