// Loading models from any supported source, and training checkpoints:
//   run_dir/checkpoints/step_NNNNNN/{model.safetensors, config.json, optimizer.safetensors, state.json}
// A checkpoint is built in run_dir/checkpoints/.tmp-step_NNNNNN-<pid>/, every file fsynced, and
// renamed into place, so a step_* directory is always complete; rotation renames an old one to
// ".tmp-retired-*" before deleting it. ".tmp-*" debris from a crash is never read and is removed
// by the next save.
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "io/atomic_file.h"
#include "ouro/checkpoint.h"
#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro {

namespace {

constexpr const char* kAdamM = "adam.m";
constexpr const char* kAdamV = "adam.v";

fs::path checkpoints_dir(const fs::path& run_dir) { return run_dir / "checkpoints"; }

// Step number of a "step_<digits>" directory name, or -1.
int64_t parse_step(const std::string& name) {
  const std::string prefix = "step_";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  if (name.size() - prefix.size() > 18) return -1;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

bool is_complete(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "model.safetensors", ec) && fs::is_regular_file(dir / "config.json", ec);
}

// step_* directories under ckdir, ascending by step.
std::vector<std::pair<int64_t, fs::path>> list_steps(const fs::path& ckdir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckdir, ec)) {
    int64_t step = parse_step(e.path().filename().string());
    if (step >= 0 && e.is_directory(ec)) out.push_back({step, e.path()});
  }
  std::sort(out.begin(), out.end());
  return out;
}

void remove_dir(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) fail("cannot remove '{}': {}", dir.string(), ec.message());
}

// The model an optimizer state belongs to. The position encoding is recorded only when it is
// not GPT-2's learned one, so checkpoints written before model.pos existed still match.
nlohmann::json config_json(const GPT2Config& c) {
  nlohmann::json j = {{"n_layer", c.n_layer}, {"n_head", c.n_head}, {"n_embd", c.n_embd},
                      {"seq_len", c.seq_len}, {"vocab_size", c.vocab_size}};
  if (c.pos != PosEncoding::learned) j["pos"] = pos_encoding_name(c.pos);
  if (c.pos == PosEncoding::rope) j["rope_theta"] = c.rope_theta;
  return j;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  OURO_CHECK(in, "cannot open '{}'", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path.string(), e.what());
  }
}

}  // namespace

LoadedModel load_model(const fs::path& path) {
  std::error_code ec;
  const std::string p = path.string();
  OURO_CHECK(fs::exists(path, ec), "model path '{}' does not exist", p);
  if (fs::is_directory(path, ec)) {
    const bool has_config = fs::exists(path / "config.json"), has_weights = fs::exists(path / "model.safetensors");
    if (has_config && has_weights) return load_hf_model(path);
    OURO_CHECK(!has_config, "'{}' has config.json but no model.safetensors", p);
    OURO_CHECK(!has_weights, "'{}' has model.safetensors but no config.json", p);
    OURO_CHECK(!fs::exists(path / "pytorch_model.bin"),
               "'{}' holds pytorch_model.bin only; re-save it with safetensors (save_pretrained with "
               "safe_serialization=True)", p);
    fail("'{}' is neither a model directory (config.json + model.safetensors) nor an llm.c .bin file", p);
  }
  return load_llmc_bin(path);
}

GPT2Config load_model_config(const fs::path& path) {
  std::error_code ec;
  const std::string p = path.string();
  OURO_CHECK(fs::exists(path, ec), "model path '{}' does not exist", p);
  if (!fs::is_directory(path, ec)) return llmc_bin_config(path);
  const fs::path cfg = path / "config.json";
  OURO_CHECK(fs::exists(cfg, ec), "'{}' has no config.json: not a checkpoint or Hugging Face model directory", p);
  return gpt2_config_from_hf(read_json(cfg), cfg);
}

