#include "kernels/rope.h"
// Rotary position embedding, forward and backward, in place on the packed qkv (B, T, 3C) bf16
// activation: q | k | v, each C = NH * hd wide, head h at columns [h*hd, (h+1)*hd) of its part.
// Rotate-half convention of Hugging Face Llama / GPT-NeoX: the pair (x_i, x_{i+hd/2}), i < hd/2,
// turns by angle = pos * inv_freq_i, inv_freq_i = theta^(-2i/hd):
//   x_i' = x_i cos - x_{i+hd/2} sin,   x_{i+hd/2}' = x_{i+hd/2} cos + x_i sin.
// The backward applies the transpose (sin negated), which is the inverse rotation.
//
// Threads: one per (row n = b*T + t, frequency i), a flat grid-stride loop over the B*T*hd/2
// pairs, 256 threads per block. The angle depends only on (position, i), so each thread
// evaluates it once and applies it to the pair i of q and of k in every head (2 * NH
// rotations); consecutive threads take consecutive i of the same row, so each warp reads and
// writes runs of consecutive bf16 of one head's half. The op is memory bound (3 bytes of q,k
// traffic per flop), so no vector loads: hd/2 can be any even size.
//
// Precision: the angle, up to (maxT - 1) * 1 rad, is formed in double and reduced exactly to
// half-turns in (-1, 1] before sincospi, so cos and sin are correct to double precision at any
// position (an fp32 angle would be off by ~pos * 6e-8 rad) and the reduction needs no
// Payne-Hanek slow path (no local memory); they are rounded to fp32 once, as CpuOps does. The
// rotation itself runs in fp32 on bf16 inputs, one bf16 rounding per output.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ouro::kernels {

namespace {

constexpr int kThreads = 256;
constexpr double kInvPi = 0.31830988618379067154;

// 8 blocks of 256 per SM (full occupancy): caps the kernel at 32 registers, which sm_80 would
// otherwise exceed by three (75% occupancy) for a kernel whose only cost is memory latency.
// kPosOnDevice (decoding, one token per row): the position is read from device memory, written
// by a CUDA graph's copy node before each replay; that load needs registers the 32-register cap
// lacks on sm_90a (16 bytes of spills), and a decode step rotates a few rows, so that variant
// keeps no occupancy bound.
template <bool kBackward, bool kPosOnDevice>
__global__ void __launch_bounds__(kThreads, kPosOnDevice ? 1 : 8)
    rope_kernel(bf16* qkv, int T, int C, int NH, int pos0, const int* pos0_device, double log2_theta, size_t pairs) {
  if constexpr (kPosOnDevice) pos0 = *pos0_device;
  const int hd = C / NH, half = hd / 2;
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < pairs;
       idx += size_t(gridDim.x) * blockDim.x) {
    const size_t n = idx / size_t(half);
    const int i = int(idx % size_t(half));
    const double pos = double(pos0) + double(n % size_t(T));
    // theta^(-2i/hd) = 2^(-2i/hd * log2 theta); half-turns = angle / pi, reduced to (-1, 1]
    // (x - 2 * rint(x / 2) is exact in double).
    const double turns = pos * exp2(-2.0 * i / hd * log2_theta) * kInvPi;
    const double r = turns - 2.0 * rint(0.5 * turns);
    double s = 0, c = 0;
    sincospi(r, &s, &c);
    const float cs = float(c), sn = kBackward ? -float(s) : float(s);
    bf16* row = qkv + n * 3 * size_t(C);
    for (int part = 0; part < 2; part++) {  // q, then k
      for (int h = 0; h < NH; h++) {
        bf16* x = row + size_t(part) * C + size_t(h) * hd;
        const float a = __bfloat162float(x[i]), b = __bfloat162float(x[i + half]);
        x[i] = __float2bfloat16_rn(a * cs - b * sn);
        x[i + half] = __float2bfloat16_rn(b * cs + a * sn);
      }
    }
  }
}

template <bool kBackward, bool kPosOnDevice = false>
void launch_rope(const char* who, bf16* qkv, int B, int T, int C, int NH, int pos0, const int* pos0_device,
                 double theta, cudaStream_t stream) {
  const auto arg = [who](const std::string& what) { return std::invalid_argument(std::string(who) + ": " + what); };
  if (!qkv) throw arg("null qkv");
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
    throw arg("B, T, C, NH must be positive with C % NH == 0 (B=" + std::to_string(B) + ", T=" +
              std::to_string(T) + ", C=" + std::to_string(C) + ", NH=" + std::to_string(NH) + ")");
  if ((C / NH) % 2 != 0) throw arg("head dimension " + std::to_string(C / NH) + " must be even");
  if (pos0 < 0) throw arg("pos0 must be >= 0, got " + std::to_string(pos0));
  if (!(theta > 1) || !std::isfinite(theta)) throw arg("theta must be finite and > 1, got " + std::to_string(theta));
  if (size_t(B) * T > size_t(INT32_MAX) || size_t(pos0) + size_t(T) > size_t(INT32_MAX))
    throw arg("B*T or pos0 + T too large");
  const size_t pairs = size_t(B) * T * size_t(C / NH / 2);
  const dim3 grid(unsigned(std::clamp<size_t>(ceil_div(pairs, size_t(kThreads)), 1, 65535)));
  launch(rope_kernel<kBackward, kPosOnDevice>, grid, dim3(kThreads), 0, stream, qkv, T, C, NH, pos0, pos0_device,
         std::log2(theta), pairs);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope_forward(bf16* qkv, int B, int T, int C, int NH, int pos0, double theta, cudaStream_t stream) {
  launch_rope<false>("rope_forward", qkv, B, T, C, NH, pos0, nullptr, theta, stream);
}

void rope_forward_at(bf16* qkv, int B, int T, int C, int NH, const int* pos0_device, double theta,
                     cudaStream_t stream) {
  if (!pos0_device) throw std::invalid_argument("rope_forward_at: pos0_device is null");
  launch_rope<false, true>("rope_forward_at", qkv, B, T, C, NH, 0, pos0_device, theta, stream);
}

void rope_backward(bf16* dqkv, int B, int T, int C, int NH, int pos0, double theta, cudaStream_t stream) {
  launch_rope<true>("rope_backward", dqkv, B, T, C, NH, pos0, nullptr, theta, stream);
}

}  // namespace ouro::kernels
