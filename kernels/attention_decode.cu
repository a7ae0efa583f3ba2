#include "kernels/attention_decode.h"
// Split-KV flash decoding (the generation loop's per-token attention).
//
// Layout: qkv (B, Tn, 3C) row-major, q | k | v each C = NH * hd wide, head h at columns
// [h*hd, (h+1)*hd); kcache / vcache (B, Tmax, C); out (B, Tn, C). A token at position p = pos0 + t
// attends to cache positions 0..p (its own k, v included, hence the append launch first).
//
// Why split: one warp walking a 1k-entry cache per head leaves most SMs idle at batch 1 (B * NH
// warps in all) and serializes ~1k dependent reductions. Here the cache positions 0..pos0+Tn-1 are
// cut into `splits` contiguous chunks of `chunk` keys; block (item, s), item = (b * Tn + t) * NH
// + h, handles chunk s of that token and head:
//   - 4 warps take the chunk's keys round robin (warp w: keys begin + w, begin + w + 4, ...); lane
//     owns head dims lane + 32 e, e < E (E = hd rounded up to 32, 64, 128 or 256, over 32), so a
//     warp's loads of one cache row are contiguous; the score is a warp sum; the softmax is online
//     in fp32 (running max m, sum l, unnormalized o).
//   - the 4 warps' (m, l, o) merge through shared memory, warp 0 folding warps 0..3 in order, and
//     the block writes its partial (m, l) and o (hd floats) to the scratch.
// A combine launch (a warp per item) then folds the splits in order 0..splits-1:
// M = max m_s, L = sum l_s exp(m_s - M), O = sum o_s exp(m_s - M), out = O / L in bf16.
// A split past the token's own length (tokens before the last of a multi-token step) is empty:
// m = -inf, l = 0, and weighs 0. The split count depends on the shape only
// (attention_decode_splits) and every fold has a fixed order, so results are bitwise
// reproducible; no atomics.
//
// attention_decode_at (decoding inside a CUDA Graph): pos0 is read by the kernels from device
// memory, so one captured launch serves every token. The grid then has the split count of a full
// cache (the most any position needs: the count only grows with the length) and each block
// computes the count and chunk of the actual length exactly as the host does; blocks past it
// return at once, and the combine folds only the actual splits. Bitwise attention_decode's result.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ouro::kernels {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kKeysPerSplit = 64;   // at least this many keys per block (16 per warp)
constexpr int kTargetBlocks = 1024; // enough blocks to fill a 132-SM GPU several times over
constexpr int kMaxSplits = 64;

// attention_decode_splits for `items` (token, head) pairs, on the host or in a kernel.
__host__ __device__ inline int decode_splits(long long items, int n_keys) {
  const long long by_len = ceil_div(n_keys > 1 ? n_keys : 1, kKeysPerSplit);
  const long long per = items > 1 ? items : 1;
  const long long by_grid = kTargetBlocks / per > 1 ? kTargetBlocks / per : 1;
  const long long s = by_len < by_grid ? by_len : by_grid;
  return int(s < 1 ? 1 : s > kMaxSplits ? kMaxSplits : s);
}

__global__ void decode_append_kernel(const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0, int Tmax,
                                     int C, const int* pos0_device) {
  if (pos0_device) pos0 = *pos0_device;
  const size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= size_t(B) * Tn * C) return;
  const size_t bt = idx / C, c = idx % C, b = bt / Tn, t = bt % Tn;
  const size_t dst = (b * Tmax + pos0 + t) * C + c;
  kcache[dst] = qkv[bt * 3 * C + C + c];
  vcache[dst] = qkv[bt * 3 * C + 2 * C + c];
}

