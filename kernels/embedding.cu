#include "kernels/embedding.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

// Token + position embedding. out, dout: (B, T, C) bf16 row-major; wte: (V, C); wpe: (maxT, C).
//
// wpe / dwpe may be null (model.pos = none | rope): the forward copies the token rows, the
// backward updates dwte only.
//
// Forward: one thread per 8-channel unit of an output row (a 128-bit load from each table and
// one 128-bit store) when C % 8 == 0 and the pointers are 16-byte aligned, else one element per
// thread; a flat grid-stride loop over the B*T*C/8 units, so consecutive threads read
// consecutive addresses of the same table row.
//
// Backward, deterministic without float atomics:
//  - dwpe[t] += sum over b = 0..B-1 in order: one thread per (t, unit), a loop over b.
//  - dwte: the launcher sorts the B*T row indices by token on the host (stable: rows of a token
//    stay in row order) and uploads, in the scratch, a plan of fixed layout
//    order[N] | group_start[N+1] | group_token[N] | G (only the first G groups used). The grid has
//    G columns of blocks, or N for a launch a CUDA Graph replays with other batches: block g >= G
//    (the plan's count, read on the device) does nothing.
//    Block g (x a slice of units) sums the rows order[group_start[g] .. group_start[g+1]) of dout
//    in that order in fp32 and adds the sum to dwte[group_token[g]] once (one bf16 rounding).
//    Each dwte row is written by exactly one thread per unit: no races, fixed order.

namespace ouro::kernels {

namespace {

constexpr int kThreads = 256;

template <int V>
__global__ void encoder_forward_kernel(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe,
                                       int B, int T, int C, int pos0, const int* pos0_device) {
  if (pos0_device) pos0 = *pos0_device;  // decoding: the position changes with every token
  const size_t units = size_t(C / V);
  const size_t total = size_t(B) * T * units;
  for (size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += size_t(gridDim.x) * blockDim.x) {
    const size_t n = idx / units, c = (idx % units) * V;
    const int t = int(n % size_t(T));
    float we[V];
    load_vec<V>(we, wte + size_t(tokens[n]) * C + c);
    if (wpe) {  // uniform over the grid: no divergence
      float pe[V];
      load_vec<V>(pe, wpe + size_t(pos0 + t) * C + c);
#pragma unroll
      for (int i = 0; i < V; i++) we[i] += pe[i];
    }
    store_vec<V>(out + n * C + c, we);
  }
}

// One thread per (t, unit): dwpe[t] += sum_b dout[b, t] in b order.
template <int V>
__global__ void encoder_backward_wpe_kernel(bf16* dwpe, const bf16* dout, int B, int T, int C) {
  const size_t units = size_t(C / V);
  const size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= size_t(T) * units) return;
  const size_t t = idx / units, c = (idx % units) * V;
  float acc[V] = {};
  for (int b = 0; b < B; b++) {
    float d[V];
    load_vec<V>(d, dout + (size_t(b) * T + t) * C + c);
#pragma unroll
    for (int i = 0; i < V; i++) acc[i] += d[i];
  }
  float w[V];
  load_vec<V>(w, dwpe + t * C + c);
#pragma unroll
  for (int i = 0; i < V; i++) w[i] += acc[i];
  store_vec<V>(dwpe + t * C + c, w);
}

// Block (g, slice): the unit blockIdx.y * blockDim.x + threadIdx.x of token group g.
template <int V>
__global__ void encoder_backward_wte_kernel(bf16* dwte, const bf16* dout, const int* order,
                                            const int* group_start, const int* group_token,
                                            const int* n_groups, int C) {
  const int units = C / V;
  const int u = blockIdx.y * blockDim.x + threadIdx.x;
  const int g = blockIdx.x;
  if (u >= units || g >= *n_groups) return;
  const size_t c = size_t(u) * V;
  float acc[V] = {};
  for (int i = group_start[g], end = group_start[g + 1]; i < end; i++) {
    float d[V];
    load_vec<V>(d, dout + size_t(order[i]) * C + c);
#pragma unroll
    for (int k = 0; k < V; k++) acc[k] += d[k];
  }
  bf16* dst = dwte + size_t(group_token[g]) * C + c;
  float w[V];
  load_vec<V>(w, dst);
#pragma unroll
  for (int k = 0; k < V; k++) w[k] += acc[k];
  store_vec<V>(dst, w);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void check_shape(int B, int T, int C, const char* who) {
  if (B <= 0 || T <= 0 || C <= 0)
    throw std::invalid_argument(std::string(who) + ": B, T and C must be positive (B=" + std::to_string(B) +
                                ", T=" + std::to_string(T) + ", C=" + std::to_string(C) + ")");
  if (size_t(B) * T > size_t(INT32_MAX))
    throw std::invalid_argument(std::string(who) + ": B*T too large");
}

}  // namespace

namespace {
void launch_encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C,
                            int pos0, const int* pos0_device, cudaStream_t stream) {
  const bool vec = C % 8 == 0 && aligned16(out) && aligned16(wte) && aligned16(wpe);
  const size_t total = size_t(B) * T * (vec ? C / 8 : C);
  const dim3 grid(unsigned(std::clamp<size_t>(ceil_div(total, size_t(kThreads)), 1, 65535)));
  if (vec)
    launch(encoder_forward_kernel<8>, grid, dim3(kThreads), 0, stream, out, tokens, wte, wpe, B, T, C, pos0,
           pos0_device);
  else
    launch(encoder_forward_kernel<1>, grid, dim3(kThreads), 0, stream, out, tokens, wte, wpe, B, T, C, pos0,
           pos0_device);
  OURO_CUDA_CHECK_LAUNCH();
}
}  // namespace

