// Host entry points of the ouro::ptx test kernels (tests/simt/ptx_kernels.cu). Plain host types
// only, so tests/test_simt_ptx.cpp needs no CUDA header. Each runs one small launch and copies
// the results back; arrays indexed [lane] hold what that lane passed or received.
#pragma once
#include <cstdint>

namespace ptx_test {

// Whether a device runs the kernels: always under the emulator; with nvcc, when a GPU is present.
bool device_available();

// One warp runs mma.m16n8k16 (bf16 or f16 inputs) on the given per-lane fragments.
void run_mma(bool bf16, const uint32_t (*a)[4], const uint32_t (*b)[2], const float (*c)[4],
             float (*d)[4]);

// One warp loads `rows` (64 rows of 8 x 16-bit) into shared memory, then lane L runs
// ldmatrix.x{n}{.trans} with the address of row sel[L]; out[L][0..n) receives its registers.
void run_ldmatrix(int n, bool trans, const uint16_t (*rows)[8], const int* sel, uint32_t (*out)[4]);

// The usual tensor-core pipeline: A (16x16 row-major) and B (16x8, [k][n] row-major) go to shared
// memory, A is loaded with ldmatrix.x4 and B with ldmatrix.x2.trans, then mma (bf16) with C
// (16x8 row-major); D is written back row-major from the C/D fragment layout.
void run_ldmatrix_mma(const uint16_t* A, const uint16_t* B, const float* C, float* D);

// Thread i (i < cases <= 32) runs one cp.async of `size` bytes from src + 16 i to its own
// 16-byte shared slot: src_bytes[i] < 0 uses the two-operand form, else the zero-filling one.
// out[16 i ..] receives the slot after commit + wait<0> (bytes past `size` are left 0xAB).
void run_cp_async_sizes(int size, int cases, const int* src_bytes, const uint8_t* src,
                        uint8_t* out);

// One thread: groups g0, g1, g2 (one 16-byte copy each, from src[4 g]) are committed, a fourth
// copy is issued uncommitted; snapshots of the four shared slots are taken before any wait, after
// wait<2>, wait<1>, wait<0>, and after committing the fourth copy plus an empty group and
// wait<1>. snap[s][slot][word].
void run_cp_async_groups(const uint32_t* src /*[16]*/, uint32_t (*snap)[4][4]);

// One thread issues a 16-byte copy, then overwrites the source with `later` before commit+wait;
// out receives what the copy delivered.
void run_cp_async_source_changed(const uint32_t* first, const uint32_t* later, uint32_t* out);

// Thread 0 copies 32 words into shared memory and waits; after __syncthreads every thread of
// the block (32) reads word[tid] into out[tid].
void run_cp_async_visible_after_barrier(const uint32_t* src /*[32]*/, uint32_t* out);

// The same kernel launched twice: run 1 leaves a committed copy of src pending at exit, run 2
// writes 7s to the slot, waits for all groups and copies the slot to out.
void run_cp_async_pending_at_exit(const uint32_t* src /*[4]*/, uint32_t* out /*[4]*/);

// Bugs the emulator must report. Each launches a kernel that commits it; the line of the faulty
// call is given so the test can check the report's file:line.
extern const int kMisalignedLdmatrixLine;  // lane 5 gives an address 8 bytes past a row
extern const int kMisalignedCpAsyncDstLine;
extern const int kMisalignedCpAsyncSrcLine;
extern const int kCpAsyncSrcBytesTooLargeLine;
extern const int kMmaPartialWarpLine;
void launch_misaligned_ldmatrix();
void launch_misaligned_cp_async_dst();   // thread 3: 16-byte copy to an 8-byte aligned slot
void launch_misaligned_cp_async_src();   // thread 2: 8-byte copy from a 4-byte aligned source
void launch_cp_async_src_bytes_too_large();  // thread 0: 8-byte copy with src_bytes 9
void launch_mma_partial_warp();          // a block of 16 threads runs mma.sync.aligned

// Out of bounds, reported at issue in the ASan build (elsewhere they corrupt memory silently).
extern const int kCpAsyncPastDynamicSharedLine;
extern const int kCpAsyncPastGlobalLine;
void launch_cp_async_past_dynamic_shared();  // thread 1: 16 bytes just past 64 bytes of smem
void launch_cp_async_past_global();          // thread 0: reads 16 bytes past a 16-byte buffer

}  // namespace ptx_test
