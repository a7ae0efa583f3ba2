// Token shards in llm.c's format: writing them atomically and opening them as validated,
// read-only memory maps.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>

#include "ouro/data.h"
#include "ouro/error.h"

namespace ouro {

namespace fs = std::filesystem;

// The format is little-endian on disk and we read it in place through the mapping.
static_assert(std::endian::native == std::endian::little, "shards are little-endian");

namespace {

constexpr size_t kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);

std::string errno_text() { return std::strerror(errno); }

// Writes all of buf or fails; write(2) may write less than asked.
void write_all(int fd, const void* buf, size_t n, const fs::path& path) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("writing shard {}: {}", path.string(), errno_text());
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Closes the temp file and removes it unless committed, so a failed write leaves nothing behind.
struct TempFile {
  fs::path path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed) ::unlink(path.c_str());
  }
};

// A name no concurrent writer (other process or thread) will pick for the same target.
fs::path temp_name(const fs::path& path) {
  static std::atomic<uint64_t> counter{0};
  return path.parent_path() /
         fmt::format(".{}.tmp.{}.{}", path.filename().string(), ::getpid(), counter++);
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

  TempFile tmp{temp_name(path)};
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (tmp.fd < 0) fail("writing shard {}: cannot create {}: {}", path.string(),
                       tmp.path.string(), errno_text());
  write_all(tmp.fd, header.data(), kHeaderBytes, path);
  if (u16) {
    // Narrow in chunks so the copy stays small however large the shard is.
    std::vector<uint16_t> buf;
    constexpr size_t kChunk = 1 << 20;
    for (size_t i = 0; i < tokens.size(); i += kChunk) {
      size_t n = std::min(kChunk, tokens.size() - i);
      buf.assign(tokens.begin() + i, tokens.begin() + i + n);
      write_all(tmp.fd, buf.data(), n * sizeof(uint16_t), path);
    }
  } else {
    write_all(tmp.fd, tokens.data(), tokens.size() * sizeof(uint32_t), path);
  }
  if (::fsync(tmp.fd) != 0) fail("writing shard {}: fsync: {}", path.string(), errno_text());
  if (::close(tmp.fd) != 0) {
    tmp.fd = -1;
    fail("writing shard {}: close: {}", path.string(), errno_text());
  }
  tmp.fd = -1;
  if (::rename(tmp.path.c_str(), path.c_str()) != 0)
    fail("writing shard {}: rename from {}: {}", path.string(), tmp.path.string(), errno_text());
  tmp.committed = true;

  // The rename is only durable once the directory entry itself is on disk.
  const fs::path d = dir.empty() ? fs::path(".") : dir;
  int dfd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail("writing shard {}: cannot open directory {}: {}", path.string(), d.string(),
                    errno_text());
  int rc = ::fsync(dfd);
  int saved = errno;
  ::close(dfd);
  if (rc != 0) fail("writing shard {}: fsync of directory {}: {}", path.string(), d.string(),
                    std::strerror(saved));
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
  if (map == MAP_FAILED) fail("cannot mmap shard {}: {}", path.string(), std::strerror(saved));
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
