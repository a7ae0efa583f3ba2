// Token shards in llm.c's format: writing them atomically and opening them as validated,
// read-only memory maps.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "ouro/data.h"
#include "io/atomic_file.h"
#include "ouro/error.h"

namespace ouro {

namespace fs = std::filesystem;

// The format is little-endian on disk and we read it in place through the mapping.
static_assert(std::endian::native == std::endian::little, "shards are little-endian");

namespace {

constexpr size_t kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);

std::string errno_text() { return std::strerror(errno); }

// Why a mapping can fail with ENOMEM although memory is free: every shard is mapped for the
// run's life, and the kernel caps a process's mappings at vm.max_map_count (65530 by default).
std::string map_count_hint() {
  size_t maps = 0;
  if (std::FILE* f = std::fopen("/proc/self/maps", "r")) {
    for (int c; (c = std::fgetc(f)) != EOF;) maps += c == '\n';
    std::fclose(f);
  }
  long limit = -1;
  if (std::FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    if (std::fscanf(f, "%ld", &limit) != 1) limit = -1;
    std::fclose(f);
  }
  if (limit < 0) return fmt::format(" ({} memory maps in this process)", maps);
  return fmt::format(" ({} memory maps in this process, the limit vm.max_map_count is {}; each shard "
                     "takes one: merge shards into fewer, larger files or raise the limit with "
                     "sysctl -w vm.max_map_count=N)",
                     maps, limit);
}

}  // namespace

void write_shard(const fs::path& path, const std::vector<uint32_t>& tokens, int vocab_size) {
  OURO_CHECK(vocab_size > 0, "writing shard {}: vocab_size must be positive, got {}",
             path.string(), vocab_size);
  // llm.c stores the count as int32.
  OURO_CHECK(tokens.size() <= static_cast<size_t>(INT32_MAX),
             "writing shard {}: {} tokens exceed the format's limit of {} per shard",
             path.string(), tokens.size(), INT32_MAX);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= static_cast<uint32_t>(vocab_size))
      fail("writing shard {}: token {} at index {} is outside the vocabulary of {}",
           path.string(), tokens[i], i, vocab_size);

  const bool u16 = vocab_size <= 65536;
  std::array<int32_t, kHeaderInts> header{};
  header[0] = kShardMagic;
  header[1] = u16 ? kShardVersionU16 : kShardVersionU32;
  header[2] = static_cast<int32_t>(tokens.size());

  const fs::path dir = path.parent_path();
  if (!dir.empty()) fs::create_directories(dir);
  std::vector<uint16_t> narrow;
  io::ByteSpan body{tokens.data(), tokens.size() * sizeof(uint32_t)};
  if (u16) {
    narrow.assign(tokens.begin(), tokens.end());
    body = {narrow.data(), narrow.size() * sizeof(uint16_t)};
  }
  io::write_file_atomic(path, {{header.data(), kHeaderBytes}, body});
}

Shard::Shard(const fs::path& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open shard {}: {}", path.string(), errno_text());
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    fail("cannot stat shard {}: {}", path.string(), std::strerror(saved));
  }
  const size_t file_bytes = static_cast<size_t>(st.st_size);
  if (file_bytes < kHeaderBytes) {
    ::close(fd);
    fail("shard {}: {} bytes is shorter than the {}-byte header", path.string(), file_bytes,
         kHeaderBytes);
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  int saved = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED)
    fail("cannot mmap shard {}: {}{}", path.string(), std::strerror(saved),
         saved == ENOMEM ? map_count_hint() : std::string());
  map_ = map;
  map_bytes_ = file_bytes;

  // From here on a failure must unmap, since the destructor does not run for a throwing
  // constructor.
  try {
    std::array<int32_t, 3> h{};
    std::memcpy(h.data(), map_, sizeof(h));
    if (h[0] != kShardMagic)
      fail("shard {}: bad magic {} at offset 0 (expected {}); not an llm.c token shard",
           path.string(), h[0], kShardMagic);
    if (h[1] != kShardVersionU16 && h[1] != kShardVersionU32)
      fail("shard {}: unknown version {} at offset 4 (expected {} for uint16 or {} for uint32 "
           "tokens)",
           path.string(), h[1], kShardVersionU16, kShardVersionU32);
    if (h[2] < 0)
      fail("shard {}: negative token count {} at offset 8", path.string(), h[2]);
    const size_t width = h[1] == kShardVersionU16 ? 2 : 4;
    const size_t expected = kHeaderBytes + static_cast<size_t>(h[2]) * width;
    if (expected != file_bytes)
      fail("shard {}: header (offset 8) says {} tokens of {} bytes, so {} bytes expected, but "
           "the file has {} bytes",
           path.string(), h[2], width, expected, file_bytes);
    version_ = h[1];
    n_tokens_ = static_cast<size_t>(h[2]);
    tokens_ = static_cast<const uint8_t*>(map_) + kHeaderBytes;
  } catch (...) {
    ::munmap(map_, map_bytes_);
    throw;
  }
}

Shard::~Shard() {
  if (map_) ::munmap(map_, map_bytes_);
}

// The header is 1024 bytes and the mapping page-aligned, so the token arrays are aligned.
uint32_t Shard::operator[](size_t i) const {
  assert(i < n_tokens_);
  if (version_ == kShardVersionU16) return reinterpret_cast<const uint16_t*>(tokens_)[i];
  return reinterpret_cast<const uint32_t*>(tokens_)[i];
}

}  // namespace ouro
