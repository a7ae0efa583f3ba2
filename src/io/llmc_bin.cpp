// llm.c model files (gpt2_124M.bin, ...): a 256 x int32 header, then every parameter in
// llm.c's order, which is ours. Version 3 stores fp32, version 5 bf16. The file's padded
// vocabulary may differ from ours (llm.c pads to 128 too, but older exporters used other
// multiples), so wte is re-padded: real rows copied, padding rows zero.
#include <algorithm>
#include <cstring>
#include <fstream>

#include "ouro/checked.h"
#include "ouro/checkpoint.h"
#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro {
namespace {

constexpr int32_t kMagic = 20240326;
constexpr int kHeaderInts = 256;

float bf16_to_f32(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Reads n elements of the file's dtype (fp32 or bf16) into dst as fp32, in bounded chunks so a
// bf16 file never needs a second full-size buffer.
void read_params(std::ifstream& in, float* dst, size_t n, bool bf16, const std::string& file) {
  if (!bf16) {
    in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n * 4));
    OURO_CHECK(in, "{}: truncated parameter data", file);
    return;
  }
  std::vector<uint16_t> buf(std::min<size_t>(n, size_t{1} << 20));
  for (size_t done = 0; done < n;) {
    size_t k = std::min(buf.size(), n - done);
    in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(k * 2));
    OURO_CHECK(in, "{}: truncated parameter data", file);
    for (size_t i = 0; i < k; ++i) dst[done + i] = bf16_to_f32(buf[i]);
    done += k;
  }
}

// The header's model, validated (every dimension bounded, the sizes derived from it checked, the
// file size matching them), with what reading the parameters needs.
struct LlmcHeader {
  GPT2Config config;
  int32_t padded_vocab = 0;
  bool bf16 = false;
};

LlmcHeader read_header(std::ifstream& in, const fs::path& path) {
  const std::string f = path.string();
  std::error_code ec;
  const uintmax_t file_size = fs::file_size(path, ec);
  if (ec) fail("cannot read llm.c model file '{}': {}", f, ec.message());
  in.open(path, std::ios::binary);
  OURO_CHECK(in, "cannot open llm.c model file '{}'", f);

  int32_t h[kHeaderInts] = {};
  in.read(reinterpret_cast<char*>(h), sizeof(h));
  OURO_CHECK(in, "{}: too short for an llm.c header ({} bytes)", f, file_size);
  OURO_CHECK(h[0] == kMagic, "{}: bad magic {} (an llm.c model file starts with {})", f, h[0], kMagic);
  OURO_CHECK(h[1] == 3 || h[1] == 5, "{}: unsupported version {} (3 = fp32, 5 = bf16)", f, h[1]);
  const bool bf16 = h[1] == 5;

  const int maxT = h[2], V = h[3], L = h[4], NH = h[5], C = h[6], Vp = h[7];
  // The header is untrusted: every dimension is bounded and every size below is derived with
  // checked arithmetic, so no wrapped count can pass the file-size check (check_model_shape).
  static constexpr ModelFieldNames kHeaderFields = {"header[4] (num_layers)", "header[5] (num_heads)",
                                                    "header[6] (channels)", "header[2] (maxT)",
                                                    "header[3] (vocab_size)"};
  OURO_CHECK(Vp > 0 && Vp <= kMaxModelDim, "{}: header[7] (padded_vocab_size) = {} is out of range (1 to {})",
             f, Vp, kMaxModelDim);
  OURO_CHECK(Vp >= V, "{}: padded_vocab_size {} < vocab_size {}", f, Vp, V);
  const GPT2Config file_cfg{L, NH, C, maxT, V};
  check_model_shape(file_cfg, kHeaderFields, f);

  // The file's element count differs from ours only by the wte padding rows. Vp and C are at
  // most 2^24 each, so wte_file fits; the sum is checked.
  const size_t ours = gpt2_num_params(file_cfg);
  const size_t wte_ours = static_cast<size_t>(file_cfg.padded_vocab()) * C;
  const size_t wte_file = static_cast<size_t>(Vp) * C;
  const auto in_file = checked_add(ours - wte_ours, wte_file);
  const auto data_bytes = in_file ? checked_mul(*in_file, bf16 ? 2 : 4) : std::nullopt;
  const auto want = data_bytes ? checked_add(sizeof(h), *data_bytes) : std::nullopt;
  OURO_CHECK(want && file_size == *want,
             "{}: {} bytes, but a version {} file with this header (L={}, NH={}, C={}, maxT={}, V={}, "
             "Vp={}) has {} bytes",
             f, file_size, h[1], L, NH, C, maxT, V, Vp,
             want ? std::to_string(*want) : std::string("more than 2^64"));
  return {file_cfg, Vp, bf16};
}

}  // namespace

GPT2Config llmc_bin_config(const fs::path& path) {
  std::ifstream in;
  return read_header(in, path).config;
}

LoadedModel load_llmc_bin(const fs::path& path) {
  const std::string f = path.string();
  std::ifstream in;
  const LlmcHeader hd = read_header(in, path);
  const bool bf16 = hd.bf16;
  const int C = hd.config.n_embd, V = hd.config.vocab_size;
  LoadedModel out;
  out.config = hd.config;
  const size_t ours = gpt2_num_params(hd.config);
  const size_t wte_ours = static_cast<size_t>(hd.config.padded_vocab()) * C;
  const size_t wte_file = static_cast<size_t>(hd.padded_vocab) * C;
  out.params.assign(ours, 0.0f);
  const size_t real = static_cast<size_t>(V) * C;
  read_params(in, out.params.data(), real, bf16, f);
  // Padding rows in the file are skipped: ours stay zero whatever the exporter wrote.
  in.seekg(static_cast<std::streamoff>((wte_file - real) * (bf16 ? 2 : 4)), std::ios::cur);
  read_params(in, out.params.data() + wte_ours, ours - wte_ours, bf16, f);
  return out;
}

}  // namespace ouro
