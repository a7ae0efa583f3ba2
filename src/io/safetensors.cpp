// safetensors: an 8-byte little-endian header length, a JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// and the data section; offsets are relative to the data section. Files come from other tools,
// so every field is checked before any byte is trusted.
#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>

#include "io/atomic_file.h"
#include "ouro/checkpoint.h"
#include "io/shape_str.h"
#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro {

static_assert(std::endian::native == std::endian::little,
              "safetensors and llm.c files are little-endian; big-endian hosts are unsupported");

namespace {

constexpr const char* kMetaKey = "__metadata__";
// The reference implementation refuses headers above 100 MB; a bigger one is corruption.
constexpr uint64_t kMaxHeader = 100'000'000;

// Element size of a safetensors dtype, 0 if unknown.
size_t dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

// Element count of shape, failing (rather than wrapping) on overflow.
size_t checked_numel(const std::vector<int64_t>& shape, const fs::path& path, const std::string& name) {
  size_t n = 1;
  for (int64_t s : shape) {
    OURO_CHECK(s >= 0, "{}: tensor '{}' has a negative dimension", path.string(), name);
    OURO_CHECK(s == 0 || n <= std::numeric_limits<size_t>::max() / static_cast<size_t>(s),
               "{}: tensor '{}' shape overflows", path.string(), name);
    n *= static_cast<size_t>(s);
  }
  return n;
}

using io::shape_str;

// IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN payloads).
float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: normalise; each shift halves the exponent. Binary32 represents it exactly.
    int e = 127 - 15 + 1;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// bfloat16 is the top half of a binary32, so widening is a shift.
float bf16_to_f32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

int64_t json_uint(const nlohmann::json& v, const fs::path& path, const std::string& name,
                  const char* field) {
  OURO_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0,
             "{}: tensor '{}' has a non-integer or negative value in '{}'", path.string(), name, field);
  return v.get<int64_t>();
}

}  // namespace

void write_safetensors(const fs::path& path, const std::vector<StTensorIn>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetaKey] = metadata;
  std::vector<io::ByteSpan> pieces;
  pieces.push_back({});  // length prefix, filled below
  pieces.push_back({});  // header text
  size_t offset = 0;
  for (const auto& t : tensors) {
    size_t esize = dtype_size(t.dtype);
    OURO_CHECK(esize != 0, "{}: tensor '{}' has unknown dtype '{}'", path.string(), t.name, t.dtype);
    OURO_CHECK(t.name != kMetaKey && !header.contains(t.name),
               "{}: duplicate or reserved tensor name '{}'", path.string(), t.name);
    size_t bytes = checked_numel(t.shape, path, t.name) * esize;
    OURO_CHECK(bytes == 0 || t.data != nullptr, "{}: tensor '{}' has no data", path.string(), t.name);
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    pieces.push_back({t.data, bytes});
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t len = text.size();
  pieces[0] = {&len, sizeof(len)};
  pieces[1] = {text.data(), text.size()};
  io::write_file_atomic(path, pieces);
}

