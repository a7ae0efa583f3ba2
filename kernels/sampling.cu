#include "kernels/sampling.h"
// Sampling (temperature, top-k, top-p, greedy) and the per-token log-prob gather.
//
// Layout: logits (B, Vp) bf16 row-major, the real vocabulary is [0, V). tokens (B) ints,
// logprobs (B) fp32. One block per row for both kernels.
//
// sample_tokens, per row:
//  1. max and argmax (lowest index on ties) of the raw logits, then S1 = sum exp(x - max):
//     the unmodified softmax, for the log-prob of the drawn token (and the whole answer when
//     temperature <= 0: greedy).
//  2. weights w_i = exp((x_i - max) / T) (unnormalised softmax at temperature T).
//  3. The kept set is {i : key(x_i) >= K}, key = the bf16 bit pattern mapped to an unsigned
//     16-bit integer in value order. Because the logits are bf16, the threshold only needs to be
//     searched over 2^16 keys, by bisection (<= 16 passes over the row, each one block-wide
//     reduction) instead of sorting the row:
//       top-k: the largest K with count(key >= K) >= k (the k-th largest value; ties with it
//              are kept, as torch's `logits < topk(...)[-1]` mask does); the search stops early
//              at a K with exactly k tokens at or above it (the same set);
//       top-p: then the largest K' >= K with mass(key >= K') >= top_p * mass(key >= K) (the
//              smallest set of the most likely tokens reaching top_p of the top-k mass; a whole
//              group of equal logits is kept or dropped together).
//     Counts are exact (integers in fp32, V < 2^24); masses are fp32 sums in a fixed order.
//     Each bisection step is one pass and a one-barrier block reduction (warp sums, then every
//     thread adds the <= 16 warp sums in order; double-buffered so no second barrier is needed).
//  4. Draw: u = uniform01(philox4x32_10(offset_lo, offset_hi, row, 0, seed_lo, seed_hi).x[0])
//     (row-seeded: philox4x32_10(offset_lo, offset_hi, 0, 0, row_seed_lo, row_seed_hi));
//     the token is the first kept i, in index order, whose running sum of kept weights exceeds
//     u * (total kept weight). The scan is split into contiguous chunks, one per thread: chunk
//     sums, an exclusive block scan of them, then the one thread whose chunk holds the crossing
//     (the last chunk with kept weight starting at or below the target) walks its chunk. If
//     rounding leaves the crossing past its last kept token, that token is taken.
//  Non-finite logits. A row holding a NaN, or with no logit above -inf, has no distribution to
//  draw from: it is reported (status[row] = kSampleNaN / kSampleNoFinite), gets the argmax of
//  its non-NaN logits (index 0 if none) as its token and a NaN log-prob, at any temperature, so
//  no thread ever leaves tokens[row] unwritten or reads outside the row. -inf logits have weight
//  0 and are never drawn. +inf logits are the limit of a logit growing without bound: they share
//  all the probability equally (weight 1 each, the rest 0), greedy takes the first, and the
//  log-prob of a drawn +inf token is -log(number of +inf logits).
// Everything is in a fixed order: the same (logits, params) draw the same tokens run to run.
// Sampling is not a hot kernel (B rows per decoding step), so the row is simply re-read from
// L1/L2 by each pass instead of being staged in shared memory.
//
// gather_logprobs: one pass of online (max, sum of exp) per thread in fp32, combined in a fixed
// tree, then logprob = (x[target] - max) - log(sum); 128-bit loads when Vp % 8 == 0. A target
// < 0 gives 0; a target >= V (a caller bug the host validates) is clamped to V - 1 so the kernel
// never reads out of bounds.
#include <cmath>
#include <stdexcept>
#include <string>

