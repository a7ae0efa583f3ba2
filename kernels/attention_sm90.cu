#include "kernels/attention_sm90.h"

#include <ouro/ptx_sm90.h>

#include "kernels/shared_memory.h"
#include "kernels/switches.h"
#include "kernels/tensor_map.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

// Causal flash attention forward for Hopper (sm_90a), FlashAttention-3 style: TMA loads into an
// mbarrier ring, warpgroup MMA (wgmma), warp specialization, ping-pong between two consumer
// warpgroups. Same contract as kernels/attention.cu's forward (whose header gives the layout):
// qkv (B, T, 3C) with q | k | v each NH heads of HD; out (B, T, C); lse (B, NH, T) natural log,
// which the existing backward consumes unchanged. HD = 64 or 128 (others: attention.cu).
//
// Grid: one block per (128-query tile, head, batch), the heaviest (last) tiles first. Block: 384
// threads = 3 warpgroups.
//  - warpgroup 0, the producer: setmaxnreg.dec 24; one elected lane of its first warp loads the
//    block's Q tile once (mbarrier q_full), then for each key tile t waits for a free stage
//    (kv_empty, count 2 = both consumers), and issues the K tile (k_full) and the V tile (v_full)
//    as separate TMA transactions, so S = Q K^T can start before V has landed. The rest exits.
//  - warpgroups 1 and 2, the consumers (setmaxnreg.inc 240: 128 x 24 + 256 x 240 = 64,512 of the
//    64K registers): consumer c owns query rows 64c..64c+63 of the tile. Per key tile:
//      S (64 x 128, fp32 registers: 64 per thread) = Q K^T by HD/16 wgmma m64n128k16 with A = Q
//        and B = K from shared memory (both K-major);
//      online softmax in fp32 registers (exp2 of log2e-prescaled scores, row max / sum over the
//        4 threads of a quad by shuffles);
//      O (64 x HD, fp32 registers) += P V by 8 wgmma m64nHDk16 with A = P from registers (the
//        accumulator layout of S, packed to bf16 pairs, IS the A fragment: a_i of k step ks is
//        S element 8 ks + i) and B = V from shared memory (MN-major, trans-b).
//    Intra-warpgroup overlap: the P V product of tile t-1 is issued right behind S of tile t, so
//    the softmax of tile t runs while the tensor cores finish P_{t-1} V_{t-1}; O is rescaled and
//    P_t packed only after wgmma.wait_group 0 (a pending wgmma still reads P's registers and
//    writes O's).
//    Ping-pong (named barriers 1 and 2, 256 threads each): consumer c waits at barrier 1 + c
//    before issuing its GEMMs of a turn and arrives at the other's barrier after, so the two
//    warpgroups take turns on the tensor cores: one's softmax overlaps the other's GEMMs.
//    Consumer 1 opens by arriving at barrier 1 and skips the arrival after its last turn (each
//    consumer has n_tiles + 1 turns: S of tile 0, then S of t with P V of t-1, then P V of the
//    last tile), so every phase of both barriers completes.
// Shared memory (1 KiB aligned): Q (128 x HD) | K stages (2 x 128 x HD) | V stages (2 x 128 x
// HD), bf16, each as HD/64 boxes of 128 rows x 64 elements = 16 KiB, every row one 128-byte line
// in the 128B swizzle (chunk c of line r at c ^ (r % 8)), as TMA writes it and wgmma reads it.
// HD 128: 160 KiB (+1 KiB slack); HD 64: 80 KiB.
//   Q, K (K-major operands, rows = m or n, HD along the row): descriptor at box kk / 4,
//     + 32 B x (kk % 4) per k16 step kk of HD, stride byte offset 1024 (8 lines); Q of consumer c
//     starts 64 lines (8 KiB) into each box.
//   V (B of P V: k = key = the box's rows, n = HD along them: MN-major, trans-b 1): descriptor
//     + 2048 B (16 lines) per k16 step of keys, leading byte offset 16 KiB (the next 64 columns
//     of HD = the next box), stride byte offset 1024.
// TMA: one tensor map over qkv as a (B*T) x 3C matrix, box 64 x 128, at column {0, C, 2C} +
//   h*HD + 64j and row b*T + tile start. A tile that crosses the end of its sequence reads the
//   next sequence's rows (or zeros past the tensor): those keys (>= T) are masked, those query
//   rows are not stored.
// Causal: the block visits key tiles 0 .. (last row of its tile) / 128 only (the empty tiles
//   above the diagonal are never loaded nor computed); the mask (key > row or key >= T) is applied
//   only on tiles that reach past the first row of the consumer's rows. Every row has key 0, so
//   no row's max stays -inf.
// Determinism: each output element is one thread's chain in a fixed order: bitwise reproducible.

