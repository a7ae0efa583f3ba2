// ouro::ptx, Hopper (sm_90a) part: warpgroup MMA (wgmma), mbarrier, the async-proxy fence,
// elect.sync and setmaxnreg. Same contract as <ouro/ptx.h>: under nvcc one `asm volatile` each
// (compiled only for sm_90a: other targets get a trap, the kernels choose the path at run time);
// under the SIMT emulator (g++ with OURO_SIMT) an emulation of the PTX ISA (src/simt/ptx_wgmma.cpp,
// ptx_sync90.cpp). Kernels include <ouro/cuda.h> first, then this header.
//
// Shared-memory addresses. wgmma descriptors and mbarriers take 32-bit shared-window addresses
// (shared_address(p)). Under nvcc that is __cvta_generic_to_shared; under the emulator it is the
// byte offset of p inside the block's DYNAMIC shared memory (which starts 1 KiB aligned), so the
// swizzle's address bits are the same as on the GPU when the kernel aligns its tiles; wgmma
// operands must therefore live in dynamic shared memory (Hopper kernels need it anyway for more
// than 48 KiB), and the emulator reports a descriptor that points anywhere else.
//
// wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16 (PTX ISA "Asynchronous Warpgroup Level
// Matrix Multiply-Accumulate"): the 128 threads of a warpgroup (4 consecutive warps, warp w of
// the group owning rows 16w..16w+15) compute D(64xN) = A(64x16) * B(16xN) + (scale_d ? D : 0).
// With g = lane / 4, t = lane % 4:
//   D (N/2 fp32 per thread): d[i] at row 16w + g + 8 * ((i >> 1) & 1), col 8 * (i >> 2) + 2t + (i & 1)
//   A from registers (4 x bf16x2): a_i (reg i/2, low half first) at row 16w + g + 8 * ((i >> 1) & 1),
//       col 2t + (i & 1) + 8 * (i >= 4)   (the mma.m16n8k16 A layout, one 16-row slab per warp)
// A and B from shared memory through 64-bit matrix descriptors ("Matrix Descriptor Format"):
//   bits 0-13 start address >> 4, 16-29 leading byte offset (LBO) >> 4, 32-45 stride byte offset
//   (SBO) >> 4, 49-51 base offset, 62-63 swizzle (0 none, 1 128B, 2 64B, 3 32B).
// Element (mn, k) of A (mn = m) or B (mn = n), 16-bit elements, at byte address ("Canonical
// Layouts"; K-major is trans = 0, MN-major trans = 1; S = swizzle width in bytes, E = S / 2):
//   K-major,  none:    start + (mn%8)*16 + (mn/8)*SBO + (k%8)*2 + (k/8)*LBO
//   K-major,  S-byte:  start + (mn%8)*S  + (mn/8)*SBO + k*2                    (LBO unused)
//   MN-major, none:    start + (mn%8)*2  + (mn/8)*SBO + (k%8)*16 + (k/8)*LBO
//   MN-major, S-byte:  start + (mn%E)*2  + (mn/E)*LBO + (k%8)*S  + (k/8)*SBO
// then the swizzle of the address: bits [4, 4+b) ^= bits [7, 7+b), b = 1, 2, 3 for 32, 64, 128B.
// The emulator reports (bad_descriptor) reserved bits set, a non-zero base offset (it does not
// model it: align swizzled tiles to their pattern, 256/512/1024 B), a swizzled start that is not
// in the first row of an aligned pattern, swizzled strides that are not multiples of the
// pattern, and operands that leave dynamic shared memory.
//
// Ordering (emulator): wgmma.fence, mma_async, commit_group and wait_group are warpgroup
// rendezvous (every thread of the warpgroup at the same call site, else warpgroup_mismatch;
// a thread that never comes makes a deadlock report naming the warpgroup). mma_async captures
// the registers it reads (A, and D unless an earlier pending wgmma of the thread writes the same
// accumulator: chained, as the ISA allows without a fence) and fills D with 0xFFFFFFFF (NaN);
// wait_group<N> then performs, in issue order, every wgmma of the groups older than the N newest,
// reading shared memory at that moment (the latest the ISA allows), and writes D. So reading the
// accumulators before the wait gives NaN, writing them before the wait is reported
// (async_protocol), and so is an mma_async by a thread that has not run wgmma.fence since its last
// wait_group (the ISA requires the fence between register accesses and the wgmma).
// Numerics as mma.m16n8k16 (<ouro/ptx.h>): exact bf16 products, fp32 fmaf in k order from C.
//
// mbarrier (PTX ISA "Parallel Synchronization and Communication Instructions: mbarrier"): a 64-bit
// object in shared memory with a phase, a pending-arrival count (reset to the init count when a
// phase completes) and a transaction count (expect_tx adds bytes, complete_tx removes them); the
// current phase completes when both reach zero. try_wait.parity(p) is true once the phase with
// parity p completed, i.e. while the current phase's parity differs from p. The emulator keeps the
// state beside the object (keyed by its address); try_wait blocks the thread until the phase
// completes (the ISA lets try_wait suspend), so a phase that can never complete is a deadlock,
// reported as mbarrier_hang naming the barrier, its phase, pending arrivals and expected bytes.
// Arrivals release and completed waits acquire (what TSan sees).
//
// TMA (PTX ISA "cp.async.bulk.tensor"; tensor maps from cuTensorMapEncodeTiled, reached through
// cudaGetDriverEntryPoint, which the emulator serves): the 2-D load copies the box at (x, y)
// (x innermost, in elements; negative or past the end is allowed) into shared memory, rows of
// box[0] elements packed one after another, then the swizzle of the shared address as above;
// elements outside the tensor are zero (NaN with FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA); it then
// completes box bytes of transactions on the mbarrier. The store writes the in-bounds elements
// of the box from shared memory back, completing with cp.async.bulk.commit_group / wait_group.
// Emulator: a load fills its destination with 0xFF at issue and lands when a thread would
// otherwise block in try_wait on its barrier (the latest moment the ISA allows), so reading the
// tile before the phase completed reads NaN, and a thread WRITING there first is reported
// (async_protocol). Stores read shared memory at wait_group (.read or not). The destination of
// a swizzled load must be aligned to the swizzle pattern (256/512/1024 B), any other to 128 B.
// Named barriers (PTX ISA "bar, barrier": bar.sync id, n / bar.arrive id, n; every architecture,
// here because the warp-specialized kernels are their users): the barrier with this id completes
// a phase once n threads (a multiple of 32, whole warps) arrived; bar.sync waits for that, bar.arrive
// does not. Id 0 is __syncthreads's, so ids 1..15. Emulator: arrivals counted per thread; an
// arrival with a count other than the phase's first one, an id outside 1..15 or a count that is
// no multiple of 32 or exceeds the block is reported; a phase that never completes is a deadlock
// report naming the barrier and its arrivals. Arrivals release, completed syncs acquire (TSan).
// Kernel parameters of type CUtensorMap are spelled `const OURO_GRID_CONSTANT CUtensorMap map`.
#pragma once
#include <cuda.h>  // CUtensorMap (a type only: nothing links libcuda)

