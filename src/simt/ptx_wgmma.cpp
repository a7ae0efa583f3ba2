// Emulation of wgmma.fence / mma_async (m64nNk16.f32.bf16.bf16) / commit_group / wait_group.
// Contract, layouts and reports: <ouro/ptx_sm90.h>. Each instruction is a warpgroup rendezvous
// (sm90_state.h); mma_async validates and captures its operands, wait_group performs the due
// wgmmas in issue order, reading shared memory then, and writes each thread's accumulators.
#include <ouro/ptx.h>
#include <ouro/ptx_sm90.h>
#include <ouro/simt/launch.h>
#include <ouro/simt/report.h>
#include <ouro/simt/thread.h>
#include <ouro/simt/warp.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "simt/scheduler.h"
#include "simt/sm90_state.h"
#include "simt/text.h"

namespace ouro::ptx::emu {
namespace {

using simt::BugKind;
using simt::detail::cat;
using simt::sm90::kWarpgroupSize;
using simt::sm90::WgArrival;
using simt::sm90::Warpgroup;
using simt::sm90::WgmmaOp;

constexpr uint32_t kPoison = 0xFFFFFFFFu;

std::size_t dynamic_shared_bytes() { return simt::this_thread().launch->params.shared_bytes; }

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A decoded matrix descriptor; byte quantities.
struct Desc {
  uint32_t start, lbo, sbo, base;
  unsigned width;  // swizzle width in bytes, 0 for none
  unsigned bits;   // log2(width / 16): how many address bits the swizzle XORs
};

Desc decode(uint64_t d) {
  Desc r{};
  r.start = static_cast<uint32_t>(d & 0x3FFF) << 4;
  r.lbo = static_cast<uint32_t>((d >> 16) & 0x3FFF) << 4;
  r.sbo = static_cast<uint32_t>((d >> 32) & 0x3FFF) << 4;
  r.base = static_cast<uint32_t>((d >> 49) & 7);
  switch (d >> 62) {
    case 0: r.width = 0, r.bits = 0; break;
    case 1: r.width = 128, r.bits = 3; break;
    case 2: r.width = 64, r.bits = 2; break;
    default: r.width = 32, r.bits = 1; break;
  }
  return r;
}

// Byte offset in dynamic shared memory of element (mn, k): the canonical layouts, then the swizzle.
uint32_t element_offset(const Desc& d, bool mn_major, unsigned mn, unsigned k) {
  uint32_t a;
  if (!mn_major) {
    a = d.width == 0 ? d.start + (mn % 8) * 16 + (mn / 8) * d.sbo + (k % 8) * 2 + (k / 8) * d.lbo
                     : d.start + (mn % 8) * d.width + (mn / 8) * d.sbo + k * 2;
  } else if (d.width == 0) {
    a = d.start + (mn % 8) * 2 + (mn / 8) * d.sbo + (k % 8) * 16 + (k / 8) * d.lbo;
  } else {
    const unsigned e = d.width / 2;  // elements per swizzle row
    a = d.start + (mn % e) * 2 + (mn / e) * d.lbo + (k % 8) * d.width + (k / 8) * d.sbo;
  }
  return a ^ (((a >> 7) & ((1u << d.bits) - 1)) << 4);
}

// Reports a descriptor the ISA (or the emulator's model of it) does not allow.
void check_desc(uint64_t bits, const char* which, bool mn_major, unsigned mn_extent,
                std::source_location where) {
  const Desc d = decode(bits);
  const auto bad = [&](const std::string& why) {
    simt::report(BugKind::bad_descriptor,
                 cat("wgmma operand ", which, " (", mn_major ? "MN" : "K", "-major) descriptor ", hex64(bits),
                     " [start ", d.start, ", LBO ", d.lbo, ", SBO ", d.sbo, ", base offset ", d.base, ", swizzle ",
                     d.width ? std::to_string(d.width) + "B" : std::string("none"), "]: ", why),
                 where);
  };
  constexpr uint64_t kReserved = (uint64_t{3} << 14) | (uint64_t{3} << 30) | (uint64_t{7} << 46) |
                                 (uint64_t{0x3FF} << 52);
  if (bits & kReserved) bad("reserved bits (14-15, 30-31, 46-48, 52-61) are set");
  if (d.base != 0)
    bad("non-zero matrix base offset: align the swizzled tile to its pattern (the emulator does not model "
        "the base offset)");
  if (d.width != 0) {
    const unsigned pattern = 8 * d.width;
    if (!mn_major && d.start % pattern + 32 > d.width)
      bad(cat("a K-major ", d.width, "B-swizzled operand must start in the first row of a ", pattern,
              "-byte aligned pattern with its 32 bytes of K inside that row (start % ", pattern, " = ",
              d.start % pattern, ")"));
    if (mn_major && d.start % pattern != 0)
      bad(cat("an MN-major ", d.width, "B-swizzled operand must start on a ", pattern,
              "-byte aligned pattern (start % ", pattern, " = ", d.start % pattern, ")"));
    const bool sbo_used = mn_major || mn_extent > 8;
    if (sbo_used && d.sbo % pattern != 0)
      bad(cat("the stride byte offset must be a multiple of the ", pattern, "-byte swizzle pattern"));
    if (mn_major && mn_extent > d.width / 2 && d.lbo % pattern != 0)
      bad(cat("the leading byte offset must be a multiple of the ", pattern, "-byte swizzle pattern"));
  }
  const std::size_t bytes = dynamic_shared_bytes();
  for (unsigned mn = 0; mn < mn_extent; ++mn)
    for (unsigned k = 0; k < 16; ++k) {
      const uint32_t off = element_offset(d, mn_major, mn, k);
      if (off + 2 > bytes)
        bad(cat("element (", mn_major ? "mn " : "mn ", mn, ", k ", k, ") is at shared offset ", off,
                ", past the ", bytes, " bytes of dynamic shared memory"));
    }
}

// An operand element, read at the wgmma's wait (a kernel read: seen by the sanitizers). Bytes
// that differ from the async proxy's view were stored by the generic proxy after the last
// fence.proxy.async: the wgmma may not see them on the GPU.
float bf16_at(uint32_t offset, const WgmmaOp& op, const char* which) {
  uint16_t h;
  std::memcpy(&h, simt::detail::tl_dynamic_shared + offset, 2);
  {
    simt::detail::HideFromTsan hide;
    const auto& view = simt::sm90::block_state().async_view;
    if (offset + 2 <= view.size() && std::memcmp(&view[offset], &h, 2) != 0)
      simt::report(BugKind::async_protocol,
                   cat("wgmma operand ", which, " reads shared offset ", offset,
                       ", written by ordinary stores after the last fence.proxy.async: the async proxy "
                       "(wgmma, TMA) sees generic-proxy writes only after a fence.proxy.async"),
                   op.where);
  }
  return std::bit_cast<float>(uint32_t{h} << 16);
}
float bf16_of(uint32_t reg, int half) { return std::bit_cast<float>((reg >> (16 * half)) << 16); }

// ---- instructions -------------------------------------------------------------------------------

struct MmaIn {
  int n;
  bool trans_a, trans_b, a_from_regs;
  float* d;
  uint32_t a[4];
  uint64_t desc_a, desc_b;
  int scale_d;
};

void issue(WgArrival* const* threads, unsigned g, void*) {
  simt::detail::HideFromTsan hide;  // captures/poisons other threads' registers: not kernel accesses
  Warpgroup& wg = simt::sm90::block_state().warpgroups[g];
  const MmaIn& first = *static_cast<const MmaIn*>(threads[0]->in);
  const std::source_location where = threads[0]->where;
  for (unsigned i = 1; i < kWarpgroupSize; ++i) {
    const MmaIn& x = *static_cast<const MmaIn*>(threads[i]->in);
    if (x.n != first.n || x.trans_a != first.trans_a || x.trans_b != first.trans_b ||
        x.a_from_regs != first.a_from_regs || x.desc_b != first.desc_b ||
        (!x.a_from_regs && x.desc_a != first.desc_a) || (x.scale_d != 0) != (first.scale_d != 0))
      simt::report(BugKind::warpgroup_mismatch,
                   cat("wgmma.mma_async: thread ", g * kWarpgroupSize + i, " of warpgroup ", g,
                       " passes different operands than thread ", g * kWarpgroupSize,
                       " (descriptors A ", hex64(x.desc_a), " vs ", hex64(first.desc_a), ", B ", hex64(x.desc_b),
                       " vs ", hex64(first.desc_b), ", scale-d ", x.scale_d, " vs ", first.scale_d,
                       "): they must be uniform across the warpgroup"),
                   where);
  }
  if (!wg.fenced)
    simt::report(BugKind::async_protocol,
                 "wgmma.mma_async without a wgmma.fence since the warpgroup's last wgmma.wait_group (or kernel "
                 "start): the ISA requires the fence between register accesses and the wgmma that uses them",
                 where);
  if (!first.a_from_regs) check_desc(first.desc_a, "A", first.trans_a, 64, where);
  check_desc(first.desc_b, "B", first.trans_b, static_cast<unsigned>(first.n), where);

  WgmmaOp op;
  op.where = where;
  op.n = first.n;
  op.trans_a = first.trans_a;
  op.trans_b = first.trans_b;
  op.a_from_regs = first.a_from_regs;
  op.scale_d = first.scale_d != 0;
  op.desc_a = first.desc_a;
  op.desc_b = first.desc_b;
  const unsigned nd = static_cast<unsigned>(op.n) / 2;
  op.c.assign(std::size_t{kWarpgroupSize} * nd, 0.0f);
  if (op.a_from_regs) op.a.resize(std::size_t{kWarpgroupSize} * 4);
  for (unsigned i = 0; i < kWarpgroupSize; ++i) {
    const MmaIn& x = *static_cast<const MmaIn*>(threads[i]->in);
    op.d[i] = x.d;
    for (auto it = wg.ops.rbegin(); it != wg.ops.rend(); ++it)
      if (it->d[i] == x.d && it->n == op.n) {
        op.chained[i] = true;
        break;
      }
    if (!op.chained[i]) std::memcpy(&op.c[i * nd], x.d, nd * sizeof(float));
    for (unsigned j = 0; j < nd; ++j) std::memcpy(&x.d[j], &kPoison, sizeof kPoison);
    if (op.a_from_regs) std::memcpy(&op.a[i * 4], x.a, sizeof x.a);
  }
  wg.ops.push_back(std::move(op));
}

// Computes one wgmma and hands its result to the next pending wgmma on the same accumulator, or
// writes the thread's registers. `later` and `pending` are the wgmmas issued after it (the rest
// of this wait's due ones, then those that stay pending), in issue order.
void perform(WgmmaOp& op, WgmmaOp* later, std::size_t nlater, std::vector<WgmmaOp>& pending) {
  const unsigned n = static_cast<unsigned>(op.n), nd = n / 2;
  float A[64][16];
  std::vector<float> B(std::size_t{16} * n);
  if (op.a_from_regs) {
    for (unsigned i = 0; i < kWarpgroupSize; ++i) {
      const unsigned w = i / 32, lane = i % 32, g = lane / 4, t = lane % 4;
      for (int e = 0; e < 8; ++e)
        A[16 * w + g + 8 * ((e >> 1) & 1)][2 * t + (e & 1) + 8 * (e >= 4)] = bf16_of(op.a[i * 4 + e / 2], e % 2);
    }
  } else {
    const Desc d = decode(op.desc_a);
    for (unsigned m = 0; m < 64; ++m)
      for (unsigned k = 0; k < 16; ++k) A[m][k] = bf16_at(element_offset(d, op.trans_a, m, k), op, "A");
  }
  const Desc db = decode(op.desc_b);
  for (unsigned nn = 0; nn < n; ++nn)
    for (unsigned k = 0; k < 16; ++k) B[k * n + nn] = bf16_at(element_offset(db, op.trans_b, nn, k), op, "B");

  simt::detail::HideFromTsan hide;  // the threads' registers
  std::vector<float> res(nd);
  for (unsigned i = 0; i < kWarpgroupSize; ++i) {
    const unsigned w = i / 32, lane = i % 32, g = lane / 4, t = lane % 4;
    for (unsigned j = 0; j < nd; ++j) {
      const unsigned row = 16 * w + g + 8 * ((j >> 1) & 1), col = 8 * (j >> 2) + 2 * t + (j & 1);
      float acc = op.scale_d ? op.c[i * nd + j] : 0.0f;
      for (unsigned k = 0; k < 16; ++k) acc = std::fmaf(A[row][k], B[k * n + col], acc);
      res[j] = acc;
    }
    WgmmaOp* next = nullptr;
    for (std::size_t l = 0; l < nlater && !next; ++l)
      if (later[l].d[i] == op.d[i] && later[l].chained[i]) next = &later[l];
    for (std::size_t l = 0; l < pending.size() && !next; ++l)
      if (pending[l].d[i] == op.d[i] && pending[l].chained[i]) next = &pending[l];
    if (next) {
      std::memcpy(&next->c[i * nd], res.data(), nd * sizeof(float));
      continue;
    }
    for (unsigned j = 0; j < nd; ++j) {
      uint32_t now;
      std::memcpy(&now, &op.d[i][j], sizeof now);
      if (now != kPoison)
        simt::report(BugKind::async_protocol,
                     cat("thread ", i, " of the warpgroup wrote its accumulator register d[", j,
                         "] while the wgmma.mma_async issued at ", op.where.file_name(), ":", op.where.line(),
                         " was pending (before the wgmma.wait_group that covers it)"),
                     op.where);
    }
    std::memcpy(op.d[i], res.data(), nd * sizeof(float));
  }
}

void simple_rendezvous(const char* op, std::source_location where, simt::sm90::WgComplete complete,
                       int arg) {
  WgArrival a{op, where, &arg, nullptr};
  simt::sm90::warpgroup_rendezvous(a, complete, nullptr);
}

}  // namespace

uint32_t shared_address(const void* p, std::source_location where) {
  const auto* base = simt::detail::tl_dynamic_shared;
  const std::size_t bytes = dynamic_shared_bytes();
  const auto* q = static_cast<const unsigned char*>(p);
  if (base == nullptr || q < base || q > base + bytes || bytes >= (std::size_t{1} << 18)) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "shared_address(%p): not inside the block's %zu bytes of dynamic shared memory, the "
                  "emulator's shared window for wgmma descriptors",
                  p, bytes);
    simt::report(BugKind::invalid_argument, buf, where);
  }
  return static_cast<uint32_t>(q - base);
}

