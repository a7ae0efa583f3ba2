// Warp-level intrinsics (__shfl*_sync, __ballot_sync, votes, __reduce_*_sync, __syncwarp,
// __activemask) on top of the warp rendezvous (warp.h).
//
// Shuffles follow the PTX ISA's shfl.sync definition exactly, including `width`: CUDA passes
// c = ((32 - width) << 8) | clamp, with clamp 0 for .up and 0x1f otherwise, so a lane whose
// source falls outside its segment gets its own value back. A source lane outside `mask` is
// undefined on the GPU; here it reads as all-0xFF bytes (NaN for floats) so that it shows.
#pragma once
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#include "ouro/simt/report.h"
#include "ouro/simt/warp.h"

namespace ouro::simt::detail {

enum class ShflMode { idx, up, down, bfly };

template <class T>
struct ShflIn {
  T value;
  int b;  // source lane / delta / lane mask
};

inline int check_width(int width, const char* op, std::source_location where) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    report(BugKind::invalid_argument, std::string(op) + ": width " + std::to_string(width) +
                                          " is not a power of two in [1, 32]", where);
  return width;
}

template <class T>
T shfl(ShflMode mode, const char* op, unsigned mask, T var, int b, int width, std::source_location where) {
  static_assert(std::is_trivially_destructible_v<T>, "shuffled values must be plain values");
  check_width(width, op, where);
  const unsigned segmask = static_cast<unsigned>(32 - width) & 0x1f;
  const unsigned cval = mode == ShflMode::up ? 0u : 0x1fu;
  auto compute = [mode, segmask, cval](const Lanes<ShflIn<T>>& in, Lanes<T>& out, unsigned m) {
    for (unsigned lane = 0; lane < kWarpSize; ++lane) {
      if (!(m >> lane & 1u)) continue;
      const int bval = in[lane].b;
      const int max_lane = static_cast<int>((lane & segmask) | (cval & ~segmask));
      const int min_lane = static_cast<int>(lane & segmask);
      int j = 0;
      bool ok = false;
      switch (mode) {
        case ShflMode::up: j = static_cast<int>(lane) - bval; ok = j >= max_lane; break;
        case ShflMode::down: j = static_cast<int>(lane) + bval; ok = j <= max_lane; break;
        case ShflMode::bfly: j = static_cast<int>(lane) ^ bval; ok = j <= max_lane; break;
        case ShflMode::idx:
          j = min_lane | (bval & 0x1f & static_cast<int>(~segmask));
          ok = j <= max_lane;
          break;
      }
      if (!ok) j = static_cast<int>(lane);
      if (j >= 0 && j < 32 && (m >> j & 1u)) {
        out[lane] = in[static_cast<unsigned>(j)].value;
      } else {
        std::memset(static_cast<void*>(&out[lane]), 0xFF, sizeof(T));  // inactive source: undefined
      }
    }
  };
  return warp_collective<T>(mask, ShflIn<T>{var, b}, compute, op, where);
}

}  // namespace ouro::simt::detail

template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
                     std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::shfl(::ouro::simt::detail::ShflMode::idx, "__shfl_sync", mask, var,
                                    src_lane, width, where);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                        std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::shfl(::ouro::simt::detail::ShflMode::up, "__shfl_up_sync", mask, var,
                                    static_cast<int>(delta), width, where);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                          std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::shfl(::ouro::simt::detail::ShflMode::down, "__shfl_down_sync", mask,
                                    var, static_cast<int>(delta), width, where);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                         std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::shfl(::ouro::simt::detail::ShflMode::bfly, "__shfl_xor_sync", mask,
                                    var, lane_mask, width, where);
}

// Lanes of the warp that exist and have not returned. The GPU reports the lanes converged at
// this instruction; the emulator has no divergence to observe, so divergent code that passes
// __activemask() to a collective is reported there (absent lane / mismatch / deadlock).
inline unsigned __activemask() { return ::ouro::simt::live_lanes(); }

inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location where = std::source_location::current()) {
  struct Empty {};
  ::ouro::simt::warp_collective<Empty>(
      mask, Empty{}, [](const ::ouro::simt::Lanes<Empty>&, ::ouro::simt::Lanes<Empty>&, unsigned) {},
      "__syncwarp", where, /*orders_memory=*/true);
}

