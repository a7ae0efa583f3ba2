// ouro::ptx: every inline-PTX instruction our kernels use, behind a named wrapper.
//
// Under nvcc each wrapper is one `asm volatile` with the exact PTX. Under the SIMT emulator
// (g++ with OURO_SIMT) each is an emulation that follows the PTX ISA (src/simt/ptx_*.cpp):
// warp-wide instructions meet at a warp rendezvous, the last lane computes every lane's result.
// Kernels include <ouro/cuda.h>, which includes this header.
//
// Fragment layouts (PTX ISA "Matrix Fragments for mma.m16n8k16"), g = lane / 4, t = lane % 4,
// two 16-bit elements per 32-bit register, the lower-indexed one in the low half:
//   A (16x16, row-major), regs a0..a3 hold elements a_0..a_7:
//       a_i at row g + 8 * ((i >> 1) & 1), col 2t + (i & 1) + 8 * (i >= 4)
//   B (16x8, "col": indexed [k][n]), regs b0..b1 hold b_0..b_3:
//       b_i at k = 2t + (i & 1) + 8 * (i >= 2), n = g
//   C, D (16x8 fp32), c_i / d_i at row g + 8 * (i >= 2), col 2t + (i & 1)
//   ldmatrix.m8n8.x{1,2,4}: lane 8i + j gives the address of row j of matrix i (8 x 16-bit,
//       16-byte aligned); register i of lane L gets matrix i's [L/4][2(L%4)] and [L/4][2(L%4)+1],
//       with .trans [2(L%4)][L/4] and [2(L%4)+1][L/4]. Addresses of lanes >= 8 * N are unused.
//
// mma numerics under the emulator: every product of two bf16 (or f16) inputs is exact in fp32
// (8- and 11-bit significands), and d = c + sum_k a[m][k] * b[k][n] is accumulated in fp32 in k
// order 0..15 with one round-to-nearest per step (fmaf). Tensor cores also form exact products
// but add them with their own internal width, alignment and rounding (not IEEE per step), so
// emulated and GPU results agree exactly only when every partial sum is representable (e.g.
// small integers) and otherwise differ by a few fp32 ulps of sum |a*b|: far below the bf16
// operand rounding (2^-9 relative), which is why kernel tests compare by relative norm
// (1e-3..1e-2 for bf16 operands), never bitwise against a GPU.
//
// cp.async under the emulator: each emulated thread keeps its own queue. Issue checks the
// alignment and fills the destination with 0xFF (NaN for fp32/bf16/f16) so that reading it
// before the wait shows; cp_async_commit() closes a group; cp_async_wait<N>() performs (reads
// the source, writes the destination) every copy of all but the N newest committed groups, in
// issue order: the latest moment the ISA allows, so a source changed before the wait is a bug
// that shows. The data is then visible to the issuing thread only; other threads of the block
// need a __syncthreads (the TSan build reports the race otherwise).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)

namespace ouro::ptx {

namespace detail {
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
}  // namespace detail

// D = A * B + C, m16n8k16, bf16 inputs, fp32 accumulate.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4],
                                               const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#endif
}

// D = A * B + C, m16n8k16, f16 inputs, fp32 accumulate.
__device__ __forceinline__ void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4],
                                              const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#endif
}

// ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16
__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(detail::smem_addr(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(detail::smem_addr(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(detail::smem_addr(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(detail::smem_addr(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(detail::smem_addr(smem_row)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
#if defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(detail::smem_addr(smem_row)));
#endif
}

// cp.async global -> shared. 16 bytes uses .cg (bypasses L1; .cg allows only 16), 8 and 4 .ca.
// The src_bytes overloads copy src_bytes (0..size) bytes and zero-fill the rest; src_bytes 0
// reads nothing (the usual way to pad a tile past the end of a matrix).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(detail::smem_addr(smem)),
               "l"(__cvta_generic_to_global(gmem)) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_8(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(detail::smem_addr(smem)),
               "l"(__cvta_generic_to_global(gmem)) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_4(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(detail::smem_addr(smem)),
               "l"(__cvta_generic_to_global(gmem)) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(detail::smem_addr(smem)),
               "l"(__cvta_generic_to_global(gmem)), "r"(src_bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_8(void* smem, const void* gmem, int src_bytes) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(detail::smem_addr(smem)),
               "l"(__cvta_generic_to_global(gmem)), "r"(src_bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_4(void* smem, const void* gmem, int src_bytes) {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(detail::smem_addr(smem)),
               "l"(__cvta_generic_to_global(gmem)), "r"(src_bytes) : "memory");
#endif
}

// cp.async.commit_group: the copies issued since the last commit form one group.
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// cp.async.wait_group N: returns once at most the N newest committed groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0, "cp.async.wait_group takes a non-negative count");
#if defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace ouro::ptx

#elif defined(OURO_SIMT)

#include <source_location>

namespace ouro::ptx {

// The emulations (src/simt/ptx_*.cpp). `where` is the kernel's call site, for bug reports.
namespace emu {
enum class Elem { bf16, f16 };
void mma_16816(Elem elem, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
               const float (&c)[4], std::source_location where);
// n = 1, 2 or 4 matrices; r receives n registers.
void ldmatrix(int n, bool trans, uint32_t* r, const void* smem_row, std::source_location where);
// size = 4, 8 or 16 bytes, of which src_bytes are read from gmem and the rest zero-filled.
void cp_async(void* smem, const void* gmem, int size, int src_bytes, std::source_location where);
void cp_async_commit(std::source_location where);
void cp_async_wait(int pending, std::source_location where);
}  // namespace emu

using Loc = std::source_location;

inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                           const float (&c)[4], Loc where = Loc::current()) {
  emu::mma_16816(emu::Elem::bf16, d, a, b, c, where);
}
inline void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                          const float (&c)[4], Loc where = Loc::current()) {
  emu::mma_16816(emu::Elem::f16, d, a, b, c, where);
}

inline void ldmatrix_x1(uint32_t (&r)[1], const void* smem_row, Loc where = Loc::current()) {
  emu::ldmatrix(1, false, r, smem_row, where);
}
inline void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row, Loc where = Loc::current()) {
  emu::ldmatrix(2, false, r, smem_row, where);
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row, Loc where = Loc::current()) {
  emu::ldmatrix(4, false, r, smem_row, where);
}
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void* smem_row, Loc where = Loc::current()) {
  emu::ldmatrix(1, true, r, smem_row, where);
}
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row, Loc where = Loc::current()) {
  emu::ldmatrix(2, true, r, smem_row, where);
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row, Loc where = Loc::current()) {
  emu::ldmatrix(4, true, r, smem_row, where);
}

inline void cp_async_16(void* smem, const void* gmem, Loc where = Loc::current()) {
  emu::cp_async(smem, gmem, 16, 16, where);
}
inline void cp_async_8(void* smem, const void* gmem, Loc where = Loc::current()) {
  emu::cp_async(smem, gmem, 8, 8, where);
}
inline void cp_async_4(void* smem, const void* gmem, Loc where = Loc::current()) {
  emu::cp_async(smem, gmem, 4, 4, where);
}
inline void cp_async_16(void* smem, const void* gmem, int src_bytes, Loc where = Loc::current()) {
  emu::cp_async(smem, gmem, 16, src_bytes, where);
}
inline void cp_async_8(void* smem, const void* gmem, int src_bytes, Loc where = Loc::current()) {
  emu::cp_async(smem, gmem, 8, src_bytes, where);
}
inline void cp_async_4(void* smem, const void* gmem, int src_bytes, Loc where = Loc::current()) {
  emu::cp_async(smem, gmem, 4, src_bytes, where);
}
inline void cp_async_commit(Loc where = Loc::current()) { emu::cp_async_commit(where); }

template <int N>
inline void cp_async_wait(Loc where = Loc::current()) {
  static_assert(N >= 0, "cp.async.wait_group takes a non-negative count");
  emu::cp_async_wait(N, where);
}

}  // namespace ouro::ptx

#else
#error "<ouro/ptx.h> is device code: compile it with nvcc, or with g++ -DOURO_SIMT and the emulator"
#endif
