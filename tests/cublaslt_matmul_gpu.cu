// model.matmul = cublas (src/device/cublaslt_matmul.cu) against the native matmul kernels on a
// real GPU: forward (with bias) and backward (dX, accumulated dW and dbias) on GPT-2 shapes, with
// operands where the model's packed buffers put them: 256-byte aligned, 128 bytes off (the odd
// layers of n_embd 1600: what CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_* must be told), and a bias
// 2 bytes off (added by the rank-1 GEMM instead of the epilogue). Skips without a GPU. The native
// kernels are checked against the CPU reference (test_kernel_matmul.cpp), so agreeing with them
// within bf16 tolerances means agreeing with the reference.
//
// nvcc only (cuBLASLt has no emulator build): tests/CMakeLists.txt builds it as
// ouro_test_cublaslt_matmul_gpu where the cuda half of the device backend is built.
#include "kernel_test_support.h"

#include "device/cublaslt_matmul.h"
#include "kernels/matmul.h"

#include <string>
#include <vector>

namespace {

using namespace kernel_test;

struct Case {
  int N, C, OC;
  int offset_elems;       // weights, biases, outputs and gradients this many bf16 past 256 bytes
  int bias_offset_elems;  // the biases (and their gradients) this many more
};

class CublasLtMatmul : public KernelTest, public ::testing::WithParamInterface<Case> {};

// n elements at `offset` elements into a buffer with room for it.
struct Slice {
  DeviceBuffer<bf16> buf;
  int offset;
  Slice(size_t n, int off) : buf(n + size_t(off) + 128), offset(off) {}
  bf16* get() const { return buf.get() + offset; }
  void upload(const std::vector<float>& v) {
    OURO_CUDA_CHECK(cudaMemcpy(get(), to_bf16(v).data(), v.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  }
  std::vector<float> download(size_t n) const {
    std::vector<bf16> h(n);
    OURO_CUDA_CHECK(cudaDeviceSynchronize());
    OURO_CUDA_CHECK(cudaMemcpy(h.data(), get(), n * sizeof(bf16), cudaMemcpyDeviceToHost));
    return to_float(h);
  }
};

TEST_P(CublasLtMatmul, MatchesNativeKernelsAtTheModelsAlignments) {
  const Case k = GetParam();
  const size_t nin = size_t(k.N) * k.C, nout = size_t(k.N) * k.OC, nw = size_t(k.OC) * k.C;
  const auto inp = random_bf16_values(nin, 11), w = random_bf16_values(nw, 12), b = random_bf16_values(k.OC, 13);
  const auto dout = random_bf16_values(nout, 14), dw0 = random_bf16_values(nw, 15), db0 = random_bf16_values(k.OC, 16);
  const int o = k.offset_elems, ob = k.offset_elems + k.bias_offset_elems;
  Slice d_inp(nin, 0), d_w(nw, o), d_b(k.OC, ob), d_dout(nout, 0);
  d_inp.upload(inp), d_w.upload(w), d_b.upload(b), d_dout.upload(dout);
  Slice out_ref(nout, o), out(nout, o), dinp_ref(nin, 0), dinp(nin, 0);
  Slice dw_ref(nw, o), dw(nw, o), db_ref(k.OC, ob), db(k.OC, ob);
  dw_ref.upload(dw0), dw.upload(dw0), db_ref.upload(db0), db.upload(db0);

  cudaStream_t stream = nullptr;
  OURO_CUDA_CHECK(cudaStreamCreate(&stream));
  DeviceBuffer<unsigned char> scratch(ouro::kernels::matmul_backward_scratch_bytes(k.N, k.C, k.OC));
  ouro::kernels::matmul_forward(out_ref.get(), d_inp.get(), d_w.get(), d_b.get(), k.N, k.C, k.OC, stream);
  ouro::kernels::matmul_backward(dinp_ref.get(), dw_ref.get(), db_ref.get(), d_dout.get(), d_inp.get(), d_w.get(),
                                 k.N, k.C, k.OC, scratch.get(), stream);
  ouro::CublasLtMatmul lt(stream);
  for (int rep = 0; rep < 2; rep++) {  // the second time from the plan cache
    out.buf.poison(), dinp.buf.poison();
    lt.forward(out.get(), d_inp.get(), d_w.get(), d_b.get(), k.N, k.C, k.OC);
    if (rep == 0) lt.backward(dinp.get(), dw.get(), db.get(), d_dout.get(), d_inp.get(), d_w.get(), k.N, k.C, k.OC);
  }
  OURO_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::string at = "N=" + std::to_string(k.N) + " C=" + std::to_string(k.C) + " OC=" + std::to_string(k.OC) +
                         " offset " + std::to_string(2 * o) + " B, bias " + std::to_string(2 * ob) + " B";
  // Both round bf16 products summed in fp32 to bf16 once; the orders differ: ~2^-9 relative.
  EXPECT_LT(rel_error(out.download(nout), out_ref.download(nout)), 1e-2) << "out " << at;
  EXPECT_LT(rel_error(dinp.download(nin), dinp_ref.download(nin)), 1e-2) << "dinp " << at;
  EXPECT_LT(rel_error(dw.download(nw), dw_ref.download(nw)), 1e-2) << "dweight " << at;
  EXPECT_LT(rel_error(db.download(k.OC), db_ref.download(k.OC)), 1e-2) << "dbias " << at;
  OURO_CUDA_CHECK(cudaStreamDestroy(stream));
}

INSTANTIATE_TEST_SUITE_P(Shapes, CublasLtMatmul,
                         ::testing::Values(Case{512, 768, 2304, 0, 0},   // gpt2_124m qkv, 256-byte aligned
                                           Case{256, 1600, 4800, 64, 0},  // gpt2_1558m odd layer: 128 B off
                                           Case{256, 1600, 1600, 64, 1},  // and a bias 2 B further
                                           Case{200, 768, 50304, 0, 0}),  // the classifier (no bias in use)
                         [](const auto& info) {
                           const Case& c = info.param;
                           return "N" + std::to_string(c.N) + "_C" + std::to_string(c.C) + "_OC" +
                                  std::to_string(c.OC) + "_off" + std::to_string(2 * c.offset_elems) + "_bias" +
                                  std::to_string(2 * (c.offset_elems + c.bias_offset_elems));
                         });

}  // namespace
