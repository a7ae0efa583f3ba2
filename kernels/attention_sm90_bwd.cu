#include "kernels/attention_sm90.h"
#include "kernels/attention.h"

#include <ouro/ptx_sm90.h>

#include "kernels/shared_memory.h"
#include "kernels/switches.h"
#include "kernels/tensor_map.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

// Causal flash attention backward for Hopper (sm_90a) in one main kernel per (128-key tile, head,
// batch), with TMA + mbarrier loads and wgmma. Same contract as kernels/attention.cu's backward:
// qkv (B, T, 3C), dout and out (B, T, C), lse (B, NH, T) from the forward; dqkv (B, T, 3C)
// overwritten. HD = 64 or 128.
//
// Three launches: (1) D = rowsum(dO * O) per (row, head), fp32 (kernels/attention.cu's
// attention_backward_rowdot, shared with the sm_80 backward); (2) the main kernel; (3) dQ fp32
// -> bf16 (times the softmax scale) into dqkv's q columns.
//
// Main kernel, 384 threads = 3 warpgroups:
//  - warpgroup 0, the producer (setmaxnreg.dec 24): its elected lane loads the block's K and V
//    tiles (128 keys x HD) once, then for each 64-query tile j at or after the keys (causal) the
//    Q_j and dO_j tiles into a 2-stage ring (full/empty mbarriers, empty count 2).
//  - warpgroups 1 and 2 (setmaxnreg.inc 240): consumer c owns keys 64c..64c+63 of the tile. Per
//    query tile, in the transposed orientation so that its keys are wgmma's M rows:
//      S^T = K Q_j^T and dP^T = V dO_j^T (64 x 64 fp32 each): wgmma m64n64k16, A and B K-major
//        from shared memory;
//      P^T = exp2(S^T log2e/sqrt(HD) - lse log2e) (0 where key > query or query >= T), dS^T =
//        P^T (dP^T - D): registers (lse, D per query column read from global memory);
//      dV += P^T dO_j and dK += dS^T Q_j (64 x HD fp32 registers, for the whole kernel): wgmma
//        m64nHDk16 with A from registers (the accumulator layout of P^T / dS^T packed to bf16 is
//        the A fragment) and B = dO_j / Q_j MN-major from shared memory (trans-b);
//      dQ_j (64 queries x HD) += dS K: dS^T is stored to shared memory (bf16, 64 keys x 64
//        queries, 128B swizzle), read back as an MN-major A (trans-a), B = K MN-major; in halves
//        of 64 columns (N = 64: 32 accumulators), which keeps the consumer under 240 registers at
//        HD 128.
//    dQ is accumulated in fp32 in global memory:
//      fast mode: atomicAdd into one dQ buffer (zeroed first): the order of the key tiles'
//        additions varies run to run, so the last bits do;
//      deterministic mode (the default; what the trainer uses): the block writes its partial to
//        its own slice dq[key tile] with plain stores, consumer 0 first and consumer 1 adding to
//        it after a named barrier (no inter-block waiting, so no dependence on which blocks are
//        co-resident); the conversion kernel sums the slices of key tiles 0 .. q/128 in
//        that fixed order. Bitwise reproducible for any grid order; costs ceil(T/128) fp32 dQ
//        slices of scratch.
//    The tile's dK (times the scale) and dV go straight from registers to dqkv's k and v columns.
// Shared memory (1 KiB aligned): K, V (128 x HD each, HD/64 boxes of 128 rows x 128 B), 2 stages
// of Q and dO (64 x HD each, boxes of 64 rows x 128 B), 2 x dS^T (64 x 64 bf16): HD 64 80 KiB,
// HD 128 144 KiB (+1 KiB slack).
//   K-major operands (K, V as A; Q, dO as B of S^T / dP^T): + 32 B per k16 step within a box,
//     the next box per 64 of HD, stride byte offset 1024.
//   MN-major (dO, Q as B of dV / dK: k = query rows; K as B of dQ: k = key rows; dS^T as A of dQ:
//     k = key rows, m = queries along them): + 2048 B per k16 step (16 rows), leading byte
//     offset = the box size (next 64 of HD), stride byte offset 1024.