// Partial attention of one (token, head) over one chunk of the cache; see the header comment.
template <int E>
__global__ void __launch_bounds__(kThreads) decode_partial_kernel(float* part_o, float* part_ml, const bf16* qkv,
                                                                  const bf16* kcache, const bf16* vcache, int Tn,
                                                                  int pos0, int Tmax, int C, int NH, int splits,
                                                                  int chunk, const int* pos0_device) {
  const int item = blockIdx.x, s = blockIdx.y;
  if (pos0_device) {  // the grid has a full cache's splits; this length may need fewer
    pos0 = *pos0_device;
    splits = decode_splits(gridDim.x, pos0 + Tn);
    chunk = ceil_div(pos0 + Tn, splits);
    if (s >= splits) return;  // the whole block
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hd = C / NH, h = item % NH, bt = item / NH, b = bt / Tn, t = bt % Tn;
  const int n = pos0 + t + 1;
  const int begin = s * chunk, end = min(n, begin + chunk);
  const float scale = 1.0f / sqrtf(float(hd));
  const bf16* qrow = qkv + size_t(bt) * 3 * C + h * hd;
  float q[E], o[E];
#pragma unroll
  for (int e = 0; e < E; e++) {
    const int d = lane + 32 * e;
    q[e] = d < hd ? __bfloat162float(qrow[d]) * scale : 0.0f;
    o[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const size_t cache0 = size_t(b) * Tmax * C + h * hd;
  for (int j = begin + warp; j < end; j += kWarps) {
    const bf16* kr = kcache + cache0 + size_t(j) * C;
    float part = 0.0f;
#pragma unroll
    for (int e = 0; e < E; e++) {
      const int d = lane + 32 * e;
      if (d < hd) part += q[e] * __bfloat162float(kr[d]);
    }
    const float sc = warp_sum(part);
    const float mn = fmaxf(m, sc);
    const float corr = expf(m - mn);  // 0 on the warp's first key (m = -inf)
    const float p = expf(sc - mn);
    l = l * corr + p;
    const bf16* vr = vcache + cache0 + size_t(j) * C;
#pragma unroll
    for (int e = 0; e < E; e++) {
      const int d = lane + 32 * e;
      o[e] = o[e] * corr + (d < hd ? p * __bfloat162float(vr[d]) : 0.0f);
    }
    m = mn;
  }

  __shared__ float sm_m[kWarps], sm_l[kWarps], sm_o[kWarps][32 * E];
  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < E; e++) sm_o[warp][lane + 32 * e] = o[e];
  __syncthreads();
  if (warp != 0) return;
  float M = -INFINITY;
  for (int w = 0; w < kWarps; w++) M = fmaxf(M, sm_m[w]);
  float L = 0.0f, O[E];
#pragma unroll
  for (int e = 0; e < E; e++) O[e] = 0.0f;
  for (int w = 0; w < kWarps; w++) {
    const float f = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M);  // an idle warp weighs 0
    L += sm_l[w] * f;
#pragma unroll
    for (int e = 0; e < E; e++) O[e] += sm_o[w][lane + 32 * e] * f;
  }
  const size_t slot = size_t(item) * splits + s;
  if (lane == 0) {
    part_ml[2 * slot] = M;
    part_ml[2 * slot + 1] = L;
  }
  float* po = part_o + slot * hd;
#pragma unroll
  for (int e = 0; e < E; e++) {
    const int d = lane + 32 * e;
    if (d < hd) po[d] = O[e];
  }
}

// Folds the splits of each (token, head) in order: a warp per item.
template <int E>
__global__ void __launch_bounds__(kThreads) decode_combine_kernel(bf16* out, const float* part_o,
                                                                  const float* part_ml, int items, int C, int NH,
                                                                  int splits, int Tn, const int* pos0_device) {
  const int item = blockIdx.x * kWarps + threadIdx.x / 32;
  if (item >= items) return;  // whole warps leave together
  if (pos0_device) splits = decode_splits(items, *pos0_device + Tn);
  const int lane = threadIdx.x % 32;
  const int hd = C / NH, h = item % NH, bt = item / NH;
  const float* ml = part_ml + size_t(item) * splits * 2;
  float M = -INFINITY;
  for (int s = 0; s < splits; s++) M = fmaxf(M, ml[2 * s]);
  float L = 0.0f, O[E];
#pragma unroll
  for (int e = 0; e < E; e++) O[e] = 0.0f;
  for (int s = 0; s < splits; s++) {
    const float ms = ml[2 * s];
    if (ms == -INFINITY) continue;  // an empty split (past this token's position)
    const float f = expf(ms - M);
    L += ml[2 * s + 1] * f;
    const float* po = part_o + (size_t(item) * splits + s) * hd;
#pragma unroll
    for (int e = 0; e < E; e++) {
      const int d = lane + 32 * e;
      if (d < hd) O[e] += po[d] * f;
    }
  }
  const float inv = 1.0f / L;  // L >= 1: split 0 always holds key 0 and the max key weighs 1
  bf16* orow = out + size_t(bt) * C + h * hd;
#pragma unroll
  for (int e = 0; e < E; e++) {
    const int d = lane + 32 * e;
    if (d < hd) orow[d] = __float2bfloat16_rn(O[e] * inv);
  }
}

template <int E>
void decode_hd(bf16* out, float* part_o, float* part_ml, const bf16* qkv, const bf16* kcache, const bf16* vcache,
               int B, int Tn, int pos0, int Tmax, int C, int NH, int splits, int chunk, const int* pos0_device,
               cudaStream_t stream) {
  const int items = B * Tn * NH;
  launch(decode_partial_kernel<E>, dim3(unsigned(items), unsigned(splits)), dim3(kThreads), 0, stream, part_o,
         part_ml, qkv, kcache, vcache, Tn, pos0, Tmax, C, NH, splits, chunk, pos0_device);
  OURO_CUDA_CHECK_LAUNCH();
  launch(decode_combine_kernel<E>, dim3(unsigned(ceil_div(items, kWarps))), dim3(kThreads), 0, stream, out,
         static_cast<const float*>(part_o), static_cast<const float*>(part_ml), items, C, NH, splits, Tn,
         pos0_device);
  OURO_CUDA_CHECK_LAUNCH();
}

size_t round256(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

int attention_decode_splits(int B, int Tn, int NH, int n_keys) {
  return decode_splits((long long)B * Tn * NH, n_keys);
}

size_t attention_decode_scratch_bytes(int B, int Tn, int pos0, int C, int NH) {
  const size_t slots = size_t(B) * Tn * NH * attention_decode_splits(B, Tn, NH, pos0 + Tn);
  const size_t hd = NH > 0 ? size_t(C / NH) : 0;
  return round256(slots * hd * sizeof(float)) + round256(slots * 2 * sizeof(float));
}

namespace {
void check_decode_shape(int B, int Tn, int Tmax, int C, int NH, const void* scratch) {
  if (B < 1 || Tn < 1 || NH < 1 || C < 1 || C % NH != 0 || C / NH > 256)
    throw std::invalid_argument("attention_decode: need B, Tn, NH >= 1, C a multiple of NH and head dim 1..256 (B=" +
                                std::to_string(B) + " Tn=" + std::to_string(Tn) + " C=" + std::to_string(C) +
                                " NH=" + std::to_string(NH) + ")");
  if (Tmax < 1 || Tn > Tmax)
    throw std::invalid_argument("attention_decode: " + std::to_string(Tn) + " new tokens do not fit the KV cache of " +
                                std::to_string(Tmax) + " positions");
  if (size_t(B) * Tmax * C >= (size_t(1) << 31) || size_t(B) * Tn * 3 * C >= (size_t(1) << 31))
    throw std::invalid_argument("attention_decode: KV cache too large for the kernels' index types");
  if (scratch == nullptr) throw std::invalid_argument("attention_decode: scratch is null");
}

// splits, chunk: those of pos0 (attention_decode) or of a full cache (attention_decode_at, whose
// kernels compute their own from *pos0_device).
void launch_decode(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0,
                   const int* pos0_device, int Tmax, int C, int NH, int splits, int chunk, void* scratch,
                   cudaStream_t stream) {
  const int hd = C / NH;
  const size_t slots = size_t(B) * Tn * NH * splits;
  float* part_o = static_cast<float*>(scratch);
  float* part_ml = reinterpret_cast<float*>(static_cast<char*>(scratch) + round256(slots * hd * sizeof(float)));

  const size_t n = size_t(B) * Tn * C;
  launch(decode_append_kernel, dim3(unsigned(ceil_div(n, size_t(256)))), dim3(256), 0, stream, qkv, kcache, vcache, B,
         Tn, pos0, Tmax, C, pos0_device);
  OURO_CUDA_CHECK_LAUNCH();
  if (hd <= 32)
    decode_hd<1>(out, part_o, part_ml, qkv, kcache, vcache, B, Tn, pos0, Tmax, C, NH, splits, chunk, pos0_device, stream);
  else if (hd <= 64)
    decode_hd<2>(out, part_o, part_ml, qkv, kcache, vcache, B, Tn, pos0, Tmax, C, NH, splits, chunk, pos0_device, stream);
  else if (hd <= 128)
    decode_hd<4>(out, part_o, part_ml, qkv, kcache, vcache, B, Tn, pos0, Tmax, C, NH, splits, chunk, pos0_device, stream);
  else
    decode_hd<8>(out, part_o, part_ml, qkv, kcache, vcache, B, Tn, pos0, Tmax, C, NH, splits, chunk, pos0_device, stream);
}
}  // namespace

void attention_decode(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0, int Tmax,
                      int C, int NH, void* scratch, cudaStream_t stream) {
  check_decode_shape(B, Tn, Tmax, C, NH, scratch);
  if (pos0 < 0 || pos0 + Tn > Tmax)
    throw std::invalid_argument("attention_decode: positions " + std::to_string(pos0) + ".." +
                                std::to_string(pos0 + Tn - 1) + " do not fit the KV cache of " +
                                std::to_string(Tmax) + " positions");
  const int splits = attention_decode_splits(B, Tn, NH, pos0 + Tn);
  launch_decode(out, qkv, kcache, vcache, B, Tn, pos0, nullptr, Tmax, C, NH, splits, ceil_div(pos0 + Tn, splits),
                scratch, stream);
}

size_t attention_decode_at_scratch_bytes(int B, int Tn, int Tmax, int C, int NH) {
  return attention_decode_scratch_bytes(B, Tn, Tmax - Tn, C, NH);
}

void attention_decode_at(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn,
                         const int* pos0_device, int Tmax, int C, int NH, void* scratch, cudaStream_t stream) {
  check_decode_shape(B, Tn, Tmax, C, NH, scratch);
  if (!pos0_device) throw std::invalid_argument("attention_decode_at: pos0_device is null");
  const int splits = attention_decode_splits(B, Tn, NH, Tmax);  // a full cache: the most any position needs
  launch_decode(out, qkv, kcache, vcache, B, Tn, 0, pos0_device, Tmax, C, NH, splits, 0, scratch, stream);
}

}  // namespace ouro::kernels