namespace ouro::kernels::sm90 {

namespace {

using ptx::Swizzle;

constexpr int kBM = 128;  // query rows per block (2 consumer warpgroups x 64)
constexpr int kBN = 128;  // keys per K/V tile
constexpr int kStages = 2;
constexpr int kThreads = 384;
constexpr int kProducerRegs = 24, kConsumerRegs = 240;
constexpr uint32_t kLine = 128;              // bytes per 64-element bf16 row (the swizzle width)
constexpr uint32_t kBoxBytes = 128 * kLine;  // one box: 128 rows x 64 elements = 16 KiB
constexpr uint32_t kSchedBarrier = 1;        // named barriers 1 (consumer 0's turn), 2 (consumer 1's)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int HD>
constexpr uint32_t tile_bytes() {
  return uint32_t(HD / 64) * kBoxBytes;  // 128 rows x HD
}
template <int HD>
constexpr size_t smem_bytes() {
  return size_t(tile_bytes<HD>()) * (1 + 2 * kStages) + 1024;  // + slack to align to 1 KiB
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const uint32_t l = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
  const uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
  return l | (h << 16);
}

template <int HD>
__global__ void __launch_bounds__(kThreads, 1)
    attention_fwd_ws_kernel(const OURO_GRID_CONSTANT CUtensorMap map, bf16* out, float* lse, int T, int NH) {
  constexpr uint32_t TILE = tile_bytes<HD>();
  __shared__ __align__(8) uint64_t q_full, k_full[kStages], v_full[kStages], kv_empty[kStages];
  uint8_t* raw = dynamic_shared<uint8_t>();
  uint8_t* smem = raw + ((1024u - (ptx::shared_address(raw) & 1023u)) & 1023u);  // 128B swizzle: 1 KiB aligned
  uint8_t* sQ = smem;
  uint8_t* sK = sQ + TILE;
  uint8_t* sV = sK + kStages * TILE;

  const int qt = int(gridDim.x) - 1 - int(blockIdx.x);  // heaviest tiles first
  const int h = blockIdx.y, b = blockIdx.z;
  const int C = NH * HD;
  const int q0 = qt * kBM;
  const int seq_row = b * T;  // row of (b, position 0) in the (B*T) x 3C map
  const int last_row = (q0 + kBM < T ? q0 + kBM : T) - 1;
  const int n_tiles = last_row / kBN + 1;  // causal: key tiles up to the one holding the last row
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    ptx::mbarrier_init(&q_full, 1);
    for (int s = 0; s < kStages; ++s) {
      ptx::mbarrier_init(&k_full[s], 1);     // the producer's arrive.expect_tx (+ the TMA bytes)
      ptx::mbarrier_init(&v_full[s], 1);
      ptx::mbarrier_init(&kv_empty[s], 2);   // one arrival per consumer warpgroup
    }
    ptx::fence_proxy_async();  // the initialized barriers, visible to the TMA unit
  }
  __syncthreads();

  if (wg == 0) {  // producer
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x / 32 == 0 && ptx::elect_sync()) {
      ptx::mbarrier_arrive_expect_tx(&q_full, TILE);
#pragma unroll
      for (int j = 0; j < HD / 64; ++j)
        ptx::cp_async_bulk_tensor_2d_global_to_shared(sQ + j * kBoxBytes, &map, h * HD + 64 * j, seq_row + q0,
                                                      &q_full);
      for (int t = 0; t < n_tiles; ++t) {
        const int s = t % kStages;
        ptx::mbarrier_wait_parity(&kv_empty[s], ((t / kStages) & 1) ^ 1);  // round 0 passes at once
        ptx::mbarrier_arrive_expect_tx(&k_full[s], TILE);
#pragma unroll
        for (int j = 0; j < HD / 64; ++j)
          ptx::cp_async_bulk_tensor_2d_global_to_shared(sK + s * TILE + j * kBoxBytes, &map, C + h * HD + 64 * j,
                                                        seq_row + t * kBN, &k_full[s]);
        ptx::mbarrier_arrive_expect_tx(&v_full[s], TILE);
#pragma unroll
        for (int j = 0; j < HD / 64; ++j)
          ptx::cp_async_bulk_tensor_2d_global_to_shared(sV + s * TILE + j * kBoxBytes, &map,
                                                        2 * C + h * HD + 64 * j, seq_row + t * kBN, &v_full[s]);
      }
    }
    return;
  }

