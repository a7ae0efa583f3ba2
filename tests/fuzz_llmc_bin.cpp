// libFuzzer target for the llm.c model reader (load_llmc_bin, load_model_config): arbitrary
// bytes, written to a file, must load or be refused with ouro::Error, never crash, read out of
// bounds or throw anything else. Most inputs start with a valid header (magic, version and
// bounded dimensions taken from the input's first bytes) so the fuzzer spends its time past the
// first check, in the size arithmetic and the parameter reads.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ouro/checkpoint.h"
#include "ouro/error.h"

namespace {

const std::string& scratch_file() {
  static const std::string path = "/tmp/ouro_fuzz_llmc_" + std::to_string(::getpid()) + ".bin";
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> file(data, data + size);
  // Input byte 0 chooses: odd = raw bytes; even = a header built from the next bytes + the rest.
  if (size >= 1 && (data[0] & 1) == 0) {
    int32_t h[256] = {};
    h[0] = 20240326;
    h[1] = (data[0] & 2) ? 5 : 3;
    for (int i = 0; i < 6; ++i) {
      const size_t at = 1 + 2 * static_cast<size_t>(i);
      const int64_t v = at + 1 < size ? data[at] | (data[at + 1] << 8) : 1;
      // Mostly small (a file of this size can hold the model), sometimes huge or negative.
      h[2 + i] = static_cast<int32_t>((v & 0x8000) ? (v << 16) - (int64_t{1} << 30) : (v & 0x3f) + 1);
    }
    if (h[3] > 0 && h[3] < (1 << 24)) h[7] = (h[3] + 127) / 128 * 128 + ((data[0] & 4) ? 128 : 0);
    if (h[5] > 0 && h[6] > 0) h[6] = h[6] < h[5] ? h[5] : h[6] - h[6] % h[5];  // a multiple of heads
    file.assign(reinterpret_cast<const uint8_t*>(h), reinterpret_cast<const uint8_t*>(h) + sizeof(h));
    if (size > 13) file.insert(file.end(), data + 13, data + size);
  }
  {
    std::ofstream out(scratch_file(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  }
  try {
    const ouro::GPT2Config c = ouro::load_model_config(scratch_file());
    const ouro::LoadedModel m = ouro::load_llmc_bin(scratch_file());
    if (!(m.config == c) || m.params.size() != ouro::gpt2_num_params(c)) __builtin_trap();
  } catch (const ouro::Error&) {
    // Refused with a message: the expected outcome for most inputs.
  }
  return 0;
}