namespace ouro::kernels::sm90 {

namespace {

using ptx::Swizzle;

constexpr int kBN = 128;  // keys per block (2 consumers x 64)
constexpr int kBM = 64;   // queries per step
constexpr int kStages = 2;
constexpr int kThreads = 384;
constexpr int kProducerRegs = 24, kConsumerRegs = 240;
constexpr uint32_t kLine = 128;
constexpr uint32_t kKvBox = kBN * kLine;  // 16 KiB: 128 rows x 64 elements
constexpr uint32_t kQBox = kBM * kLine;   // 8 KiB: 64 rows x 64 elements
constexpr uint32_t kDsBytes = 64 * kLine; // dS^T: 64 keys x 64 queries
constexpr uint32_t kOrderBarrier = 3;     // named barrier: consumer 0's dQ slice stores before consumer 1's
constexpr uint32_t kDsBarrier = 4;        // named barriers 4, 5: a consumer's dS^T stores before its wgmma
constexpr float kLog2e = 1.4426950408889634f;

template <int HD>
constexpr size_t bwd_smem_bytes() {
  return size_t(HD / 64) * (2 * kKvBox + 2 * kStages * kQBox) + 2 * kDsBytes + 1024;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const uint32_t l = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
  const uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
  return l | (h << 16);
}

// dqkv's q columns = scale x (the sum of the dQ slices of key tiles 0 .. t / 128, in that order;
// one slice in the fast mode). dq: [slices][B*T][C] fp32.
__global__ void __launch_bounds__(256) bwd_dq_convert_kernel(bf16* dqkv, const float* dq, int B, int T, int C,
                                                             int slices, float scale) {
  const size_t n = size_t(B) * T * C;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const size_t row = i / C;
    const int t = int(row % T);
    const int last = slices == 1 ? 0 : t / kBN;
    float acc = 0.0f;
    for (int s = 0; s <= last; ++s) acc += dq[size_t(s) * n + i];
    dqkv[row * 3 * C + i % C] = __float2bfloat16_rn(acc * scale);
  }
}

template <int HD, bool kDeterministic>
__global__ void __launch_bounds__(kThreads, 1)
    attention_bwd_ws_kernel(const OURO_GRID_CONSTANT CUtensorMap map_kv, const OURO_GRID_CONSTANT CUtensorMap map_q,
                            const OURO_GRID_CONSTANT CUtensorMap map_do, bf16* dqkv, float* dq, const float* lse,
                            const float* Dg, int B, int T, int NH) {
  constexpr uint32_t KV_TILE = (HD / 64) * kKvBox, Q_TILE = (HD / 64) * kQBox;
  __shared__ __align__(8) uint64_t kv_full, full[kStages], empty[kStages];
  uint8_t* raw = dynamic_shared<uint8_t>();
  uint8_t* smem = raw + ((1024u - (ptx::shared_address(raw) & 1023u)) & 1023u);
  uint8_t* sK = smem;
  uint8_t* sV = sK + KV_TILE;
  uint8_t* sQ = sV + KV_TILE;              // kStages x Q_TILE
  uint8_t* sdO = sQ + kStages * Q_TILE;    // kStages x Q_TILE
  uint8_t* sdS = sdO + kStages * Q_TILE;   // 2 x kDsBytes

  const int kt = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int C = NH * HD;
  const int k0 = kt * kBN;
  const int seq_row = b * T;
  const int j0 = k0 / kBM, nq = (T + kBM - 1) / kBM;  // causal: query tiles j0 .. nq-1
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    ptx::mbarrier_init(&kv_full, 1);
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(&full[s], 1);
      ptx::mbarrier_init(&empty[s], 2);
    }
    ptx::fence_proxy_async();
  }
  __syncthreads();

  if (wg == 0) {  // producer
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x / 32 == 0 && ptx::elect_sync()) {
      ptx::mbarrier_arrive_expect_tx(&kv_full, 2 * KV_TILE);
#pragma unroll
      for (int x = 0; x < HD / 64; ++x) {
        ptx::cp_async_bulk_tensor_2d_global_to_shared(sK + x * kKvBox, &map_kv, C + h * HD + 64 * x, seq_row + k0,
                                                      &kv_full);
        ptx::cp_async_bulk_tensor_2d_global_to_shared(sV + x * kKvBox, &map_kv, 2 * C + h * HD + 64 * x,
                                                      seq_row + k0, &kv_full);
      }
      for (int j = j0, it = 0; j < nq; ++j, ++it) {
        const int s = it % kStages;
        ptx::mbarrier_wait_parity(&empty[s], ((it / kStages) & 1) ^ 1);
        ptx::mbarrier_arrive_expect_tx(&full[s], 2 * Q_TILE);
#pragma unroll
        for (int x = 0; x < HD / 64; ++x) {
          ptx::cp_async_bulk_tensor_2d_global_to_shared(sQ + s * Q_TILE + x * kQBox, &map_q, h * HD + 64 * x,
                                                        seq_row + j * kBM, &full[s]);
          ptx::cp_async_bulk_tensor_2d_global_to_shared(sdO + s * Q_TILE + x * kQBox, &map_do, h * HD + 64 * x,
                                                        seq_row + j * kBM, &full[s]);
        }
      }
    }
    return;
  }

  // consumers
  ptx::setmaxnreg_inc<kConsumerRegs>();
  const int c = wg - 1;
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const float scale = 1.0f / sqrtf(float(HD));
  const float sl2 = kLog2e * scale;
  const int key_a = k0 + 64 * c + 16 * warp + g;  // this thread's keys: key_a, key_a + 8
  const uint32_t k_addr = ptx::shared_address(sK) + uint32_t(c) * 64 * kLine;  // this consumer's 64 keys
  const uint32_t v_addr = ptx::shared_address(sV) + uint32_t(c) * 64 * kLine;
  const uint32_t q_base = ptx::shared_address(sQ), do_base = ptx::shared_address(sdO);
  uint8_t* ds_tile = sdS + c * kDsBytes;
  const uint32_t ds_addr = ptx::shared_address(ds_tile);
  const size_t bh = size_t(b) * NH + h;
  const size_t slice = size_t(B) * T * C;  // floats per dQ slice

  float dv[HD / 2], dk[HD / 2];
