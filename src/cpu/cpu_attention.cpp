// Causal multi-head self-attention: training forward/backward and KV-cache decoding.
// qkv rows hold q | k | v, each C = NH * hd wide; head h uses columns [h*hd, (h+1)*hd) of each.
// The forward keeps the softmax probabilities (B, NH, T, T) as its state; the backward reads
// them instead of recomputing the scores.
#include <cmath>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/cpu_ops.h"
#include "ouro/error.h"

namespace ouro {

namespace {

// Per-thread scratch rows are allocated before a parallel region, never inside: bad_alloc
// thrown inside an OpenMP region would std::terminate the process instead of reaching the CLI.
size_t max_team() {
#ifdef _OPENMP
  return size_t(omp_get_max_threads());
#else
  return 1;
#endif
}
size_t team_index() {
#ifdef _OPENMP
  return size_t(omp_get_thread_num());
#else
  return 0;
#endif
}

float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

// One query row against n keys/values laid out with the given row stride. probs receives the
// n softmax probabilities, out (hd) the weighted sum of values. Kept out of line so training and
// decoding run exactly the same instructions and agree bitwise.
[[gnu::noinline]] void attend_row(const float* q, const float* k, const float* v, size_t stride,
                                  int n, int hd, float scale, float* probs, float* out) {
  float maxv = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; j++) {
    float s = dot(q, k + j * stride, hd) * scale;
    probs[j] = s;
    if (s > maxv) maxv = s;
  }
  float sum = 0.0f;
  for (int j = 0; j < n; j++) {
    float e = std::exp(probs[j] - maxv);
    probs[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (int j = 0; j < n; j++) probs[j] *= inv;
  for (int i = 0; i < hd; i++) out[i] = 0.0f;
  for (int j = 0; j < n; j++) {
    const float p = probs[j];
    const float* vj = v + j * stride;
#pragma omp simd
    for (int i = 0; i < hd; i++) out[i] += p * vj[i];
  }
}

}  // namespace

size_t CpuOps::attention_state_size(int B, int T, int NH) const {
  return size_t(B) * NH * T * T;
}

void CpuOps::attention_forward(void* out_, float* state, const void* qkv_, int B, int T, int C,
                               int NH) {
  float* out = static_cast<float*>(out_);
  const float* qkv = static_cast<const float*>(qkv_);
  const int hd = C / NH;
  const float scale = 1.0f / std::sqrt(float(hd));
  const size_t C3 = size_t(3) * C;
#pragma omp parallel for collapse(3) schedule(dynamic, 8) if(size_t(B) * NH * T * T * hd >= kParallelMin)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < NH; h++) {
      for (int t = 0; t < T; t++) {
        const float* base = qkv + size_t(b) * T * C3;
        float* probs = state + ((size_t(b) * NH + h) * T + t) * T;
        attend_row(base + t * C3 + h * hd, base + C + h * hd, base + 2 * C + h * hd, C3, t + 1,
                   hd, scale, probs, out + (size_t(b) * T + t) * C + h * hd);
        for (int j = t + 1; j < T; j++) probs[j] = 0.0f;  // masked: keep the state defined
      }
    }
  }
}

