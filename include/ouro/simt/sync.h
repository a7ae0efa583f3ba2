// Block-wide barriers: __syncthreads and its counting/voting forms.
//
// A barrier completes when every live (not yet returned) thread of the block waits at the same
// barrier call site; threads that returned do not count, as on sm_70+. A thread arriving at a
// different __syncthreads than the others, or a barrier that can never complete because some
// live thread waits elsewhere, is reported (report.h) with every thread's state.
#pragma once
#include <source_location>

namespace ouro::simt::detail {
// kind: 0 sync, 1 count, 2 and, 3 or (BarrierKind in src/simt/scheduler.h).
int block_barrier(int kind, int predicate, const char* op, std::source_location where);
}  // namespace ouro::simt::detail

inline void __syncthreads(std::source_location where = std::source_location::current()) {
  ::ouro::simt::detail::block_barrier(0, 0, "__syncthreads", where);
}
inline int __syncthreads_count(int predicate,
                               std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::block_barrier(1, predicate, "__syncthreads_count", where);
}
inline int __syncthreads_and(int predicate,
                             std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::block_barrier(2, predicate, "__syncthreads_and", where);
}
inline int __syncthreads_or(int predicate,
                            std::source_location where = std::source_location::current()) {
  return ::ouro::simt::detail::block_barrier(3, predicate, "__syncthreads_or", where);
}
