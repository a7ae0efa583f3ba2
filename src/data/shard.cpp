// Token shards in llm.c's format: writing them atomically, and reading them through pread
// (never a memory map: a file changed under a map kills the process with SIGBUS).
#include <fcntl.h>
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

namespace {

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

Shard::Shard(const fs::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("cannot open shard {}: {}", path.string(), errno_text());
  // From here on a failure must close, since the destructor does not run for a throwing
  // constructor.
  try {
    struct stat st{};
    if (::fstat(fd_, &st) != 0) fail("cannot stat shard {}: {}", path.string(), errno_text());
    if (!S_ISREG(st.st_mode)) fail("shard {}: not a regular file", path.string());
    file_bytes_ = static_cast<size_t>(st.st_size);
    mtime_ns_ = mtime_ns(st);
    dev_ = static_cast<uint64_t>(st.st_dev);
    ino_ = static_cast<uint64_t>(st.st_ino);
    if (file_bytes_ < kHeaderBytes)
      fail("shard {}: {} bytes is shorter than the {}-byte header", path.string(), file_bytes_,
           kHeaderBytes);
    std::array<int32_t, 3> h{};
    const ssize_t got = ::pread(fd_, h.data(), sizeof(h), 0);
    if (got != static_cast<ssize_t>(sizeof(h)))
      fail("shard {}: cannot read the header: {}", path.string(),
           got < 0 ? errno_text() : std::string("short read"));
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
    if (expected != file_bytes_)
      fail("shard {}: header (offset 8) says {} tokens of {} bytes, so {} bytes expected, but "
           "the file has {} bytes",
           path.string(), h[2], width, expected, file_bytes_);
    version_ = h[1];
    n_tokens_ = static_cast<size_t>(h[2]);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

Shard::~Shard() { release(); }

void Shard::release() const {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Shard::check_unchanged() const {
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail("cannot reopen shard {}: {} (removed while in use?)", path_.string(), errno_text());
  }
  struct stat st{};
  if (::fstat(fd_, &st) != 0) fail("cannot stat shard {}: {}", path_.string(), errno_text());
  const bool same_file = static_cast<uint64_t>(st.st_dev) == dev_ && static_cast<uint64_t>(st.st_ino) == ino_;
  if (!same_file || static_cast<size_t>(st.st_size) != file_bytes_ || mtime_ns(st) != mtime_ns_) {
    release();
    fail("shard {} changed while in use ({}; {} bytes now, {} when opened); a shard must not "
         "change while a run reads it",
         path_.string(), !same_file ? "replaced by another file" : "rewritten in place",
         static_cast<int64_t>(st.st_size), file_bytes_);
  }
}

void Shard::read(size_t first, size_t count, uint32_t* out) const {
  OURO_CHECK(first <= n_tokens_ && count <= n_tokens_ - first,
             "shard {}: tokens [{}, {}) are outside its {} tokens", path_.string(), first,
             first + count, n_tokens_);
  check_unchanged();
  const size_t width = version_ == kShardVersionU16 ? 2 : 4;
  const size_t offset = kHeaderBytes + first * width, bytes = count * width;
  // uint16 tokens land in the upper half of out and widen in place, front to back.
  auto* dst = reinterpret_cast<uint8_t*>(out) + (width == 2 ? count * 2 : 0);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd_, dst + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail("shard {}: cannot read {} bytes at offset {}: {}", path_.string(), bytes - done,
           offset + done, n < 0 ? errno_text() : std::string("the file ended early (changed while in use?)"));
    done += static_cast<size_t>(n);
  }
  if (width == 2) {
    const auto* narrow = reinterpret_cast<const uint16_t*>(dst);
    for (size_t i = 0; i < count; ++i) out[i] = narrow[i];
  }
}

uint32_t Shard::operator[](size_t i) const {
  OURO_CHECK(i < n_tokens_, "shard {}: token index {} is outside its {} tokens", path_.string(), i,
             n_tokens_);
  constexpr size_t kBlock = 4096;
  if (cache_.empty() || i < cache_first_ || i >= cache_first_ + cache_.size()) {
    cache_first_ = i / kBlock * kBlock;
    cache_.resize(std::min(kBlock, n_tokens_ - cache_first_));
    read(cache_first_, cache_.size(), cache_.data());
  }
  return cache_[i - cache_first_];
}

}  // namespace ouro