namespace ouro::kernels {

namespace {

// Order-preserving 16-bit key of a bf16 value (-0 folded onto +0; NaN sorts above +inf).
__device__ __forceinline__ uint32_t bf16_key(bf16 x) {
  uint32_t b = __bfloat16_as_ushort(x);
  if (b == 0x8000u) b = 0;
  return (b & 0x8000u) ? (~b & 0xffffu) : (b | 0x8000u);
}

// Block-wide argmax, lowest index on ties; every thread gets the result.
__device__ __forceinline__ void block_argmax(float& best, int& idx, float* fscratch, int* iscratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  for (int o = 16; o > 0; o >>= 1) {
    const float b2 = __shfl_xor_sync(0xffffffffu, best, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (b2 > best || (b2 == best && i2 < idx)) {
      best = b2;
      idx = i2;
    }
  }
  __syncthreads();
  if (lane == 0) {
    fscratch[warp] = best;
    iscratch[warp] = idx;
  }
  __syncthreads();
  best = lane < nwarps ? fscratch[lane] : -INFINITY;
  idx = lane < nwarps ? iscratch[lane] : 0x7fffffff;
  for (int o = 16; o > 0; o >>= 1) {
    const float b2 = __shfl_xor_sync(0xffffffffu, best, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (b2 > best || (b2 == best && i2 < idx)) {
      best = b2;
      idx = i2;
    }
  }
}

// Block-wide sum with ONE barrier: warp sums, then every thread adds the warps' sums in warp
// order (the same fixed order everywhere: deterministic). `buf` alternates between two 32-float
// halves from call to call, so the next call's writes cannot race with this call's reads.
__device__ __forceinline__ float block_sum_1sync(float x, float* buf, int& parity) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  float* half = buf + 32 * parity;
  parity ^= 1;
  x = warp_sum(x);
  if (lane == 0) half[warp] = x;
  __syncthreads();
  float s = 0.0f;
  for (int w = 0; w < nwarps; w++) s += half[w];
  return s;
}

// Unnormalised probability of logit x at temperature T when the row's maximum is maxv: the
// softmax weight, or, in a row whose maximum is +inf, 1 for each +inf logit and 0 for the rest.
__device__ __forceinline__ float weight_of(float x, float maxv, float T) {
  if (maxv == INFINITY) return x == INFINITY ? 1.0f : 0.0f;
  return expf((x - maxv) / T);
}

// Number (kCount) or total weight of the row's tokens with key >= K, block-wide.
template <bool kCount>
__device__ __forceinline__ float block_above(const bf16* x, int V, uint32_t K, float maxv, float temperature,
                                             float* buf, int& parity) {
  float acc = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const bf16 xi = x[i];
    if (bf16_key(xi) >= K) acc += kCount ? 1.0f : weight_of(__bfloat162float(xi), maxv, temperature);
  }
  return block_sum_1sync(acc, buf, parity);
}

__global__ void sample_kernel(int* tokens, float* logprobs, const bf16* logits, int V, int Vp,
                              SamplingParams p, const uint64_t* row_seeds, int* status,
                              const uint64_t* offset_device) {
  __shared__ float fscratch[32];
  __shared__ int iscratch[32];
  __shared__ float search_buf[64];
  __shared__ int picked;
  __shared__ int picked_token;
  int parity = 0;
  const int row = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const bf16* x = logits + size_t(row) * size_t(Vp);

  // 1. max / argmax and the raw softmax normaliser.
  float maxv = -INFINITY;
  int amax = 0x7fffffff;
  int has_nan = 0;
  for (int i = tid; i < V; i += blockDim.x) {
    const float f = __bfloat162float(x[i]);
    if (f != f) has_nan = 1;
    else if (f > maxv) {  // increasing i: the first maximum of this thread is kept
      maxv = f;
      amax = i;
    }
  }
  const int nans = __syncthreads_count(has_nan);
  block_argmax(maxv, amax, fscratch, iscratch);
  if (amax >= V) amax = 0;  // no value above -inf (or all NaN): index 0
  // A row with nothing to draw from (block-uniform): reported, an in-range token, NaN log-prob.
  const int row_status = nans ? kSampleNaN : maxv == -INFINITY ? kSampleNoFinite : kSampleOk;
  if (row_status != kSampleOk) {
    if (tid == 0) {
      tokens[row] = amax;
      if (logprobs) logprobs[row] = NAN;
      if (status) status[row] = row_status;
    }
    return;
  }
  float s1 = 0.0f;
  for (int i = tid; i < V; i += blockDim.x) s1 += weight_of(__bfloat162float(x[i]), maxv, 1.0f);
  s1 = block_sum(s1, fscratch);

  int token = amax;
  if (p.temperature > 0.0f) {
    const float T = p.temperature;
    const uint32_t key_max = bf16_key(x[amax]);
    // 3. The threshold key: keep key >= cut. lo always satisfies the predicate, hi never does.
    uint32_t cut = 0;
    if (p.top_k > 0 && p.top_k < V) {
      uint32_t lo = 0, hi = key_max + 1;
      while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        const float count = block_above<true>(x, V, mid, maxv, T, search_buf, parity);
        if (count >= float(p.top_k)) lo = mid;
        else hi = mid;
        // Exactly k tokens at or above mid: the same set as at the k-th largest key.
        if (count == float(p.top_k)) break;
      }
      cut = lo;
    }
    if (p.top_p < 1.0f) {
      const float goal = p.top_p * block_above<false>(x, V, cut, maxv, T, search_buf, parity);
      uint32_t lo = cut, hi = key_max + 1;
      while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        if (block_above<false>(x, V, mid, maxv, T, search_buf, parity) >= goal) lo = mid;
        else hi = mid;
      }
      cut = lo;
    }