  // consumers
  ptx::setmaxnreg_inc<kConsumerRegs>();
  const int c = wg - 1;  // rows 64c.. of the tile
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const uint32_t q_addr = ptx::shared_address(sQ) + uint32_t(c) * 64 * kLine;
  const uint32_t k_addr = ptx::shared_address(sK), v_addr = ptx::shared_address(sV);
  const float sl2 = kLog2e / sqrtf(float(HD));
  const int first_row = q0 + 64 * c;
  const int row_a = first_row + 16 * warp + g;  // this thread's rows: row_a and row_a + 8

  float o[HD / 2];
#pragma unroll
  for (int i = 0; i < HD / 2; ++i) o[i] = 0.0f;
  float s[kBN / 2];
  uint32_t p[kBN / 16][4];
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  // A turn: wait for this consumer's turn on the tensor cores, issue, hand the turn over.
  auto turn_begin = [&] {
    ptx::named_barrier_sync(kSchedBarrier + c, 256);
    ptx::wgmma_fence();
  };
  auto turn_end = [&](bool last) {
    if (!(c == 1 && last)) ptx::named_barrier_arrive(kSchedBarrier + (1 - c), 256);
  };
  auto issue_s = [&](int t) {  // S = Q K_t^T
    const uint32_t k_stage = k_addr + uint32_t(t % kStages) * TILE;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint32_t in_box = (kk / 4) * kBoxBytes + 32 * (kk % 4);
      const uint64_t da = ptx::make_wgmma_desc(q_addr + in_box, 16, 8 * kLine, Swizzle::b128);
      const uint64_t db = ptx::make_wgmma_desc(k_stage + in_box, 16, 8 * kLine, Swizzle::b128);
      ptx::wgmma_mma_async<kBN, 0, 0>(s, da, db, kk > 0 ? 1 : 0);
    }
    ptx::wgmma_commit_group();
  };
  auto issue_pv = [&](int t) {  // O += P_t V_t
    const uint32_t v_stage = v_addr + uint32_t(t % kStages) * TILE;
#pragma unroll
    for (int ks = 0; ks < kBN / 16; ++ks) {
      const uint64_t dv = ptx::make_wgmma_desc(v_stage + ks * 16 * kLine, kBoxBytes, 8 * kLine, Swizzle::b128);
      ptx::wgmma_mma_async_rs<HD, 1>(o, p[ks], dv, 1);
    }
    ptx::wgmma_commit_group();
  };
  auto release = [&](int t) {  // P V of tile t is done: its K and V stage is free
    if (tid == 0) ptx::mbarrier_arrive(&kv_empty[t % kStages]);
  };
  // Online softmax of S_t (masked where needed) into s (as exp), m, l; alpha rescales O.
  auto softmax = [&](int t, float (&alpha)[2]) {
    // Mask: keys past the row (causal) or past the sequence, on tiles that reach past the
    // consumer's first row only.
    if ((t + 1) * kBN - 1 > first_row || (t + 1) * kBN > T) {
#pragma unroll
      for (int i = 0; i < kBN / 2; ++i) {
        const int key = t * kBN + 8 * (i >> 2) + 2 * t4 + (i & 1);
        const int row = row_a + 8 * ((i >> 1) & 1);
        if (key > row || key >= T) s[i] = -INFINITY;
      }
    }
    // Row r's values: s[4 n8 + 2 r + {0, 1}] in the 4 threads of the quad.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m[r];
#pragma unroll
      for (int n8 = 0; n8 < kBN / 8; ++n8) mx = fmaxf(mx, fmaxf(s[4 * n8 + 2 * r], s[4 * n8 + 2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mscaled = mx == -INFINITY ? 0.0f : mx * sl2;
      alpha[r] = exp2f(m[r] * sl2 - mscaled);  // 0 on the first tile (m = -inf)
      m[r] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int n8 = 0; n8 < kBN / 8; ++n8) {
        s[4 * n8 + 2 * r] = exp2f(fmaf(s[4 * n8 + 2 * r], sl2, -mscaled));
        s[4 * n8 + 2 * r + 1] = exp2f(fmaf(s[4 * n8 + 2 * r + 1], sl2, -mscaled));
        sum += s[4 * n8 + 2 * r] + s[4 * n8 + 2 * r + 1];
      }
      l[r] = l[r] * alpha[r] + sum;  // per-thread partial sum; the quad is reduced at the end
    }
  };
  // After wgmma.wait_group 0 only (a pending P V writes O and reads P's registers).
  auto rescale_and_pack = [&](const float (&alpha)[2]) {
#pragma unroll
    for (int i = 0; i < HD / 2; ++i) o[i] *= alpha[(i >> 1) & 1];
#pragma unroll
    for (int ks = 0; ks < kBN / 16; ++ks)
#pragma unroll
      for (int r = 0; r < 4; ++r) p[ks][r] = pack_bf16x2(s[8 * ks + 2 * r], s[8 * ks + 2 * r + 1]);
  };

  // The turns: S of tile 0; S of tile t with P V of tile t-1; P V of the last tile. Peeled, so
  // that no wgmma sits in a branch (ptxas serializes wgmma it cannot prove warpgroup-uniform).
  if (c == 1) ptx::named_barrier_arrive(kSchedBarrier, 256);  // consumer 0 takes the first turn
  ptx::mbarrier_wait_parity(&q_full, 0);
  float alpha[2];
  ptx::mbarrier_wait_parity(&k_full[0], 0);
  turn_begin();
  issue_s(0);
  turn_end(false);
  ptx::wgmma_wait_group<0>();
  softmax(0, alpha);
  rescale_and_pack(alpha);
  for (int t = 1; t < n_tiles; ++t) {
    ptx::mbarrier_wait_parity(&k_full[t % kStages], (t / kStages) & 1);
    ptx::mbarrier_wait_parity(&v_full[(t - 1) % kStages], ((t - 1) / kStages) & 1);
    turn_begin();
    issue_s(t);
    issue_pv(t - 1);
    turn_end(false);
    ptx::wgmma_wait_group<1>();  // S_t done; P V of tile t-1 may still run (softmax overlaps it)
    softmax(t, alpha);
    ptx::wgmma_wait_group<0>();
    release(t - 1);
    rescale_and_pack(alpha);
  }
  ptx::mbarrier_wait_parity(&v_full[(n_tiles - 1) % kStages], ((n_tiles - 1) / kStages) & 1);
  turn_begin();
  issue_pv(n_tiles - 1);
  turn_end(true);
  ptx::wgmma_wait_group<0>();
  release(n_tiles - 1);

  // Epilogue: O / l and the log-sum-exp, rows < T; thread holds columns 8j + 2t4, +1 of rows
  // row_a (o[4j], o[4j+1]) and row_a + 8 (o[4j+2], o[4j+3]).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int row = row_a + 8 * r;
    if (row < T) {
      const float inv = 1.0f / sum;
      bf16* orow = out + (size_t(b) * T + row) * C + h * HD + 2 * t4;
#pragma unroll
      for (int j = 0; j < HD / 8; ++j)
        *reinterpret_cast<uint32_t*>(orow + 8 * j) = pack_bf16x2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
      if (t4 == 0) lse[(size_t(b) * NH + h) * T + row] = (m[r] * sl2 + log2f(sum)) * kLn2;
    }
  }
}

