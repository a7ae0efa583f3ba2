// The backend choices that both the config (run.device, model.matmul, model.attention) and the
// ops layer (make_ops, Ops::select_alternates) speak; they live in common because those two
// layers are siblings (neither may include the other).
#pragma once
#include <array>
#include <string_view>

#include "ouro/choice.h"

namespace ouro {

// cpu: the reference ops; cuda: the kernels on a GPU; simt: the same kernels on the emulator.
enum class Device { cpu, cuda, simt };
constexpr std::array<std::string_view, 3> choice_names(Device) { return {"cpu", "cuda", "simt"}; }

// The device backends' matmul: the hand-written kernels or cuBLASLt.
enum class MatmulImpl { native, cublas };
constexpr std::array<std::string_view, 2> choice_names(MatmulImpl) { return {"native", "cublas"}; }

// The device backends' attention: the hand-written kernels or cuDNN's flash attention.
enum class AttentionImpl { native, cudnn };
constexpr std::array<std::string_view, 2> choice_names(AttentionImpl) { return {"native", "cudnn"}; }

}  // namespace ouro