    // 4. The draw: chunk sums, their exclusive scan, one thread walks the crossing chunk.
    const int chunk = ceil_div(V, int(blockDim.x));
    const int begin = tid * chunk, end = min(V, begin + chunk);
    float local = 0.0f;
    for (int i = begin; i < end; i++)
      if (bf16_key(x[i]) >= cut) local += weight_of(__bfloat162float(x[i]), maxv, T);
    float incl = local;  // inclusive scan within the warp
    for (int o = 1; o < 32; o <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += y;
    }
    float excl = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) excl = 0.0f;
    float* warp_off = fscratch;  // block_sum is done with fscratch: reuse it
    __syncthreads();
    if (lane == 31) warp_off[warp] = incl;
    if (tid == 0) picked = -1;
    __syncthreads();
    if (warp == 0) {  // exclusive scan of the warp totals, in warp order
      const int nwarps = blockDim.x / 32;
      float s = lane < nwarps ? warp_off[lane] : 0.0f;
      for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(0xffffffffu, s, o);
        if (lane >= o) s += y;
      }
      float e = __shfl_up_sync(0xffffffffu, s, 1);
      if (lane == 0) e = 0.0f;
      __syncwarp();
      if (lane < nwarps) warp_off[lane] = e;     // exclusive
      if (lane == nwarps - 1) warp_off[31] = s;  // total (nwarps <= 16, so slot 31 is free)
    }
    __syncthreads();
    excl += warp_off[warp];
    const float total = warp_off[31];
    // Row-seeded launches key each row by its own seed and leave the row out of the counter, so
    // the draw cannot depend on which rows share the launch or where this row sits in it.
    const uint64_t key = row_seeds ? row_seeds[row] : p.seed;
    const uint32_t ctr_row = row_seeds ? 0u : uint32_t(row);
    const uint64_t offset = offset_device ? *offset_device : p.offset;  // decoding's graph: read per token
    const Philox4 r = philox4x32_10(uint32_t(offset), uint32_t(offset >> 32), ctr_row, 0u,
                                    uint32_t(key), uint32_t(key >> 32));
    const float target = uniform01(r.x[0]) * total;
    // The chunk holding the crossing: the LAST thread with kept weight whose exclusive prefix is
    // <= target. Defined this way it is unique even where rounding makes neighbouring chunks'
    // [excl, excl + local) overlap or leave a gap (an integer atomicMax: order-independent).
    if (local > 0.0f && excl <= target) atomicMax(&picked, tid);
    __syncthreads();
    if (tid == picked) {
      float c = excl;
      int last = -1;
      for (int i = begin; i < end; i++) {
        if (bf16_key(x[i]) < cut) continue;
        const float w = weight_of(__bfloat162float(x[i]), maxv, T);
        if (w == 0.0f) continue;  // never a token of probability 0 (a -inf logit)
        c += w;
        last = i;
        if (c > target) break;  // past the chunk's end by rounding: its last kept token
      }
      picked_token = last;
    }
    __syncthreads();
    token = picked_token;
  }
  if (tid == 0) {
    tokens[row] = token;
    const float xt = __bfloat162float(x[token]);
    if (logprobs) logprobs[row] = maxv == INFINITY ? (xt == INFINITY ? -logf(s1) : -INFINITY) : (xt - maxv) - logf(s1);
    if (status) status[row] = kSampleOk;
  }
}

__device__ __forceinline__ void online_combine(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  const float a = m == -INFINITY ? 0.0f : s * expf(m - M);
  const float b = m2 == -INFINITY ? 0.0f : s2 * expf(m2 - M);
  m = M;
  s = a + b;
}