#pragma unroll
  for (int i = 0; i < HD / 2; ++i) dv[i] = dk[i] = 0.0f;

  ptx::mbarrier_wait_parity(&kv_full, 0);
  for (int j = j0, it = 0; j < nq; ++j, ++it) {
    const int s = it % kStages;
    const uint32_t q_addr = q_base + uint32_t(s) * Q_TILE, do_addr = do_base + uint32_t(s) * Q_TILE;
    ptx::mbarrier_wait_parity(&full[s], (it / kStages) & 1);

    float st[32], dpt[32];
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint32_t a_off = (kk / 4) * kKvBox + 32 * (kk % 4), b_off = (kk / 4) * kQBox + 32 * (kk % 4);
      ptx::wgmma_mma_async<64, 0, 0>(st, ptx::make_wgmma_desc(k_addr + a_off, 16, 8 * kLine, Swizzle::b128),
                                     ptx::make_wgmma_desc(q_addr + b_off, 16, 8 * kLine, Swizzle::b128), kk > 0);
    }
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint32_t a_off = (kk / 4) * kKvBox + 32 * (kk % 4), b_off = (kk / 4) * kQBox + 32 * (kk % 4);
      ptx::wgmma_mma_async<64, 0, 0>(dpt, ptx::make_wgmma_desc(v_addr + a_off, 16, 8 * kLine, Swizzle::b128),
                                     ptx::make_wgmma_desc(do_addr + b_off, 16, 8 * kLine, Swizzle::b128), kk > 0);
    }
    ptx::wgmma_commit_group();
    ptx::wgmma_wait_group<0>();

    // P^T and dS^T; element i: key key_a + 8 ((i >> 1) & 1), query j*64 + 8 (i >> 2) + 2 t4 + (i & 1).
    uint32_t pt[4][4], dst[4][4];