#include <cstdint>

namespace ouro::ptx {

// Swizzle field of a matrix descriptor (bits 62-63).
enum class Swizzle : uint32_t { none = 0, b128 = 1, b64 = 2, b32 = 3 };

// The descriptor bits from a shared-window address and byte offsets (each a multiple of 16).
constexpr uint64_t make_wgmma_desc(uint32_t saddr, uint32_t lbo_bytes, uint32_t sbo_bytes,
                                   Swizzle swizzle) {
  return uint64_t{(saddr & 0x3FFFFu) >> 4} | uint64_t{(lbo_bytes >> 4) & 0x3FFFu} << 16 |
         uint64_t{(sbo_bytes >> 4) & 0x3FFFu} << 32 | uint64_t{static_cast<uint32_t>(swizzle)} << 62;
}

}  // namespace ouro::ptx

#if defined(__CUDACC__)

// sm_90a only: wgmma and setmaxnreg exist on the "a" target alone.
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define OURO_PTX_SM90A 1
#else
#define OURO_PTX_SM90A 0
#endif

#define OURO_GRID_CONSTANT __grid_constant__

namespace ouro::ptx {

namespace sm90_detail {
#if OURO_PTX_SM90A
#include "ouro/ptx_sm90_wgmma.inc"
#endif
}  // namespace sm90_detail

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ uint64_t wgmma_desc(const void* smem, uint32_t lbo_bytes,
                                               uint32_t sbo_bytes, Swizzle swizzle) {
  return make_wgmma_desc(shared_address(smem), lbo_bytes, sbo_bytes, swizzle);
}

// wgmma.fence.sync.aligned: orders the warpgroup's register accesses before the next wgmma.
__device__ __forceinline__ void wgmma_fence() {
#if OURO_PTX_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void wgmma_commit_group() {
#if OURO_PTX_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait_group() {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
#if OURO_PTX_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}

// wgmma.mma_async.sync.aligned.m64nNk16.f32.bf16.bf16, A and B from shared memory.
template <int N, int kTransA = 0, int kTransB = 0>
__device__ __forceinline__ void wgmma_mma_async(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b,
                                                int scale_d) {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma N is a multiple of 8 in 8..256");
  static_assert((kTransA == 0 || kTransA == 1) && (kTransB == 0 || kTransB == 1), "trans is 0 or 1");
#if OURO_PTX_SM90A
  sm90_detail::WgmmaAsm<N>::template ss<kTransA, kTransB>(d, desc_a, desc_b, scale_d);
#else
  __trap();
#endif
}
// The same with A from registers (the mma.m16n8k16 A fragment, per warp of the warpgroup).
template <int N, int kTransB = 0>
__device__ __forceinline__ void wgmma_mma_async_rs(float (&d)[N / 2], const uint32_t (&a)[4],
                                                   uint64_t desc_b, int scale_d) {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma N is a multiple of 8 in 8..256");
  static_assert(kTransB == 0 || kTransB == 1, "trans is 0 or 1");
#if OURO_PTX_SM90A
  sm90_detail::WgmmaAsm<N>::template rs<kTransB>(d, a, desc_b, scale_d);
#else
  __trap();
#endif
}

// mbarrier.* on a 64-bit object in shared memory.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(count)
               : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ uint64_t mbarrier_arrive(uint64_t* bar) {
  uint64_t state = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 %0, [%1];\n"
               : "=l"(state)
               : "r"(shared_address(bar))
               : "memory");
#else
  __trap();
#endif
  return state;
}
__device__ __forceinline__ uint64_t mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t tx_bytes) {
  uint64_t state = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 %0, [%1], %2;\n"
               : "=l"(state)
               : "r"(shared_address(bar)), "r"(tx_bytes)
               : "memory");
