// ouro_cuda_check: links every CUDA library the engine uses and prints their versions.
// Building it proves the toolkit's libraries link; running it needs no GPU (the version
// queries do not touch the driver). Exit status: 0 when all libraries answer.
#include <cstdio>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

int main() {
  int runtime = 0, driver = 0, nccl = 0, cublas = 0, devices = 0;
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) return 1;
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  if (cublasGetProperty(MAJOR_VERSION, &cublas) != CUBLAS_STATUS_SUCCESS) return 1;
  if (ncclGetVersion(&nccl) != ncclSuccess) return 1;
  std::printf("cudart %d, driver %d, cuBLAS %d, cuBLASLt %zu, cuDNN %zu, NCCL %d\n", runtime,
              driver, cublas, cublasLtGetVersion(), cudnnGetVersion(), nccl);
  const cudaError_t err = cudaGetDeviceCount(&devices);
  std::printf("devices: %d%s%s\n", err == cudaSuccess ? devices : 0,
              err == cudaSuccess ? "" : " - ", err == cudaSuccess ? "" : cudaGetErrorString(err));
  return 0;
}
