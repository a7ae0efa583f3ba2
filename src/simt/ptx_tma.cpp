// Emulation of cp.async.bulk.tensor.2d (TMA) loads and stores and the bulk async-groups
// (contract: <ouro/ptx_sm90.h>). A load is queued on its mbarrier with its destination filled
// with 0xFF, and performed by perform_tma_loads() when a thread would block waiting for that
// barrier; a store is queued on its thread and performed at cp.async.bulk.wait_group.
#include <ouro/ptx.h>
#include <ouro/ptx_sm90.h>
#include <ouro/simt/launch.h>
#include <ouro/simt/report.h>
#include <ouro/simt/thread.h>
#include <ouro/simt/warp.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "simt/scheduler.h"
#include "simt/sm90_state.h"
#include "simt/text.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace ouro::simt::sm90 {
namespace {

// Shared-memory byte offset of box element (bx, by) from a pattern-aligned destination.
std::size_t box_offset(const TensorMap& m, unsigned bx, unsigned by) {
  std::size_t a = std::size_t{by} * m.box[0] * m.esize + std::size_t{bx} * m.esize;
  const unsigned bits = m.swizzle == 128 ? 3 : m.swizzle == 64 ? 2 : m.swizzle == 32 ? 1 : 0;
  return a ^ (((a >> 7) & ((std::size_t{1} << bits) - 1)) << 4);
}

bool in_bounds(const TensorMap& m, long gx, long gy) {
  return gx >= 0 && gy >= 0 && static_cast<uint64_t>(gx) < m.dim[0] && static_cast<uint64_t>(gy) < m.dim[1];
}

void fill_oob(const TensorMap& m, unsigned char* p) {
  std::memset(p, 0, m.esize);
  if (!m.oob_nan) return;
  const uint64_t nan = m.esize == 2 ? 0x7FFFu : m.esize == 4 ? 0x7FFFFFFFu : 0x7FFFFFFFFFFFFFFFull;
  std::memcpy(p, &nan, m.esize);
}

}  // namespace

void perform_tma_loads(Mbarrier& bar) {
  std::vector<TmaLoad> loads;
  {
    detail::HideFromTsan hide;
    loads.swap(bar.loads);
    detail::tsan_acquire(&bar.tsan_issue);
  }
  for (const TmaLoad& l : loads) {
    const TensorMap& m = l.map;
    const std::size_t bytes = std::size_t{m.box[0]} * m.box[1] * m.esize;
#if defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(l.dst, bytes);  // poisoned at issue when in dynamic shared memory
#endif
    for (std::size_t i = 0; i < bytes; ++i)
      if (l.dst[i] != 0xFF)
        report(BugKind::async_protocol,
               detail::cat("shared memory [", i, "] of the TMA load issued at ", l.where.file_name(), ":",
                           l.where.line(),
                           " was written by a thread before the load's mbarrier phase completed"),
               l.where);
    for (unsigned by = 0; by < m.box[1]; ++by)
      for (unsigned bx = 0; bx < m.box[0]; ++bx) {
        const long gx = static_cast<long>(l.x) + bx, gy = static_cast<long>(l.y) + by;
        unsigned char* d = l.dst + box_offset(m, bx, by);
        if (in_bounds(m, gx, gy))
          std::memcpy(d, m.addr + static_cast<std::size_t>(gy) * m.stride1 + static_cast<std::size_t>(gx) * m.esize,
                      m.esize);
        else
          fill_oob(m, d);
      }
    detail::HideFromTsan hide;
    const unsigned char* base = detail::tl_dynamic_shared;
    if (base && l.dst >= base) async_view_update(static_cast<std::size_t>(l.dst - base), bytes);
    detail::tsan_release(&bar.tsan_sync[bar.phase & 1]);
    bar.tx -= static_cast<int64_t>(bytes);
    complete_phase_if_done(bar);
  }
}

}  // namespace ouro::simt::sm90

namespace ouro::ptx::emu {
namespace {

using simt::BugKind;
using simt::detail::cat;
using simt::sm90::TensorMap;

TensorMap decode(const CUtensorMap* map, const char* op, std::source_location where) {
  TensorMap m;
  std::memcpy(&m, map, sizeof m);
  if (m.magic != TensorMap::kMagic)
    simt::report(BugKind::invalid_argument,
                 cat(op, ": the tensor map was not made by cuTensorMapEncodeTiled (through cudaGetDriverEntryPoint)"),
                 where);
  return m;
}

void check_shared(const void* p, const TensorMap& m, const char* op, std::source_location where) {
  const std::size_t align = m.swizzle ? 8 * m.swizzle : 128;
  if (reinterpret_cast<uintptr_t>(p) % align != 0) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s: shared address %p is not %zu-byte aligned (%s)", op, p, align,
                  m.swizzle ? "the swizzle pattern" : "TMA needs 128 bytes");
    simt::report(BugKind::misaligned_address, buf, where);
  }
}

}  // namespace