#pragma unroll
    for (int n8 = 0; n8 < 8; ++n8) {
      float lse2[2], dd[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int q = j * kBM + 8 * n8 + 2 * t4 + e;
        lse2[e] = q < T ? lse[bh * T + q] * kLog2e : 0.0f;
        dd[e] = q < T ? Dg[bh * T + q] : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float p[2], ds[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 4 * n8 + 2 * r + e;
          const int q = j * kBM + 8 * n8 + 2 * t4 + e, key = key_a + 8 * r;
          p[e] = (q < T && key <= q) ? exp2f(fmaf(st[i], sl2, -lse2[e])) : 0.0f;
          ds[e] = p[e] * (dpt[i] - dd[e]);
        }
        // A fragment of k step ks = n8 / 2: register (n8 % 2) * 2 + r holds elements 2 r', 2 r' + 1.
        pt[n8 / 2][(n8 % 2) * 2 + r] = pack_bf16x2(p[0], p[1]);
        dst[n8 / 2][(n8 % 2) * 2 + r] = pack_bf16x2(ds[0], ds[1]);
        // dS^T to shared memory: row = key (local), 128B swizzle of the query column's bytes.
        const uint32_t row = uint32_t(16 * warp + g + 8 * r), col_bytes = uint32_t(2 * (8 * n8 + 2 * t4));
        *reinterpret_cast<uint32_t*>(ds_tile + row * kLine + ((((col_bytes >> 4) ^ (row & 7u)) << 4) |
                                                              (col_bytes & 15u))) = dst[n8 / 2][(n8 % 2) * 2 + r];
      }
    }
    ptx::fence_proxy_async();  // the dS^T stores, visible to wgmma
    ptx::named_barrier_sync(kDsBarrier + c, 128);

    ptx::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      ptx::wgmma_mma_async_rs<HD, 1>(dv, pt[ks],
                                     ptx::make_wgmma_desc(do_addr + ks * 16 * kLine, kQBox, 8 * kLine, Swizzle::b128), 1);
      ptx::wgmma_mma_async_rs<HD, 1>(dk, dst[ks],
                                     ptx::make_wgmma_desc(q_addr + ks * 16 * kLine, kQBox, 8 * kLine, Swizzle::b128), 1);
    }
    ptx::wgmma_commit_group();

    // dQ_j (64 queries x HD) = dS K over this consumer's 64 keys, 64 columns at a time.
    // Deterministic: consumer 1 adds to the slice after consumer 0 stored it (both sync, so that
    // neither can run a step ahead and arrive twice in one phase).
    if (kDeterministic && c == 1) ptx::named_barrier_sync(kOrderBarrier, 256);
#pragma unroll
    for (int half = 0; half < HD / 64; ++half) {
      float acc[32];
      if (half > 0) ptx::wgmma_fence();  // after the previous half's wait_group and register reads
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
        ptx::wgmma_mma_async<64, 1, 1>(
            acc, ptx::make_wgmma_desc(ds_addr + ks * 16 * kLine, kQBox, 8 * kLine, Swizzle::b128),
            ptx::make_wgmma_desc(k_addr + half * kKvBox + ks * 16 * kLine, kKvBox, 8 * kLine, Swizzle::b128), ks > 0);
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<0>();
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int q = j * kBM + 16 * warp + g + 8 * ((i >> 1) & 1);
        if (q >= T) continue;
        const int d = half * 64 + 8 * (i >> 2) + 2 * t4 + (i & 1);
        const size_t at = (size_t(seq_row) + q) * C + h * HD + d;
        if constexpr (kDeterministic) {
          float* dst_slice = dq + size_t(kt) * slice + at;
          *dst_slice = c == 0 ? acc[i] : *dst_slice + acc[i];
        } else {
          atomicAdd(dq + at, acc[i]);
        }
      }
    }
    if (kDeterministic && c == 0) ptx::named_barrier_sync(kOrderBarrier, 256);
    if (tid == 0) ptx::mbarrier_arrive(&empty[s]);  // Q_j and dO_j no longer read
  }

  // dK (times the softmax scale) and dV of this thread's keys, rows < T.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_a + 8 * r;
    if (key >= T) continue;
    bf16* row = dqkv + (size_t(seq_row) + key) * 3 * C + h * HD + 2 * t4;