void encoder_forward(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T,
                     int C, int pos0, cudaStream_t stream) {
  check_shape(B, T, C, "encoder_forward");
  if (pos0 < 0) throw std::invalid_argument("encoder_forward: pos0 must be >= 0, got " + std::to_string(pos0));
  launch_encoder_forward(out, tokens, wte, wpe, B, T, C, pos0, nullptr, stream);
}

void encoder_forward_at(bf16* out, const int* tokens, const bf16* wte, const bf16* wpe, int B, int T, int C,
                        const int* pos0_device, cudaStream_t stream) {
  check_shape(B, T, C, "encoder_forward_at");
  if (!pos0_device) throw std::invalid_argument("encoder_forward_at: pos0_device is null");
  launch_encoder_forward(out, tokens, wte, wpe, B, T, C, 0, pos0_device, stream);
}

size_t encoder_backward_plan_ints(int B, int T) {
  if (B <= 0 || T <= 0) return 0;
  const size_t N = size_t(B) * T;
  return 3 * N + 2;  // order[N], group_start[N+1], group_token[N], groups
}

size_t encoder_backward_scratch_bytes(int B, int T, int C) {
  (void)C;
  return encoder_backward_plan_ints(B, T) * sizeof(int);
}

int encoder_backward_plan(const int* tokens_host, int B, int T, int* plan) {
  check_shape(B, T, 1, "encoder_backward");
  if (!tokens_host || !plan) throw std::invalid_argument("encoder_backward: null tokens_host or plan");
  const int N = B * T;
  for (int i = 0; i < N; i++)
    if (tokens_host[i] < 0)
      throw std::invalid_argument("encoder_backward: negative token " + std::to_string(tokens_host[i]) +
                                  " at row " + std::to_string(i));
  // Group the rows by token: a stable sort keeps each token's rows in row order.
  int* order = plan;
  int* starts = plan + N;
  int* toks = plan + 2 * N + 1;
  std::iota(order, order + N, 0);
  std::stable_sort(order, order + N, [&](int a, int b) { return tokens_host[a] < tokens_host[b]; });
  int G = 0;
  for (int i = 0; i < N; i++) {
    if (i == 0 || tokens_host[order[i]] != tokens_host[order[i - 1]]) {
      starts[G] = i;
      toks[G] = tokens_host[order[i]];
      G++;
    }
  }
  starts[G] = N;
  std::fill(starts + G + 1, starts + N + 1, N);  // unused entries: defined, never read
  std::fill(toks + G, toks + N, 0);
  plan[3 * N + 1] = G;
  return G;
}

void encoder_backward(bf16* dwte, bf16* dwpe, const bf16* dout, const int* tokens_host, int B,
                      int T, int C, void* scratch, cudaStream_t stream) {
  check_shape(B, T, C, "encoder_backward");
  if (!tokens_host || !scratch) throw std::invalid_argument("encoder_backward: null tokens_host or scratch");
  std::vector<int> plan(encoder_backward_plan_ints(B, T));
  const int G = encoder_backward_plan(tokens_host, B, T, plan.data());
  // From pageable memory the copy has left `plan` once cudaMemcpyAsync returns (staged), so the
  // vector may die at the end of this function; the kernels below are ordered after it.
  OURO_CUDA_CHECK(cudaMemcpyAsync(scratch, plan.data(), plan.size() * sizeof(int), cudaMemcpyHostToDevice, stream));
  encoder_backward_planned(dwte, dwpe, dout, static_cast<const int*>(scratch), G, B, T, C, stream);
}

void encoder_backward_planned(bf16* dwte, bf16* dwpe, const bf16* dout, const int* plan_device, int grid_groups,
                              int B, int T, int C, cudaStream_t stream) {
  check_shape(B, T, C, "encoder_backward");
  if (!plan_device) throw std::invalid_argument("encoder_backward: null plan");
  const int N = B * T;
  if (grid_groups < 1 || grid_groups > N)
    throw std::invalid_argument("encoder_backward: grid_groups " + std::to_string(grid_groups) + " outside [1, " +
                                std::to_string(N) + "]");
  const int* d_order = plan_device;
  const int* d_start = plan_device + N;
  const int* d_token = plan_device + 2 * N + 1;
  const int* d_groups = plan_device + 3 * N + 1;

  const bool vec_wte = C % 8 == 0 && aligned16(dwte) && aligned16(dout);
  const int units_wte = vec_wte ? C / 8 : C;
  const int tb = std::min(kThreads, (units_wte + 31) / 32 * 32);
  const dim3 grid_wte(unsigned(grid_groups), unsigned(ceil_div(units_wte, tb)));
  if (vec_wte)
    launch(encoder_backward_wte_kernel<8>, grid_wte, dim3(tb), 0, stream, dwte, dout, d_order, d_start, d_token, d_groups, C);
  else
    launch(encoder_backward_wte_kernel<1>, grid_wte, dim3(tb), 0, stream, dwte, dout, d_order, d_start, d_token, d_groups, C);
  OURO_CUDA_CHECK_LAUNCH();

  if (!dwpe) return;  // no position embedding
  const bool vec_wpe = C % 8 == 0 && aligned16(dwpe) && aligned16(dout);
  const size_t work = size_t(T) * (vec_wpe ? C / 8 : C);
  const dim3 grid_wpe(unsigned(ceil_div(work, size_t(kThreads))));
  if (vec_wpe)
    launch(encoder_backward_wpe_kernel<8>, grid_wpe, dim3(kThreads), 0, stream, dwpe, dout, B, T, C);
  else
    launch(encoder_backward_wpe_kernel<1>, grid_wpe, dim3(kThreads), 0, stream, dwpe, dout, B, T, C);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace ouro::kernels
