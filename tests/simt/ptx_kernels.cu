// Test kernels for ouro::ptx (mma, ldmatrix, cp.async). One source for nvcc and for the SIMT
// emulator: ouro_test_simt_ptx runs it on the emulator, ouro_test_ptx_gpu (CUDA builds) on a GPU.
#include <ouro/cuda.h>

#include <cstring>
#include <vector>

#include "ptx_kernels.h"

namespace ptx_test {
namespace {

// A device buffer that frees itself, so a launch that throws a bug report leaks nothing.
template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count;
  explicit DeviceBuffer(size_t n) : count(n) { OURO_CUDA_CHECK(cudaMalloc(&ptr, n * sizeof(T))); }
  DeviceBuffer(const T* host, size_t n) : DeviceBuffer(n) { put(host); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void put(const T* host) {
    OURO_CUDA_CHECK(cudaMemcpy(ptr, host, count * sizeof(T), cudaMemcpyHostToDevice));
  }
  void get(T* host) const {
    OURO_CUDA_CHECK(cudaMemcpy(host, ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
  }
};

void sync() {
  OURO_CUDA_CHECK_LAUNCH();
  OURO_CUDA_CHECK(cudaDeviceSynchronize());
}

// ---- mma --------------------------------------------------------------------------------------

template <bool kBf16>
__global__ void mma_kernel(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const unsigned lane = threadIdx.x;
  uint32_t ra[4], rb[2];
  float rc[4], rd[4];
  for (int i = 0; i < 4; ++i) ra[i] = a[4 * lane + i];
  for (int i = 0; i < 2; ++i) rb[i] = b[2 * lane + i];
  for (int i = 0; i < 4; ++i) rc[i] = c[4 * lane + i];
  if constexpr (kBf16)
    ouro::ptx::mma_bf16_16816(rd, ra, rb, rc);
  else
    ouro::ptx::mma_f16_16816(rd, ra, rb, rc);
  for (int i = 0; i < 4; ++i) d[4 * lane + i] = rd[i];
}

// ---- ldmatrix ---------------------------------------------------------------------------------

template <int N, bool kTrans>
__device__ void ldmatrix_n(uint32_t (&r)[N], const void* row) {
  if constexpr (N == 1 && !kTrans) ouro::ptx::ldmatrix_x1(r, row);
  if constexpr (N == 2 && !kTrans) ouro::ptx::ldmatrix_x2(r, row);
  if constexpr (N == 4 && !kTrans) ouro::ptx::ldmatrix_x4(r, row);
  if constexpr (N == 1 && kTrans) ouro::ptx::ldmatrix_x1_trans(r, row);
  if constexpr (N == 2 && kTrans) ouro::ptx::ldmatrix_x2_trans(r, row);
  if constexpr (N == 4 && kTrans) ouro::ptx::ldmatrix_x4_trans(r, row);
}

template <int N, bool kTrans>
__global__ void ldmatrix_kernel(const uint16_t* rows, const int* sel, uint32_t* out) {
  __shared__ __align__(16) uint16_t tile[64 * 8];
  const unsigned lane = threadIdx.x;
  for (unsigned i = lane; i < 64 * 8; i += 32) tile[i] = rows[i];
  __syncthreads();
  uint32_t r[N];
  ldmatrix_n<N, kTrans>(r, &tile[8 * sel[lane]]);
  for (int i = 0; i < N; ++i) out[4 * lane + i] = r[i];
}

template <int N, bool kTrans>
void ldmatrix_launch(const uint16_t* rows, const int* sel, uint32_t* out) {
  DeviceBuffer<uint16_t> d_rows(rows, 64 * 8);
  DeviceBuffer<int> d_sel(sel, 32);
  DeviceBuffer<uint32_t> d_out(32 * 4);
  std::vector<uint32_t> init(32 * 4, 0xDEADBEEFu);
  d_out.put(init.data());
  ouro::launch(ldmatrix_kernel<N, kTrans>, dim3(1), dim3(32), 0, nullptr, d_rows.ptr, d_sel.ptr,
               d_out.ptr);
  sync();
  d_out.get(out);
}

// ---- ldmatrix feeding mma ---------------------------------------------------------------------

__global__ void ldmatrix_mma_kernel(const uint16_t* A, const uint16_t* B, const float* C, float* D) {
  __shared__ __align__(16) uint16_t sa[16 * 16];
  __shared__ __align__(16) uint16_t sb[16 * 8];
  const unsigned lane = threadIdx.x;
  for (unsigned i = lane; i < 16 * 16; i += 32) sa[i] = A[i];
  for (unsigned i = lane; i < 16 * 8; i += 32) sb[i] = B[i];
  __syncthreads();
  uint32_t a[4], b[2];
  // x4 over A: lanes 0-7 rows 0-7 cols 0-7, 8-15 rows 8-15, 16-23 rows 0-7 cols 8-15, 24-31.
  ouro::ptx::ldmatrix_x4(a, &sa[16 * (lane % 16) + 8 * (lane / 16)]);
  // x2.trans over B[k][n]: lanes 0-15 give rows k = 0..15 (lanes 16-31 are unused).
  ouro::ptx::ldmatrix_x2_trans(b, &sb[8 * (lane % 16)]);
  const unsigned g = lane / 4, t = lane % 4;
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = C[8 * (g + 8 * (i / 2)) + 2 * t + i % 2];
  ouro::ptx::mma_bf16_16816(acc, a, b, acc);  // accumulating in place, as kernels do
  for (int i = 0; i < 4; ++i) D[8 * (g + 8 * (i / 2)) + 2 * t + i % 2] = acc[i];
}

// ---- cp.async ---------------------------------------------------------------------------------

template <int kSize>
__device__ void cp_async_n(void* dst, const void* src, int src_bytes) {
  if (src_bytes < 0) {
    if constexpr (kSize == 16) ouro::ptx::cp_async_16(dst, src);
    if constexpr (kSize == 8) ouro::ptx::cp_async_8(dst, src);
    if constexpr (kSize == 4) ouro::ptx::cp_async_4(dst, src);
  } else {
    if constexpr (kSize == 16) ouro::ptx::cp_async_16(dst, src, src_bytes);
    if constexpr (kSize == 8) ouro::ptx::cp_async_8(dst, src, src_bytes);
    if constexpr (kSize == 4) ouro::ptx::cp_async_4(dst, src, src_bytes);
  }
}

template <int kSize>
__global__ void cp_async_sizes_kernel(const int* src_bytes, const uint8_t* src, uint8_t* out) {
  __shared__ __align__(16) uint8_t slot[32][16];
  const unsigned i = threadIdx.x;
  for (int j = 0; j < 16; ++j) slot[i][j] = 0xAB;
  cp_async_n<kSize>(slot[i], src + 16 * i, src_bytes[i]);
  ouro::ptx::cp_async_commit();
  ouro::ptx::cp_async_wait<0>();
  for (int j = 0; j < 16; ++j) out[16 * i + j] = slot[i][j];
}

__global__ void cp_async_groups_kernel(const uint32_t* src, uint32_t* snap) {
  __shared__ __align__(16) uint32_t slot[4][4];
  const auto snapshot = [&](int s) {
    for (int i = 0; i < 16; ++i) snap[16 * s + i] = slot[i / 4][i % 4];
  };
  for (int i = 0; i < 16; ++i) slot[i / 4][i % 4] = 0;
  for (int g = 0; g < 3; ++g) {
    ouro::ptx::cp_async_16(slot[g], src + 4 * g);
    ouro::ptx::cp_async_commit();
  }
  ouro::ptx::cp_async_16(slot[3], src + 12);  // not committed yet
  snapshot(0);
  ouro::ptx::cp_async_wait<2>();
  snapshot(1);
  ouro::ptx::cp_async_wait<1>();
  snapshot(2);
  ouro::ptx::cp_async_wait<0>();
  snapshot(3);
  ouro::ptx::cp_async_commit();  // the fourth copy's group
  ouro::ptx::cp_async_commit();  // an empty group: it counts as the newest
  ouro::ptx::cp_async_wait<1>();
  snapshot(4);
}

__global__ void cp_async_source_changed_kernel(uint32_t* src, const uint32_t* later, uint32_t* out) {
  __shared__ __align__(16) uint32_t slot[4];
  ouro::ptx::cp_async_16(slot, src);
  for (int i = 0; i < 4; ++i) src[i] = later[i];
  ouro::ptx::cp_async_commit();
  ouro::ptx::cp_async_wait<0>();
  for (int i = 0; i < 4; ++i) out[i] = slot[i];
}

__global__ void cp_async_visible_kernel(const uint32_t* src, uint32_t* out) {
  __shared__ __align__(16) uint32_t words[32];
  if (threadIdx.x == 0) {
    for (int i = 0; i < 32; i += 4) ouro::ptx::cp_async_16(&words[i], src + i);
    ouro::ptx::cp_async_commit();
    ouro::ptx::cp_async_wait<0>();
  }
  __syncthreads();
  out[threadIdx.x] = words[threadIdx.x];
}

// Run 1 issues and commits a copy, then exits without waiting; run 2 (same kernel, same block)
// fills the slot and waits: the copy of run 1 died with its block and must not land here.
__global__ void cp_async_pending_at_exit_kernel(const uint32_t* src, uint32_t* out, int run) {
  __shared__ __align__(16) uint32_t slot[4];
  if (run == 1) {
    ouro::ptx::cp_async_16(slot, src);
    ouro::ptx::cp_async_commit();
    return;
  }
  for (int i = 0; i < 4; ++i) slot[i] = 7;
  ouro::ptx::cp_async_wait<0>();
  for (int i = 0; i < 4; ++i) out[i] = slot[i];
}

// ---- bugs -------------------------------------------------------------------------------------

__global__ void misaligned_ldmatrix_kernel() {
  __shared__ __align__(16) uint16_t tile[32 * 8 + 8];
  const unsigned lane = threadIdx.x;
  for (int i = 0; i < 8; ++i) tile[8 * lane + i] = 0;
  __syncthreads();
  const uint16_t* row = &tile[8 * lane + (lane == 5 ? 4 : 0)];
  uint32_t r[4];
  ouro::ptx::ldmatrix_x4(r, row);  // kMisalignedLdmatrixLine
}
const int kMisalignedLdmatrixLineValue = __LINE__ - 2;

__global__ void misaligned_cp_async_dst_kernel(const uint8_t* src) {
  __shared__ __align__(16) uint8_t slot[32 * 16 + 8];
  const unsigned i = threadIdx.x;
  ouro::ptx::cp_async_16(&slot[16 * i + (i == 3 ? 8 : 0)], src + 16 * i);  // kMisalignedCpAsyncDstLine
}
const int kMisalignedCpAsyncDstLineValue = __LINE__ - 2;

__global__ void misaligned_cp_async_src_kernel(const uint8_t* src) {
  __shared__ __align__(16) uint8_t slot[32 * 8];
  const unsigned i = threadIdx.x;
  ouro::ptx::cp_async_8(&slot[8 * i], src + 8 * i + (i == 2 ? 4 : 0));  // kMisalignedCpAsyncSrcLine
}
const int kMisalignedCpAsyncSrcLineValue = __LINE__ - 2;

__global__ void cp_async_src_bytes_too_large_kernel(const uint8_t* src) {
  __shared__ __align__(16) uint8_t slot[8];
  if (threadIdx.x == 0) ouro::ptx::cp_async_8(slot, src, 9);  // kCpAsyncSrcBytesTooLargeLine
}
const int kCpAsyncSrcBytesTooLargeLineValue = __LINE__ - 2;

__global__ void mma_partial_warp_kernel(float* out) {
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  const float c[4] = {0, 0, 0, 0};
  float d[4];
  ouro::ptx::mma_bf16_16816(d, a, b, c);  // kMmaPartialWarpLine
  out[threadIdx.x] = d[0];
}
const int kMmaPartialWarpLineValue = __LINE__ - 3;

__global__ void cp_async_past_dynamic_shared_kernel(const uint8_t* src) {
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();  // 64 bytes at launch
  if (threadIdx.x == 1) ouro::ptx::cp_async_16(smem + 64, src);  // kCpAsyncPastDynamicSharedLine
}
const int kCpAsyncPastDynamicSharedLineValue = __LINE__ - 2;

__global__ void cp_async_past_global_kernel(const uint8_t* src) {
  __shared__ __align__(16) uint8_t slot[16];
  if (threadIdx.x == 0) ouro::ptx::cp_async_16(slot, src + 16);  // kCpAsyncPastGlobalLine
}
const int kCpAsyncPastGlobalLineValue = __LINE__ - 2;

}  // namespace

bool device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

const int kCpAsyncPastDynamicSharedLine = kCpAsyncPastDynamicSharedLineValue;
const int kCpAsyncPastGlobalLine = kCpAsyncPastGlobalLineValue;
const int kMisalignedLdmatrixLine = kMisalignedLdmatrixLineValue;
const int kMisalignedCpAsyncDstLine = kMisalignedCpAsyncDstLineValue;
const int kMisalignedCpAsyncSrcLine = kMisalignedCpAsyncSrcLineValue;
const int kCpAsyncSrcBytesTooLargeLine = kCpAsyncSrcBytesTooLargeLineValue;
const int kMmaPartialWarpLine = kMmaPartialWarpLineValue;

void run_mma(bool bf16, const uint32_t (*a)[4], const uint32_t (*b)[2], const float (*c)[4],
             float (*d)[4]) {
  DeviceBuffer<uint32_t> d_a(&a[0][0], 32 * 4), d_b(&b[0][0], 32 * 2);
  DeviceBuffer<float> d_c(&c[0][0], 32 * 4), d_d(32 * 4);
  if (bf16)
    ouro::launch(mma_kernel<true>, dim3(1), dim3(32), 0, nullptr, d_a.ptr, d_b.ptr, d_c.ptr, d_d.ptr);
  else
    ouro::launch(mma_kernel<false>, dim3(1), dim3(32), 0, nullptr, d_a.ptr, d_b.ptr, d_c.ptr, d_d.ptr);
  sync();
  d_d.get(&d[0][0]);
}

void run_ldmatrix(int n, bool trans, const uint16_t (*rows)[8], const int* sel, uint32_t (*out)[4]) {
  const uint16_t* r = &rows[0][0];
  uint32_t* o = &out[0][0];
  switch (n * 2 + trans) {
    case 2: return ldmatrix_launch<1, false>(r, sel, o);
    case 3: return ldmatrix_launch<1, true>(r, sel, o);
    case 4: return ldmatrix_launch<2, false>(r, sel, o);
    case 5: return ldmatrix_launch<2, true>(r, sel, o);
    case 8: return ldmatrix_launch<4, false>(r, sel, o);
    case 9: return ldmatrix_launch<4, true>(r, sel, o);
  }
  throw std::invalid_argument("run_ldmatrix: n must be 1, 2 or 4");
}

void run_ldmatrix_mma(const uint16_t* A, const uint16_t* B, const float* C, float* D) {
  DeviceBuffer<uint16_t> d_a(A, 16 * 16), d_b(B, 16 * 8);
  DeviceBuffer<float> d_c(C, 16 * 8), d_d(16 * 8);
  ouro::launch(ldmatrix_mma_kernel, dim3(1), dim3(32), 0, nullptr, d_a.ptr, d_b.ptr, d_c.ptr, d_d.ptr);
  sync();
  d_d.get(D);
}

void run_cp_async_sizes(int size, int cases, const int* src_bytes, const uint8_t* src, uint8_t* out) {
  DeviceBuffer<int> d_bytes(src_bytes, cases);
  DeviceBuffer<uint8_t> d_src(src, 16 * cases), d_out(16 * cases);
  const dim3 grid(1), block(cases);
  if (size == 16)
    ouro::launch(cp_async_sizes_kernel<16>, grid, block, 0, nullptr, d_bytes.ptr, d_src.ptr, d_out.ptr);
  else if (size == 8)
    ouro::launch(cp_async_sizes_kernel<8>, grid, block, 0, nullptr, d_bytes.ptr, d_src.ptr, d_out.ptr);
  else if (size == 4)
    ouro::launch(cp_async_sizes_kernel<4>, grid, block, 0, nullptr, d_bytes.ptr, d_src.ptr, d_out.ptr);
  else
    throw std::invalid_argument("run_cp_async_sizes: size must be 4, 8 or 16");
  sync();
  d_out.get(out);
}

void run_cp_async_groups(const uint32_t* src, uint32_t (*snap)[4][4]) {
  DeviceBuffer<uint32_t> d_src(src, 16), d_snap(5 * 16);
  ouro::launch(cp_async_groups_kernel, dim3(1), dim3(1), 0, nullptr, d_src.ptr, d_snap.ptr);
  sync();
  d_snap.get(&snap[0][0][0]);
}

void run_cp_async_source_changed(const uint32_t* first, const uint32_t* later, uint32_t* out) {
  DeviceBuffer<uint32_t> d_src(first, 4), d_later(later, 4), d_out(4);
  ouro::launch(cp_async_source_changed_kernel, dim3(1), dim3(1), 0, nullptr, d_src.ptr, d_later.ptr,
               d_out.ptr);
  sync();
  d_out.get(out);
}

void run_cp_async_visible_after_barrier(const uint32_t* src, uint32_t* out) {
  DeviceBuffer<uint32_t> d_src(src, 32), d_out(32);
  ouro::launch(cp_async_visible_kernel, dim3(1), dim3(32), 0, nullptr, d_src.ptr, d_out.ptr);
  sync();
  d_out.get(out);
}

void run_cp_async_pending_at_exit(const uint32_t* src, uint32_t* out) {
  DeviceBuffer<uint32_t> d_src(src, 4), d_out(4);
  for (int run = 1; run <= 2; ++run)
    ouro::launch(cp_async_pending_at_exit_kernel, dim3(1), dim3(1), 0, nullptr, d_src.ptr,
                 d_out.ptr, run);
  sync();
  d_out.get(out);
}

void launch_misaligned_ldmatrix() {
  ouro::launch(misaligned_ldmatrix_kernel, dim3(1), dim3(32), 0, nullptr);
  sync();
}

void launch_misaligned_cp_async_dst() {
  DeviceBuffer<uint8_t> src(32 * 16);
  ouro::launch(misaligned_cp_async_dst_kernel, dim3(1), dim3(32), 0, nullptr, src.ptr);
  sync();
}

void launch_misaligned_cp_async_src() {
  DeviceBuffer<uint8_t> src(32 * 8 + 8);
  ouro::launch(misaligned_cp_async_src_kernel, dim3(1), dim3(32), 0, nullptr, src.ptr);
  sync();
}

void launch_cp_async_src_bytes_too_large() {
  DeviceBuffer<uint8_t> src(16);
  ouro::launch(cp_async_src_bytes_too_large_kernel, dim3(1), dim3(32), 0, nullptr, src.ptr);
  sync();
}

void launch_mma_partial_warp() {
  DeviceBuffer<float> out(16);
  ouro::launch(mma_partial_warp_kernel, dim3(1), dim3(16), 0, nullptr, out.ptr);
  sync();
}

void launch_cp_async_past_dynamic_shared() {
  DeviceBuffer<uint8_t> src(16);
  ouro::launch(cp_async_past_dynamic_shared_kernel, dim3(1), dim3(32), 64, nullptr, src.ptr);
  sync();
}

void launch_cp_async_past_global() {
  DeviceBuffer<uint8_t> src(16);
  ouro::launch(cp_async_past_global_kernel, dim3(1), dim3(32), 0, nullptr, src.ptr);
  sync();
}

}  // namespace ptx_test
