// model.attention = cudnn (src/device/cudnn_attention.cu) against the native flash-attention
// kernels on a real GPU: forward output, the saved logsumexp state and the backward's dqkv, on
// seeded random GPT-2-like shapes (B=2, T=256, NH=12, hd 64 and 128). Skips without a GPU. The
// native kernels are themselves checked against the CPU reference (test_kernel_attention.cpp),
// so agreeing with them within bf16 tolerances means agreeing with the reference.
//
// nvcc only (cuDNN has no emulator build): tests/CMakeLists.txt builds it as
// ouro_test_cudnn_attention_gpu where the cuda half of the device backend is built.
#include "kernel_test_support.h"

#include "device/cudnn_attention.h"
#include "kernels/attention.h"
#include "ouro/error.h"

#include <string>
#include <vector>

namespace {

using namespace kernel_test;

class CudnnAttentionTest : public KernelTest, public ::testing::WithParamInterface<int> {};

bool same_bits(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

TEST_P(CudnnAttentionTest, MatchesNativeKernelsForwardAndBackward) {
  const int B = 2, T = 256, NH = 12, hd = GetParam(), C = NH * hd;
  const size_t n_qkv = size_t(B) * T * 3 * C, n_out = size_t(B) * T * C;
  ASSERT_EQ(ouro::CudnnAttention::state_size(B, T, NH), size_t(B) * NH * T);

  cudaStream_t stream = nullptr;
  OURO_CUDA_CHECK(cudaStreamCreate(&stream));
  ouro::CudnnAttention cudnn(stream);

  DeviceBuffer<bf16> qkv(to_bf16(random_bf16_values(n_qkv, 1000 + hd)));
  DeviceBuffer<bf16> dout(to_bf16(random_bf16_values(n_out, 2000 + hd)));

  // Native reference.
  DeviceBuffer<bf16> ref_out(n_out), ref_dqkv(n_qkv);
  DeviceBuffer<float> ref_lse(size_t(B) * NH * T);
  DeviceBuffer<unsigned char> scratch(ouro::kernels::attention_backward_scratch_bytes(B, T, C, NH));
  ouro::kernels::attention_forward(ref_out, ref_lse, qkv, B, T, C, NH, stream);
  ouro::kernels::attention_backward(ref_dqkv, dout, qkv, ref_out, ref_lse, B, T, C, NH, scratch.get(),
                                    stream);

  // cuDNN. The outputs start poisoned (NaN): an element cuDNN leaves unwritten fails the
  // comparison, which checks the OVERWRITE contract of dqkv (the gaps between the q, k and v
  // views included).
  DeviceBuffer<bf16> out(n_out), dqkv(n_qkv);
  DeviceBuffer<float> state(ouro::CudnnAttention::state_size(B, T, NH));
  cudnn.forward(out, state, qkv, B, T, C, NH);
  cudnn.backward(dqkv, dout, qkv, out, state, B, T, C, NH);
  OURO_CUDA_CHECK(cudaStreamSynchronize(stream));

  const std::string at = "hd=" + std::to_string(hd);
  EXPECT_LT(rel_error(to_float(out.download()), to_float(ref_out.download())), 1e-2) << "out " << at;
  // Both save the natural-log logsumexp of the scaled scores in (B, NH, T): the states agree.
  EXPECT_LT(rel_error(state.download(), ref_lse.download()), 1e-4) << "state " << at;
  const std::vector<float> got = to_float(dqkv.download()), ref = to_float(ref_dqkv.download());
  for (int p = 0; p < 3; p++)
    EXPECT_LT(rel_error(qkv_part(got, B, T, C, p), qkv_part(ref, B, T, C, p)), 2e-2) << "d" << "qkv"[p] << " " << at;

  // The second call runs the cached graphs: the forward again bit for bit, and the backward too
  // when cuDNN gave the deterministic algorithm.
  const std::vector<bf16> first_out = out.download(), first_dqkv = dqkv.download();
  out.poison();
  dqkv.poison();
  cudnn.forward(out, state, qkv, B, T, C, NH);
  cudnn.backward(dqkv, dout, qkv, out, state, B, T, C, NH);
  OURO_CUDA_CHECK(cudaStreamSynchronize(stream));
  EXPECT_TRUE(same_bits(out.download(), first_out)) << at;
  if (cudnn.backward_deterministic()) EXPECT_TRUE(same_bits(dqkv.download(), first_dqkv)) << at;
  else EXPECT_LT(rel_error(to_float(dqkv.download()), to_float(first_dqkv)), 1e-2) << at;

  OURO_CUDA_CHECK(cudaStreamDestroy(stream));
}

INSTANTIATE_TEST_SUITE_P(HeadDims, CudnnAttentionTest, ::testing::Values(64, 128),
                         [](const auto& info) { return "hd" + std::to_string(info.param); });

class CudnnAttentionShapeTest : public KernelTest {};

TEST_F(CudnnAttentionShapeTest, RejectsBadShapesNamingThem) {
  ouro::CudnnAttention cudnn(nullptr);
  DeviceBuffer<bf16> qkv(size_t(3) * 770), out(770);
  DeviceBuffer<float> state(12);
  try {
    cudnn.forward(out, state, qkv, 1, 1, 770, 12);  // 770 is not a multiple of 12 heads
    FAIL() << "no error";
  } catch (const ouro::Error& e) {
    EXPECT_NE(std::string(e.what()).find("C=770 NH=12"), std::string::npos) << e.what();
  }
}

}  // namespace
