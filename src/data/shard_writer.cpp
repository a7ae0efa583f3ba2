#include "data/shard_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "io/atomic_file.h"
#include "ouro/data.h"
#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro::data {

namespace {

constexpr size_t kHeaderInts = 256;
constexpr size_t kBufferBytes = 4 << 20;

void write_all(int fd, const void* p, size_t n, const fs::path& path) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("prepare: cannot write {}: {}", path.string(), std::strerror(errno));
    c += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

fs::path shard_path(const fs::path& prefix, const std::string& split, size_t index) {
  char num[16];
  std::snprintf(num, sizeof num, "%06zu", index);
  return fs::path(prefix.string() + "_" + split + "_" + num + ".bin");
}

fs::path temp_path_of(const fs::path& shard) {
  return shard.parent_path() / ("." + shard.filename().string() + ".tmp");
}

ShardWriter::ShardWriter(fs::path prefix, std::string split, uint64_t shard_tokens, size_t vocab_size,
                         uint32_t eot)
    : prefix_(std::move(prefix)), split_(std::move(split)), shard_tokens_(shard_tokens), vocab_(vocab_size),
      eot_(eot), u16_(vocab_size <= 65536) {
  OURO_CHECK(shard_tokens_ > 0 && shard_tokens_ <= static_cast<uint64_t>(INT32_MAX),
             "prepare: --shard-tokens must be in 1..{} (llm.c's header counts tokens in an int32), got {}",
             INT32_MAX, shard_tokens_);
  buf_.reserve(kBufferBytes);
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void ShardWriter::open_next() {
  cur_ = ShardInfo{shard_path(prefix_, split_, done_.size()), 0, 0};
  tmp_ = temp_path_of(cur_.path);
  if (cur_.path.has_parent_path()) fs::create_directories(cur_.path.parent_path());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("prepare: cannot create {}: {}", tmp_.string(), std::strerror(errno));
  const std::array<int32_t, kHeaderInts> header{};  // patched when the shard is complete
  write_all(fd_, header.data(), sizeof header, tmp_);
}

void ShardWriter::write_tokens(const uint32_t* t, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (t[i] >= vocab_)
      fail("prepare: token {} is outside the vocabulary of {} (shard {})", t[i], vocab_, cur_.path.string());
    if (t[i] == eot_) ++cur_.documents;
    if (u16_) {
      const uint16_t v = static_cast<uint16_t>(t[i]);
      buf_.insert(buf_.end(), reinterpret_cast<const char*>(&v), reinterpret_cast<const char*>(&v) + 2);
    } else {
      buf_.insert(buf_.end(), reinterpret_cast<const char*>(t + i), reinterpret_cast<const char*>(t + i) + 4);
    }
    if (buf_.size() >= kBufferBytes) flush();
  }
  cur_.tokens += n;
}

void ShardWriter::flush() {
  write_all(fd_, buf_.data(), buf_.size(), tmp_);
  buf_.clear();
}

ShardInfo ShardWriter::close_current() {
  flush();
  std::array<int32_t, kHeaderInts> header{};
  header[0] = kShardMagic;
  header[1] = u16_ ? kShardVersionU16 : kShardVersionU32;
  header[2] = static_cast<int32_t>(cur_.tokens);
  if (::pwrite(fd_, header.data(), sizeof header, 0) != static_cast<ssize_t>(sizeof header))
    fail("prepare: cannot write {}: {}", tmp_.string(), std::strerror(errno));
  if (::fsync(fd_) != 0) fail("prepare: cannot fsync {}: {}", tmp_.string(), std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  fs::rename(tmp_, cur_.path, ec);
  if (ec) fail("prepare: cannot rename {} to {}: {}", tmp_.string(), cur_.path.string(), ec.message());
  io::fsync_dir(cur_.path.has_parent_path() ? cur_.path.parent_path() : fs::path("."));
  done_.push_back(cur_);
  return cur_;
}

bool ShardWriter::finish(ShardInfo* info) {
  if (fd_ < 0 || cur_.tokens == 0) return false;
  *info = close_current();
  return true;
}

}  // namespace ouro::data
