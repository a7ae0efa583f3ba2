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

#include "cpu/cpu_math.h"
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

// Key blocks of the score loops: a block's accumulators stay in registers (16 doubles).
constexpr int kKeyBlock = 16;
int padded_keys(int n) { return (n + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }

// xt[i * np + j] = x[j * stride + i] for the n rows x hd columns of one head, zero for
// n <= j < np: the score loops below read whole key blocks.
void transpose_head(float* xt, const float* x, size_t stride, int n, int np, int hd) {
  for (int j = 0; j < n; j++)
    for (int i = 0; i < hd; i++) xt[size_t(i) * np + j] = x[j * stride + i];
  for (int i = 0; i < hd; i++)
    for (int j = n; j < np; j++) xt[size_t(i) * np + j] = 0.0f;
}

// acc[j] = sum_i a[i] xt[i][j] for j < n (and whole blocks past it), accumulated in double:
// the products of two floats are exact there, so rounding acc[j] to float gives the dot product
// correctly rounded but for sums that cancel to below ~2^-29 of their terms. Vectorized across
// keys: a key's sum runs over i in order, whatever the vector width.
void dot_rows(double* acc, const float* a, const float* xt, int np, int n, int hd) {
  for (int j0 = 0; j0 < n; j0 += kKeyBlock) {
    double blk[kKeyBlock] = {};
    for (int i = 0; i < hd; i++) {
      const double ai = a[i];
      const float* row = xt + size_t(i) * np + j0;
      for (int jj = 0; jj < kKeyBlock; jj++) blk[jj] = std::fma(ai, double(row[jj]), blk[jj]);
    }
    for (int jj = 0; jj < kKeyBlock; jj++) acc[j0 + jj] = blk[jj];
  }
}

// out[i] = sum over k = k0..k1-1, in that order, of w[k * w_stride] * rows[k * stride + i], for
// i < hd, starting from zero: the accumulators of a block of columns stay in registers across
// the rows (accumulating in out itself waited on a store and a load per row).
template <int kCols>
void weighted_rows_block(float* out, const float* w, size_t w_stride, const float* rows,
                         size_t stride, int k0, int k1) {
  float acc[kCols] = {};
  for (int k = k0; k < k1; k++) {
    const float wk = w[k * w_stride];
    const float* r = rows + k * stride;
    for (int c = 0; c < kCols; c++) acc[c] += wk * r[c];
  }
  for (int c = 0; c < kCols; c++) out[c] = acc[c];
}

void weighted_rows(float* out, const float* w, size_t w_stride, const float* rows, size_t stride,
                   int k0, int k1, int hd) {
  int i = 0;
  for (; i + 16 <= hd; i += 16) weighted_rows_block<16>(out + i, w, w_stride, rows + i, stride, k0, k1);
  for (; i + 8 <= hd; i += 8) weighted_rows_block<8>(out + i, w, w_stride, rows + i, stride, k0, k1);
  for (; i < hd; i++) weighted_rows_block<1>(out + i, w, w_stride, rows + i, stride, k0, k1);
}

// Per-thread scratch of a head: nkeys keys (or values) transposed, and the score accumulators.
struct HeadScratch {
  size_t np;
  int hd;
  std::vector<float> xt;
  std::vector<double> acc;
  HeadScratch(size_t team, int nkeys, int hd_)
      : np(size_t(padded_keys(nkeys))), hd(hd_), xt(team * np * size_t(hd)), acc(team * np) {}
  float* xt_of(size_t thread) { return xt.data() + thread * np * size_t(hd); }
  double* acc_of(size_t thread) { return acc.data() + thread * np; }
};

// Queries r = 0..nq-1 of one head; query r sits at position first + r and attends to the keys
// 0..first + r (rows of k and v, kv_stride apart). probs row r (probs_stride apart) receives its
// softmax probabilities, out row r its weighted sum of values. Training (first = 0, nq = T) and
// decoding (first = pos0) run this same code, so they agree bitwise.
void attend_head(const float* q, size_t q_stride, int nq, int first, const float* k,
                 const float* v, size_t kv_stride, int hd, float scale, float* kt, double* acc,
                 float* probs, size_t probs_stride, float* out, size_t out_stride) {
  const int nk = first + nq, np = padded_keys(nk);
  transpose_head(kt, k, kv_stride, nk, np, hd);
  const double dscale = scale;
  for (int r = 0; r < nq; r++) {
    const int n = first + r + 1;
    float* p = probs + r * probs_stride;
    dot_rows(acc, q + r * q_stride, kt, np, n, hd);
    float maxv = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < n; j++) {
      const float s = float(acc[j] * dscale);
      p[j] = s;
      if (s > maxv) maxv = s;
    }
    for (int j = 0; j < n; j++) p[j] = cpu_math::exp_f32(p[j] - maxv);
    float sum = 0.0f;
    for (int j = 0; j < n; j++) sum += p[j];
    const float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) p[j] *= inv;
    weighted_rows(out + r * out_stride, p, 1, v, kv_stride, 0, n, hd);
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
  HeadScratch scratch(max_team(), T, hd);
#pragma omp parallel if(size_t(B) * NH * T * T * hd >= kParallelMin)
  {
    float* kt = scratch.xt_of(team_index());
    double* acc = scratch.acc_of(team_index());
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + size_t(b) * T * C3;
        float* probs = state + (size_t(b) * NH + h) * T * T;
        attend_head(base + h * hd, C3, T, 0, base + C + h * hd, base + 2 * C + h * hd, C3, hd,
                    scale, kt, acc, probs, T, out + size_t(b) * T * C + h * hd, C);
        for (int t = 0; t < T; t++)  // masked: keep the state defined
          for (int j = t + 1; j < T; j++) probs[size_t(t) * T + j] = 0.0f;
      }
    }
  }
}

