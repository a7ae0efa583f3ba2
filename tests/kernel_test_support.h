// Shared helpers of the kernel tests (tests/test_kernel_*.cpp). Those files are compiled twice:
// by g++ against the SIMT emulator (ouro_test_kernel_*), and by nvcc for a real GPU
// (ouro_test_kernel_*_gpu, which skips without one). Include this header first: it includes
// <ouro/cuda.h>, which must precede every CUDA header.
#pragma once
#include <ouro/cuda.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/common.cuh"
#include "ouro/env_switch.h"  // reread_switches(), for tests that setenv a dispatch switch

#if defined(__SANITIZE_THREAD__)
#include <omp.h>
#endif

namespace kernel_test {

#if defined(__SANITIZE_THREAD__)
// libgomp is not built with TSan: its barriers look like data races to it. Under TSan the CPU
// reference runs on one thread (the kernels under test are what TSan watches).
inline const bool kSerialReferenceUnderTsan = (omp_set_num_threads(1), true);
#endif

using ouro::kernels::bf16;

// Sets an environment variable for the scope (nullptr: unsets it), restoring the old value after;
// re-reads the dispatch switches both ways, since the kernels read them once (ouro/env_switch.h).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value) ::setenv(name, value, 1); else ::unsetenv(name);
    ouro::reread_switches();
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_, old_.c_str(), 1); else ::unsetenv(name_);
    ouro::reread_switches();
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

// Every test needs a device: the emulator always has one; a CUDA build may run without a GPU.
class KernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) GTEST_SKIP() << "no CUDA device";
  }
  void TearDown() override {
    if (!IsSkipped()) {
      OURO_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }
};

// Device memory of n elements of T, freed on scope exit. New buffers are poisoned with 0xFF bytes
// (NaN in bf16/fp32) so an output element a kernel forgets to write fails the comparison.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    OURO_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), bytes() ? bytes() : 1));
    poison();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return p_; }
  operator T*() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void poison() { OURO_CUDA_CHECK(cudaMemset(p_, 0xFF, bytes())); }
  void zero() { OURO_CUDA_CHECK(cudaMemset(p_, 0, bytes())); }
  void upload(const std::vector<T>& host) {
    OURO_CUDA_CHECK(cudaMemcpy(p_, host.data(), bytes(), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    OURO_CUDA_CHECK(cudaDeviceSynchronize());
    OURO_CUDA_CHECK(cudaMemcpy(host.data(), p_, bytes(), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// bf16 <-> float on the host, bit-exact round to nearest even (the kernels' own conversion).
inline bf16 to_bf16(float x) { return __float2bfloat16_rn(x); }
inline float to_float(bf16 x) { return __bfloat162float(x); }

inline std::vector<float> to_float(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = to_float(v[i]);
  return out;
}
inline std::vector<bf16> to_bf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = to_bf16(v[i]);
  return out;
}
// The values a bf16 tensor really holds: the reference must see the same rounded inputs.
inline std::vector<float> round_bf16(const std::vector<float>& v) { return to_float(to_bf16(v)); }

// Seeded normal(0, scale) values, already rounded to bf16.
inline std::vector<float> random_bf16_values(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return round_bf16(v);
}
inline std::vector<float> random_floats(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// ||out - ref|| / ||ref|| in double; infinity when out holds a NaN or infinity, so those never
// pass. (ref all zero: the absolute norm of the difference.)
inline double rel_error(const std::vector<float>& out, const std::vector<float>& ref) {
  EXPECT_EQ(out.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size() && i < ref.size(); i++) {
    if (!std::isfinite(out[i])) return INFINITY;
    const double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// One part (0 = q, 1 = k, 2 = v) of a packed (B, T, 3C) attention input as a flat (B, T, C) vector.
inline std::vector<float> qkv_part(const std::vector<float>& x, int B, int T, int C, int which) {
  std::vector<float> out;
  out.reserve(size_t(B) * T * C);
  for (size_t r = 0; r < size_t(B) * T; r++)
    for (int c = 0; c < C; c++) out.push_back(x[r * 3 * C + which * C + c]);
  return out;
}

}  // namespace kernel_test