#else
  __trap();
#endif
  return state;
}
__device__ __forceinline__ void mbarrier_expect_tx(uint64_t* bar, uint32_t tx_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)),
               "r"(tx_bytes)
               : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void mbarrier_complete_tx(uint64_t* bar, uint32_t tx_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.complete_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)),
               "r"(tx_bytes)
               : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ bool mbarrier_try_wait_parity(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(shared_address(bar)), "r"(parity)
      : "memory");
#else
  __trap();
#endif
  return done != 0;
}
// Spins on try_wait until the phase with this parity completed.
__device__ __forceinline__ void mbarrier_wait_parity(uint64_t* bar, uint32_t parity) {
  while (!mbarrier_try_wait_parity(bar, parity)) {
  }
}

// fence.proxy.async.shared::cta: generic-proxy writes to shared memory before it become visible
// to the async proxy (wgmma operands, TMA stores) after it.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
  __trap();
#endif
}

// elect.sync: true in exactly one lane of `mask` (all of whose lanes must execute it).
__device__ __forceinline__ bool elect_sync(uint32_t mask = 0xffffffffu) {
  uint32_t elected = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n.reg .pred p;\n.reg .b32 l;\nelect.sync l|p, %1;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(elected)
      : "r"(mask));
#else
  __trap();
#endif
  return elected != 0;
}

