// The training state in a checkpoint's state.json, read strictly for --resume: every key the
// trainer needs is present with its type, and `step` agrees with the step_NNNNNN directory.
// Errors name the file and the key.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ouro/data.h"

namespace ouro {

struct CheckpointState {
  int64_t step = 0;       // steps completed
  int64_t opt_steps = 0;  // optimizer updates applied (<= step: skipped steps excluded)
  int64_t world = 1;      // ranks of the run that wrote it
  double elapsed_s = 0;   // training seconds so far
  LoaderPosition loader;
  std::string config;     // the run's resolved TOML config
  nlohmann::json loop;    // the self-improvement loop's state; null when absent
};

// dir_step: the step of the directory the file is in (-1: not checked).
CheckpointState parse_checkpoint_state(const nlohmann::json& j, const std::string& file,
                                       int64_t dir_step);
// The same from the file's text (not valid JSON: an error naming the file and the offset).
CheckpointState parse_checkpoint_state_text(std::string_view text, const std::string& file,
                                            int64_t dir_step);

}  // namespace ouro
