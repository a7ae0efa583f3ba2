// Host entry points of the Hopper ouro::ptx test kernels (tests/simt/ptx_sm90_kernels.cu): wgmma,
// mbarrier, elect.sync, setmaxnreg. Plain host types only. Each runs one small launch and copies
// the results back. Thread t of a warpgroup is index t of the [128] arrays.
#pragma once
#include <cstdint>

namespace ptx_sm90_test {

// Whether the kernels can run: always under the emulator; with nvcc, on a compute capability 9.x
// device (the sm_90a build; elsewhere they trap).
bool hopper_available();

// One wgmma.mma_async.m64nNk16 by one warpgroup (128 threads). The block's dynamic shared
// memory (smem_bytes, 1 KiB aligned) is filled with `image`; the operands' descriptors are
// made in the kernel from byte offsets into it (a_off/b_off), LBO, SBO and swizzle (0 none,
// 1 128B, 2 64B, 3 32B, the descriptor field). With a_regs non-null, A comes from registers
// (a_regs[t][0..3]) and a_off etc. are unused. c[t][0..n/2) are the accumulators before the
// wgmma, d receives them after wgmma.wait_group 0.
struct WgmmaArgs {
  int n = 64;
  bool trans_a = false, trans_b = false;
  int scale_d = 1;
  uint32_t smem_bytes = 0;
  const uint8_t* image = nullptr;
  uint32_t a_off = 0, a_lbo = 0, a_sbo = 0;
  int a_swizzle = 0;
  uint32_t b_off = 0, b_lbo = 0, b_sbo = 0;
  int b_swizzle = 0;
  const uint32_t (*a_regs)[4] = nullptr;
  const float* c = nullptr;  // [128][n/2]
  float* d = nullptr;        // [128][n/2]
};
// n in {8, 16, 24, 64, 128, 256}.
void run_wgmma(const WgmmaArgs& args);

// Four wgmmas m64n64k16 accumulate over K = 64 (A and B K-major, 128B swizzle, 64-element rows:
// the k-th step starts 32 k bytes into the row), committed as two groups of two into two
// accumulators: acc0 (steps 0, 1, group 0) and acc1 (steps 2, 3, group 1, chained on acc1).
// snap_* receive thread t's acc0/acc1 after wait_group<1> and after wait_group<0>.
// image: 1 KiB... the A tile (64 x 64 bf16, 8 KiB) at 0 and the B tile (64 x 64) at 8192.
void run_wgmma_pipeline(const uint8_t* image /*16384*/, float* acc0_after1, float* acc1_after1,
                        float* acc0_after0, float* acc1_after0 /*each [128][32]*/);

// mbarrier phases. 128 threads; thread 0 inits `full` with count 1 and `counted` with count 4.
// Round r (0..2): thread 0 arrives on full with expect_tx 64, then writes 16 words r*100 + i to
// shared memory and completes 64 tx bytes in two halves; every thread waits on full with
// parity r & 1 and copies word (tid % 16) to seen[r][tid]. try_wait.parity(1) before the first
// phase completes is recorded in early[tid] (1 = true, as the ISA's "previous phase").
// Threads 0..3 arrive on `counted` and record the returned token (phase) in tokens[r][0..3].
void run_mbarrier_rounds(uint32_t* seen /*[3][128]*/, uint32_t* early /*[128]*/, uint64_t* tokens /*[3][4]*/);

// elect.sync: lanes in `mask` (the others skip it) record 1 when elected. out[32].
void run_elect_sync(uint32_t mask, uint32_t* out);

// setmaxnreg: 256 threads, warpgroup 0 decreases to 40, warpgroup 1 increases to 232, then every
// thread writes tid + 1 to out[256].
void run_setmaxnreg(uint32_t* out);

// TMA. A bf16 tensor rows x cols (row pitch `pitch` elements, a multiple of 8) in global memory;
// a tensor map with box (box0 x box1) and swizzle (0, 32, 64, 128 bytes) made by
// cuTensorMapEncodeTiled through cudaGetDriverEntryPoint. Load: the box at (x, y) lands in
// shared memory (mbarrier with expect_tx), `out` receives its box0*box1*2 bytes as they lie.
// Store: shared memory is filled with `image` (box bytes), stored at (x, y) into `tensor`, which
// is copied back (in-bounds elements change, the rest keep their values).
struct TmaArgs {
  int rows, cols, pitch;
  int box0, box1, swizzle;
  int x, y;
  bool oob_nan = false;
};
void run_tma_load(const TmaArgs& a, const uint16_t* tensor, uint8_t* out);
// fence = false plants a bug: no fence.proxy.async between the stores and the TMA store.
extern const int kTmaStoreWithoutFenceLine;
void run_tma_store(const TmaArgs& a, const uint8_t* image, uint16_t* tensor, bool fence = true);
// What cuTensorMapEncodeTiled (from the driver entry point) answers (CUresult as int) for a 2-D
// bf16 tensor; address_offset is added to a 256-byte aligned allocation.
int encode_tensor_map(const TmaArgs& a, int address_offset, int stride_bytes);

// A warp-specialized GEMM in miniature: a producer warpgroup's elected lane loads A (64 x K) and B
// (64 x K, both K contiguous) by TMA with 128B swizzle into a 2-stage ring guarded by full/empty
// mbarriers; a consumer warpgroup runs 4 wgmma m64n64k16 per 64-wide k tile. d = A * B^T (64 x 64).
void run_ws_gemm(int k_tiles, const uint16_t* a, const uint16_t* b, float* d);

// Named barriers: two warpgroups take `rounds` turns each through bar.sync / bar.arrive (ids 1, 2,
// count 256); log[0 .. 2 rounds) receives the warpgroup of each turn in order (rounds <= 32).
void run_named_pingpong(int rounds, uint32_t* log);

// Bugs the emulator must report (the test checks kind and file:line).
extern const int kWgmmaSplitSiteLine;      // warp 3 issues its wgmma from another line
extern const int kWgmmaWarpExitedLine;     // warp 2 returned before the wgmma
extern const int kWgmmaWarpAtBarrierLine;  // warp 1 waits at __syncthreads instead
extern const int kWgmmaBadSwizzleStartLine;
extern const int kWgmmaReservedBitsLine;
extern const int kWgmmaPastSharedLine;
extern const int kWgmmaNoFenceLine;
extern const int kWgmmaAccumulatorWrittenLine;  // reported at the wgmma's line
extern const int kWgmma96ThreadsLine;
extern const int kMbarrierHangLine;        // the try_wait that never completes
extern const int kSetmaxnregSplitLine;
extern const int kMbarrierUninitializedLine;
void launch_wgmma_split_site();
void launch_wgmma_warp_exited();
void launch_wgmma_warp_at_barrier();
void launch_wgmma_bad_swizzle_start();
void launch_wgmma_reserved_bits();
void launch_wgmma_past_shared();
void launch_wgmma_no_fence();
void launch_wgmma_accumulator_written();
void launch_wgmma_96_threads();
void launch_mbarrier_hang();  // expects 4096 bytes, 2048 arrive
void launch_setmaxnreg_split();
void launch_mbarrier_uninitialized();
extern const int kTmaDestinationWrittenLine;  // the TMA load whose tile a thread overwrote
void launch_tma_destination_written();
// Threads read the TMA tile before waiting on its mbarrier: ASan's use-after-poison (ASan build).
void launch_tma_read_early();
extern const int kWgmmaOperandsDifferLine;  // warp 2 passes another B descriptor
void launch_wgmma_operands_differ();
extern const int kMbarrierExtraArrivalLine;  // a second arrival in a phase initialized for one
void launch_mbarrier_extra_arrival();
extern const int kWgmmaWithoutProxyFenceLine;  // thread 0 stores into B, no fence.proxy.async
void launch_wgmma_without_proxy_fence();
extern const int kNamedBarrierHangLine;          // warpgroup 0 waits for 256, warpgroup 1 never comes
extern const int kNamedBarrierCountsDifferLine;  // 64 threads arrive with 128, the others sync with 96
void launch_named_barrier_hang();
void launch_named_barrier_counts_differ();

}  // namespace ptx_sm90_test
