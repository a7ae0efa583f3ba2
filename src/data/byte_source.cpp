#include "data/byte_source.h"

#include <zlib.h>
#include <zstd.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "ouro/error.h"

namespace ouro::data {

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : ByteSource(path == "-" ? "<stdin>" : path) {
    if (path == "-") {
      f_ = stdin;
      return;
    }
    std::error_code ec;
    OURO_CHECK(!std::filesystem::is_directory(path, ec), "prepare: input {} is a directory", path);
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) fail("prepare: cannot open input {}: {}", path, std::strerror(errno));
    owned_ = true;
  }
  ~FileSource() override {
    if (owned_) std::fclose(f_);
  }
  // What is available (a pipe's stdin returns as data arrives, so a slow producer's documents
  // are processed and written as they come), 0 only at the end.
  size_t read(char* buf, size_t n) override {
    for (;;) {
      const ssize_t got = ::read(::fileno(f_), buf, n);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) fail("prepare: error reading input {}: {}", name(), std::strerror(errno));
    }
  }

 private:
  FILE* f_ = nullptr;
  bool owned_ = false;
};

class GzipSource : public ByteSource {
 public:
  explicit GzipSource(const std::string& path) : ByteSource(path) {
    gz_ = gzopen(path.c_str(), "rb");
    if (!gz_) fail("prepare: cannot open input {}: {}", path, std::strerror(errno));
    gzbuffer(gz_, 1 << 17);
  }
  ~GzipSource() override { gzclose(gz_); }
  size_t read(char* buf, size_t n) override {
    const int got = gzread(gz_, buf, static_cast<unsigned>(std::min<size_t>(n, 1u << 30)));
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(gz_, &err);
      fail("prepare: input {}: corrupt gzip data: {}", name(), msg ? msg : "?");
    }
    if (got == 0 && !gzeof(gz_)) fail("prepare: input {}: truncated gzip data", name());
    return static_cast<size_t>(got);
  }

 private:
  gzFile gz_ = nullptr;
};

class ZstdSource : public ByteSource {
 public:
  explicit ZstdSource(const std::string& path) : ByteSource(path), file_(path) {
    dctx_ = ZSTD_createDCtx();
    OURO_CHECK(dctx_, "prepare: input {}: out of memory for zstd", path);
    in_.resize(ZSTD_DStreamInSize());
  }
  ~ZstdSource() override { ZSTD_freeDCtx(dctx_); }
  size_t read(char* buf, size_t n) override {
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (pos_ == len_) {
        len_ = file_.read(in_.data(), in_.size());
        pos_ = 0;
        if (len_ == 0) {
          if (frame_open_) fail("prepare: input {}: truncated zstd data", name());
          return 0;
        }
      }
      ZSTD_inBuffer in{in_.data(), len_, pos_};
      const size_t rc = ZSTD_decompressStream(dctx_, &out, &in);
      if (ZSTD_isError(rc)) fail("prepare: input {}: corrupt zstd data: {}", name(), ZSTD_getErrorName(rc));
      pos_ = in.pos;
      frame_open_ = rc != 0;
    }
    return out.pos;
  }

 private:
  FileSource file_;
  ZSTD_DCtx* dctx_ = nullptr;
  std::vector<char> in_;
  size_t pos_ = 0, len_ = 0;
  bool frame_open_ = false;
};

}  // namespace

std::unique_ptr<ByteSource> open_source(const std::string& path) {
  if (ends_with(path, ".gz")) return std::make_unique<GzipSource>(path);
  if (ends_with(path, ".zst")) return std::make_unique<ZstdSource>(path);
  return std::make_unique<FileSource>(path);
}

bool LineReader::next(std::string& line) {
  for (;;) {
    const size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos || eof_) {
      if (nl == std::string::npos && pos_ == buf_.size()) return false;
      const size_t end = nl == std::string::npos ? buf_.size() : nl;
      line.assign(buf_, pos_, end - pos_);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      pos_ = nl == std::string::npos ? buf_.size() : nl + 1;
      ++line_;
      return true;
    }
    buf_.erase(0, pos_);
    pos_ = 0;
    const size_t old = buf_.size();
    buf_.resize(old + (1 << 20));
    const size_t got = src_.read(buf_.data() + old, 1 << 20);
    buf_.resize(old + got);
    eof_ = got == 0;
  }
}

}  // namespace ouro::data
