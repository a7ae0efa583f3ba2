#include "train/checkpoint_state.h"

#include <cmath>

#include "ouro/error.h"

namespace ouro {

namespace {

const nlohmann::json* find(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

int64_t non_negative_integer(const nlohmann::json& j, const char* key, const std::string& file) {
  const nlohmann::json* v = find(j, key);
  OURO_CHECK(v, "{}: key '{}' is missing", file, key);
  // A literal written from C++ is a signed integer; one above INT64_MAX reads as unsigned.
  OURO_CHECK(v->is_number_integer() && !(v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX),
             "{}: key '{}' must be a non-negative integer, got {} ({})", file, key, v->dump(),
             v->type_name());
  const int64_t x = v->get<int64_t>();
  OURO_CHECK(x >= 0, "{}: key '{}' must be a non-negative integer, got {}", file, key, x);
  return x;
}

}  // namespace

CheckpointState parse_checkpoint_state(const nlohmann::json& j, const std::string& file,
                                       int64_t dir_step) {
  OURO_CHECK(j.is_object(), "{}: expected a JSON object, got {}", file, j.type_name());
  CheckpointState s;
  s.step = non_negative_integer(j, "step", file);
  OURO_CHECK(dir_step < 0 || s.step == dir_step,
             "{}: key 'step' is {} but the directory is step_{:06d}; the checkpoint is inconsistent",
             file, s.step, dir_step);
  s.opt_steps = non_negative_integer(j, "opt_steps", file);
  OURO_CHECK(s.opt_steps <= s.step, "{}: key 'opt_steps' ({}) exceeds key 'step' ({})", file,
             s.opt_steps, s.step);
  if (find(j, "world")) {
    s.world = non_negative_integer(j, "world", file);
    OURO_CHECK(s.world > 0, "{}: key 'world' must be positive, got 0", file);
  }
  if (const nlohmann::json* e = find(j, "elapsed_s")) {
    OURO_CHECK(e->is_number() && std::isfinite(e->get<double>()) && e->get<double>() >= 0,
               "{}: key 'elapsed_s' must be a non-negative number, got {}", file, e->dump());
    s.elapsed_s = e->get<double>();
  }
  const nlohmann::json* loader = find(j, "loader");
  OURO_CHECK(loader, "{}: key 'loader' is missing", file);
  try {
    s.loader = loader->get<LoaderPosition>();
  } catch (const Error& e) {
    fail("{}: key 'loader': {}", file, e.what());
  }
  const nlohmann::json* config = find(j, "config");
  OURO_CHECK(config, "{}: key 'config' is missing", file);
  OURO_CHECK(config->is_string(), "{}: key 'config' must be a string (the run's TOML), got {}",
             file, config->type_name());
  s.config = config->get<std::string>();
  if (const nlohmann::json* loop = find(j, "loop")) {
    OURO_CHECK(loop->is_object(), "{}: key 'loop' must be an object, got {}", file,
               loop->type_name());
    s.loop = *loop;
  }
  return s;
}

CheckpointState parse_checkpoint_state_text(std::string_view text, const std::string& file,
                                            int64_t dir_step) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", file, e.what());
  }
  return parse_checkpoint_state(j, file, dir_step);
}

}  // namespace ouro