void tma_load_2d(void* dst, const CUtensorMap* map, int x, int y, uint64_t* bar, std::source_location where) {
  const char* op = "cp.async.bulk.tensor.2d.shared.global";
  const TensorMap m = decode(map, op, where);
  check_shared(dst, m, op, where);
  const std::size_t bytes = std::size_t{m.box[0]} * m.box[1] * m.esize;
  std::memset(dst, 0xFF, bytes);  // NaN until the load lands
#if defined(__SANITIZE_ADDRESS__)
  // ASan reports a kernel that touches the tile before the load landed (its mbarrier phase).
  // Dynamic shared memory only: it is re-poisoned at every block start (worker.cpp).
  {
    const unsigned char* base = simt::detail::tl_dynamic_shared;
    const auto* d = static_cast<const unsigned char*>(dst);
    if (base && d >= base && d + bytes <= base + simt::this_thread().launch->params.shared_bytes)
      ASAN_POISON_MEMORY_REGION(dst, bytes);
  }
#endif
  simt::detail::HideFromTsan hide;
  auto& table = simt::sm90::block_state().mbarriers;
  auto it = table.find(bar);
  if (it == table.end())
    simt::report(BugKind::invalid_argument, cat(op, ": its mbarrier was not initialized by mbarrier.init"), where);
  simt::detail::tsan_release(&it->second.tsan_issue);
  it->second.loads.push_back(simt::sm90::TmaLoad{m, static_cast<unsigned char*>(dst), x, y, where});
  // A thread already waits for this barrier: wake it, it lands the load when it next runs (after
  // the issuing thread yields, so that what the issuer does meanwhile is still "before").
  if (!it->second.waiters.empty()) {
    const unsigned tid = it->second.waiters.back();
    it->second.waiters.pop_back();
    simt::sm90::wake_thread(tid);
  }
}

void tma_store_2d(const CUtensorMap* map, int x, int y, const void* src, std::source_location where) {
  const char* op = "cp.async.bulk.tensor.2d.global.shared";
  const TensorMap m = decode(map, op, where);
  check_shared(src, m, op, where);
  simt::detail::HideFromTsan hide;
  simt::sm90::block_state().bulk[simt::this_thread().tid].stores.push_back(
      simt::sm90::TmaStore{m, static_cast<const unsigned char*>(src), x, y, -1, where});
}

void bulk_commit_group(std::source_location) {
  simt::detail::HideFromTsan hide;
  auto& q = simt::sm90::block_state().bulk[simt::this_thread().tid];
  for (auto it = q.stores.rbegin(); it != q.stores.rend() && it->group < 0; ++it) it->group = q.committed;
  ++q.committed;
}

void bulk_wait_group(int pending, std::source_location) {
  std::vector<simt::sm90::TmaStore> due;
  {
    simt::detail::HideFromTsan hide;
    auto& q = simt::sm90::block_state().bulk[simt::this_thread().tid];
    const long done_below = q.committed - pending;
    std::vector<simt::sm90::TmaStore> kept;
    for (auto& s : q.stores) (s.group >= 0 && s.group < done_below ? due : kept).push_back(s);
    q.stores.swap(kept);
  }
  for (const auto& s : due) {
    const TensorMap& m = s.map;
    for (unsigned by = 0; by < m.box[1]; ++by)
      for (unsigned bx = 0; bx < m.box[0]; ++bx) {
        const long gx = static_cast<long>(s.x) + bx, gy = static_cast<long>(s.y) + by;
        if (!(gx >= 0 && gy >= 0 && static_cast<uint64_t>(gx) < m.dim[0] && static_cast<uint64_t>(gy) < m.dim[1]))
          continue;
        std::size_t a = std::size_t{by} * m.box[0] * m.esize + std::size_t{bx} * m.esize;
        const unsigned bits = m.swizzle == 128 ? 3 : m.swizzle == 64 ? 2 : m.swizzle == 32 ? 1 : 0;
        a ^= ((a >> 7) & ((std::size_t{1} << bits) - 1)) << 4;
        {
          simt::detail::HideFromTsan hide;
          const auto& view = simt::sm90::block_state().async_view;
          const unsigned char* base = simt::detail::tl_dynamic_shared;
          const std::size_t off = base && s.src >= base ? static_cast<std::size_t>(s.src - base) + a : ~std::size_t{0};
          if (off + m.esize <= view.size() && std::memcmp(&view[off], s.src + a, m.esize) != 0)
            simt::report(BugKind::async_protocol,
                         cat("TMA store reads shared offset ", off,
                             ", written by ordinary stores after the last fence.proxy.async (the async proxy "
                             "sees generic-proxy writes only after the fence)"),
                         s.where);
        }
        std::memcpy(const_cast<unsigned char*>(m.addr) + static_cast<std::size_t>(gy) * m.stride1 +
                        static_cast<std::size_t>(gx) * m.esize,
                    s.src + a, m.esize);
      }
  }
}

}  // namespace ouro::ptx::emu
