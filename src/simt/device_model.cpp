// The emulated device's shape (test hooks) and the host-synchronisation counters: see
// include/ouro/simt/device_model.h.
#include "ouro/simt/device_model.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "ouro/simt/launch.h"

namespace ouro::simt {
namespace {

long env_long(const char* name, long fallback, long lo, long hi) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  return (*end == '\0' && v >= lo && v <= hi) ? v : fallback;
}

std::atomic<std::uint64_t> g_syncs[5];

struct Queues {
  std::mutex mu;
  std::unordered_map<const void*, std::uint64_t> pending;  // stream -> work since its last wait
  std::unordered_map<const void*, const void*> event_stream;
};
Queues& queues() {
  static Queues* q = new Queues;  // outlives static destructors that synchronise
  return *q;
}

}  // namespace

int device_count() { return static_cast<int>(env_long("OURO_SIMT_DEVICES", 8, 1, 1024)); }

std::size_t smem_optin_bytes() {
  return static_cast<std::size_t>(env_long("OURO_SIMT_SMEM_OPTIN", static_cast<long>(kMaxDynamicShared),
                                           static_cast<long>(kStaticSharedLimit), static_cast<long>(kMaxDynamicShared)));
}

HostSyncCounts host_syncs() {
  HostSyncCounts c;
  c.stream = g_syncs[0].load(), c.device = g_syncs[1].load(), c.event = g_syncs[2].load();
  c.copy = g_syncs[3].load(), c.free = g_syncs[4].load();
  return c;
}

namespace detail {
void note_work(const void* stream) {
  auto& q = queues();
  std::lock_guard lock(q.mu);
  ++q.pending[stream];
}

void count_host_sync(SyncKind kind, const void* stream, bool all) {
  auto& q = queues();
  bool waited = false;
  {
    std::lock_guard lock(q.mu);
    if (all) {
      for (auto& [s, n] : q.pending) waited |= n > 0, n = 0;
    } else if (auto it = q.pending.find(stream); it != q.pending.end()) {
      waited = it->second > 0;
      it->second = 0;
    }
  }
  if (waited) g_syncs[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
}

void note_event_record(const void* event, const void* stream) {
  auto& q = queues();
  std::lock_guard lock(q.mu);
  q.event_stream[event] = stream;
}

const void* event_stream(const void* event) {
  auto& q = queues();
  std::lock_guard lock(q.mu);
  auto it = q.event_stream.find(event);
  return it == q.event_stream.end() ? nullptr : it->second;
}
}  // namespace detail

}  // namespace ouro::simt
