// Atomic file writes and directory swaps (POSIX; renameat2 on Linux).
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro::io {
namespace {

std::string errno_text() { return std::strerror(errno); }

fs::path parent_or_dot(const fs::path& p) {
  fs::path d = p.parent_path();
  return d.empty() ? fs::path(".") : d;
}

// Unique per process and call, so concurrent writers of the same target never share a temp.
std::string temp_suffix() {
  static std::atomic<unsigned> counter{0};
  return ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

void write_all(int fd, const void* data, size_t size, const fs::path& shown) {
  auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write '{}': {}", shown.string(), errno_text());
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

void write_file_atomic(const fs::path& path, const std::vector<ByteSpan>& pieces) {
  std::string tmp_name = ".";  // hidden, and named after its target for whoever finds debris
  tmp_name += path.filename().string();
  tmp_name += temp_suffix();
  const fs::path tmp = parent_or_dot(path) / tmp_name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create '{}' (writing '{}'): {}", tmp.string(), path.string(), errno_text());
  try {
    for (const auto& piece : pieces) write_all(fd, piece.data, piece.size, path);
    if (::fsync(fd) != 0) fail("cannot fsync '{}': {}", path.string(), errno_text());
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) fail("cannot close '{}': {}", path.string(), errno_text());
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail("cannot rename '{}' to '{}': {}", tmp.string(), path.string(), errno_text());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(parent_or_dot(path));
}

void write_file_atomic(const fs::path& path, std::string_view text) {
  write_file_atomic(path, std::vector<ByteSpan>{{text.data(), text.size()}});
}

void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open directory '{}' to fsync it: {}", dir.string(), errno_text());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems do not support fsync on directories; there is nothing more we can do there.
  if (rc != 0 && err != EINVAL && err != ENOTSUP)
    fail("cannot fsync directory '{}': {}", dir.string(), std::strerror(err));
}

void replace_dir(const fs::path& src, const fs::path& dst) {
  const fs::path parent = parent_or_dot(dst);
  std::error_code ec;
  if (!fs::exists(dst, ec)) {
    if (::rename(src.c_str(), dst.c_str()) != 0)
      fail("cannot rename '{}' to '{}': {}", src.string(), dst.string(), errno_text());
    fsync_dir(parent);
    return;
  }
#if defined(SYS_renameat2)
  // RENAME_EXCHANGE swaps both names in one step: dst is never missing. src then holds the old.
  constexpr unsigned kRenameExchange = 1u << 1;
  if (::syscall(SYS_renameat2, AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), kRenameExchange) == 0) {
    fsync_dir(parent);
    fs::remove_all(src, ec);
    if (ec) fail("cannot remove the replaced directory '{}': {}", src.string(), ec.message());
    return;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
    fail("cannot swap '{}' into '{}': {}", src.string(), dst.string(), errno_text());
#endif
  const fs::path aside =
      parent / (".tmp-old-" + dst.filename().string() + "-" + std::to_string(::getpid()));
  fs::remove_all(aside, ec);
  if (::rename(dst.c_str(), aside.c_str()) != 0)
    fail("cannot move '{}' aside to '{}': {}", dst.string(), aside.string(), errno_text());
  if (::rename(src.c_str(), dst.c_str()) != 0)
    fail("cannot rename '{}' to '{}': {}", src.string(), dst.string(), errno_text());
  fsync_dir(parent);
  fs::remove_all(aside, ec);
  if (ec) fail("cannot remove the replaced directory '{}': {}", aside.string(), ec.message());
}

void create_dirs(const fs::path& dir, const std::string& what) {
  if (dir.empty()) fail("{}: the path is empty; name a directory", what);
  // The nearest component that exists must be a directory: say which one is not.
  std::error_code ec;
  for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
    const auto st = fs::status(p, ec);
    if (fs::exists(st)) {
      if (!fs::is_directory(st))
        fail("{}: cannot create the directory: '{}' exists and is not a directory", what, p.string());
      break;
    }
    if (p == p.parent_path()) break;
  }
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the directory: {}", what, ec.message());
}

}  // namespace ouro::io
