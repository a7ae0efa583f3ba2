// libFuzzer target for the TOML run config (parse_config_text + Config::validate, and the
// "section.key=value" overrides of --set): arbitrary bytes must give a validated config or an
// ouro::Error naming the key; never a crash, a toml++ exception escaping, an integer overflow
// (UBSan) or a model size that wraps. The input's first byte chooses between TOML text and a
// list of override lines; dictionary-like seeds come from the key table itself.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "ouro/config.h"
#include "ouro/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if (data[0] & 1) {
      ouro::Config c = ouro::parse_config_text(text, "fuzz.toml");
      c.validate();
      // A config that validates renders and reads back to itself.
      const ouro::Config back = ouro::parse_config_text(c.to_toml(), "round trip");
      if (!ouro::config_differences(c, back).empty()) __builtin_trap();
    } else {
      std::vector<std::string> sets;
      std::istringstream in(text);
      for (std::string line; std::getline(in, line);) sets.push_back(line);
      const ouro::Config c = ouro::load_config("", sets);
      (void)ouro::gpt2_num_params(c.model.gpt2());
    }
  } catch (const ouro::Error&) {
  }
  return 0;
}