void wgmma_fence(std::source_location where) {
  simple_rendezvous("wgmma.fence", where, [](WgArrival* const*, unsigned g, void*) {
    simt::detail::HideFromTsan hide;
    simt::sm90::block_state().warpgroups[g].fenced = true;
  }, 0);
}

void wgmma_commit_group(std::source_location where) {
  simple_rendezvous("wgmma.commit_group", where, [](WgArrival* const*, unsigned g, void*) {
    simt::detail::HideFromTsan hide;
    Warpgroup& wg = simt::sm90::block_state().warpgroups[g];
    for (auto it = wg.ops.rbegin(); it != wg.ops.rend() && it->group < 0; ++it) it->group = wg.committed;
    ++wg.committed;
  }, 0);
}

void wgmma_wait_group(int pending, std::source_location where) {
  simple_rendezvous("wgmma.wait_group", where, [](WgArrival* const* threads, unsigned g, void*) {
    std::vector<WgmmaOp> due;
    std::vector<WgmmaOp>* ops;
    {
      simt::detail::HideFromTsan hide;
      const int keep = *static_cast<const int*>(threads[0]->in);
      Warpgroup& wg = simt::sm90::block_state().warpgroups[g];
      wg.fenced = false;
      const long done_below = wg.committed - keep;
      std::vector<WgmmaOp> kept;
      for (WgmmaOp& op : wg.ops) (op.group >= 0 && op.group < done_below ? due : kept).push_back(std::move(op));
      wg.ops = std::move(kept);
      ops = &wg.ops;
    }
    // In issue order; a due wgmma may hand its result to a later due one or to one still pending.
    for (std::size_t i = 0; i < due.size(); ++i) perform(due[i], due.data() + i + 1, due.size() - i - 1, *ops);
  }, pending);
}

void wgmma_mma_async(int n, bool trans_a, bool trans_b, float* d, const uint32_t* a_regs, uint64_t desc_a,
                     uint64_t desc_b, int scale_d, std::source_location where) {
  MmaIn in{n, trans_a, trans_b, a_regs != nullptr, d, {}, desc_a, desc_b, scale_d};
  if (a_regs) std::memcpy(in.a, a_regs, sizeof in.a);
  WgArrival a{"wgmma.mma_async", where, &in, nullptr};
  simt::sm90::warpgroup_rendezvous(a, &issue, nullptr);
}

}  // namespace ouro::ptx::emu
