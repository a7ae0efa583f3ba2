// `ouro bench kernels` (see kernel_bench.h). Each figure: one untimed call, then `reps` calls
// between two CUDA events. FLOP counts: a GEMM is 2*M*N*K; causal attention forward is
// 2 * 2*T*T*hd/2 per head (QK^T and PV over the causal half), the backward 2.5x that (dV, dP,
// dQ, dK and the recomputed scores: 5 GEMMs of the 2 in the forward), the FlashAttention papers'
// convention; cuDNN is timed on the same shapes and counted with the same FLOPs. Bytes: what each
// kernel must read and write at least once. The memory-bound kernels' FLOPs count one per add, multiply,
// exp, tanh or sqrt of their formula per element (the roofline's x axis, not their bound).
#include <ouro/cuda.h>
#include <ouro/error.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/kernel_bench.h"
#include "bench/peak_flops.h"
#include "device/cublaslt_matmul.h"
#include "device/cudnn_attention.h"
#include "device/device_ops.h"
#include "kernels/attention.h"
#include "kernels/attention_sm90.h"
#include "kernels/classifier.h"
#include "kernels/elementwise.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/optimizer.h"

namespace ouro {
namespace {

using kernels::bf16;

struct Dev {
  void* p = nullptr;
  explicit Dev(size_t bytes) {
    OURO_CUDA_CHECK(cudaMalloc(&p, bytes));
    OURO_CUDA_CHECK(cudaMemset(p, 0, bytes));  // zeros: finite everywhere, no NaN slow paths
  }
  ~Dev() { cudaFree(p); }
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

template <class F>
double time_ms(cudaStream_t s, int reps, F&& f) {
  f();  // warm-up (and cuBLASLt's heuristic query)
  cudaEvent_t a, b;
  OURO_CUDA_CHECK(cudaEventCreate(&a));
  OURO_CUDA_CHECK(cudaEventCreate(&b));
  OURO_CUDA_CHECK(cudaEventRecord(a, s));
  for (int i = 0; i < reps; i++) f();
  OURO_CUDA_CHECK(cudaEventRecord(b, s));
  OURO_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  OURO_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return double(ms) / reps;
}

// A tensor-core kernel's row: TFLOP/s against `ceiling` TFLOP/s.
BenchRecord compute_row(const char* name, const std::string& shape, double flops, double bytes, double ms,
                        double ceiling, const std::string& ceiling_name) {
  return {name, shape, flops / (ms * 1e-3) / 1e12, "TFLOP/s", ceiling, ceiling_name, flops, bytes, ms * 1e-3};
}

// A memory-bound kernel's row: GB/s against the copy's.
BenchRecord memory_row(const char* name, const std::string& shape, double flops, double bytes, double ms,
                       double copy_gbs) {
  return {name, shape, bytes / (ms * 1e-3) / 1e9, "GB/s", copy_gbs, "copy d2d", flops, bytes, ms * 1e-3};
}

KernelBenchResult run(const KernelBenchOptions& opt) {
#if !defined(OURO_SIMT)
  int gpus = 0;
  const cudaError_t err = cudaGetDeviceCount(&gpus);
  if (err != cudaSuccess || gpus == 0) {
    (void)cudaGetLastError();
    throw Error(std::string("ouro bench kernels: no CUDA GPU here (") +
                (err != cudaSuccess ? cudaGetErrorString(err) : "no device") +
                "): nothing measured. The cuda figures, the sm_90a (Hopper) GEMM against cuBLASLt among them, need "
                "a GPU; `ouro-simt bench kernels` runs the same kernels on the emulator (a smoke run)");
  }
#endif
  KernelBenchResult r;
  r.device = device_hardware_name();
  // Where no library alternate is built (cuDNN attention), the datasheet peak is the yardstick.
  const double peak_tflops = peak_bf16_flops(r.device).value_or(0.0) / 1e12;
#if defined(OURO_SIMT)
  const bool small = true;  // the emulator runs ~1e6x slower than a GPU: a smoke run
  const int reps = 1;
#else
  const bool small = opt.small;
  const int reps = opt.reps;
#endif
  cudaStream_t s;
  OURO_CUDA_CHECK(cudaStreamCreate(&s));

  // ---- memory ceiling: device-to-device copy ----
  const size_t copy_bytes = small ? (size_t(1) << 16) : (size_t(1) << 30);
  double copy_gbs = 0;
  {
    Dev a(copy_bytes), b(copy_bytes);
    const double ms = time_ms(s, reps, [&] {
      OURO_CUDA_CHECK(cudaMemcpyAsync(b.p, a.p, copy_bytes, cudaMemcpyDeviceToDevice, s));
    });
    copy_gbs = 2.0 * copy_bytes / (ms * 1e-3) / 1e9;
    r.copy_gbs = copy_gbs;
    const std::string size = copy_bytes >= (size_t(1) << 20) ? std::to_string(copy_bytes >> 20) + " MiB"
                                                              : std::to_string(copy_bytes >> 10) + " KiB";
    r.rows.push_back({"copy d2d", size, copy_gbs, "GB/s", 0, "", 0, 2.0 * copy_bytes, ms * 1e-3});
  }

  // ---- GEMM on the GPT-2 shapes (tokens N = 8 x 1024), against cuBLASLt ----
  struct Shape {
    const char* model;
    int C;
  };
  const std::vector<Shape> models = small ? std::vector<Shape>{{"tiny", 64}}
                                          : std::vector<Shape>{{"124M", 768}, {"350M", 1024}, {"774M", 1280}, {"1558M", 1600}};
  const int N = small ? 96 : 8192;
  std::unique_ptr<CublasLtMatmul> lt;
#if !defined(OURO_SIMT)
  lt = std::make_unique<CublasLtMatmul>(s);
#endif
  const bool hopper = kernels::matmul_hopper_available();
  if (!hopper)
    r.notes.push_back("matmul sm_90a (warp-specialized wgmma/TMA GEMM): not available on this device (it needs "
                      "compute capability 9.0 and a binary built for sm_90a): skipped; \"matmul fwd/bwd\" is the "
                      "mma.sync kernel");
  for (const auto& m : models) {
    const int C = m.C;
    const int shapes[][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    for (const auto& sh : shapes) {
      const int K = sh[0], OC = sh[1];
      Dev inp(size_t(N) * K * 2), w(size_t(OC) * K * 2), bias(size_t(OC) * 2), out(size_t(N) * OC * 2);
      Dev dinp(size_t(N) * K * 2), dw(size_t(OC) * K * 2), db(size_t(OC) * 2);
      Dev scratch(kernels::matmul_backward_scratch_bytes(N, K, OC) + 16);
      const double flops = 2.0 * N * K * OC;
      // forward: reads inp, w, bias, writes out; backward: reads dout, inp, w, writes dinp, dw, db
      const double fwd_bytes = 2.0 * (double(N) * K + double(OC) * K + double(N) * OC + OC);
      const double bwd_bytes = 2.0 * (2.0 * N * K + 2.0 * OC * K + double(N) * OC + OC);
      const std::string shape = std::string(m.model) + " " + std::to_string(N) + "x" + std::to_string(K) +
                                " -> " + std::to_string(OC);
      double lt_fwd = 0, lt_bwd = 0;
      if (lt) {
        lt_fwd = flops / (time_ms(s, reps, [&] { lt->forward(out.as<bf16>(), inp.as<bf16>(), w.as<bf16>(),
                                                           bias.as<bf16>(), N, K, OC); }) * 1e-3) / 1e12;
        lt_bwd = 2 * flops / (time_ms(s, reps, [&] { lt->backward(dinp.as<bf16>(), dw.as<bf16>(), db.as<bf16>(),
                                                                out.as<bf16>(), inp.as<bf16>(), w.as<bf16>(),
                                                                N, K, OC); }) * 1e-3) / 1e12;
      }
      double ms = time_ms(s, reps, [&] {
        kernels::matmul_forward(out.as<bf16>(), inp.as<bf16>(), w.as<bf16>(), bias.as<bf16>(), N, K, OC, s);
      });
      r.rows.push_back(compute_row("matmul fwd", shape, flops, fwd_bytes, ms, lt_fwd, "cuBLASLt"));
      ms = time_ms(s, reps, [&] {
        kernels::matmul_backward(dinp.as<bf16>(), dw.as<bf16>(), db.as<bf16>(), out.as<bf16>(), inp.as<bf16>(),
                                 w.as<bf16>(), N, K, OC, scratch.p, s);
      });
      r.rows.push_back(compute_row("matmul bwd", shape, 2 * flops, bwd_bytes, ms, lt_bwd, "cuBLASLt"));
      // Where the Hopper kernel runs, each kernel family forced, both against cuBLASLt: the
      // warp-specialized wgmma/TMA kernel (sm_90a) and the mma.sync one (sm_80, 128x128 tile).
      if (hopper) {
        const std::pair<const char*, kernels::MatmulTile> forced[] = {{"sm_90a", kernels::MatmulTile::hopper},
                                                                      {"sm_80", kernels::MatmulTile::large}};
        for (const auto& [arch, tile] : forced) {
          ms = time_ms(s, reps, [&] {
            kernels::matmul_forward(out.as<bf16>(), inp.as<bf16>(), w.as<bf16>(), bias.as<bf16>(), N, K, OC, s,
                                    kernels::Epilogue::none, nullptr, tile);
          });
          r.rows.push_back(compute_row((std::string("matmul fwd ") + arch).c_str(), shape, flops, fwd_bytes, ms,
                                       lt_fwd, "cuBLASLt"));
          ms = time_ms(s, reps, [&] {
            kernels::matmul_backward(dinp.as<bf16>(), dw.as<bf16>(), db.as<bf16>(), out.as<bf16>(), inp.as<bf16>(),
                                     w.as<bf16>(), N, K, OC, scratch.p, s, tile);
          });
          r.rows.push_back(compute_row((std::string("matmul bwd ") + arch).c_str(), shape, 2 * flops, bwd_bytes, ms,
                                       lt_bwd, "cuBLASLt"));
        }
      }
    }
  }

  // ---- decode GEMMs (M <= 64 rows, one new token each): the skinny-M kernel, against the copy ----
  // A decode step's forward GEMMs stream the weights once (M x K inputs are small), so these rows
  // are memory-bound: bytes = weights + input + output + bias, GB/s against the d2d copy. Each
  // shape also runs on MatmulTile::tiled (what automatic picks without the skinny kernel, and what
  // training's GEMMs take: the tiled mma.sync or wgmma kernel) for the comparison.
  {
    struct Decode {
      const char* model;
      int C, Vp;
    };
    const std::vector<Decode> dmodels = small ? std::vector<Decode>{{"tiny", 64, 1024}}
                                              : std::vector<Decode>{{"124M", 768, 50304}, {"1558M", 1600, 50304}};
    for (const auto& m : dmodels) {
      const int C = m.C;
      const int shapes[][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, m.Vp}};
      for (const int M : {1, 64}) {
        for (const auto& sh : shapes) {
          const int K = sh[0], OC = sh[1];
          Dev inp(size_t(M) * K * 2), w(size_t(OC) * K * 2), bias(size_t(OC) * 2), out(size_t(M) * OC * 2);
          const double flops = 2.0 * M * K * double(OC);
          const double bytes = 2.0 * (double(OC) * K + double(M) * K + double(M) * OC + OC);
          char shape[96];
          std::snprintf(shape, sizeof shape, "%s %dx%d -> %d (%.2f MB)", m.model, M, K, OC, bytes / 1e6);
          auto call = [&](kernels::MatmulTile tile) {
            kernels::matmul_forward(out.as<bf16>(), inp.as<bf16>(), w.as<bf16>(), bias.as<bf16>(), M, K, OC, s,
                                    kernels::Epilogue::none, nullptr, tile);
          };
          double ms = time_ms(s, reps, [&] { call(kernels::MatmulTile::skinny); });
          r.rows.push_back(memory_row("matmul fwd skinny-M", shape, flops, bytes, ms, copy_gbs));
          ms = time_ms(s, reps, [&] { call(kernels::MatmulTile::tiled); });
          r.rows.push_back(memory_row("matmul fwd M<=64 tiled", shape, flops, bytes, ms, copy_gbs));
        }
      }
    }
  }

  // ---- causal flash attention, against cuDNN's (graph API) where it is built ----
  std::unique_ptr<CudnnAttention> dnn;
  try {
    dnn = std::make_unique<CudnnAttention>(s);
  } catch (const std::exception& e) {
#if !defined(OURO_SIMT)  // (never built into the emulator: nothing to say there)
    std::fprintf(stderr, "ouro bench kernels: cuDNN attention unavailable (%s): attention is measured against %s\n",
                 e.what(), peak_tflops > 0 ? "the bf16 peak" : "nothing");
#else
    (void)e;
#endif
  }
  // The Hopper forward (kernels/attention_sm90.cu) where attention_forward takes it: its own row
  // too, so that it stands next to the automatic choice and cuDNN.
  const bool attention_hopper = kernels::sm90::attention_selected();
  for (const int hd : {64, 128}) {
    const int B = small ? 1 : 8, T = small ? 64 : 1024, NH = small ? 2 : 1536 / hd;
    const int C = NH * hd;
    Dev qkv(size_t(B) * T * 3 * C * 2), out(size_t(B) * T * C * 2), lse(size_t(B) * NH * T * 4);
    Dev dqkv(size_t(B) * T * 3 * C * 2), scratch(kernels::attention_backward_scratch_bytes(B, T, C, NH) + 16);
    const double flops = 2.0 * 2.0 * B * NH * double(T) * T * hd / 2;
    const double act = 2.0 * B * T * C, lse_bytes = 4.0 * B * NH * T;
    const double fwd_bytes = 3 * act + act + lse_bytes;             // qkv in; out and lse out
    const double bwd_bytes = 3 * act + 2 * act + lse_bytes + 3 * act;  // qkv, out, dout, lse in; dqkv out
    // The yardstick: cuDNN's TFLOP/s on the same shape (same FLOP count), else the datasheet peak
    // (none on simt or an unknown GPU).
    double dnn_fwd = peak_tflops, dnn_bwd = peak_tflops;
    std::string ceiling_name = peak_tflops > 0 ? "bf16 peak (table)" : "cuDNN (not built)";
    if (dnn) {
      dnn_fwd = flops / (time_ms(s, reps, [&] {
                          dnn->forward(out.as<bf16>(), lse.as<float>(), qkv.as<bf16>(), B, T, C, NH);
                        }) * 1e-3) / 1e12;
      dnn_bwd = 2.5 * flops / (time_ms(s, reps, [&] {
                                 dnn->backward(dqkv.as<bf16>(), out.as<bf16>(), qkv.as<bf16>(), out.as<bf16>(),
                                               lse.as<float>(), B, T, C, NH);
                               }) * 1e-3) / 1e12;
      ceiling_name = "cuDNN";
    }
    char shape[64];  // (GCC 12 warns falsely on "literal" + std::string here: -Wrestrict)
    std::snprintf(shape, sizeof shape, "B%d T%d NH%d hd%d", B, T, NH, hd);
    double ms = time_ms(s, reps, [&] {
      kernels::attention_forward(out.as<bf16>(), lse.as<float>(), qkv.as<bf16>(), B, T, C, NH, s);
    });
    r.rows.push_back(compute_row("attention fwd", shape, flops, fwd_bytes, ms, dnn_fwd, ceiling_name));
    if (attention_hopper) {
      bool ran = true;
      ms = time_ms(s, reps, [&] {
        ran = kernels::sm90::attention_forward(out.as<bf16>(), lse.as<float>(), qkv.as<bf16>(), B, T, C, NH, s);
      });
      if (ran) r.rows.push_back(compute_row("attention fwd sm_90a", shape, flops, fwd_bytes, ms, dnn_fwd, ceiling_name));
    }
    ms = time_ms(s, reps, [&] {
      kernels::attention_backward(dqkv.as<bf16>(), out.as<bf16>(), qkv.as<bf16>(), out.as<bf16>(), lse.as<float>(),
                                  B, T, C, NH, scratch.p, s);
    });
    r.rows.push_back(compute_row("attention bwd", shape, 2.5 * flops, bwd_bytes, ms, dnn_bwd, ceiling_name));
    if (attention_hopper) {  // the one-kernel backward in each dQ mode
      for (const bool det : {true, false}) {
        const size_t bytes = kernels::sm90::attention_backward_scratch_bytes(B, T, C, NH, det);
        Dev scratch90(bytes);
        bool ran = true;
        ms = time_ms(s, reps, [&] {
          ran = kernels::sm90::attention_backward(dqkv.as<bf16>(), out.as<bf16>(), qkv.as<bf16>(), out.as<bf16>(),
                                                  lse.as<float>(), B, T, C, NH, scratch90.p, bytes, det, s);
        });
        if (ran)
          r.rows.push_back(compute_row(det ? "attention bwd sm_90a" : "attn bwd sm_90a atomic", shape,
                                       2.5 * flops, bwd_bytes, ms, dnn_bwd, ceiling_name));
      }
    }
  }

  // ---- memory-bound kernels, against the copy ----
  {
    const int Nr = small ? 64 : 8192, C = small ? 64 : 768;
    const size_t n = size_t(Nr) * C;
    Dev a(n * 2), b(n * 2), o(n * 2), res(n * 2), w(C * 2), bi(C * 2), mean(Nr * 4), rstd(Nr * 4);
    Dev lnscratch(kernels::layernorm_backward_scratch_bytes(Nr, C) + 16), dw(C * 2), db(C * 2);
    const std::string shape = std::to_string(Nr) + "x" + std::to_string(C);
    // flops_per_element: layernorm fwd = mean (1) + variance (3) + normalise (2) + affine (2);
    // the residual add 1 more; backward = recompute (2) + dγ, dβ (3) + two row means (3) +
    // the input gradient (4) + its accumulation (1); gelu (tanh form) 9, its backward 18.
    auto add = [&](const char* name, double flops_per_element, double elements, double bytes, double ms) {
      r.rows.push_back(memory_row(name, shape, flops_per_element * elements, bytes, ms, copy_gbs));
    };
    add("layernorm fwd", 8, n, 2.0 * n * 2, time_ms(s, reps, [&] {
          kernels::layernorm_forward(o.as<bf16>(), mean.as<float>(), rstd.as<float>(), a.as<bf16>(), w.as<bf16>(),
                                     bi.as<bf16>(), Nr, C, s);
        }));
    add("residual+layernorm fwd", 9, n, 4.0 * n * 2, time_ms(s, reps, [&] {
          kernels::residual_layernorm_forward(res.as<bf16>(), o.as<bf16>(), mean.as<float>(), rstd.as<float>(),
                                              a.as<bf16>(), b.as<bf16>(), w.as<bf16>(), bi.as<bf16>(), Nr, C, s);
        }));
    add("layernorm bwd", 13, n, 4.0 * n * 2, time_ms(s, reps, [&] {
          kernels::layernorm_backward(res.as<bf16>(), dw.as<bf16>(), db.as<bf16>(), o.as<bf16>(), a.as<bf16>(),
                                      w.as<bf16>(), mean.as<float>(), rstd.as<float>(), Nr, C, lnscratch.p, s);
        }));
    add("residual add", 1, n, 3.0 * n * 2, time_ms(s, reps, [&] {
          kernels::residual_forward(o.as<bf16>(), a.as<bf16>(), b.as<bf16>(), n, s);
        }));
    {  // the gradient norm's pass over a gradient buffer of N x C (reads it once)
      Dev sum(sizeof(double)), sq(kernels::sum_squares_scratch_bytes(n) + 16);
      add("sum of squares", 2, n, 2.0 * n, time_ms(s, reps, [&] {
            kernels::sum_squares(sum.as<double>(), a.as<bf16>(), n, sq.p, s);
          }));
    }
    const size_t g = n * 4;  // the MLP's 4C activations
    Dev ga(g * 2), gb(g * 2);
    add("gelu fwd", 9, g, 2.0 * g * 2, time_ms(s, reps, [&] { kernels::gelu_forward(gb.as<bf16>(), ga.as<bf16>(), g, s); }));
    add("gelu bwd", 18, g, 3.0 * g * 2, time_ms(s, reps, [&] {
          kernels::gelu_backward(gb.as<bf16>(), ga.as<bf16>(), gb.as<bf16>(), g, s);
        }));
  }
  {
    const int Nr = small ? 16 : 8192, V = small ? 1000 : 50257, Vp = small ? 1024 : 50304;
    Dev logits(size_t(Nr) * Vp * 2), losses(Nr * 4), targets(Nr * 4);
    const double bytes = 2.0 * Nr * double(Vp) * 2;
    const double ms = time_ms(s, reps, [&] {
      kernels::classifier(logits.as<bf16>(), losses.as<float>(), targets.as<int>(), Nr, V, Vp, 1.0f / Nr, s);
    });
    // per logit: max, exp, sum, the probability, its gradient (subtract, scale)
    r.rows.push_back(memory_row("classifier fwd+bwd", std::to_string(Nr) + "x" + std::to_string(Vp),
                                6.0 * Nr * double(Vp), bytes, ms, copy_gbs));
  }
  {
    const size_t n = small ? 4096 : size_t(124) << 20;  // GPT-2 124M's parameters
    Dev params(n * 2), master(n * 4), grads(n * 2), m(n * 4), v(n * 4), seg(sizeof(kernels::AdamSegment));
    const kernels::AdamSegment one{0, n, 1};
    OURO_CUDA_CHECK(cudaMemcpy(seg.p, &one, sizeof one, cudaMemcpyHostToDevice));
    kernels::AdamParams p{};
    p.lr = 1e-4f, p.beta1 = 0.9f, p.beta2 = 0.95f, p.eps = 1e-8f, p.weight_decay = 0.1f, p.grad_scale = 1;
    p.step = 1, p.seed = 1;
    const double ms = time_ms(s, reps, [&] {
      kernels::adamw(params.as<bf16>(), master.as<float>(), grads.as<bf16>(), m.as<float>(), v.as<float>(),
                     seg.as<kernels::AdamSegment>(), 1, n, p, s);
    });
    // reads grads, master, m, v; writes master, m, v, params: 2 + 4*3 + 4*3 + 2 bytes
    // per parameter: gradient scale (1), m (3), v (4), bias corrections (2), sqrt + eps + divide
    // (3), weight decay and learning rate (3), the update (1), the bf16 rounding (1)
    r.rows.push_back(memory_row("adamw", std::to_string(n) + " params", 18.0 * n, 28.0 * n, ms, copy_gbs));
  }
  OURO_CUDA_CHECK(cudaStreamDestroy(s));
  return r;
}

}  // namespace

static const bool registered = (register_kernel_bench(&run), true);

}  // namespace ouro