// Per (b, h), queries in order t = 0..T-1, with P the saved probabilities:
//   dP[t,j] = dout_t . v_j,  dS[t,j] = P[t,j] (dP[t,j] - sum_j' P[t,j'] dP[t,j']) * scale,
//   dq_t = sum_j dS[t,j] k_j,  dk_j += dS[t,j] q_t,  dv_j += P[t,j] dout_t.
// A (b, h) pair is one task that owns its slice of dqkv, so dk/dv accumulate over t in a fixed
// order without atomics.
void CpuOps::attention_backward(void* dqkv_, const void* dout_, const void* qkv_, const void*,
                                const float* state, int B, int T, int C, int NH) {
  float* dqkv = static_cast<float*>(dqkv_);
  const float* dout = static_cast<const float*>(dout_);
  const float* qkv = static_cast<const float*>(qkv_);
  const int hd = C / NH;
  const float scale = 1.0f / std::sqrt(float(hd));
  const size_t C3 = size_t(3) * C;
  std::vector<float> scratch(max_team() * size_t(T));
#pragma omp parallel if(size_t(B) * NH * T * T * hd >= kParallelMin)
  {
    float* dp = scratch.data() + team_index() * size_t(T);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + size_t(b) * T * C3;
        float* dbase = dqkv + size_t(b) * T * C3;
        for (int t = 0; t < T; t++) {  // dk, dv accumulate below: start them at zero
          float* row = dbase + t * C3;
          for (int i = 0; i < hd; i++) row[C + h * hd + i] = row[2 * C + h * hd + i] = 0.0f;
        }
        for (int t = 0; t < T; t++) {
          const float* P = state + ((size_t(b) * NH + h) * T + t) * T;
          const float* dy = dout + (size_t(b) * T + t) * C + h * hd;
          const float* q = base + t * C3 + h * hd;
          float s = 0.0f;
          for (int j = 0; j <= t; j++) {
            dp[j] = dot(dy, base + j * C3 + 2 * C + h * hd, hd);
            s += P[j] * dp[j];
          }
          float* dq = dbase + t * C3 + h * hd;
          for (int i = 0; i < hd; i++) dq[i] = 0.0f;
          for (int j = 0; j <= t; j++) {
            const float ds = P[j] * (dp[j] - s) * scale;
            const float* kj = base + j * C3 + C + h * hd;
            float* dk = dbase + j * C3 + C + h * hd;
            float* dv = dbase + j * C3 + 2 * C + h * hd;
            const float pj = P[j];
#pragma omp simd
            for (int i = 0; i < hd; i++) {
              dq[i] += ds * kj[i];
              dk[i] += ds * q[i];
              dv[i] += pj * dy[i];
            }
          }
        }
      }
    }
  }
}

void CpuOps::attention_kv(void* out_, const void* qkv_, void* kcache_, void* vcache_, int B,
                          int Tn, int pos0, int Tmax, int C, int NH) {
  OURO_CHECK(pos0 >= 0 && pos0 + Tn <= Tmax,
             "attention_kv: positions {}..{} do not fit the KV cache of {} positions", pos0,
             pos0 + Tn - 1, Tmax);
  float* out = static_cast<float*>(out_);
  const float* qkv = static_cast<const float*>(qkv_);
  float* kcache = static_cast<float*>(kcache_);
  float* vcache = static_cast<float*>(vcache_);
  const int hd = C / NH;
  const float scale = 1.0f / std::sqrt(float(hd));
  const size_t C3 = size_t(3) * C;

  // First append every new token's k and v: a new token attends to the ones before it.
#pragma omp parallel for collapse(2) schedule(static) if(size_t(B) * Tn * C >= kParallelMin)
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < Tn; t++) {
      const float* row = qkv + (size_t(b) * Tn + t) * C3;
      const size_t dst = (size_t(b) * Tmax + pos0 + t) * C;
      for (int c = 0; c < C; c++) {
        kcache[dst + c] = row[C + c];
        vcache[dst + c] = row[2 * C + c];
      }
    }
  }

  const size_t row = size_t(pos0) + size_t(Tn);
  std::vector<float> scratch(max_team() * row);
#pragma omp parallel if(size_t(B) * Tn * (pos0 + Tn) * C >= kParallelMin)
  {
    float* probs = scratch.data() + team_index() * row;
#pragma omp for collapse(3) schedule(dynamic, 8)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        for (int t = 0; t < Tn; t++) {
          const size_t cache0 = size_t(b) * Tmax * C + h * hd;
          attend_row(qkv + (size_t(b) * Tn + t) * C3 + h * hd, kcache + cache0, vcache + cache0,
                     C, pos0 + t + 1, hd, scale, probs,
                     out + (size_t(b) * Tn + t) * C + h * hd);
        }
      }
    }
  }
}

}  // namespace ouro