fs::path save_checkpoint(const fs::path& run_dir, int64_t step, const CheckpointData& data, int keep_last) {
  OURO_CHECK(step >= 0, "checkpoint step {} is negative", step);
  const std::string where = run_dir.string();
  OURO_CHECK(data.params != nullptr, "checkpoint of step {} in '{}': no parameters given", step, where);
  const size_t n = gpt2_num_params(data.config);
  OURO_CHECK(data.params->size() == n, "checkpoint of step {} in '{}': {} parameters given, the config needs {}",
             step, where, data.params->size(), n);
  OURO_CHECK((data.adam_m == nullptr) == (data.adam_v == nullptr),
             "checkpoint of step {} in '{}': adam_m and adam_v must be given together", step, where);
  if (data.adam_m)
    OURO_CHECK(data.adam_m->size() == n && data.adam_v->size() == n,
               "checkpoint of step {} in '{}': optimizer state has {}/{} values, the model {}", step, where,
               data.adam_m->size(), data.adam_v->size(), n);

  const fs::path ckdir = checkpoints_dir(run_dir);
  std::error_code ec;
  fs::create_directories(ckdir, ec);
  if (ec) fail("cannot create '{}': {}", ckdir.string(), ec.message());
  // Debris of crashed saves (ours or an earlier process's). One run writes one run_dir.
  std::vector<fs::path> debris;
  for (const auto& e : fs::directory_iterator(ckdir, ec))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) debris.push_back(e.path());
  for (const auto& d : debris) remove_dir(d);
  auto phase = [&](const char* name) {
    if (data.on_phase) data.on_phase(name);
  };
  phase("debris");

  const std::string name = fmt::format("step_{:06d}", step);
  const fs::path tmp = ckdir / fmt::format(".tmp-{}-{}", name, ::getpid());
  fs::create_directory(tmp, ec);
  if (ec) fail("cannot create '{}': {}", tmp.string(), ec.message());
  try {
    save_hf_model(tmp, data.config, *data.params);
    phase("model");
    if (data.adam_m) {
      write_safetensors(tmp / "optimizer.safetensors",
                        {{kAdamM, "F32", {static_cast<int64_t>(n)}, data.adam_m->data()},
                         {kAdamV, "F32", {static_cast<int64_t>(n)}, data.adam_v->data()}},
                        {{"num_params", std::to_string(n)}, {"config", config_json(data.config).dump()}});
      phase("optimizer");
    }
    if (!data.state.is_null()) {
      io::write_file_atomic(tmp / "state.json", data.state.dump(2) + "\n");
      phase("state");
    }
    io::fsync_dir(tmp);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  const fs::path final_dir = ckdir / name;
  io::replace_dir(tmp, final_dir);
  phase("renamed");

  // Keep the newest keep_last by step number, and always the one just written: after resuming
  // from an older checkpoint, it is the run's present even if higher steps exist.
  if (keep_last > 0) {
    auto steps = list_steps(ckdir);
    int kept = 0;
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      if (it->second == final_dir) continue;
      if (++kept >= keep_last) {  // the new one takes one of the slots
        // Renamed out of the step_* namespace first (atomic), then deleted: a kill during the
        // deletion leaves ".tmp-*" debris, never a half-emptied step_* directory.
        const fs::path retired = ckdir / fmt::format(".tmp-retired-{}-{}", it->second.filename().string(), ::getpid());
        std::error_code rec;
        fs::rename(it->second, retired, rec);
        if (rec) fail("cannot retire '{}': {}", it->second.string(), rec.message());
        io::fsync_dir(ckdir);
        remove_dir(retired);
        phase("rotated");
      }
    }
    io::fsync_dir(ckdir);
  }
  return final_dir;
}

int64_t checkpoint_dir_step(const fs::path& dir) {
  const fs::path name = dir.has_filename() ? dir.filename() : dir.parent_path().filename();
  return parse_step(name.string());
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  std::optional<fs::path> best;
  for (const auto& [step, dir] : list_steps(checkpoints_dir(run_dir)))
    if (is_complete(dir)) best = dir;  // ascending, so the last complete one wins
  return best;
}

TrainingCheckpoint load_checkpoint(const fs::path& dir) {
  TrainingCheckpoint out;
  std::error_code ec;
  OURO_CHECK(fs::is_directory(dir, ec), "checkpoint '{}' is not a directory", dir.string());
  out.model = load_model(dir);
  const size_t n = out.model.params.size();

  const fs::path opt = dir / "optimizer.safetensors";
  if (fs::exists(opt, ec)) {
    SafeTensors st(opt);
    for (const char* t : {kAdamM, kAdamV}) {
      OURO_CHECK(st.has(t), "{}: missing tensor '{}'", opt.string(), t);
      OURO_CHECK(st.shape(t) == std::vector<int64_t>{static_cast<int64_t>(n)},
                 "{}: tensor '{}' does not have the model's {} parameters", opt.string(), t, n);
    }
    const auto& meta = st.metadata();
    if (auto it = meta.find("config"); it != meta.end()) {
      nlohmann::json c;
      try {
        c = nlohmann::json::parse(it->second);
      } catch (const nlohmann::json::exception& e) {
        fail("{}: metadata 'config' is not valid JSON: {}", opt.string(), e.what());
      }
      OURO_CHECK(c == config_json(out.model.config),
                 "{}: optimizer state was saved for model {}, but the checkpoint's model is {}",
                 opt.string(), c.dump(), config_json(out.model.config).dump());
    }
    out.adam_m = st.get_f32(kAdamM);
    out.adam_v = st.get_f32(kAdamV);
  }

  const fs::path state = dir / "state.json";
  out.state = fs::exists(state, ec) ? read_json(state) : nlohmann::json::object();
  return out;
}

}  // namespace ouro
