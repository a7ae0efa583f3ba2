// The run configuration: TOML files (toml++) validated against one schema. An unknown key, a
// wrong type or an out-of-range value is an error naming the file, line and key; --set
// section.key=value overrides any key with the same checks. A key with a fixed set of values is an
// enum (ouro/choice.h), parsed once here. Each section's struct has a header of its own, named for
// the component that reads it (config_model.h, config_train.h, config_dist.h, config_loop.h).
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ouro/config_dist.h"
#include "ouro/config_loop.h"
#include "ouro/config_model.h"
#include "ouro/config_train.h"
#include "ouro/model_shape.h"

namespace ouro {

struct Config {
  ModelSection model;
  TrainSection train;
  DataSection data;
  RunSection run;
  CheckpointSection checkpoint;
  SampleSection sample;
  DistConfig dist;
  LoopSection loop;
  std::string source;  // the file it came from ("" for defaults)
  std::set<std::string> set_keys;  // "section.key" of every key the file or an override set

  int train_seq_len() const { return train.seq_len > 0 ? train.seq_len : model.seq_len; }
  std::string to_toml() const;  // every key, resolved
  // Throws ouro::Error naming the offending key when values are inconsistent.
  void validate() const;
};

// A model whose shape supplies the config's model section (train --init, eval).
struct ModelFrom {
  GPT2Config model;
  std::string origin;  // "--init runs/x/checkpoints/step_000100", for errors
};
// Loads path (if non-empty) over the defaults, then applies "section.key=value" overrides.
// With model_from, every model.* shape key (n_layer, n_head, n_embd, seq_len, vocab_size, pos,
// rope_theta) that neither set comes from that model; one that is set must equal it.
// path must be a TOML file: a directory is an error, not an empty config.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {},
                   const ModelFrom* model_from = nullptr);
// Training on the cpu backend: refuses (naming the keys) a run whose weights, gradients, AdamW
// moments and activations (train.batch_size x train.seq_len) exceed this machine's memory, which
// would otherwise fail on allocation or be killed. Other commands need far less (eval, sample).
void check_training_memory(const Config& cfg);
// Parses TOML text (for checkpoints' resolved configs); `origin` names it in errors.
Config parse_config_text(const std::string& text, const std::string& origin);
// Keys whose values differ between a and b (for resume and multi-rank checks).
std::vector<std::string> config_differences(const Config& a, const Config& b);

}  // namespace ouro