namespace ouro::simt::detail {
// Every lane of `mask` gets the fold of f over the values of the lanes in mask, in lane order.
template <class T, class F>
T warp_fold(unsigned mask, T v, const char* op, std::source_location where, F f) {
  auto compute = [f](const Lanes<T>& in, Lanes<T>& out, unsigned m) {
    T acc{};
    bool first = true;
    for (unsigned l = 0; l < kWarpSize; ++l) {
      if (!(m >> l & 1u)) continue;
      acc = first ? in[l] : f(acc, in[l]);
      first = false;
    }
    for (unsigned l = 0; l < kWarpSize; ++l)
      if (m >> l & 1u) out[l] = acc;
  };
  return warp_collective<T>(mask, v, compute, op, where);
}
}  // namespace ouro::simt::detail

inline unsigned __ballot_sync(unsigned mask, int predicate,
                              std::source_location where = std::source_location::current()) {
  auto compute = [](const ::ouro::simt::Lanes<int>& in, ::ouro::simt::Lanes<unsigned>& out, unsigned m) {
    unsigned bits = 0;
    for (unsigned l = 0; l < 32; ++l)
      if ((m >> l & 1u) && in[l]) bits |= 1u << l;
    for (unsigned l = 0; l < 32; ++l)
      if (m >> l & 1u) out[l] = bits;
  };
  return ::ouro::simt::warp_collective<unsigned>(mask, predicate, compute, "__ballot_sync", where);
}
inline int __any_sync(unsigned mask, int predicate,
                      std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::warp_fold<int>(mask, predicate != 0, "__any_sync", where,
                                              [](int a, int b) { return a | b; });
}
inline int __all_sync(unsigned mask, int predicate,
                      std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::warp_fold<int>(mask, predicate != 0, "__all_sync", where,
                                              [](int a, int b) { return a & b; });
}
// __uni_sync: whether every lane of mask has the same predicate.
inline int __uni_sync(unsigned mask, int predicate,
                      std::source_location where = std::source_location::current()) {
  const unsigned b = __ballot_sync(mask, predicate, where);
  return b == 0 || b == mask;
}

#define OURO_SIMT_REDUCE(NAME, T, EXPR)                                                        \
  inline T NAME(unsigned mask, T value,                                                        \
                std::source_location where = std::source_location::current()) {                \
    return ::ouro::simt::detail::warp_fold<T>(mask, value, #NAME, where,                       \
                                               [](T a, T b) -> T { return EXPR; });            \
  }
OURO_SIMT_REDUCE(__reduce_add_sync, unsigned, a + b)
OURO_SIMT_REDUCE(__reduce_add_sync, int, static_cast<int>(static_cast<unsigned>(a) + static_cast<unsigned>(b)))
OURO_SIMT_REDUCE(__reduce_min_sync, unsigned, a < b ? a : b)
OURO_SIMT_REDUCE(__reduce_min_sync, int, a < b ? a : b)
OURO_SIMT_REDUCE(__reduce_max_sync, unsigned, a > b ? a : b)
OURO_SIMT_REDUCE(__reduce_max_sync, int, a > b ? a : b)
OURO_SIMT_REDUCE(__reduce_and_sync, unsigned, a & b)
OURO_SIMT_REDUCE(__reduce_or_sync, unsigned, a | b)
OURO_SIMT_REDUCE(__reduce_xor_sync, unsigned, a ^ b)
#undef OURO_SIMT_REDUCE

// __match_any_sync: lanes of mask holding the same value as the caller.
template <class T>
inline unsigned __match_any_sync(unsigned mask, T value,
                                 std::source_location where = std::source_location::current()) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__match_any_sync takes 32- or 64-bit values");
  auto compute = [](const ::ouro::simt::Lanes<T>& in, ::ouro::simt::Lanes<unsigned>& out, unsigned m) {
    for (unsigned l = 0; l < 32; ++l) {
      if (!(m >> l & 1u)) continue;
      unsigned same = 0;
      for (unsigned k = 0; k < 32; ++k)
        if ((m >> k & 1u) && std::memcmp(&in[k], &in[l], sizeof(T)) == 0) same |= 1u << k;
      out[l] = same;
    }
  };
  return ::ouro::simt::warp_collective<unsigned>(mask, value, compute, "__match_any_sync", where);
}
// __match_all_sync: mask if every lane of mask holds the same value (*pred = 1), else 0.
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred,
                                 std::source_location where = std::source_location::current()) {
  const unsigned same = __match_any_sync(mask, value, where);
  *pred = same == mask;
  return same == mask ? mask : 0u;
}
