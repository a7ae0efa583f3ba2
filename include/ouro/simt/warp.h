// Warp rendezvous: the one primitive every warp-wide operation of the emulator is built on.
//
// HOW TO USE IT (for shfl/ballot here, and for ouro::ptx's ldmatrix / mma / wgmma emulation):
//
//   Each lane calls
//       Out r = simt::warp_collective<Out>(mask, in, compute, "ldmatrix.x4", where);
//   with its own `in` (a small plain value: registers, an address, a predicate).
//   The call blocks the lane (its fiber yields) until every lane named in `mask` has arrived at
//   the SAME operation name and call site with the SAME mask. The last lane to arrive runs
//       compute(const Lanes<In>& in, Lanes<Out>& out, unsigned mask)
//   exactly once, over all lanes' inputs (in[lane]; only lanes in `mask` hold data); compute
//   must fill out[lane] for every lane in `mask`. Each lane then returns its own out[lane].
//   `compute` may read and write memory (ldmatrix reads the shared-memory rows whose addresses
//   the lanes passed in): it runs on the last lane's fiber, so sanitizers attribute those
//   accesses to that lane.
//
//   Pass `where` down from your public wrapper as a defaulted argument
//       void ldmatrix_x4(uint32_t (&r)[4], const void* row,
//                        std::source_location where = std::source_location::current());
//   so that reports point at the kernel's line, not at the wrapper.
//
//   Bugs the rendezvous reports (simt::report, see report.h), naming kernel, block, thread and
//   file:line: the calling lane not in its mask; lanes whose masks overlap but differ, or that
//   meet at different operations or call sites (disjoint masks may be pending at once, e.g. two
//   half-warps in different branches); a lane named in the mask that has exited or does not
//   exist (blocks whose size is not a multiple of 32); and, through the scheduler, a lane that
//   never comes (deadlock). Use
//   simt::report(BugKind::misaligned_address, ...) yourself for address checks.
//
//   Memory ordering: pass orders_memory = true only for operations that order memory between
//   lanes on the GPU (__syncwarp). Shuffles, ldmatrix and mma do not; the TSan build then keeps
//   reporting races between lanes that only exchanged registers.
//
//   Costs: one fiber switch per lane (~15-30 ns) plus compute; Lanes<T> lives on the last lane's
//   fiber stack (32 * sizeof(T) bytes each for in and out), keep In/Out at most a few hundred
//   bytes.
#pragma once
#include <cstring>
#include <source_location>
#include <type_traits>

namespace ouro::simt {

inline constexpr unsigned kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;

// One value per lane of a warp, indexed by lane id 0..31.
template <class T>
struct Lanes {
  T v[kWarpSize];
  T& operator[](unsigned lane) { return v[lane]; }
  const T& operator[](unsigned lane) const { return v[lane]; }
};

namespace detail {

// One lane's arrival at a collective; lives on the lane's fiber stack while it waits.
struct WarpArrival {
  unsigned mask;
  const char* op;
  std::source_location where;
  bool orders_memory;
  const void* in;
  void* out;
  // Run by the last lane: gathers every lane's `in`, computes, scatters every lane's `out`.
  void (*complete)(WarpArrival* const* lanes, unsigned mask, void* ctx);
  void* ctx;
};

// Rendezvous core (src/simt/warp.cpp): returns once the collective completed and *a.out holds
// this lane's result.
void warp_arrive(WarpArrival& a);

// Under TSan the copies of lanes' inputs/outputs between fiber stacks are the emulator's own
// business, not accesses of the kernel: hide them from the race detector.
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
struct HideFromTsan {
  HideFromTsan() { __tsan_ignore_thread_begin(); }
  ~HideFromTsan() { __tsan_ignore_thread_end(); }
};
// Inside a HideFromTsan scope: let the kernel's own accesses (a collective's compute) be seen.
struct ShowToTsan {
  ShowToTsan() { __tsan_ignore_thread_end(); }
  ~ShowToTsan() { __tsan_ignore_thread_begin(); }
};
#else
struct HideFromTsan {
  HideFromTsan() {}  // user-provided: no unused-variable warnings at the call sites
};
struct ShowToTsan {
  ShowToTsan() {}
};
#endif

}  // namespace detail

// The generic warp collective; see the note at the top of this file.
template <class Out, class In, class Compute>
Out warp_collective(unsigned mask, const In& in, Compute&& compute, const char* op,
                    std::source_location where, bool orders_memory = false) {
  // Plain values moved as bytes. (Not is_trivially_copyable: CUDA's __nv_bfloat162 and __half2
  // declare their own copy assignment, yet are plain bits.)
  static_assert(std::is_trivially_destructible_v<In> && std::is_trivially_destructible_v<Out>,
                "warp collective values must be plain values");
  using Fn = std::remove_reference_t<Compute>;
  Out out;
  detail::WarpArrival a{mask, op, where, orders_memory, &in, &out,
                        [](detail::WarpArrival* const* lanes, unsigned m, void* ctx) {
                          Lanes<In> ins;
                          Lanes<Out> outs;
                          {
                            detail::HideFromTsan hide;
                            for (unsigned l = 0; l < kWarpSize; ++l)
                              if (m >> l & 1u) std::memcpy(static_cast<void*>(&ins[l]), lanes[l]->in, sizeof(In));
                          }
                          (*static_cast<Fn*>(ctx))(static_cast<const Lanes<In>&>(ins), outs, m);
                          detail::HideFromTsan hide;
                          for (unsigned l = 0; l < kWarpSize; ++l)
                            if (m >> l & 1u) std::memcpy(lanes[l]->out, static_cast<const void*>(&outs[l]), sizeof(Out));
                        },
                        const_cast<void*>(static_cast<const void*>(&compute))};
  detail::warp_arrive(a);
  return out;
}

// Lanes of the caller's warp that exist (the last warp of a block whose size is not a multiple
// of 32 is partial) and have not returned from the kernel.
unsigned live_lanes();
// The caller's lane and warp (shorthands for this_thread().lane / .warp).
unsigned lane_id();
unsigned warp_id();

}  // namespace ouro::simt