// cp.async.bulk.tensor.2d global -> shared, completing on an mbarrier's transaction count.
__device__ __forceinline__ void cp_async_bulk_tensor_2d_global_to_shared(void* dst, const CUtensorMap* map, int x,
                                                                        int y, uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n"
      ::"r"(shared_address(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(shared_address(bar)), "r"(x), "r"(y)
      : "memory");
#else
  __trap();
#endif
}
// cp.async.bulk.tensor.2d shared -> global (bulk_group completion).
__device__ __forceinline__ void cp_async_bulk_tensor_2d_shared_to_global(const CUtensorMap* map, int x, int y,
                                                                        const void* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n"
               ::"l"(reinterpret_cast<uint64_t>(map)), "r"(shared_address(src)), "r"(x), "r"(y)
               : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void cp_async_bulk_commit_group() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#else
  __trap();
#endif
}
// cp.async.bulk.wait_group N: all but the N newest bulk groups complete (global writes done).
template <int N>
__device__ __forceinline__ void cp_async_bulk_wait_group() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}
// cp.async.bulk.wait_group.read N: their shared-memory sources may be reused.
template <int N>
__device__ __forceinline__ void cp_async_bulk_wait_group_read() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}

// bar.sync id, n / bar.arrive id, n (named barriers, ids 1..15; n a multiple of 32).
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t nthreads) {
#if defined(__CUDA_ARCH__)
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
#else
  __trap();
#endif
}
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t nthreads) {
#if defined(__CUDA_ARCH__)
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(nthreads) : "memory");
#else
  __trap();
#endif
}

// setmaxnreg.{inc,dec}.sync.aligned.u32: every warp of the warpgroup, the same count.
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes 24..256, multiple of 8");
#if OURO_PTX_SM90A
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
#else
  __trap();
#endif
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes 24..256, multiple of 8");
#if OURO_PTX_SM90A
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
#else
  __trap();
#endif
}

}  // namespace ouro::ptx

#elif defined(OURO_SIMT)

#include <source_location>

#define OURO_GRID_CONSTANT

namespace ouro::ptx {

// The emulations (src/simt/ptx_wgmma.cpp, ptx_sync90.cpp). `where` is the kernel's call site.
namespace emu {
uint32_t shared_address(const void* p, std::source_location where);
void wgmma_fence(std::source_location where);
void wgmma_commit_group(std::source_location where);
void wgmma_wait_group(int pending, std::source_location where);
// a_regs null: A from shared memory through desc_a.
void wgmma_mma_async(int n, bool trans_a, bool trans_b, float* d, const uint32_t* a_regs,
                     uint64_t desc_a, uint64_t desc_b, int scale_d, std::source_location where);
void mbarrier_init(uint64_t* bar, uint32_t count, std::source_location where);
uint64_t mbarrier_arrive(uint64_t* bar, uint32_t expect_tx, std::source_location where);
void mbarrier_expect_tx(uint64_t* bar, uint32_t tx, std::source_location where);
void mbarrier_complete_tx(uint64_t* bar, uint32_t tx, std::source_location where);
bool mbarrier_try_wait_parity(uint64_t* bar, uint32_t parity, std::source_location where);
void fence_proxy_async(std::source_location where);
bool elect_sync(uint32_t mask, std::source_location where);
void setmaxnreg(bool inc, int regs, std::source_location where);
void named_barrier(bool wait, uint32_t id, uint32_t nthreads, std::source_location where);
void tma_load_2d(void* dst, const CUtensorMap* map, int x, int y, uint64_t* bar, std::source_location where);
void tma_store_2d(const CUtensorMap* map, int x, int y, const void* src, std::source_location where);
void bulk_commit_group(std::source_location where);
void bulk_wait_group(int pending, std::source_location where);
}  // namespace emu

using Loc = std::source_location;

inline uint32_t shared_address(const void* p, Loc where = Loc::current()) {
  return emu::shared_address(p, where);
}
inline uint64_t wgmma_desc(const void* smem, uint32_t lbo_bytes, uint32_t sbo_bytes, Swizzle swizzle,
                           Loc where = Loc::current()) {
  return make_wgmma_desc(emu::shared_address(smem, where), lbo_bytes, sbo_bytes, swizzle);
}
inline void wgmma_fence(Loc where = Loc::current()) { emu::wgmma_fence(where); }
inline void wgmma_commit_group(Loc where = Loc::current()) { emu::wgmma_commit_group(where); }
template <int N>
inline void wgmma_wait_group(Loc where = Loc::current()) {
  static_assert(N >= 0 && N <= 7, "wgmma.wait_group takes 0..7");
  emu::wgmma_wait_group(N, where);
}
template <int N, int kTransA = 0, int kTransB = 0>
inline void wgmma_mma_async(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d,
                            Loc where = Loc::current()) {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma N is a multiple of 8 in 8..256");
  static_assert((kTransA == 0 || kTransA == 1) && (kTransB == 0 || kTransB == 1), "trans is 0 or 1");
  emu::wgmma_mma_async(N, kTransA, kTransB, d, nullptr, desc_a, desc_b, scale_d, where);
}
template <int N, int kTransB = 0>
inline void wgmma_mma_async_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, int scale_d,
                               Loc where = Loc::current()) {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma N is a multiple of 8 in 8..256");
  static_assert(kTransB == 0 || kTransB == 1, "trans is 0 or 1");
  emu::wgmma_mma_async(N, false, kTransB, d, a, 0, desc_b, scale_d, where);
}