template <bool kVec>
__global__ void gather_logprobs_kernel(float* logprobs, const bf16* logits, const int* targets, int V,
                                       int Vp) {
  __shared__ float sh_max[32];
  __shared__ float sh_sum[32];
  const int row = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nwarps = blockDim.x / 32;
  const bf16* x = logits + size_t(row) * size_t(Vp);
  int target = targets[row];
  if (target < 0) {
    if (tid == 0) logprobs[row] = 0.0f;
    return;
  }
  if (target >= V) target = V - 1;
  float m = -INFINITY, s = 0.0f;
  if constexpr (kVec) {
    for (int i = tid * 8; i < V; i += blockDim.x * 8) {
      const Bf16x8 v = load_bf16x8(x + i);
      float f[8];
      float vmax = -INFINITY;
      for (int k = 0; k < 8; k++) {
        f[k] = i + k < V ? __bfloat162float(v.v[k]) : -INFINITY;
        vmax = fmaxf(vmax, f[k]);
      }
      const float M = fmaxf(m, vmax);
      float acc = m == -INFINITY ? 0.0f : s * expf(m - M);
      for (int k = 0; k < 8; k++)
        if (i + k < V) acc += expf(f[k] - M);
      m = M;
      s = acc;
    }
  } else {
    for (int i = tid; i < V; i += blockDim.x) online_combine(m, s, __bfloat162float(x[i]), 1.0f);
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_combine(m, s, m2, s2);
  }
  if (lane == 0) {
    sh_max[warp] = m;
    sh_sum[warp] = s;
  }
  __syncthreads();
  m = lane < nwarps ? sh_max[lane] : -INFINITY;
  s = lane < nwarps ? sh_sum[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_combine(m, s, m2, s2);
  }
  if (tid == 0) logprobs[row] = (__bfloat162float(x[target]) - m) - logf(s);
}

void check_shape(const char* what, int N, int V, int Vp) {
  if (N < 0 || V <= 0 || Vp < V || V >= (1 << 24))
    throw std::invalid_argument(std::string(what) + ": need N >= 0 and 0 < V <= Vp, V < 2^24 (got N=" +
                                std::to_string(N) + ", V=" + std::to_string(V) + ", Vp=" + std::to_string(Vp) + ")");
}

}  // namespace

namespace {
void launch_sample(const char* what, int* tokens, float* logprobs, const bf16* logits, int B, int V,
                   int Vp, const SamplingParams& p, const uint64_t* row_seeds, cudaStream_t stream, int* status,
                   const uint64_t* offset_device) {
  check_shape(what, B, V, Vp);
  if (B == 0) return;
  if (!tokens || !logits) throw std::invalid_argument(std::string(what) + ": null pointer");
  if (!(p.top_p == p.top_p) || !(p.temperature == p.temperature))
    throw std::invalid_argument(std::string(what) + ": NaN temperature or top_p");
  // A few elements per thread; at most 16 warps (the draw's scan keeps a free slot in 32).
  int threads = ceil_div(ceil_div(V, 8), 32) * 32;
  threads = threads < 32 ? 32 : threads > 512 ? 512 : threads;
  launch(sample_kernel, dim3(B), dim3(threads), 0, stream, tokens, logprobs, logits, V, Vp, p, row_seeds, status,
         offset_device);
  OURO_CUDA_CHECK_LAUNCH();
}
}  // namespace

void sample_tokens(int* tokens, float* logprobs, const bf16* logits, int B, int V, int Vp,
                   const SamplingParams& p, cudaStream_t stream, int* status) {
  launch_sample("sample_tokens", tokens, logprobs, logits, B, V, Vp, p, nullptr, stream, status, nullptr);
}

void sample_tokens_row_seeds(int* tokens, float* logprobs, const bf16* logits, int B, int V, int Vp,
                             const SamplingParams& p, const uint64_t* row_seeds, cudaStream_t stream,
                             int* status, const uint64_t* offset_device) {
  if (B > 0 && !row_seeds) throw std::invalid_argument("sample_tokens_row_seeds: null row_seeds");
  launch_sample("sample_tokens_row_seeds", tokens, logprobs, logits, B, V, Vp, p, row_seeds, stream, status,
                offset_device);
}

void gather_logprobs(float* logprobs, const bf16* logits, const int* targets, int N, int V, int Vp,
                     cudaStream_t stream) {
  check_shape("gather_logprobs", N, V, Vp);
  if (N == 0) return;
  if (!logprobs || !logits || !targets) throw std::invalid_argument("gather_logprobs: null pointer");
  const bool vec = Vp % 8 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0;
  const int work = vec ? ceil_div(V, 8) : V;
  int threads = ceil_div(ceil_div(work, 4), 32) * 32;
  threads = threads < 64 ? 64 : threads > 1024 ? 1024 : threads;
  if (vec)
    launch(gather_logprobs_kernel<true>, dim3(N), dim3(threads), 0, stream, logprobs, logits, targets, V, Vp);
  else
    launch(gather_logprobs_kernel<false>, dim3(N), dim3(threads), 0, stream, logprobs, logits, targets, V, Vp);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace ouro::kernels