SafeTensors::SafeTensors(const fs::path& path) : path_(path) {
  const std::string p = path.string();
  std::error_code ec;
  const uintmax_t file_size = fs::file_size(path, ec);
  if (ec) fail("cannot read safetensors file '{}': {}", p, ec.message());
  std::ifstream in(path, std::ios::binary);
  OURO_CHECK(in, "cannot open safetensors file '{}'", p);
  OURO_CHECK(file_size >= 8, "{}: not a safetensors file (only {} bytes)", p, file_size);

  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  OURO_CHECK(in, "{}: cannot read the header length", p);
  OURO_CHECK(header_len <= file_size - 8,
             "{}: header length {} runs past the end of the file ({} bytes)", p, header_len, file_size);
  OURO_CHECK(header_len <= kMaxHeader, "{}: header length {} is implausibly large", p, header_len);
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  OURO_CHECK(in, "{}: cannot read the {}-byte header", p, header_len);

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: the header is not valid JSON: {}", p, e.what());
  }
  OURO_CHECK(header.is_object(), "{}: the header is not a JSON object", p);

  const size_t data_size = file_size - 8 - header_len;
  for (const auto& [name, v] : header.items()) {
    if (name == kMetaKey) {
      OURO_CHECK(v.is_object(), "{}: '__metadata__' is not an object", p);
      for (const auto& [k, mv] : v.items()) {
        OURO_CHECK(mv.is_string(), "{}: metadata value '{}' is not a string", p, k);
        metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    OURO_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
               "{}: tensor '{}' needs 'dtype', 'shape' and 'data_offsets'", p, name);
    Entry e;
    OURO_CHECK(v["dtype"].is_string(), "{}: tensor '{}' has a non-string dtype", p, name);
    e.dtype = v["dtype"].get<std::string>();
    const size_t esize = dtype_size(e.dtype);
    OURO_CHECK(esize != 0, "{}: tensor '{}' has unknown dtype '{}'", p, name, e.dtype);
    OURO_CHECK(v["shape"].is_array(), "{}: tensor '{}' shape is not an array", p, name);
    for (const auto& d : v["shape"]) e.shape.push_back(json_uint(d, path, name, "shape"));
    const auto& offs = v["data_offsets"];
    OURO_CHECK(offs.is_array() && offs.size() == 2, "{}: tensor '{}' data_offsets is not [begin, end]",
               p, name);
    const auto begin = static_cast<uint64_t>(json_uint(offs[0], path, name, "data_offsets"));
    const auto end = static_cast<uint64_t>(json_uint(offs[1], path, name, "data_offsets"));
    OURO_CHECK(begin <= end && end <= data_size,
               "{}: tensor '{}' data_offsets [{}, {}] are out of range (data section is {} bytes)", p,
               name, begin, end, data_size);
    const size_t numel = checked_numel(e.shape, path, name);
    OURO_CHECK(numel <= std::numeric_limits<size_t>::max() / esize && end - begin == numel * esize,
               "{}: tensor '{}' has {} bytes but dtype {} and shape {} need {}", p, name, end - begin,
               e.dtype, shape_str(e.shape), numel * esize);
    e.begin = begin;
    e.end = end;
    entries_[name] = std::move(e);
  }

  // Two tensors sharing bytes would alias silently; the format forbids it.
  std::vector<std::pair<const std::string*, const Entry*>> sorted;
  for (const auto& [name, e] : entries_) sorted.push_back({&name, &e});
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (size_t i = 1; i < sorted.size(); ++i)
    OURO_CHECK(sorted[i - 1].second->end <= sorted[i].second->begin,
               "{}: tensors '{}' and '{}' overlap in the data section", p, *sorted[i - 1].first,
               *sorted[i].first);

  bytes_.resize(data_size);
  in.read(reinterpret_cast<char*>(bytes_.data()), static_cast<std::streamsize>(data_size));
  OURO_CHECK(in || data_size == 0, "{}: cannot read the {}-byte data section", p, data_size);
}

std::vector<std::string> SafeTensors::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

bool SafeTensors::has(const std::string& name) const { return entries_.count(name) != 0; }

const std::vector<int64_t>& SafeTensors::shape(const std::string& name) const {
  auto it = entries_.find(name);
  OURO_CHECK(it != entries_.end(), "{}: no tensor named '{}'", path_.string(), name);
  return it->second.shape;
}

const std::string& SafeTensors::dtype(const std::string& name) const {
  auto it = entries_.find(name);
  OURO_CHECK(it != entries_.end(), "{}: no tensor named '{}'", path_.string(), name);
  return it->second.dtype;
}

std::vector<float> SafeTensors::get_f32(const std::string& name) const {
  auto it = entries_.find(name);
  OURO_CHECK(it != entries_.end(), "{}: no tensor named '{}'", path_.string(), name);
  const Entry& e = it->second;
  const uint8_t* src = bytes_.data() + e.begin;
  const size_t bytes = e.end - e.begin;
  std::vector<float> out;
  if (e.dtype == "F32") {
    out.resize(bytes / 4);
    if (bytes) std::memcpy(out.data(), src, bytes);
  } else if (e.dtype == "F16" || e.dtype == "BF16") {
    out.resize(bytes / 2);
    const bool half = e.dtype == "F16";
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t v;
      std::memcpy(&v, src + 2 * i, 2);  // data offsets need not be aligned
      out[i] = half ? f16_to_f32(v) : bf16_to_f32(v);
    }
  } else {
    fail("{}: tensor '{}' has dtype {}; only F32, F16 and BF16 convert to fp32", path_.string(), name,
         e.dtype);
  }
  return out;
}

}  // namespace ouro

namespace ouro {

std::vector<int32_t> SafeTensors::get_i32(const std::string& name) const {
  auto it = entries_.find(name);
  OURO_CHECK(it != entries_.end(), "{}: no tensor named '{}'", path_.string(), name);
  const Entry& e = it->second;
  OURO_CHECK(e.dtype == "I32", "{}: tensor '{}' has dtype {}, expected I32", path_.string(), name,
             e.dtype);
  std::vector<int32_t> out((e.end - e.begin) / 4);
  if (!out.empty()) std::memcpy(out.data(), bytes_.data() + e.begin, out.size() * 4);
  return out;
}

}  // namespace ouro
