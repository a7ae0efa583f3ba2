// Model files and checkpoints.
//
// A checkpoint is a directory:
//   model.safetensors   weights under Hugging Face GPT-2 names (transformers loads it)
//   config.json         Hugging Face GPT2Config
//   optimizer.safetensors  AdamW m and v, flat, in ouro's internal layout   (training state)
//   state.json          step, loader position, RNG, resolved config, ...   (training state)
// Checkpoints of a run live in run.out_dir/checkpoints/step_NNNNNN/ and are written atomically:
// into a temporary directory, every file fsynced, then renamed into place.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ouro/model_shape.h"

namespace ouro {

// ---- safetensors ----
struct StTensorIn {
  std::string name;
  std::string dtype;  // "F32", "BF16", "F16", "I32", ...
  std::vector<int64_t> shape;
  const void* data = nullptr;  // shape product * dtype size bytes
};
// Atomic write (temp file, fsync, rename). Tensors are laid out in the given order.
void write_safetensors(const std::filesystem::path& path, const std::vector<StTensorIn>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

class SafeTensors {
 public:
  // Reads and validates the header (JSON, offsets inside the file, sizes matching dtype*shape);
  // errors name the file and the tensor.
  explicit SafeTensors(const std::filesystem::path& path);
  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  const std::vector<int64_t>& shape(const std::string& name) const;
  const std::string& dtype(const std::string& name) const;
  // Converts F32/F16/BF16 to fp32; errors on other dtypes or a missing name.
  std::vector<float> get_f32(const std::string& name) const;
  std::vector<int32_t> get_i32(const std::string& name) const;  // I32 only
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Entry { std::string dtype; std::vector<int64_t> shape; size_t begin = 0, end = 0; };
  std::filesystem::path path_;
  std::vector<uint8_t> bytes_;  // data section
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// ---- Hugging Face GPT-2 directories ----
nlohmann::json hf_config_json(const GPT2Config& cfg);
GPT2Config gpt2_config_from_hf(const nlohmann::json& j, const std::filesystem::path& where);
// Writes model.safetensors + config.json into dir (which must exist). params: internal layout.
void save_hf_model(const std::filesystem::path& dir, const GPT2Config& cfg,
                   const std::vector<float>& params);

// ---- loading weights from anything ----
struct LoadedModel {
  GPT2Config config;
  std::vector<float> params;  // internal layout, fp32, padded vocabulary rows zero
};
// A directory with config.json + model.safetensors (ours or transformers').
LoadedModel load_hf_model(const std::filesystem::path& dir);
// dir with config.json + model.safetensors (ours or transformers' save_pretrained, with or
// without the "transformer." prefix, any float dtype), or an llm.c .bin (magic 20240326,
// version 3 fp32 or 5 bf16).
LoadedModel load_model(const std::filesystem::path& path);
LoadedModel load_llmc_bin(const std::filesystem::path& path);
// The model's shape alone (config.json, or the llm.c header), validated, without the weights.
GPT2Config load_model_config(const std::filesystem::path& path);
GPT2Config llmc_bin_config(const std::filesystem::path& path);

// ---- training checkpoints ----
struct CheckpointData {
  GPT2Config config;
  const std::vector<float>* params = nullptr;
  const std::vector<float>* adam_m = nullptr;  // both null: a model-only checkpoint
  const std::vector<float>* adam_v = nullptr;
  nlohmann::json state;  // the trainer's state (step, loader, rng, resolved config, ...)
  // Testing (train --fault-checkpoint-kill): called at each phase of the write, "debris",
  // "model", "optimizer", "state", "renamed", "rotated", so a test can die inside it.
  std::function<void(const char* phase)> on_phase;
};
// Writes run_dir/checkpoints/step_NNNNNN atomically and then deletes all but the newest
// keep_last step directories (keep_last <= 0 keeps all). Returns the directory written.
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir, int64_t step,
                                      const CheckpointData& data, int keep_last);
// The step of a step_NNNNNN directory (its last path component), or -1 when it is not one.
int64_t checkpoint_dir_step(const std::filesystem::path& dir);
// Newest complete step_NNNNNN directory under run_dir/checkpoints, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);

struct TrainingCheckpoint {
  LoadedModel model;
  std::vector<float> adam_m, adam_v;  // empty when the directory has no optimizer state
  nlohmann::json state;               // empty object when there is no state.json
};
TrainingCheckpoint load_checkpoint(const std::filesystem::path& dir);

}  // namespace ouro
