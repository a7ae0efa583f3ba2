// CUDA atomics for the emulator: real atomic read-modify-writes, because blocks of one grid run
// on several OS threads at once. acq_rel ordering: stronger than the GPU's relaxed atomics, so
// the usual "__threadfence(); atomicAdd(counter)" handoff needs no fence modelling under TSan.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ouro/simt/thread.h"

namespace ouro::simt::detail {

constexpr auto kAtomicOrder = std::memory_order_acq_rel;

// CAS loop applying f to the value at addr; returns the old value.
template <class T, class F>
inline T atomic_update(T* addr, F f) {
  std::atomic_ref<T> ref(*addr);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, f(old), kAtomicOrder, std::memory_order_relaxed)) {
  }
  return old;
}

// Same on a 16- or 32-bit value type stored as raw bits (bf16, half, bf16x2, half2).
template <class V, class F>
inline V atomic_update_bits(V* addr, F f) {
  using Bits = std::conditional_t<sizeof(V) == 2, std::uint16_t, std::uint32_t>;
  static_assert(sizeof(V) == sizeof(Bits));
  std::atomic_ref<Bits> ref(*reinterpret_cast<Bits*>(addr));
  Bits old_bits = ref.load(std::memory_order_relaxed);
  for (;;) {
    V old_v;
    std::memcpy(static_cast<void*>(&old_v), &old_bits, sizeof(V));
    const V new_v = f(old_v);
    Bits new_bits;
    std::memcpy(&new_bits, static_cast<const void*>(&new_v), sizeof(V));
    if (ref.compare_exchange_weak(old_bits, new_bits, kAtomicOrder, std::memory_order_relaxed))
      return old_v;
  }
}

template <class T>
concept AtomicInt = std::is_same_v<T, int> || std::is_same_v<T, unsigned> ||
                    std::is_same_v<T, unsigned long long> || std::is_same_v<T, long long>;
template <class T>
concept AtomicFloat = std::is_same_v<T, float> || std::is_same_v<T, double>;

}  // namespace ouro::simt::detail

// add / sub
template <class T>
  requires(::ouro::simt::detail::AtomicInt<T> || ::ouro::simt::detail::AtomicFloat<T>)
inline T atomicAdd(T* addr, std::type_identity_t<T> val) {
  return std::atomic_ref<T>(*addr).fetch_add(val, ::ouro::simt::detail::kAtomicOrder);
}
template <class T>
  requires(::ouro::simt::detail::AtomicInt<T> || ::ouro::simt::detail::AtomicFloat<T>)
inline T atomicSub(T* addr, std::type_identity_t<T> val) {
  return std::atomic_ref<T>(*addr).fetch_sub(val, ::ouro::simt::detail::kAtomicOrder);
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162* addr, __nv_bfloat162 val) {
  return ::ouro::simt::detail::atomic_update_bits(addr, [val](__nv_bfloat162 o) { return __hadd2(o, val); });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* addr, __nv_bfloat16 val) {
  return ::ouro::simt::detail::atomic_update_bits(addr, [val](__nv_bfloat16 o) { return __hadd(o, val); });
}
inline __half2 atomicAdd(__half2* addr, __half2 val) {
  return ::ouro::simt::detail::atomic_update_bits(addr, [val](__half2 o) { return __hadd2(o, val); });
}
inline __half atomicAdd(__half* addr, __half val) {
  return ::ouro::simt::detail::atomic_update_bits(addr, [val](__half o) { return __hadd(o, val); });
}

// exchange / compare-and-swap
template <class T>
  requires(::ouro::simt::detail::AtomicInt<T> || ::ouro::simt::detail::AtomicFloat<T>)
inline T atomicExch(T* addr, std::type_identity_t<T> val) {
  return std::atomic_ref<T>(*addr).exchange(val, ::ouro::simt::detail::kAtomicOrder);
}
template <class T>
  requires(::ouro::simt::detail::AtomicInt<T> || std::is_same_v<T, unsigned short>)
inline T atomicCAS(T* addr, std::type_identity_t<T> compare, std::type_identity_t<T> val) {
  if (!std::atomic_ref<T>(*addr).compare_exchange_strong(compare, val, ::ouro::simt::detail::kAtomicOrder,
                                                         std::memory_order_relaxed)) {
    // A failed CAS is how threads wait for each other (locks, flags): let the others run.
    ::ouro::simt::spin_yield();
  }
  return compare;  // the old value whether or not it matched
}

// min / max (floats: an extension of the emulator; the GPU lacks them before sm_90)
template <class T>
  requires(::ouro::simt::detail::AtomicInt<T> || ::ouro::simt::detail::AtomicFloat<T>)
inline T atomicMin(T* addr, std::type_identity_t<T> val) {
  return ::ouro::simt::detail::atomic_update(addr, [val](T o) { return val < o ? val : o; });
}
template <class T>
  requires(::ouro::simt::detail::AtomicInt<T> || ::ouro::simt::detail::AtomicFloat<T>)
inline T atomicMax(T* addr, std::type_identity_t<T> val) {
  return ::ouro::simt::detail::atomic_update(addr, [val](T o) { return val > o ? val : o; });
}

// bitwise
template <class T>
  requires ::ouro::simt::detail::AtomicInt<T>
inline T atomicAnd(T* addr, std::type_identity_t<T> val) {
  return std::atomic_ref<T>(*addr).fetch_and(val, ::ouro::simt::detail::kAtomicOrder);
}
template <class T>
  requires ::ouro::simt::detail::AtomicInt<T>
inline T atomicOr(T* addr, std::type_identity_t<T> val) {
  return std::atomic_ref<T>(*addr).fetch_or(val, ::ouro::simt::detail::kAtomicOrder);
}
template <class T>
  requires ::ouro::simt::detail::AtomicInt<T>
inline T atomicXor(T* addr, std::type_identity_t<T> val) {
  return std::atomic_ref<T>(*addr).fetch_xor(val, ::ouro::simt::detail::kAtomicOrder);
}

// wrapping increment / decrement, as the ISA defines them
inline unsigned atomicInc(unsigned* addr, unsigned limit) {
  return ::ouro::simt::detail::atomic_update(addr, [limit](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned* addr, unsigned limit) {
  return ::ouro::simt::detail::atomic_update(
      addr, [limit](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}

// Memory fences: the emulator's atomics already order; these keep the compiler honest.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_signal_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