// Per (b, h), with P the saved probabilities:
//   dP[t,j] = dout_t . v_j,  dS[t,j] = P[t,j] (dP[t,j] - sum_j' P[t,j'] dP[t,j']) * scale,
//   dq_t = sum_j dS[t,j] k_j,  dk_j = sum_t dS[t,j] q_t,  dv_j = sum_t P[t,j] dout_t.
// A (b, h) pair is one task that owns its slice of dqkv: dS is computed first for the whole head,
// then each gradient row is one sum over j (dq) or over t (dk, dv), in increasing order.
void CpuOps::attention_backward(void* dqkv_, const void* dout_, const void* qkv_, const void*,
                                const float* state, int B, int T, int C, int NH) {
  float* dqkv = static_cast<float*>(dqkv_);
  const float* dout = static_cast<const float*>(dout_);
  const float* qkv = static_cast<const float*>(qkv_);
  const int hd = C / NH;
  const float scale = 1.0f / std::sqrt(float(hd));
  const size_t C3 = size_t(3) * C;
  // Per thread: dS of a head (T x T), the values transposed and dP's double accumulators.
  std::vector<float> ds_heads(max_team() * size_t(T) * T);
  HeadScratch scratch(max_team(), T, hd);
  const int np = padded_keys(T);
#pragma omp parallel if(size_t(B) * NH * T * T * hd >= kParallelMin)
  {
    float* dS = ds_heads.data() + team_index() * size_t(T) * T;
    float* vt = scratch.xt_of(team_index());
    double* acc = scratch.acc_of(team_index());
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* base = qkv + size_t(b) * T * C3;
        const float* P = state + (size_t(b) * NH + h) * T * T;
        const float* dy = dout + size_t(b) * T * C + h * hd;
        float* dbase = dqkv + size_t(b) * T * C3;
        transpose_head(vt, base + 2 * C + h * hd, C3, T, np, hd);
        for (int t = 0; t < T; t++) {
          const float* Pt = P + size_t(t) * T;
          float* dSt = dS + size_t(t) * T;
          dot_rows(acc, dy + size_t(t) * C, vt, np, t + 1, hd);
          float s = 0.0f;
          for (int j = 0; j <= t; j++) {
            dSt[j] = float(acc[j]);  // dP for now
            s += Pt[j] * dSt[j];
          }
          for (int j = 0; j <= t; j++) dSt[j] = Pt[j] * (dSt[j] - s) * scale;
          weighted_rows(dbase + t * C3 + h * hd, dSt, 1, base + C + h * hd, C3, 0, t + 1, hd);
        }
        for (int j = 0; j < T; j++) {
          weighted_rows(dbase + j * C3 + C + h * hd, dS + j, T, base + h * hd, C3, j, T, hd);
          weighted_rows(dbase + j * C3 + 2 * C + h * hd, P + j, T, dy, C, j, T, hd);
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

  const int nk = pos0 + Tn;
  const size_t prob_rows = size_t(padded_keys(nk)) * Tn;  // this call's probabilities, per thread
  std::vector<float> probs_scratch(max_team() * prob_rows);
  HeadScratch scratch(max_team(), nk, hd);
#pragma omp parallel if(size_t(B) * Tn * (pos0 + Tn) * C >= kParallelMin)
  {
    float* probs = probs_scratch.data() + team_index() * prob_rows;
    float* kt = scratch.xt_of(team_index());
    double* acc = scratch.acc_of(team_index());
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const size_t cache0 = size_t(b) * Tmax * C + h * hd;
        attend_head(qkv + size_t(b) * Tn * C3 + h * hd, C3, Tn, pos0, kcache + cache0,
                    vcache + cache0, C, hd, scale, kt, acc, probs, size_t(padded_keys(nk)),
                    out + size_t(b) * Tn * C + h * hd, C);
      }
    }
  }
}

}  // namespace ouro