template <int HD>
bool launch_hd(bf16* out, float* lse, const bf16* qkv, int B, int T, int NH, cudaStream_t stream) {
  auto kernel = attention_fwd_ws_kernel<HD>;
  const std::string name = "attention forward sm_90a (head dim " + std::to_string(HD) + ")";
  if (!opt_in_shared_memory(kernel, smem_bytes<HD>(), name.c_str(), "the sm_80 attention kernels")) return false;
  const int C = NH * HD;
  const CUtensorMap map = bf16_tensor_map_128b(qkv, 3 * C, B * T, size_t(3) * C, 64, kBM, "attention (sm_90a)");
  launch(kernel, dim3(ceil_div(T, kBM), NH, B), dim3(kThreads), smem_bytes<HD>(), stream, map, out, lse, T, NH);
  OURO_CUDA_CHECK_LAUNCH();
  return true;
}

}  // namespace

bool attention_available() {
#if defined(OURO_SIMT)
  return true;
#else
  static const bool ok = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    if (major != 9 || minor != 0) return false;
    // wgmma exists only in sm_90a code: the binary version says which code the runtime loaded.
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(attention_fwd_ws_kernel<64>)) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return attr.binaryVersion == 90 && attr.ptxVersion >= 90;
  }();
  return ok && encode_tiled() != nullptr;
#endif
}

// OURO_ATTENTION_SM90=0 keeps the sm_80 kernels on a Hopper GPU (a comparison, or a way around
// a suspected problem in this kernel).
namespace {
constinit EnvSwitch attention_sm90_off{"OURO_ATTENTION_SM90", "0"};
}  // namespace

bool attention_selected() { return sm90_selected(attention_sm90_off, attention_available); }

bool attention_supports(int head_dim, const void* qkv, const void* out) {
  return (head_dim == 64 || head_dim == 128) && reinterpret_cast<uintptr_t>(qkv) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(out) % 4 == 0;
}

bool attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH, cudaStream_t stream) {
  const int hd = C / NH;
  if (!attention_supports(hd, qkv, out) || !attention_available()) return false;
  return hd == 64 ? launch_hd<64>(out, lse, qkv, B, T, NH, stream) : launch_hd<128>(out, lse, qkv, B, T, NH, stream);
}

}  // namespace ouro::kernels::sm90
