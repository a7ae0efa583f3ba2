// Sum of a vector on the GPU: each block reduces its slice (warp shuffles, then one value per
// warp through shared memory) and writes a partial sum; the host adds the partials.
//
// The same file builds with nvcc and, unchanged, with g++ against the SIMT emulator:
//   nvcc -std=c++20 -arch=sm_80 -Iinclude examples/simt/reduce.cu -o reduce
//   tools/simt-run examples/simt/reduce.cu [--asan|--tsan] [--order shuffle] [-- N]
// It exits 0 when the GPU sum matches a double-precision host sum.
#include <ouro/cuda.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

constexpr int kThreads = 256;  // per block: 8 warps

__device__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;  // complete in lane 0
}

__global__ void block_sums(const float* x, int n, float* partial) {
  __shared__ float warp_totals[kThreads / 32];
  float v = 0.0f;
  for (int i = blockIdx.x * kThreads + threadIdx.x; i < n; i += gridDim.x * kThreads) v += x[i];
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_totals[warp] = v;
  __syncthreads();  // every warp's total is in shared memory before warp 0 reads them
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_totals[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) partial[blockIdx.x] = v;
  }
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 100003;  // not a multiple of the block size
  const int blocks = 16;
  std::vector<float> x(n);
  double want = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;
    want += x[i];
  }

  float *d_x = nullptr, *d_partial = nullptr;
  OURO_CUDA_CHECK(cudaMalloc(&d_x, n * sizeof(float)));
  OURO_CUDA_CHECK(cudaMalloc(&d_partial, blocks * sizeof(float)));
  OURO_CUDA_CHECK(cudaMemcpy(d_x, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  ouro::launch(block_sums, dim3(blocks), dim3(kThreads), 0, nullptr, d_x, n, d_partial);
  OURO_CUDA_CHECK_LAUNCH();
  std::vector<float> partial(blocks);
  OURO_CUDA_CHECK(cudaMemcpy(partial.data(), d_partial, blocks * sizeof(float), cudaMemcpyDeviceToHost));
  OURO_CUDA_CHECK(cudaFree(d_x));
  OURO_CUDA_CHECK(cudaFree(d_partial));

  double got = 0;
  for (float p : partial) got += p;
  const double tol = 1e-5 * n;  // fp32 partial sums over ~n/4096 terms each
  std::printf("sum of %d floats: %.6f (host %.6f)\n", n, got, want);
  return std::fabs(got - want) <= tol ? 0 : 1;
}