#pragma unroll
    for (int x = 0; x < HD / 8; ++x) {
      *reinterpret_cast<uint32_t*>(row + C + 8 * x) =
          pack_bf16x2(dk[4 * x + 2 * r] * scale, dk[4 * x + 2 * r + 1] * scale);
      *reinterpret_cast<uint32_t*>(row + 2 * C + 8 * x) = pack_bf16x2(dv[4 * x + 2 * r], dv[4 * x + 2 * r + 1]);
    }
  }
}

int key_tiles(int T) { return (T + kBN - 1) / kBN; }

template <int HD, bool kDet>
bool launch_bwd(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, int B, int T,
                int NH, float* D, float* dq, cudaStream_t stream) {
  auto kernel = attention_bwd_ws_kernel<HD, kDet>;
  const std::string name = "attention backward sm_90a (head dim " + std::to_string(HD) + ")";
  if (!opt_in_shared_memory(kernel, bwd_smem_bytes<HD>(), name.c_str(), "the sm_80 attention kernels")) return false;
  const int C = NH * HD;
  const CUtensorMap map_kv = bf16_tensor_map_128b(qkv, 3 * C, B * T, size_t(3) * C, 64, kBN, "attention bwd (sm_90a)");
  const CUtensorMap map_q = bf16_tensor_map_128b(qkv, 3 * C, B * T, size_t(3) * C, 64, kBM, "attention bwd (sm_90a)");
  const CUtensorMap map_do = bf16_tensor_map_128b(dout, C, B * T, size_t(C), 64, kBM, "attention bwd (sm_90a)");
  attention_backward_rowdot(D, dout, out, B, T, C, NH, stream);
  if (!kDet) OURO_CUDA_CHECK(cudaMemsetAsync(dq, 0, size_t(B) * T * C * sizeof(float), stream));
  launch(kernel, dim3(key_tiles(T), NH, B), dim3(kThreads), bwd_smem_bytes<HD>(), stream, map_kv, map_q, map_do, dqkv,
         dq, lse, static_cast<const float*>(D), B, T, NH);
  OURO_CUDA_CHECK_LAUNCH();
  const size_t n = size_t(B) * T * C;
  const int grid = int(std::min<size_t>(ceil_div(n, size_t(256)), 4096));
  launch(bwd_dq_convert_kernel, dim3(grid), dim3(256), 0, stream, dqkv, static_cast<const float*>(dq), B, T, C,
         kDet ? key_tiles(T) : 1, 1.0f / sqrtf(float(HD)));
  OURO_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace

namespace {
constinit EnvSwitch fast_backward{"OURO_ATTENTION_DETERMINISTIC", "0"};
}  // namespace

bool attention_backward_deterministic() { return !fast_backward.on(); }

size_t attention_backward_scratch_bytes(int B, int T, int C, int NH, bool deterministic) {
  const size_t d = (size_t(B) * NH * T * sizeof(float) + 255) / 256 * 256;
  const size_t slices = deterministic ? size_t(key_tiles(T)) : 1;
  return d + slices * size_t(B) * T * C * sizeof(float);
}

bool attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, int B, int T,
                        int C, int NH, void* scratch, size_t scratch_bytes, bool deterministic, cudaStream_t stream) {
  const int hd = C / NH;
  if (!attention_supports(hd, qkv, out) || !attention_supports(hd, dout, dqkv) || !attention_available()) return false;
  if (scratch_bytes < attention_backward_scratch_bytes(B, T, C, NH, deterministic)) return false;
  float* D = static_cast<float*>(scratch);
  float* dq = reinterpret_cast<float*>(static_cast<char*>(scratch) + (size_t(B) * NH * T * sizeof(float) + 255) / 256 * 256);
  if (hd == 64)
    return deterministic ? launch_bwd<64, true>(dqkv, dout, qkv, out, lse, B, T, NH, D, dq, stream)
                         : launch_bwd<64, false>(dqkv, dout, qkv, out, lse, B, T, NH, D, dq, stream);
  return deterministic ? launch_bwd<128, true>(dqkv, dout, qkv, out, lse, B, T, NH, D, dq, stream)
                       : launch_bwd<128, false>(dqkv, dout, qkv, out, lse, B, T, NH, D, dq, stream);
}

}  // namespace ouro::kernels::sm90