inline void mbarrier_init(uint64_t* bar, uint32_t count, Loc where = Loc::current()) {
  emu::mbarrier_init(bar, count, where);
}
inline uint64_t mbarrier_arrive(uint64_t* bar, Loc where = Loc::current()) {
  return emu::mbarrier_arrive(bar, 0, where);
}
inline uint64_t mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t tx_bytes, Loc where = Loc::current()) {
  return emu::mbarrier_arrive(bar, tx_bytes, where);
}
inline void mbarrier_expect_tx(uint64_t* bar, uint32_t tx_bytes, Loc where = Loc::current()) {
  emu::mbarrier_expect_tx(bar, tx_bytes, where);
}
inline void mbarrier_complete_tx(uint64_t* bar, uint32_t tx_bytes, Loc where = Loc::current()) {
  emu::mbarrier_complete_tx(bar, tx_bytes, where);
}
inline bool mbarrier_try_wait_parity(uint64_t* bar, uint32_t parity, Loc where = Loc::current()) {
  return emu::mbarrier_try_wait_parity(bar, parity, where);
}
inline void mbarrier_wait_parity(uint64_t* bar, uint32_t parity, Loc where = Loc::current()) {
  while (!emu::mbarrier_try_wait_parity(bar, parity, where)) {
  }
}
inline void fence_proxy_async(Loc where = Loc::current()) { emu::fence_proxy_async(where); }
inline bool elect_sync(uint32_t mask = 0xffffffffu, Loc where = Loc::current()) {
  return emu::elect_sync(mask, where);
}
inline void cp_async_bulk_tensor_2d_global_to_shared(void* dst, const CUtensorMap* map, int x, int y, uint64_t* bar,
                                                     Loc where = Loc::current()) {
  emu::tma_load_2d(dst, map, x, y, bar, where);
}
inline void cp_async_bulk_tensor_2d_shared_to_global(const CUtensorMap* map, int x, int y, const void* src,
                                                     Loc where = Loc::current()) {
  emu::tma_store_2d(map, x, y, src, where);
}
inline void cp_async_bulk_commit_group(Loc where = Loc::current()) { emu::bulk_commit_group(where); }
template <int N>
inline void cp_async_bulk_wait_group(Loc where = Loc::current()) {
  emu::bulk_wait_group(N, where);
}
template <int N>
inline void cp_async_bulk_wait_group_read(Loc where = Loc::current()) {
  emu::bulk_wait_group(N, where);
}

inline void named_barrier_sync(uint32_t id, uint32_t nthreads, Loc where = Loc::current()) {
  emu::named_barrier(true, id, nthreads, where);
}
inline void named_barrier_arrive(uint32_t id, uint32_t nthreads, Loc where = Loc::current()) {
  emu::named_barrier(false, id, nthreads, where);
}

template <int kRegs>
inline void setmaxnreg_inc(Loc where = Loc::current()) {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes 24..256, multiple of 8");
  emu::setmaxnreg(true, kRegs, where);
}
template <int kRegs>
inline void setmaxnreg_dec(Loc where = Loc::current()) {
  static_assert(kRegs >= 24 && kRegs <= 256 && kRegs % 8 == 0, "setmaxnreg takes 24..256, multiple of 8");
  emu::setmaxnreg(false, kRegs, where);
}

}  // namespace ouro::ptx

#else
#error "<ouro/ptx_sm90.h> is device code: compile it with nvcc, or with g++ -DOURO_SIMT and the emulator"
#endif
